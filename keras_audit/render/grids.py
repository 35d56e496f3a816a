"""Labelled grids of tiles: the pictures the callbacks log and the report embeds.

Built with NumPy only (integer nearest-neighbour upscaling written through strided views, text
blended from cached Pillow word masks), so a 16-sample grid takes a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_audit._checks import positive_int
from keras_audit.render import text as _text
from keras_audit.render.images import (
    _rgb_uint8,
    as_array,
    colorize,
    colormap_lut,
    normalize_per_sample,
    overlay,
    to_uint8_images,
)

__all__ = [
    "caption",
    "captions",
    "channel_grid",
    "colorbar",
    "explanation_grid",
    "filter_grid",
    "grid",
    "image_grid",
    "strongest_channels",
    "upscale_factor",
]

_WIDEN = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)  # cell widths tried (x tile width) to fit captions
_PAIR_GAP = 2


# -- helpers ---------------------------------------------------------------------------------------
def upscale_factor(height: int, width: int, min_tile: int) -> int:
    """Integer nearest-neighbour factor that makes a tile's longer side at least ``min_tile``."""
    return max(1, math.ceil(min_tile / max(1, height, width)))


def _background(background: Any) -> np.ndarray:
    bg = np.asarray(background)
    if bg.ndim == 0:
        bg = np.repeat(bg, 3)
    if bg.shape != (3,) or bg.dtype.kind not in "iuf" or (bg < 0).any() or (bg > 255).any():
        raise ValueError(f"background must be a gray level 0..255 or an RGB triple; got {background!r}")
    return bg.astype(np.uint8)


def _is_figure(obj: Any) -> bool:
    return hasattr(obj, "savefig") and hasattr(obj, "canvas")


def _as_tile(tile: Any, i: int) -> np.ndarray:
    if _is_figure(tile):
        from keras_audit.render.figures import figure_to_array

        return figure_to_array(tile)
    arr = as_array(tile, f"tiles[{i}]")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"tiles[{i}] must be (h, w), (h, w, 1), (h, w, 3) or (h, w, 4); "
                         f"got shape {arr.shape}")
    if arr.dtype != np.uint8 or arr.shape[-1] != 3:
        arr = to_uint8_images(arr[None])[0]
    return arr


def _as_tiles(tiles: Any) -> list[np.ndarray] | np.ndarray:
    if isinstance(tiles, np.ndarray) or (hasattr(tiles, "numpy") and hasattr(tiles, "shape")):
        arr = as_array(tiles, "tiles")
        if arr.ndim not in (3, 4):
            raise ValueError(f"tiles must be (N, h, w, 3) images or a list of images; got shape {arr.shape}")
        if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[-1] == 3:
            return arr
        if arr.ndim == 3:  # (N, h, w) grayscale tiles, whatever w is (3x3 filters included)
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"tiles must be numeric; got dtype {arr.dtype}")
            return _rgb_uint8(arr[..., None])
        return to_uint8_images(arr)
    if isinstance(tiles, (list, tuple)):
        return [_as_tile(t, i) for i, t in enumerate(tiles)]
    raise ValueError(f"tiles must be an array (N, h, w, 3) or a list of images/figures; got {type(tiles).__name__}")


def _view(region: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``region`` reshaped without copying (splitting axes of a slice is always a view)."""
    try:
        return np.reshape(region, shape, copy=False)
    except TypeError:  # NumPy < 2.1 has no copy=
        view = region.reshape(shape)
        if not np.may_share_memory(view, region):
            raise RuntimeError("internal: reshape copied the canvas region") from None
        return view


def _paste(canvas: np.ndarray, top: int, left: int, tile: np.ndarray, k: int) -> None:
    h, w = tile.shape[:2]
    region = canvas[top:top + h * k, left:left + w * k]
    if k == 1:
        region[...] = tile
    else:  # nearest upscaling: widen each row once, then write it k times through a strided view
        _view(region, (h, k, w * k, 3))[...] = tile.repeat(k, axis=1)[:, None]


def _canvas(height: int, width: int, bg: np.ndarray) -> np.ndarray:
    if bg[0] == bg[1] == bg[2]:
        return np.full((height, width, 3), bg[0], np.uint8)  # a memset, 100x faster than a broadcast
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[...] = bg
    return canvas


def _check_captions(texts: Any, n: int, name: str = "captions") -> list[str] | None:
    if texts is None:
        return None
    if isinstance(texts, str):
        raise ValueError(f"{name} must be a sequence of {n} strings (one per tile), not one string")
    texts = list(texts)
    if len(texts) != n:
        raise ValueError(f"got {len(texts)} {name} for {n} tiles; give one per tile (None for none)")
    return ["" if t is None else str(t) for t in texts]


# -- the grid ------------------------------------------------------------------------------------
def grid(tiles: Any, captions: Sequence[str | None] | None = None, ncols: int | None = None,
         min_tile: int = 96, pad: int = 4, background: Any = 255, title: str | None = None,
         font_size: int = 11, max_lines: int = 2) -> np.ndarray:
    """Tile images into one labelled picture.

    Args:
        tiles: ``(N, h, w, 3)`` uint8 array (other batches: ``(N, h, w)`` grayscale or any kind
            :func:`to_uint8_images` takes, scaled per tile), or a list of images (any size; ``(h, w)``,
            ``(h, w, 1|3|4)``; non-uint8 tiles are min-max scaled) or matplotlib Figures.
        captions: one string per tile (None or "" for none); ``"\\n"`` forces a line break.
            Long captions wrap (at double spaces first) into at most ``max_lines`` lines; a cell
            widens up to 3x the tile width to fit them, beyond that they end in an ellipsis.
        ncols: tiles per row; default ``ceil(sqrt(N))``, at most N.
        min_tile: each tile is upscaled (nearest neighbour) by the integer factor
            ``max(1, ceil(min_tile / max(h, w)))``.
        pad: pixels between cells and around the border.
        background: gray level or RGB triple; text is black on a light background, white on a
            dark one.
        title: optional bold line above the grid.
        font_size: caption font size in pixels.
        max_lines: caption lines per tile.

    Returns:
        ``np.uint8`` ``(Hg, Wg, 3)``. Layout (a contract the tests rely on): cells are
        ``cell_h = max(h * k)`` by ``cell_w`` (``max(w * k)``, or wider for captions); under
        each row is a caption strip of ``strip_h = lines * line_height + 2`` pixels (0 without
        captions); ``Hg = title_h + nrows * (cell_h + strip_h) + (nrows + 1) * pad`` and
        ``Wg = ncols * cell_w + (ncols + 1) * pad`` (wider if the title needs it). Tile ``i``
        sits in row ``i // ncols``, column ``i % ncols``, centred in its cell.

    Raises:
        ValueError: no tiles, bad shapes, caption count mismatch, bad ncols/min_tile/pad/background.
    """
    bg = _background(background)
    for name, value, low in (("min_tile", min_tile, 1), ("pad", pad, 0), ("font_size", font_size, 4),
                             ("max_lines", max_lines, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    items = _as_tiles(tiles)
    n = len(items)
    if n == 0:
        raise ValueError("grid needs at least one tile; got none")
    texts = _check_captions(captions, n)
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    elif not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer or None; got {ncols!r}")
    ncols = int(min(ncols, n))
    nrows = math.ceil(n / ncols)

    if isinstance(items, np.ndarray):
        k = upscale_factor(items.shape[1], items.shape[2], min_tile)
        factors = [k] * n
        cell_h, tile_w = items.shape[1] * k, items.shape[2] * k
    else:
        factors = [upscale_factor(t.shape[0], t.shape[1], min_tile) for t in items]
        cell_h = max(t.shape[0] * f for t, f in zip(items, factors))
        tile_w = max(t.shape[1] * f for t, f in zip(items, factors))

    fnt = _text.font(font_size)
    cell_w, layouts = tile_w, None
    if texts is not None and any(texts):
        for widen in _WIDEN:
            cell_w = max(tile_w, int(math.ceil(tile_w * widen)))
            layouts = [_text.wrap(t, fnt, cell_w - 2, max_lines) if t else ([], True) for t in texts]
            if all(fits for _, fits in layouts):
                break
    lh = _text.line_height(fnt)
    n_lines = max((len(lines) for lines, _ in layouts), default=0) if layouts else 0
    strip_h = n_lines * lh + 2 if n_lines else 0
    title_font = _text.font(font_size + 1, bold=True)
    title_h = _text.line_height(title_font) + pad if title else 0

    height = title_h + nrows * (cell_h + strip_h) + (nrows + 1) * pad
    width = ncols * cell_w + (ncols + 1) * pad
    if title:
        width = max(width, int(math.ceil(_text.text_width(title_font, title))) + 2 * pad)
    canvas = _canvas(height, width, bg)

    ink = (0, 0, 0) if float(bg.mean()) >= 128 else (255, 255, 255)
    for i in range(n):
        r, c = divmod(i, ncols)
        top = title_h + pad + r * (cell_h + strip_h + pad)
        left = pad + c * (cell_w + pad)
        tile, k = items[i], factors[i]
        th, tw = tile.shape[0] * k, tile.shape[1] * k
        _paste(canvas, top + (cell_h - th) // 2, left + (cell_w - tw) // 2, tile, k)
        for j, line in enumerate(layouts[i][0] if layouts else ()):
            x = left + int(round((cell_w - _text.text_width(fnt, line)) / 2))
            _text.draw_text(canvas, top + cell_h + 1 + j * lh, x, line, fnt, ink)
    if title:
        _text.draw_text(canvas, pad // 2 + 1, pad, title, title_font, ink)
    return canvas


# -- captions ------------------------------------------------------------------------------------
def _class_name(value: Any, class_names: Sequence[str] | None, what: str) -> str:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"{what} must be one class (index or name); got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be a class index or name; got {value!r}")
    index = int(value)
    if class_names is None:
        return str(index)
    if not 0 <= index < len(class_names):
        raise ValueError(f"{what} class index {index} is out of range for {len(class_names)} "
                         f"class_names (valid: 0..{len(class_names) - 1})")
    return str(class_names[index])


def caption(true: Any = None, pred: Any = None, confidence: float | None = None,
            class_names: Sequence[str] | None = None) -> str:
    """One caption line, e.g. ``"true: cat  pred: dog (0.93)"``.

    Args:
        true: true class (index or name), or None to leave out.
        pred: predicted class (index or name), or None.
        confidence: the prediction's score, shown with two decimals after ``pred``
            (or as ``"score: 0.93"`` without a prediction).
        class_names: names for class indices.

    Returns:
        The parts joined by two spaces (the preferred line break in :func:`grid`); ``""`` if
        every argument is None.

    Raises:
        ValueError: a class index outside ``class_names`` or a non-class value.
    """
    parts = []
    if true is not None:
        parts.append(f"true: {_class_name(true, class_names, 'true')}")
    score = None if confidence is None else f"{float(confidence):.2f}"
    if pred is not None:
        text = f"pred: {_class_name(pred, class_names, 'pred')}"
        parts.append(text if score is None else f"{text} ({score})")
    elif score is not None:
        parts.append(f"score: {score}")
    return "  ".join(parts)


def captions(true: Any = None, pred: Any = None, confidence: Any = None,
             class_names: Sequence[str] | None = None) -> list[str]:
    """:func:`caption` for every sample: arrays (or None) of one length in, a list of strings out.

    Raises:
        ValueError: lengths differ, all arguments are None, or a class index is out of range.
    """
    given = {k: np.asarray(v).reshape(-1) if np.ndim(v) else np.asarray(v).reshape(1)
             for k, v in (("true", true), ("pred", pred), ("confidence", confidence)) if v is not None}
    if not given:
        raise ValueError("captions needs at least one of true, pred, confidence")
    lengths = {k: len(v) for k, v in given.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"true, pred and confidence must have one length; got {lengths}")
    n = next(iter(lengths.values()))
    return [caption(**{k: v[i] for k, v in given.items()}, class_names=class_names) for i in range(n)]


# -- explanation and image grids -------------------------------------------------------------------
def colorbar(cmap: Any, height: int, width: int = 10, font_size: int = 11,
             labels: tuple[str, str] = ("0", "1"), background: Any = 255) -> np.ndarray:
    """A small vertical colour scale: the colormap from ``labels[0]`` (bottom) to ``labels[1]``
    (top), its two labels beside its ends.

    Args:
        cmap: colormap name or ``Colormap`` (e.g. ``render.technique_colormap("gradcam")``).
        height: the bar's height in pixels (the picture is as tall).
        width: the bar's width in pixels.
        font_size: the labels' font size in pixels.
        labels: the texts at the bottom (value 0) and the top (value 1) of the scale.
        background: gray level or RGB triple behind the labels.

    Returns:
        ``np.uint8`` ``(height, width + 3 + label width, 3)``: column 0 .. ``width - 1`` is the
        bar (row 0 the colormap's top colour, the last row its bottom one), the labels right of
        it, the top label's top at row 0 and the bottom label's bottom at the last row.

    Raises:
        ValueError: an unknown colormap, or ``height`` too small for the two labels.
    """
    colormap_lut(cmap)
    fnt = _text.font(font_size)
    lh = _text.line_height(fnt)
    for name, value, low in (("height", height, 2 * lh), ("width", width, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"colorbar {name} must be an integer >= {low}; got {value!r}")
    bottom, top = (str(t) for t in labels)
    label_w = int(math.ceil(max(_text.text_width(fnt, bottom), _text.text_width(fnt, top)))) + 2
    bg = _background(background)
    canvas = _canvas(int(height), int(width) + 3 + label_w, bg)
    values = np.linspace(1.0, 0.0, int(height), dtype=np.float32)  # top row is 1
    canvas[:, :width] = colorize(values, cmap)[:, None]
    ink = (0, 0, 0) if float(bg.mean()) >= 128 else (255, 255, 255)
    _text.draw_text(canvas, 0, width + 3, top, fnt, ink)
    _text.draw_text(canvas, int(height) - lh, width + 3, bottom, fnt, ink)
    return canvas


def _pairs(imgs: np.ndarray, blended: np.ndarray, k: int) -> np.ndarray:
    """Input beside overlay, each upscaled by ``k``, a 2-pixel white gap between them."""
    n, h, w = imgs.shape[:3]
    pairs = np.full((n, h * k, 2 * w * k + _PAIR_GAP, 3), 255, np.uint8)
    for picture, left in ((imgs, 0), (blended, w * k + _PAIR_GAP)):
        region = pairs[:, :, left:left + w * k]
        _view(region, (n, h, k, w * k, 3))[...] = picture.repeat(k, axis=2)[:, :, None]
    return pairs


def _with_colorbar(picture: np.ndarray, cmap: Any, top: int, height: int, pad: int,
                   font_size: int) -> np.ndarray:
    """``picture`` widened on the right by a colour bar beside its first row of tiles."""
    bar = colorbar(cmap, height, font_size=font_size)
    out = np.full((picture.shape[0], picture.shape[1] + bar.shape[1] + pad, 3), 255, np.uint8)
    out[:, :picture.shape[1]] = picture
    out[top:top + height, picture.shape[1]:picture.shape[1] + bar.shape[1]] = bar
    return out


def explanation_grid(images: Any, maps: Any, captions: Sequence[str | None] | None = None,
                     alpha: float = 0.45, cmap: Any = "jet", ncols: int | None = None,
                     min_tile: int = 96, pad: int = 4, title: str | None = None,
                     font_size: int = 11, colorbar: bool = False,
                     fit_width: int | None = None) -> np.ndarray:
    """Each sample's input beside its heatmap overlay, a caption under each pair.

    Args:
        images: a batch :func:`to_uint8_images` accepts, ``(N, H, W[, C])``.
        maps: ``(N, H, W)`` floats in [0, 1] (e.g. Grad-CAM maps).
        captions: one string per sample (see :func:`caption`), or None.
        alpha, cmap: as in :func:`overlay`.
        ncols: pairs per row; default ``ceil(sqrt(N))`` (or as many as ``fit_width`` allows).
        min_tile: each image is upscaled by ``max(1, ceil(min_tile / max(H, W)))``.
        pad, title, font_size: as in :func:`grid`.
        colorbar: add the colormap's scale (:func:`colorbar`, 0 to 1) right of the first row.
        fit_width: the width the picture is shown at (e.g. TensorBoard's image card, about
            335 px): without ``ncols``, the most pairs per row that keep the picture within it;
            when one pair alone is wider, the font grows by the factor the viewer shrinks the
            picture, so captions read at the same size.

    Returns:
        ``np.uint8`` ``(Hg, Wg, 3)``: :func:`grid` of pair tiles ``(H*k, 2*W*k + 2, 3)``
        (input left, overlay right, a 2-pixel white gap), with the colour bar (``colorbar``)
        in a strip of its width plus ``pad`` at the right.

    Raises:
        ValueError: mismatched counts or shapes, alpha outside [0, 1], unknown colormap, or
            ``fit_width`` not a positive integer.
    """
    imgs = to_uint8_images(images)
    blended = overlay(imgs, maps, alpha=alpha, cmap=cmap)
    _check_captions(captions, len(imgs))
    if fit_width is not None:
        positive_int(fit_width, "fit_width")
    n, h, w = imgs.shape[:3]
    k = upscale_factor(h, w, min_tile)
    pairs = _pairs(imgs, blended, k)

    def draw(cols: int | None, size: int) -> np.ndarray:
        picture = grid(pairs, captions=captions, ncols=cols, min_tile=1, pad=pad, title=title,
                       font_size=size)
        if not colorbar:
            return picture
        title_h = _text.line_height(_text.font(size + 1, bold=True)) + pad if title else 0
        height = max(h * k, 2 * _text.line_height(_text.font(size)))
        return _with_colorbar(picture, cmap, title_h + pad, height, pad, size)

    if fit_width is None or ncols is not None:
        return draw(ncols, font_size)
    # the widest row of pairs that fits (captions may widen cells, so measure the drawn grid)
    for cols in range(max(1, min(n, int(fit_width) // (pairs.shape[2] + pad))), 0, -1):
        picture = draw(cols, font_size)
        if picture.shape[1] <= fit_width or cols == 1:
            break
    if picture.shape[1] > fit_width:  # shown shrunk: enlarge the text by as much
        picture = draw(1, int(math.ceil(font_size * picture.shape[1] / fit_width)))
    return picture


def image_grid(images: Any, captions: Sequence[str | None] | None = None, ncols: int | None = None,
               min_tile: int = 96, pad: int = 4, title: str | None = None) -> np.ndarray:
    """A plain labelled grid of input images (e.g. activation-maximisation results).

    Args:
        images: a batch :func:`to_uint8_images` accepts (float images are min-max scaled per image).
        captions, ncols, min_tile, pad, title: as in :func:`grid`.

    Returns:
        ``np.uint8`` ``(Hg, Wg, 3)``.

    Raises:
        ValueError: as :func:`to_uint8_images` and :func:`grid`.
    """
    return grid(to_uint8_images(images), captions=captions, ncols=ncols, min_tile=min_tile,
                pad=pad, title=title)


# -- weights and feature maps --------------------------------------------------------------------
def filter_grid(kernels: Any, max_filters: int = 32, min_tile: int = 48, ncols: int | None = None,
                title: str | None = None) -> np.ndarray:
    """Conv2D filters as small pictures, labelled with their index.

    Args:
        kernels: a Conv2D kernel ``(kh, kw, in_channels, filters)`` (array, tensor or variable).
            With 3 input channels each filter is an RGB tile, the whole kernel min-max scaled
            jointly (so filters compare in strength and sign: 0 weight is mid-grey); otherwise
            each filter is a grayscale tile of its mean over input channels, scaled on its own.
        max_filters: show filters ``0 .. max_filters - 1`` (the first ones: a stable choice, so
            epochs compare).
        min_tile, ncols, title: as in :func:`grid`.

    Returns:
        ``np.uint8`` ``(Hg, Wg, 3)``.

    Raises:
        ValueError: not a 4-D kernel, or ``max_filters < 1``.
    """
    k = as_array(kernels, "kernels")
    if k.ndim != 4 or k.dtype.kind not in "biuf":
        raise ValueError("filter_grid takes a numeric Conv2D kernel (kh, kw, in_channels, filters); "
                         f"got shape {k.shape}, dtype {k.dtype}")
    positive_int(max_filters, "max_filters")
    cin, cout = k.shape[2], k.shape[3]
    count = min(cout, int(max_filters))
    k = k.astype(np.float32)
    if cin == 3:
        lo, hi = float(k.min()), float(k.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        tiles = ((k[..., :count] - lo) * scale + 0.5).clip(0, 255).astype(np.uint8)
        tiles = np.ascontiguousarray(tiles.transpose(3, 0, 1, 2))
    else:
        tiles = _rgb_uint8(k[..., :count].mean(axis=2).transpose(2, 0, 1)[..., None])
    return grid(tiles, captions=[str(i) for i in range(count)], ncols=ncols, min_tile=min_tile,
                title=title)


def strongest_channels(activations: Any, k: int) -> np.ndarray:
    """Indices of the ``k`` channels (last axis) with the largest mean activation, strongest first.

    Ties keep channel order. Raises ValueError for a non-numeric array or ``k < 1``.
    """
    a = as_array(activations, "activations")
    if a.ndim < 1 or a.dtype.kind not in "biuf":
        raise ValueError(f"activations must be a numeric array (..., C); got shape {a.shape}")
    positive_int(k, "k")
    means = np.nan_to_num(a.reshape(-1, a.shape[-1]).astype(np.float64).mean(axis=0), nan=-np.inf)
    return np.argsort(-means, kind="stable")[: int(k)]


def channel_grid(activations: Any, max_channels: int = 16, caption: str | None = None,
                 cmap: Any = "viridis", min_tile: int = 64, ncols: int | None = None) -> np.ndarray:
    """One sample's feature map, its strongest channels side by side with their indices.

    Args:
        activations: ``(h, w, C)`` (images; a leading batch axis of 1 is dropped) or ``(T, C)``
            (sequences).
        max_channels: how many channels to show: those with the largest mean activation,
            strongest first (see :func:`strongest_channels`).
        caption: a title line above the picture.
        cmap: colormap for the min-max scaled channels (``"gray"`` for grayscale).
        min_tile: for ``(h, w, C)``, each tile's longer side is upscaled to at least this.
        ncols: for ``(h, w, C)``, tiles per row.

    Returns:
        ``np.uint8`` picture: for ``(h, w, C)`` a :func:`grid` of tiles captioned ``"ch <i>"``;
        for ``(T, C)`` one row per channel (a coloured strip over time, labelled at its left).

    Raises:
        ValueError: other ranks, non-numeric input, ``max_channels < 1``, unknown colormap.
    """
    a = as_array(activations, "activations")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim not in (2, 3) or a.dtype.kind not in "biuf":
        raise ValueError("channel_grid takes one sample's activations (h, w, C) or (T, C); "
                         f"got shape {a.shape}, dtype {a.dtype}")
    positive_int(max_channels, "max_channels")
    colormap_lut(cmap)
    idx = strongest_channels(a, int(max_channels))
    chosen = np.moveaxis(a[..., idx], -1, 0)  # (K, h, w) or (K, T)
    tiles = colorize(normalize_per_sample(chosen), cmap)
    labels = [f"ch {i}" for i in idx]
    if a.ndim == 3:
        return grid(tiles, captions=labels, ncols=ncols, min_tile=min_tile, title=caption)
    return _strips(tiles, labels, caption)


def _strips(strips: np.ndarray, labels: list[str], title: str | None, pad: int = 4,
            row_h: int = 12, min_width: int = 256) -> np.ndarray:
    """Rows of coloured strips ``(K, T, 3)`` with labels at the left, for sequence channels."""
    n, steps = strips.shape[:2]
    fnt = _text.font(10)
    title_font = _text.font(12, bold=True)
    label_w = int(math.ceil(max(_text.text_width(fnt, t) for t in labels))) + pad
    rx = max(1, math.ceil(min_width / steps))
    title_h = _text.line_height(title_font) + pad if title else 0
    height = title_h + pad + n * (row_h + 2) + pad
    width = pad + label_w + steps * rx + pad
    if title:
        width = max(width, int(math.ceil(_text.text_width(title_font, title))) + 2 * pad)
    canvas = np.full((height, width, 3), 255, np.uint8)
    left = pad + label_w
    for i in range(n):
        top = title_h + pad + i * (row_h + 2)
        canvas[top:top + row_h, left:left + steps * rx] = np.repeat(strips[i], rx, axis=0)[None]
    if title:
        _text.draw_text(canvas, pad // 2 + 1, pad, title, title_font)
    for i, label in enumerate(labels):
        _text.draw_text(canvas, title_h + pad + i * (row_h + 2), pad, label, fnt)
    return canvas
