"""Pixel arrays: uint8 conversion, colormaps and heatmap overlays.

NumPy only on this path (plus a colormap lookup table taken once from matplotlib): the training
callbacks call it every epoch, so no matplotlib figure is ever made here.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = [
    "colorize",
    "colormap_lut",
    "normalize_per_sample",
    "overlay",
    "resize_maps",
    "to_uint8_images",
]


def as_array(x: Any, name: str) -> np.ndarray:
    """``x`` (NumPy array, list, tf/keras tensor or variable) as a NumPy array."""
    if not isinstance(x, np.ndarray) and hasattr(x, "numpy"):
        x = x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array-like of numbers; got {type(x).__name__}") from err


def normalize_per_sample(x: Any) -> np.ndarray:
    """Scale each sample (axis 0) to [0, 1] by its own min and max.

    Args:
        x: array of shape ``(N, ...)``; numbers of any real dtype.

    Returns:
        float32 array of the same shape. A constant sample becomes zeros (never NaN);
        non-finite values (NaN, inf) are left out of the min and max and become 0.

    Raises:
        ValueError: ``x`` is not numeric or has no sample axis.
    """
    arr = as_array(x, "x")
    if arr.ndim < 1 or arr.dtype.kind not in "biuf":
        raise ValueError(f"x must be a numeric array (N, ...); got dtype {arr.dtype}, shape {arr.shape}")
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    flat = arr.reshape(len(arr), -1).astype(dtype, copy=True)
    if flat.size == 0:
        return flat.reshape(arr.shape).astype(np.float32)
    finite = np.isfinite(flat)
    all_finite = bool(finite.all())
    if all_finite:
        lo, hi = flat.min(axis=1), flat.max(axis=1)
    else:
        lo = np.where(finite, flat, np.inf).min(axis=1)
        hi = np.where(finite, flat, -np.inf).max(axis=1)
        lo[~np.isfinite(lo)] = 0.0  # a sample with no finite value
        hi[~np.isfinite(hi)] = 0.0
    span = hi - lo
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    flat -= lo[:, None]
    flat *= scale[:, None]
    if not all_finite:
        flat[~finite] = 0.0
    np.clip(flat, 0.0, 1.0, out=flat)
    return flat.reshape(arr.shape).astype(np.float32, copy=False)


def to_uint8_images(x: Any) -> np.ndarray:
    """A batch of images as displayable RGB ``uint8``.

    Args:
        x: ``(N, H, W)`` or ``(N, H, W, 1)`` grayscale, ``(N, H, W, 3)`` RGB or ``(N, H, W, 4)``
            RGBA (alpha dropped). ``uint8`` input is passed through unchanged; any other real
            dtype (float, int, bool) is min-max scaled per sample to 0..255 jointly over its
            pixels and channels, so negatives map to 0 and never wrap around. A constant sample
            becomes black; NaN/inf pixels become black.

    Returns:
        ``np.uint8`` array ``(N, H, W, 3)``.

    Raises:
        ValueError: wrong rank, channel count or dtype; or a single ``(H, W, 3)`` image (pass
        ``x[None]`` for a batch of one).
    """
    arr = as_array(x, "images")
    if arr.ndim == 3:
        if arr.shape[-1] == 3:
            raise ValueError(
                f"images of shape {arr.shape} look like one RGB image; pass a batch "
                "(N, H, W, 3), e.g. x[None], or (N, H, W) for grayscale with W != 3")
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(
            "images must be (N, H, W), (N, H, W, 1), (N, H, W, 3) or (N, H, W, 4); "
            f"got shape {arr.shape}")
    channels = arr.shape[-1]
    if channels == 4:
        arr = arr[..., :3]
    elif channels not in (1, 3):
        raise ValueError(f"images must have 1, 3 or 4 channels; got {channels} (shape {arr.shape})")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"images must be numeric (uint8, int, float or bool); got dtype {arr.dtype}")
    return _rgb_uint8(arr)


def _rgb_uint8(arr: np.ndarray) -> np.ndarray:
    """(N, H, W, 1|3) numbers -> (N, H, W, 3) uint8; the body of to_uint8_images, unchecked."""
    if arr.dtype == np.uint8:
        out = arr
    else:  # round half up; min -> 0 and max -> 255 exactly
        out = (normalize_per_sample(arr) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.ascontiguousarray(out)


@functools.lru_cache(maxsize=64)
def _lut_by_name(name: str) -> np.ndarray:
    import matplotlib  # lazy: only the colormap table, never pyplot

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"unknown colormap {name!r}; use a name from matplotlib.colormaps, e.g. "
            "'jet', 'viridis', 'inferno', 'magma', 'turbo', 'gray', 'RdBu_r'") from None
    return _lut_of(cmap)


def _lut_of(cmap: Any) -> np.ndarray:
    n = int(cmap.N)
    lut = np.zeros((n + 1, 3), np.uint8)  # the extra last row is black, for NaN
    lut[:n] = cmap(np.arange(n), bytes=True)[:, :3]
    lut.flags.writeable = False
    return lut


def colormap_lut(cmap: Any = "jet") -> np.ndarray:
    """The colormap's lookup table: ``uint8`` ``(N + 1, 3)``, row ``N`` black (used for NaN).

    Args:
        cmap: a matplotlib colormap name (cached after the first call) or a
            ``matplotlib.colors.Colormap``.

    Raises:
        ValueError: unknown colormap name.
    """
    if isinstance(cmap, str):
        return _lut_by_name(cmap)
    if hasattr(cmap, "N") and callable(cmap):
        return _lut_of(cmap)
    raise ValueError(f"cmap must be a matplotlib colormap name or Colormap; got {type(cmap).__name__}")


def colorize(maps: Any, cmap: Any = "jet") -> np.ndarray:
    """Colour maps with a matplotlib colormap, through a cached lookup table.

    Args:
        maps: float maps with values in [0, 1], usually ``(N, H, W)`` (any shape works).
            Values outside [0, 1] are clipped to the colormap's ends; NaN becomes black.
        cmap: colormap name (``matplotlib.colormaps``) or a ``Colormap``.

    Returns:
        ``np.uint8`` array of shape ``maps.shape + (3,)``, equal to
        ``matplotlib.colormaps[cmap](maps, bytes=True)[..., :3]`` for finite values.

    Raises:
        ValueError: non-numeric maps or an unknown colormap.
    """
    lut = colormap_lut(cmap)
    m = as_array(maps, "maps")
    if m.dtype.kind not in "biuf":
        raise ValueError(f"maps must be numeric; got dtype {m.dtype}")
    if m.dtype.kind != "f":
        m = m.astype(np.float32)
    n = len(lut) - 1
    # same binning as matplotlib's Colormap.__call__: index = floor(x * N), x == 1 -> N - 1
    scaled = m * m.dtype.type(n)
    nan = np.isnan(scaled)
    has_nan = bool(nan.any())
    if has_nan:
        scaled[nan] = 0
    np.clip(scaled, 0, n - 1, out=scaled)
    idx = scaled.astype(np.intp)
    if has_nan:
        idx[nan] = n
    return lut[idx]


def resize_maps(maps: Any, size: tuple[int, int]) -> np.ndarray:
    """Resize maps ``(N, h, w)`` to ``(N, H, W)`` bilinearly (Pillow), as float32."""
    from PIL import Image

    m = as_array(maps, "maps").astype(np.float32, copy=False)
    height, width = int(size[0]), int(size[1])
    out = np.empty((len(m), height, width), np.float32)
    for i, one in enumerate(m):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(one)).resize(
            (width, height), Image.Resampling.BILINEAR))
    return out


def overlay(images: Any, maps: Any, alpha: float = 0.45, cmap: Any = "jet") -> np.ndarray:
    """Alpha-blend coloured heatmaps over images.

    Args:
        images: any batch that :func:`to_uint8_images` accepts, or one image
            ``(H, W)``/``(H, W, 1)``/``(H, W, 3)`` when ``maps`` is one ``(H, W)`` map.
        maps: ``(N, H, W)`` (or ``(N, H, W, 1)``) floats in [0, 1], or one ``(H, W)`` map.
            Maps of another size than the images are resized bilinearly. Where a map is NaN
            the image shows unblended.
        alpha: weight of the heatmap, 0 (image only) to 1 (heatmap only).
        cmap: colormap name or ``Colormap``.

    Returns:
        ``np.uint8`` ``(N, H, W, 3)``, or ``(H, W, 3)`` for a single map:
        ``round((1 - alpha) * image + alpha * colorize(map))``.

    Raises:
        ValueError: alpha outside [0, 1], mismatched counts, bad shapes or colormap.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    colormap_lut(cmap)  # validate before any work
    m = as_array(maps, "maps")
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    single = m.ndim == 2
    if single:
        m = m[None]
        images = as_array(images, "images")[None]
    elif m.ndim != 3:
        raise ValueError(f"maps must be (N, H, W) or one (H, W) map; got shape {m.shape}")
    imgs = to_uint8_images(images)
    if len(imgs) != len(m):
        raise ValueError(f"got {len(imgs)} images but {len(m)} maps; they must match one to one")
    if m.shape[1:3] != imgs.shape[1:3]:
        m = resize_maps(m, imgs.shape[1:3])
    heat = colorize(m, cmap)
    out = imgs.astype(np.float32)
    out *= np.float32(1.0 - alpha)
    out += heat.astype(np.float32) * np.float32(alpha)
    out += np.float32(0.5)
    np.clip(out, 0, 255, out=out)
    out = out.astype(np.uint8)
    nan = np.isnan(m)
    if nan.any():
        out[nan] = imgs[nan]
    return out[0] if single else out
