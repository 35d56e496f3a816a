"""Attention pictures: labelled ``query x key`` heatmap frames, grids of heads, rollout overlays."""

from __future__ import annotations

import numpy as np

from keras_audit.render import text as _text
from keras_audit.render.grids import explanation_grid, grid
from keras_audit.render.images import colorize

#: heatmap cell sides, in pixels, and the side a heatmap aims for
_CELL_MIN, _CELL_MAX, _HEATMAP_SIDE = 3, 18, 200


class HeatmapFrame:
    """A labelled frame for ``query x key`` heatmaps, drawn once and filled per head.

    Hand-drawn (NumPy cells + Pillow text) rather than ``render.heatmap``, which makes a
    matplotlib figure per matrix (about 70 ms here), and a logged epoch draws samples x heads x
    layers of them. The labels are drawn once per sample (the samples are fixed), so filling a
    frame costs a colormap lookup and a copy.

    Args:
        row_labels, col_labels: one label per query / key position ("" for none).
        cmap: a matplotlib colormap name.
    """

    def __init__(self, row_labels: list[str], col_labels: list[str], cmap: str = "viridis") -> None:
        from PIL import Image, ImageDraw

        tq, tk = len(row_labels), len(col_labels)
        self.cmap = cmap
        self.cell = cell = int(np.clip(_HEATMAP_SIDE // max(tq, tk, 1), _CELL_MIN, _CELL_MAX))
        fnt = _text.font(max(7, min(11, cell - 2)))
        lh = _text.line_height(fnt)
        cols = [_short(t) for t in col_labels]
        rows = [_short(t) for t in row_labels]
        widest = int(np.ceil(max((_text.text_width(fnt, t) for t in cols if t), default=0.0)))
        upright = widest + 2 > cell  # too wide for a cell: write the column labels upwards
        self.top = top = (widest + 3 if upright else lh + 2) if any(cols) else 0
        self.left = left = int(np.ceil(max((_text.text_width(fnt, t) for t in rows if t),
                                           default=0.0))) + 4
        row_every = max(1, int(np.ceil(lh / cell)))
        col_every = row_every if upright else 1
        picture = Image.new("RGB", (left + tk * cell + 1, top + tq * cell + 1), (255, 255, 255))
        draw = ImageDraw.Draw(picture)
        if upright and any(cols):
            strip = Image.new("RGB", (top, tk * cell), (255, 255, 255))  # drawn sideways, turned
            side = ImageDraw.Draw(strip)
            for k, t in enumerate(cols):
                if t and k % col_every == 0:
                    y = k * cell + (cell - lh) / 2
                    side.text((top - 2 - _text.text_width(fnt, t), y), t, fill=(0, 0, 0), font=fnt)
            picture.paste(strip.transpose(Image.Transpose.ROTATE_90), (left, 0))
        else:
            for k, t in enumerate(cols):
                if t:
                    x = left + k * cell + (cell - _text.text_width(fnt, t)) / 2
                    draw.text((x, 0), t, fill=(0, 0, 0), font=fnt)
        for k, t in enumerate(rows):
            if t and k % row_every == 0:
                y = top + k * cell + (cell - lh) / 2
                draw.text((left - 3 - _text.text_width(fnt, t), y), t, fill=(0, 0, 0), font=fnt)
        self.canvas = np.asarray(picture).copy()
        self.shape = (tq, tk)

    def fill(self, weights: np.ndarray) -> np.ndarray:
        """The frame with ``weights`` ``(Tq, Tk)`` as cells, coloured relative to their maximum.

        Returns:
            ``np.uint8`` ``(H, W, 3)``.
        """
        tq, tk = self.shape
        w = np.asarray(weights, np.float32)
        top = float(np.nanmax(w)) if np.isfinite(w).any() else 0.0
        colours = colorize(w / top if top > 0 else np.zeros_like(w), self.cmap)
        out = self.canvas.copy()
        c = self.cell
        region = out[self.top:self.top + tq * c, self.left:self.left + tk * c]
        region.reshape(tq, c, tk, c, 3)[...] = colours[:, None, :, None, :]
        return out


def _short(label: str, limit: int = 10) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "\u2026"


def attention_grid(frames: list[HeatmapFrame], scores: np.ndarray, captions: list[str],
                   title: str) -> np.ndarray:
    """One row per sample, one column per head: each head's weights in its sample's frame.

    Args:
        frames: one ``HeatmapFrame`` per sample, shaped ``(Tq, Tk)``.
        scores: ``(N, heads, Tq, Tk)`` attention weights.
        captions: one caption per sample (shown over its first head).
        title: the picture's title.

    Returns:
        ``np.uint8`` ``(H, W, 3)``.
    """
    tiles, texts = [], []
    n, heads = scores.shape[:2]
    for i in range(n):
        for h in range(heads):
            tiles.append(frames[i].fill(scores[i, h]))
            peak = float(scores[i, h].max())
            texts.append(f"{captions[i]}  head {h} (max {peak:.2f})" if h == 0
                         else f"head {h} (max {peak:.2f})")
    return grid(tiles, captions=texts, ncols=heads, min_tile=1, title=title)


def rollout_overlay(images: np.ndarray, maps: np.ndarray, captions: list[str]) -> np.ndarray:
    """Per-patch rollout maps ``(N, rows, cols)`` over their images ``(N, H, W, C)``.

    Returns:
        ``np.uint8`` ``(H, W, 3)``: ``explanation_grid`` of the inputs and the upsampled maps.
    """
    rows, cols = maps.shape[1:]
    h, w = images.shape[1:3]
    # nearest upsampling: each patch is one token, so the map is constant over a patch
    up = np.repeat(np.repeat(maps, h // rows, axis=1), w // cols, axis=2)
    return explanation_grid(images, up, captions=captions,
                            title="attention rollout (input | rollout overlay)")
