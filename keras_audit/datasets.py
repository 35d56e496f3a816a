"""Small data sets that need no download: synthetic images with known object positions, and
scikit-learn's digits upscaled. Used by the tests, the demo and the benchmarks."""

from __future__ import annotations

import numpy as np


def make_shapes(n: int = 600, size: int = 24, n_classes: int = 3, object_size: int = 6,
                channels: int = 3, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of one coloured square on a noisy background; the class is the square's colour.

    Args:
        n: number of images.
        size: image height and width.
        n_classes: number of classes (at most ``channels`` when ``channels`` is 3; for one
            channel, the class sets the square's brightness pattern: stripes of period class+1).
        object_size: the square's side in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        seed: seeds positions and noise.

    Returns:
        ``(x, y, boxes)``: float32 images (n, size, size, channels) in [0, 1], int class ids
        (n,), and each object's box as ``(row0, col0, row1, col1)`` (end-exclusive).

    Raises:
        ValueError: arguments out of range.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    if not 2 <= n_classes <= (3 if channels == 3 else 4):
        raise ValueError(f"n_classes must be 2..{3 if channels == 3 else 4}; got {n_classes!r}")
    if not 1 <= object_size < size:
        raise ValueError(f"object_size must be 1..{size - 1}; got {object_size!r}")
    rng = np.random.default_rng(seed)
    x = (rng.random((n, size, size, channels)) * 0.25).astype(np.float32)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    boxes = np.zeros((n, 4), np.int64)
    for i in range(n):
        r, c = rng.integers(0, size - object_size + 1, size=2)
        boxes[i] = (r, c, r + object_size, c + object_size)
        if channels == 3:
            patch = np.full((object_size, object_size, 3), 0.1, np.float32)
            patch[..., y[i]] = 1.0
        else:
            period = y[i] + 1
            cols = (np.arange(object_size) // period) % 2
            patch = (0.4 + 0.6 * cols[None, :, None]).repeat(object_size, 0).astype(np.float32)
        x[i, r:r + object_size, c:c + object_size] = patch
    return x, y.astype(np.int64), boxes


def load_digits_images(size: int = 32, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, upscaled to ``size`` x ``size`` (bilinear), values in [0, 1].

    Returns:
        ``(x, y)``: float32 (1797, size, size, channels) and int class ids (1797,).
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = d.images.astype(np.float32) / 16.0
    x = zoom(imgs, (1, size / 8, size / 8), order=1).clip(0, 1)
    x = np.repeat(x[..., None], channels, axis=-1).astype(np.float32)
    return x, d.target.astype(np.int64)
