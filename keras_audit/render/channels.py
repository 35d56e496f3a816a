"""Activation pictures: per sample, the input followed by its strongest channels."""

from __future__ import annotations

import numpy as np

from keras_audit.render.grids import grid
from keras_audit.render.images import colorize, normalize_per_sample, to_uint8_images


def channel_rows(images: np.ndarray, maps: np.ndarray, channel_ids: np.ndarray,
                 captions: list[str], cmap: str = "viridis", min_tile: int = 32) -> np.ndarray:
    """One row per sample: the input, then its channels, each normalised on its own.

    Args:
        images: ``(N, H, W, C)`` inputs (any range: scaled per image).
        maps: ``(N, k, h, w)`` channels per sample, in the order shown.
        channel_ids: ``(N, k)`` each channel's index (its tile's label ``"ch <i>"``).
        captions: one title per row.
        cmap: a Matplotlib colormap name for the channels.
        min_tile: the smallest side a tile is drawn at.

    Returns:
        ``np.uint8`` ``(H, W, 3)``.
    """
    inputs = to_uint8_images(images)
    rows = []
    for image, chans, ids, text in zip(inputs, maps, channel_ids, captions):
        tiles = [image] + list(colorize(normalize_per_sample(chans), cmap))
        rows.append(grid(tiles, captions=["input"] + [f"ch {c}" for c in ids],
                         ncols=len(tiles), min_tile=min_tile, title=text))
    return grid(rows, ncols=1, min_tile=1)
