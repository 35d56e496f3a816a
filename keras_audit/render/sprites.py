"""The sprite the TensorBoard Projector shows: sample thumbnails tiled in a square."""

from __future__ import annotations

import math

import numpy as np

from keras_audit.render.images import to_uint8_images

#: the projector's limit on a sprite's side, and the largest thumbnail side drawn
SPRITE_MAX = 8192
THUMB_MAX = 64


def sprite_images(images: np.ndarray) -> np.ndarray:
    """The images as the sprite takes them: ``(N, H, W, 1 or 3)`` float32.

    Args:
        images: ``(N, H, W, C)`` (C = 1, 3 or 4; other channel counts use the first) or
            ``(N, H, W)``.

    Returns:
        ``(N, H, W, 1)`` or ``(N, H, W, 3)`` float32.
    """
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] not in (1, 3):
        x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1]
    return x


def thumbnail_size(n: int, h: int, w: int) -> tuple[int, int]:
    """The thumbnail ``(h, w)`` of ``n`` images of ``h x w``: a side stays within 64 px and the
    square sprite within the projector's 8192 px (never larger than the images)."""
    cols = math.ceil(math.sqrt(n))
    scale = min(1.0, THUMB_MAX / max(h, w), SPRITE_MAX / (cols * max(h, w)))
    if scale < 1.0:
        return max(1, int(h * scale)), max(1, int(w * scale))
    return h, w


def tile_sprite(thumbnails: np.ndarray) -> np.ndarray:
    """Tile thumbnails into the square sprite the projector expects (row-major, no gaps).

    Args:
        thumbnails: ``(N, h, w, C)`` of any numeric range (each is scaled to 0..255 on its own).

    Returns:
        ``uint8 (rows*h, cols*w, 3)`` with ``cols = ceil(sqrt(N))``; the cells after the last
        thumbnail are black.
    """
    n, h, w = thumbnails.shape[:3]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tiles = to_uint8_images(thumbnails)  # (N, h, w, 3), each image scaled to 0..255
    sprite = np.zeros((rows * cols, h, w, 3), np.uint8)
    sprite[:n] = tiles
    return sprite.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(
        rows * h, cols * w, 3)
