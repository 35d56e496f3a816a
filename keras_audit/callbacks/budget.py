"""A size budget for one technique's pictures of one logged epoch.

A callback's pictures of a logged epoch are encoded together: flat graphics as PNG, photo-like
ones as the smaller of PNG and JPEG (``render.png``, ``render.encode``). When they add up to more than the
budget, every picture of that epoch is encoded again one step further down ``DEGRADATION``
(lower JPEG quality, then smaller pictures; flat ones may then become JPEG too), until they
fit. When even the last step does not fit, its encoding is written anyway: no technique and no
picture is ever dropped, and the callback logs one warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_audit.render.encode import JPEG_QUALITY, downscale, jpeg_bytes
from keras_audit.render.png import png_fast, png_size_estimate

#: the default budget: encoded bytes of one technique's pictures per logged epoch
DEFAULT_MAX_BYTES_PER_EPOCH = 200_000
#: a photo-like picture is also made as PNG when its estimated PNG is under this many times
#: its JPEG (the estimate's error margin; see _encode)
PNG_MARGIN = 1.5
#: the steps tried in order while a technique's epoch is over its budget: (JPEG quality, scale),
#: all with 4:2:0 chroma subsampling (a third smaller at the same quality)
DEGRADATION: tuple[tuple[int, float], ...] = (
    (80, 1.0), (70, 1.0), (55, 1.0), (70, 0.75), (55, 0.75), (70, 0.5), (55, 0.5))
#: the share of the default encoding's size each step is expected to take (measured on
#: activation grids and overlays); the search starts at the first step expected to fit
EXPECTED_SHARE = (0.62, 0.52, 0.42, 0.30, 0.24, 0.14, 0.11)


@dataclass(frozen=True)
class Picture:
    """One picture waiting to be encoded: its tag, uint8 ``(H, W, 3)`` array and kind."""

    tag: str
    image: np.ndarray
    photo: bool


@dataclass(frozen=True)
class Encoded:
    """One encoded picture: its tag, the file's bytes and format, its size in pixels."""

    tag: str
    data: bytes
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class EncodedEpoch:
    """A technique's pictures of one epoch as written.

    Attributes:
        pictures: the encoded pictures, in the order they were drawn.
        nbytes: their encoded bytes in all.
        step: ``None`` when the default encoding fit, else the ``DEGRADATION`` step used.
        fits: whether ``nbytes`` is within the budget.
    """

    pictures: list[Encoded]
    nbytes: int
    step: tuple[int, float] | None
    fits: bool


def _encode(pictures: list[Picture], quality: int, scale: float, degraded: bool,
            png: dict) -> list[Encoded]:
    """Every picture at ``scale``: photo-like ones (all when ``degraded``) as the smaller of PNG
    and JPEG at ``quality``, flat ones as PNG. For a photo-like picture the PNG is made only when
    ``png_size_estimate`` (a tenth of the work) says it may beat the JPEG: on photo content the
    PNG is several times larger and costs about six times the CPU to find out (52 ms against
    8 ms for a 1100 x 760 activation grid). ``png`` caches the downscaled picture and its PNG
    per (picture, scale), which no quality changes."""
    out = []
    for i, p in enumerate(pictures):
        if (i, scale) not in png:
            png[(i, scale)] = [downscale(p.image, scale), None]
        cached = png[(i, scale)]
        image = cached[0]
        photo = p.photo or degraded
        data, fmt = None, "png"
        if photo:
            data, fmt = jpeg_bytes(image, quality, subsample=degraded), "jpeg"
        if not photo or png_size_estimate(image) < PNG_MARGIN * len(data):
            if cached[1] is None:
                cached[1] = png_fast(image)
            if data is None or len(cached[1]) <= len(data):
                data, fmt = cached[1], "png"
        out.append(Encoded(p.tag, data, fmt, int(image.shape[1]), int(image.shape[0])))
    return out


def encode_epoch(pictures: list[Picture], max_bytes: int | None) -> EncodedEpoch:
    """Encode one technique's pictures of one epoch within ``max_bytes`` if it can be done.

    Args:
        pictures: the pictures drawn for the epoch.
        max_bytes: the budget in encoded bytes; ``None``: no budget (the default encoding).

    Returns:
        The ``EncodedEpoch``: the default encoding when it fits, else the first step of
        ``DEGRADATION`` that fits, else the last step (``fits`` is then ``False``).
    """
    png: dict = {}
    encoded = _encode(pictures, JPEG_QUALITY, 1.0, False, png)
    total = sum(len(e.data) for e in encoded)
    if max_bytes is None or total <= max_bytes:
        return EncodedEpoch(encoded, total, None, True)
    first = next((i for i, share in enumerate(EXPECTED_SHARE)
                  if share * total <= 0.9 * max_bytes), len(DEGRADATION) - 1)
    for quality, scale in DEGRADATION[first:]:
        encoded = _encode(pictures, quality, scale, True, png)
        total = sum(len(e.data) for e in encoded)
        if total <= max_bytes:
            return EncodedEpoch(encoded, total, (quality, scale), True)
    return EncodedEpoch(encoded, total, DEGRADATION[-1], False)
