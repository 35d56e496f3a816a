"""Token heatmaps: each sample's tokens as a row of cells coloured by their attribution.

Hand-drawn (NumPy cells + cached Pillow text masks) like ``render.frames``: a logged epoch draws
every sample's row, and matplotlib figures cost ~70 ms each. The layout depends only on the
tokens, which are fixed for a run, so it is computed once (``TokenRows``) and every epoch only
fills the cells and writes the captions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_audit.render import text as _text
from keras_audit.render.images import colorize, colormap_lut

#: the longest token label drawn in full (longer ones end in an ellipsis)
LABEL_CHARS = 12
#: cell widths in pixels
_CELL_MIN, _CELL_MAX = 22, 96
#: grey of padding cells (ids an Embedding masks)
_PAD_GREY = 225


def _short(label: str, limit: int = LABEL_CHARS) -> str:
    label = str(label).replace("\n", " ")
    return label if len(label) <= limit else label[:limit - 1] + _text.ELLIPSIS


class TokenRows:
    """The layout of a token heatmap: one block per sample (a caption line over its tokens'
    cells, wrapped every ``max_cols`` cells), drawn once and filled per epoch.

    Args:
        labels: one list of token strings per sample (each sample may have its own length).
        pad: per sample, a boolean per token: ``True`` draws the cell as padding (grey, no
            colour); ``None`` for none.
        max_cols: cells per line before a sample's row wraps.
        cmap: a matplotlib colormap name.
        font_size: the token and caption font size.

    Attributes:
        boxes: per sample, the ``(top, left)`` pixel of each token's cell.
        cell: ``(height, width)`` of every cell.

    Raises:
        ValueError: no samples, a sample without tokens, ``pad`` of other lengths, an unknown
            colormap, or ``max_cols`` < 1.
    """

    def __init__(self, labels: Sequence[Sequence[str]], pad: Sequence[Sequence[bool]] | None = None,
                 max_cols: int = 16, cmap: str = "jet", font_size: int = 11) -> None:
        if not labels or any(len(row) == 0 for row in labels):
            raise ValueError("a token heatmap needs at least one sample with at least one token")
        if isinstance(max_cols, bool) or not isinstance(max_cols, int) or max_cols < 1:
            raise ValueError(f"max_cols must be a positive integer; got {max_cols!r}")
        colormap_lut(cmap)  # ValueError for a name that is not a colormap
        self.cmap = cmap
        self.labels = [[_short(t) for t in row] for row in labels]
        if pad is None:
            pad = [[False] * len(row) for row in labels]
        if len(pad) != len(labels) or any(len(p) != len(r) for p, r in zip(pad, labels)):
            raise ValueError("pad must hold one flag per token of every sample")
        self.pad = [np.asarray(p, bool) for p in pad]
        self.font = _text.font(font_size)
        self.title_font = _text.font(font_size + 1, bold=True)
        lh = _text.line_height(self.font)
        widest = max(_text.text_width(self.font, t) for row in self.labels for t in row)
        cw = int(np.clip(np.ceil(widest) + 8, _CELL_MIN, _CELL_MAX))
        ch = lh + 6
        self.cell = (ch, cw)
        self.gap, self.margin = 1, 4
        cols = min(max_cols, max(len(r) for r in self.labels))
        self.width = 2 * self.margin + cols * (cw + self.gap)
        self.title_h = _text.line_height(self.title_font) + 4
        self.caption_h = lh + 2
        top = self.margin + self.title_h
        self.boxes: list[list[tuple[int, int]]] = []
        self.caption_tops: list[int] = []
        for row in self.labels:
            self.caption_tops.append(top)
            top += self.caption_h
            lines = int(np.ceil(len(row) / max_cols))
            self.boxes.append([(top + (k // max_cols) * (ch + self.gap),
                                self.margin + (k % max_cols) * (cw + self.gap))
                               for k in range(len(row))])
            top += lines * (ch + self.gap) + self.margin + 2
        self.height = top

    def draw(self, maps: Sequence[np.ndarray] | np.ndarray, captions: Sequence[str] | None = None,
             title: str | None = None) -> np.ndarray:
        """The picture with each token's cell coloured by its map value.

        Args:
            maps: per sample, one value in [0, 1] per token (an ``(N, T)`` array, or a list
                of per-sample arrays); NaN draws black.
            captions: one line per sample (cut with an ellipsis when too wide), or None.
            title: a bold line above the samples.

        Returns:
            ``np.uint8`` ``(H, W, 3)``.

        Raises:
            ValueError: the maps' or captions' counts or lengths do not match the tokens.
        """
        if len(maps) != len(self.labels):
            raise ValueError(f"{len(maps)} maps for {len(self.labels)} samples")
        if captions is not None and len(captions) != len(self.labels):
            raise ValueError(f"{len(captions)} captions for {len(self.labels)} samples")
        canvas = np.full((self.height, self.width, 3), 255, np.uint8)
        ch, cw = self.cell
        if title:
            _text.draw_text(canvas, self.margin, self.margin, title, self.title_font)
        for i, row in enumerate(self.labels):
            values = np.asarray(maps[i], np.float32).reshape(-1)
            if len(values) != len(row):
                raise ValueError(f"sample {i} has {len(row)} tokens but its map has "
                                 f"{len(values)} values")
            colours = colorize(values, self.cmap)
            colours[self.pad[i]] = _PAD_GREY
            if captions is not None and captions[i]:
                line = _text.wrap(captions[i], self.font, self.width - 2 * self.margin, 1)[0]
                _text.draw_text(canvas, self.caption_tops[i], self.margin, line[0], self.font)
            for k, (top, left) in enumerate(self.boxes[i]):
                colour = colours[k]
                canvas[top:top + ch, left:left + cw] = colour
                # dark text on light cells, white on dark ones (Rec. 601 luma)
                luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
                ink = (0, 0, 0) if luma > 140 else (255, 255, 255)
                label = row[k]
                tw = _text.text_width(self.font, label)
                _text.draw_text(canvas, top + 3, left + int(max(0, (cw - tw) / 2)), label,
                                self.font, ink)
        return canvas


def token_heatmap(labels: Sequence[Sequence[str]], maps: Sequence[np.ndarray] | np.ndarray,
                  captions: Sequence[str] | None = None, title: str | None = None,
                  cmap: str = "jet", max_cols: int = 16,
                  pad: Sequence[Sequence[bool]] | None = None) -> np.ndarray:
    """One token heatmap in one call (``TokenRows(labels, ...).draw(maps, ...)``).

    Args:
        labels: one list of token strings per sample.
        maps: per sample, one value in [0, 1] per token.
        captions, title: as ``TokenRows.draw``.
        cmap, max_cols, pad: as ``TokenRows``.

    Returns:
        ``np.uint8`` ``(H, W, 3)``.

    Raises:
        ValueError: as ``TokenRows`` and ``TokenRows.draw``.
    """
    return TokenRows(labels, pad=pad, max_cols=max_cols, cmap=cmap).draw(maps, captions, title)
