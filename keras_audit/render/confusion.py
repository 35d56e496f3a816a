"""A confusion matrix as a picture: counts in cells coloured by each true class's share.

Hand-drawn (NumPy cells, cached Pillow text) rather than a matplotlib figure, which costs about
70 ms here: the evaluation callback draws one every logged epoch on the training process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from keras_audit.render import text as _text
from keras_audit.render.colormaps import technique_colormap
from keras_audit.render.images import colorize

__all__ = ["confusion_image"]


def confusion_image(counts: np.ndarray, class_names: Sequence[str] | None = None,
                    title: str | None = None, font_size: int = 12) -> np.ndarray:
    """Draw a confusion matrix: row = true class, column = predicted class.

    Args:
        counts: ``(K, K)`` non-negative counts (``sklearn.metrics.confusion_matrix`` layout).
        class_names: one label per class (default: the ids).
        title: a line above the matrix.
        font_size: the size of every text, in pixels.

    Returns:
        ``np.uint8`` ``(H, W, 3)``. Each cell shows its count and is coloured by the share of its
        row (its true class) with the ``"confusion"`` colormap, so the diagonal reads as recall.

    Raises:
        ValueError: ``counts`` is not a square matrix of non-negative numbers, or the names do
            not match its size.
    """
    c = np.asarray(counts)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.dtype.kind not in "iuf" or (c < 0).any():
        raise ValueError(f"counts must be a square (K, K) matrix of non-negative numbers; got "
                         f"shape {c.shape}, dtype {c.dtype}")
    k = c.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"got {len(names)} class names for a {k}x{k} matrix")
    fnt, bold = _text.font(font_size), _text.font(font_size, bold=True)
    lh = _text.line_height(fnt)
    texts = [[str(int(v)) if float(v).is_integer() else f"{v:.2f}" for v in row] for row in c]
    widest = max(_text.text_width(fnt, t) for row in texts for t in row)
    cell = int(max(lh + 12, math.ceil(widest) + 10, 34))
    short = [_fit(fnt, n, cell - 4) for n in names]
    label_w = int(math.ceil(max(_text.text_width(fnt, n) for n in names))) + 8
    label_w = min(label_w, 160)
    row_names = [_fit(fnt, n, label_w - 8) for n in names]
    pad = 6
    title_h = lh + pad if title else 0
    head_h = 2 * lh + 4  # "predicted" and the column labels
    height = title_h + pad + head_h + k * cell + pad + lh + pad
    width = max(pad + lh + label_w + k * cell + pad,
                int(math.ceil(_text.text_width(bold, title or ""))) + 2 * pad)
    canvas = np.full((height, width, 3), 255, np.uint8)
    top = title_h + pad + head_h
    left = pad + lh + label_w
    share = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    colours = colorize(share.astype(np.float32), technique_colormap("confusion"))
    block = canvas[top:top + k * cell, left:left + k * cell]
    block.reshape(k, cell, k, cell, 3)[...] = colours[:, None, :, None, :]
    block[::cell, :] = 255  # 1-pixel white grid lines between the cells
    block[:, ::cell] = 255
    for i in range(k):
        for j in range(k):
            t = texts[i][j]
            ink = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
            x = left + j * cell + int(round((cell - _text.text_width(fnt, t)) / 2))
            _text.draw_text(canvas, top + i * cell + (cell - lh) // 2, x, t, fnt, ink)
        x = left + i * cell + int(round((cell - _text.text_width(fnt, short[i])) / 2))
        _text.draw_text(canvas, top - lh - 2, x, short[i], fnt)
        _text.draw_text(canvas, top + i * cell + (cell - lh) // 2, pad + lh, row_names[i], fnt)
    head = "predicted"
    _text.draw_text(canvas, top - 2 * lh - 4,
                    left + int(round((k * cell - _text.text_width(bold, head)) / 2)), head, bold)
    foot = "rows: true class; colour: share of the row"
    _text.draw_text(canvas, top + k * cell + pad // 2, pad, foot, fnt)
    _vertical(canvas, top, pad, k * cell, "true", bold)
    if title:
        _text.draw_text(canvas, pad // 2 + 1, pad, title, bold)
    return canvas


def _fit(fnt, text: str, width: float) -> str:
    """``text`` cut (with an ellipsis) to ``width`` pixels."""
    lines, _ = _text.wrap(text.replace("  ", " "), fnt, width, max_lines=1)
    return lines[0] if lines else ""


def _vertical(canvas: np.ndarray, top: int, left: int, span: int, text: str, fnt) -> None:
    """Write ``text`` upwards, centred on a span of rows starting at ``top``."""
    mask = np.rot90(_text.text_mask(fnt, text))
    h, w = mask.shape
    y0 = top + max(0, (span - h) // 2)
    region = canvas[y0:y0 + h, left:left + w]
    m = mask[:region.shape[0], :region.shape[1], None].astype(np.uint16)
    region[...] = ((region * (255 - m) + 127) // 255).astype(np.uint8)
