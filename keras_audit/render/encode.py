"""JPEG for the training callbacks' photo-like pictures, and shrinking pictures to a size.

PNG is ``render.png.png_fast``. The callbacks (``keras_audit.callbacks.budget``) keep PNG for
flat graphics (a confusion matrix, a scatter plot, filter kernels: exact, and JPEG is larger on
them anyway) and encode photo-like pictures (inputs, heatmap overlays, activation maps) both
ways, keeping the smaller: JPEG without chroma subsampling (4:4:4, so coloured captions and
colour bars stay sharp) at quality 85 measures 36-39 dB PSNR on the demo's overlays and is
15-30% smaller than the PNG there (``benchmarks/bench_event_size.py``).
"""

from __future__ import annotations

import io

import numpy as np

#: the JPEG quality of photo-like pictures by default (4:4:4, optimised Huffman tables)
JPEG_QUALITY = 85


def _check(image: np.ndarray) -> np.ndarray:
    img = np.ascontiguousarray(image, np.uint8)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) picture; got shape {img.shape}")
    return img


def jpeg_bytes(image: np.ndarray, quality: int = JPEG_QUALITY, subsample: bool = False) -> bytes:
    """Encode a uint8 ``(H, W, 3)`` picture as baseline JPEG, without chroma subsampling unless
    ``subsample``.

    Args:
        image: ``(H, W, 3)`` picture (cast to uint8).
        quality: JPEG quality, 1..95 (Pillow's scale; above 95 only grows the file).
        subsample: 4:2:0 chroma subsampling (a third smaller on colour maps; black caption text
            is luma and stays sharp, coloured detail blurs a little).

    Returns:
        The JPEG file's bytes.

    Raises:
        ValueError: the picture is not ``(H, W, 3)``, or ``quality`` is outside 1..95.
    """
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer) \
            or not 1 <= quality <= 95:
        raise ValueError(f"quality must be an int in 1..95; got {quality!r}")
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_check(image)).save(buf, format="JPEG", quality=int(quality),
                                        subsampling=2 if subsample else 0, optimize=True)
    return buf.getvalue()


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """The picture shrunk by ``scale`` (0 < scale <= 1) with an area filter, at least 1 pixel
    a side; the picture itself when ``scale`` is 1.

    Raises:
        ValueError: the picture is not ``(H, W, 3)``, or ``scale`` is outside (0, 1].
    """
    if not 0.0 < float(scale) <= 1.0:
        raise ValueError(f"scale must be in (0, 1]; got {scale!r}")
    img = _check(image)
    if scale == 1.0:
        return img
    from PIL import Image

    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))
