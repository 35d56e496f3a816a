"""Input corruptions written in TensorFlow: batched, compiled once per corruption, seeded.

The image corruptions follow ImageNet-C (Hendrycks & Dietterich 2019) and its reference code,
the ``imagecorruptions`` package, with the same severity tables. They are hand-written in
TensorFlow because the reference is NumPy/PIL, one image at a time (too slow for a sweep that
should cost about one forward pass per level), and some of it no longer runs on current
scikit-image (``gaussian(..., multichannel=True)``). ``tests/test_robustness_corruptions.py``
compares them with the reference.

Images are corrupted in unit space: ``u = (x - lo) / (hi - lo)`` with ``(lo, hi)`` the data's
value range (inferred: ``[0, 1]``, ``[0, 255]``, ``[-1, 1]``, else the observed min and max),
then mapped back to the model's scale. Tables (and sequences) are corrupted per feature, in
units of each feature's standard deviation.

Each corruption is one ``tf.function(x, severity, seed)``; ``severity`` is a tensor, so a
whole sweep traces once per corruption (``Corrupter.ops`` gives the same operations to trace
inside another function, as the robustness sweep does for all its severities at once). Severity 0 returns the input unchanged. A corruption's
random draws depend on the seed, not on the severity, so higher severities scale the same
noise (the distance to the clean input grows with severity).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: ImageNet-C's severity parameters (severities 1..5), as in ``imagecorruptions``
IMAGENET_C = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std, in units of the range
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),          # photons per unit intensity
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),          # sigma in pixels
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),             # added to HSV value
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),              # contrast factor around the mean
    "jpeg": (25.0, 18.0, 15.0, 10.0, 7.0),               # JPEG quality
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),              # downsampling factor
}
#: corruptions ImageNet-C does not define, with this library's own scales
OWN_SCALES = {
    "occlusion": (0.2, 0.3, 0.4, 0.5, 0.6),          # square side, fraction of the image side
    "table_gaussian_noise": (0.1, 0.25, 0.5, 0.75, 1.0),  # noise std, in feature stds
    "feature_dropout": (0.1, 0.2, 0.3, 0.4, 0.5),    # share of values set to the mean
}
#: image corruptions, in report order
IMAGE_CORRUPTIONS = ("gaussian_noise", "shot_noise", "gaussian_blur", "brightness", "contrast",
                     "jpeg", "pixelate", "occlusion")
#: corruptions of tables (N, F) and sequences (N, T, F)
TABLE_CORRUPTIONS = ("gaussian_noise", "feature_dropout")
#: the largest severity (ImageNet-C has five)
MAX_SEVERITY = 5

_OCCLUSION_FILL = 0.5  # mid-grey in unit space
_BLUR_TRUNCATE = 4.0   # scipy/scikit-image's default truncation of the Gaussian kernel


def corruption_names(kind: str) -> tuple[str, ...]:
    """The corruptions for ``kind`` (``"image"`` or anything else: tables and sequences)."""
    return IMAGE_CORRUPTIONS if kind == "image" else TABLE_CORRUPTIONS


def check_corruptions(corruptions: str | Sequence[str] | None, kind: str) -> tuple[str, ...]:
    """``corruptions`` as a tuple of known names for ``kind`` (``None``: all of them).

    Raises:
        ValueError: an unknown name or an empty list (the message lists the choices).
    """
    choices = corruption_names(kind)
    if corruptions is None:
        return choices
    if isinstance(corruptions, str):
        corruptions = (corruptions,)
    try:
        names = list(corruptions)
    except TypeError:
        raise ValueError(f"corruptions must be None or names from {list(choices)}; got "
                         f"{corruptions!r}") from None
    bad = [c for c in names if c not in choices]
    if bad or not names:
        what = "image" if kind == "image" else "table/sequence"
        raise ValueError(f"unknown {what} corruption(s) {bad or names}; choices: "
                         f"{list(choices)}")
    return tuple(dict.fromkeys(names))


def check_severities(severities: int | Sequence[int]) -> tuple[int, ...]:
    """``severities`` as sorted unique integers in ``0..5``.

    Raises:
        ValueError: not integers in ``0..5``, or empty.
    """
    if isinstance(severities, int | np.integer) and not isinstance(severities, bool):
        severities = (severities,)
    try:
        values = list(severities)
    except TypeError:
        raise ValueError(f"severities must be integers in 0..{MAX_SEVERITY}; got "
                         f"{severities!r}") from None
    if not values:
        raise ValueError(f"severities is empty; give levels in 0..{MAX_SEVERITY}")
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or not (
                0 <= s <= MAX_SEVERITY):
            raise ValueError(f"severity {s!r} is not an integer in 0..{MAX_SEVERITY} "
                             "(0 = unchanged, 1..5 = ImageNet-C's levels)")
    return tuple(sorted({int(s) for s in values}))


def infer_range(x: np.ndarray) -> tuple[float, float]:
    """The nominal value range of image data: ``(0, 1)``, ``(0, 255)``, ``(-1, 1)`` or the
    observed ``(min, max)`` (``(0, 255)`` for integer data)."""
    if x.dtype.kind in "biu":
        return 0.0, 255.0
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("x contains NaN or infinite values")
    for a, b in ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)):
        if lo >= a and hi <= b:
            return a, b
    return lo, hi if hi > lo else lo + 1.0


def check_range(value_range, x: np.ndarray) -> tuple[float, float]:
    """``value_range`` as ``(lo, hi)`` with ``lo < hi``; ``None`` infers it from ``x``.

    Raises:
        ValueError: not two finite numbers with ``lo < hi``.
    """
    if value_range is None:
        return infer_range(x)
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high); got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be two finite numbers with low < high; got "
                         f"{value_range!r}")
    return lo, hi


def _table(values: Sequence[float]) -> tf.Tensor:
    """Severity -> parameter lookup table; index 0 (severity 0) repeats level 1 (unused)."""
    return tf.constant([values[0], *values], tf.float32)


class Corrupter:
    """The compiled corruptions of one input shape.

    Args:
        kind: ``"image"`` ``(N, H, W, C)``, else tables and sequences (per-feature corruptions).
        sample_shape: one sample's shape, e.g. ``(32, 32, 3)``.
        value_range: ``(lo, hi)`` of image data (ignored for tables).
        mean, std: per-feature statistics of table data (one sample's shape; ignored for
            images).

    ``corrupter.function(name)`` is the compiled ``fn(x, severity, seed) -> x'`` (all tensors:
    float32 batch, int32 scalar, int32 ``(2,)``); ``corrupter(x, name, severity, seed)`` runs it
    over a NumPy batch in chunks.
    """

    def __init__(self, kind: str, sample_shape: tuple, value_range: tuple[float, float] = (0, 1),
                 mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self.kind = kind
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.lo, self.hi = float(value_range[0]), float(value_range[1])
        if kind == "image" and len(self.sample_shape) != 3:
            raise ValueError(f"image corruptions need (H, W, C) samples; got {sample_shape}")
        if kind != "image":
            shape = self.sample_shape
            self.mean = tf.constant(np.zeros(shape) if mean is None else mean, tf.float32)
            self.std = tf.constant(np.ones(shape) if std is None else std, tf.float32)
        self._fns: dict[str, object] = {}
        self.trace_count = 0

    def key(self) -> tuple:
        """What the corruptions depend on besides the batch: kind, sample shape and value
        range (images) or a digest of the feature statistics (tables)."""
        if self.kind == "image":
            return (self.kind, self.sample_shape, self.lo, self.hi)
        stats = np.concatenate([self.mean.numpy().ravel(), self.std.numpy().ravel()])
        return (self.kind, self.sample_shape, hashlib.sha256(stats.tobytes()).hexdigest())

    # -- the compiled functions ---------------------------------------------------------------
    def ops(self, name: str, x, severity, seed):
        """The operations of corruption ``name`` on the batch tensor ``x``, to call while
        tracing a ``tf.function`` (``severity``: an int32 tensor or a Python int; ``seed``: an
        int32 ``(2,)`` tensor). Several severities traced in one graph with the same seed
        draw the same noise once (the random ops are stateless, so the graph optimiser
        merges them)."""
        check_corruptions(name, self.kind)
        if isinstance(severity, int) and severity == 0:
            return x
        body = getattr(self, f"_{name}" if self.kind == "image" else f"_t_{name}")
        out = body(x, severity, seed)
        if isinstance(severity, int):
            return out
        return tf.where(severity > 0, out, x)  # severity 0: unchanged

    def function(self, name: str):
        """The compiled ``fn(x, severity, seed)`` of corruption ``name`` (built once)."""
        if name not in self._fns:
            check_corruptions(name, self.kind)
            spec = [tf.TensorSpec((None, *self.sample_shape), tf.float32),
                    tf.TensorSpec((), tf.int32), tf.TensorSpec((2,), tf.int32)]

            def run(x, severity, seed, name=name):
                self.trace_count += 1  # runs only while tracing
                return self.ops(name, x, severity, seed)

            self._fns[name] = tf.function(run, input_signature=spec, autograph=False)
        return self._fns[name]

    def __call__(self, x: ArrayLike, name: str, severity: int, seed: int = 0,
                 batch_size: int = 256) -> np.ndarray:
        """Corrupt a NumPy batch (in chunks of ``batch_size``); returns float32 NumPy.

        Chunk ``i`` draws its randomness from ``(seed, i)``: the same seed and batch size give
        the same result.
        """
        positive_int(batch_size, "batch_size")
        fn = self.function(name)
        x = np.asarray(x, np.float32)
        sev = tf.constant(int(severity), tf.int32)
        out = [fn(tf.constant(x[i:i + batch_size]), sev, batch_seed(seed, name, i)).numpy()
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out, axis=0)

    # -- unit space -------------------------------------------------------------------------------
    def _unit(self, x):
        return (x - self.lo) / (self.hi - self.lo)

    def _back(self, u):
        return self.lo + tf.clip_by_value(u, 0.0, 1.0) * (self.hi - self.lo)

    # -- image corruptions (ImageNet-C) -----------------------------------------------------------
    def _gaussian_noise(self, x, severity, seed):
        c = tf.gather(_table(IMAGENET_C["gaussian_noise"]), severity)
        u = self._unit(x)
        return self._back(u + c * tf.random.stateless_normal(tf.shape(u), seed))

    def _shot_noise(self, x, severity, seed):
        c = tf.gather(_table(IMAGENET_C["shot_noise"]), severity)
        u = tf.clip_by_value(self._unit(x), 0.0, 1.0)
        counts = tf.random.stateless_poisson(tf.shape(u), seed, lam=u * c, dtype=tf.float32)
        return self._back(counts / c)

    def _gaussian_blur(self, x, severity, seed):
        sigma = tf.gather(_table(IMAGENET_C["gaussian_blur"]), severity)
        radius = int(_BLUR_TRUNCATE * max(IMAGENET_C["gaussian_blur"]) + 0.5)
        h, w = self.sample_shape[0], self.sample_shape[1]
        u = self._unit(x)
        # separable blur as two (H, H) and (W, W) matrices: mode "nearest" edges, scipy's
        # truncation, any sigma without a new kernel shape (no retrace across severities)
        u = tf.einsum("ij,njwc->niwc", _blur_matrix(h, sigma, radius), u)
        u = tf.einsum("ij,nhjc->nhic", _blur_matrix(w, sigma, radius), u)
        return self._back(u)

    def _brightness(self, x, severity, seed):
        c = tf.gather(_table(IMAGENET_C["brightness"]), severity)
        u = tf.clip_by_value(self._unit(x), 0.0, 1.0)
        if self.sample_shape[-1] != 3:  # ImageNet-C: grey images get the value added
            return self._back(u + c)
        # ImageNet-C adds c to the HSV value and converts back. With hue and saturation kept,
        # every channel is V * (1 - S * f(H)): linear in V, so the round trip through HSV is a
        # per-pixel rescale by V'/V (a black pixel, S = 0, becomes grey V'). The same numbers
        # at a fraction of two colour-space conversions (1.23x -> about 1.1x a forward pass)
        v = tf.reduce_max(u, axis=-1, keepdims=True)
        v_new = tf.clip_by_value(v + c, 0.0, 1.0)
        scaled = u * tf.math.divide_no_nan(v_new, v)
        return self._back(tf.where(v > 0, scaled, tf.broadcast_to(v_new, tf.shape(u))))

    def _contrast(self, x, severity, seed):
        c = tf.gather(_table(IMAGENET_C["contrast"]), severity)
        u = self._unit(x)
        means = tf.reduce_mean(u, axis=(1, 2), keepdims=True)
        return self._back((u - means) * c + means)

    def _jpeg(self, x, severity, seed):
        quality = tf.cast(tf.gather(_table(IMAGENET_C["jpeg"]), severity), tf.int32)
        u = tf.clip_by_value(self._unit(x), 0.0, 1.0)
        h, w, ch = self.sample_shape
        if ch not in (1, 3):  # JPEG codes grey or RGB: code each channel as a grey image
            u = tf.reshape(tf.transpose(u, (0, 3, 1, 2)), (-1, h, w, 1))
        # the encoder takes one image at a time; uint8 as ImageNet-C's PIL images are
        coded = tf.map_fn(lambda im: tf.image.adjust_jpeg_quality(im, quality), u)
        if ch not in (1, 3):
            coded = tf.transpose(tf.reshape(coded, (-1, ch, h, w)), (0, 2, 3, 1))
        return self._back(coded)

    def _pixelate(self, x, severity, seed):
        c = tf.gather(_table(IMAGENET_C["pixelate"]), severity)
        h, w = self.sample_shape[0], self.sample_shape[1]
        u = self._unit(x)
        # PIL's BOX reduction (tf.image.resize's "area" weighs pixels differently), then
        # PIL's NEAREST enlargement, each axis as a matrix or a gather
        mh = tf.maximum(tf.cast(float(h) * c, tf.int32), 1)
        mw = tf.maximum(tf.cast(float(w) * c, tf.int32), 1)
        u = tf.einsum("ij,njwc->niwc", _box_matrix(h, mh), u)
        u = tf.einsum("ij,nhjc->nhic", _box_matrix(w, mw), u)
        u = tf.gather(u, _nearest_index(h, mh), axis=1)
        u = tf.gather(u, _nearest_index(w, mw), axis=2)
        return self._back(u)

    def _occlusion(self, x, severity, seed):
        frac = tf.gather(_table(OWN_SCALES["occlusion"]), severity)
        h, w = self.sample_shape[0], self.sample_shape[1]
        n = tf.shape(x)[0]
        # one centre per image, independent of severity: the squares are nested
        centre = tf.random.stateless_uniform((n, 2), seed) * tf.constant([h, w], tf.float32)
        half = frac * float(min(h, w)) / 2.0
        rows = tf.abs(tf.range(h, dtype=tf.float32)[None, :] + 0.5 - centre[:, :1]) < half
        cols = tf.abs(tf.range(w, dtype=tf.float32)[None, :] + 0.5 - centre[:, 1:]) < half
        mask = tf.logical_and(rows[:, :, None], cols[:, None, :])[..., None]
        u = self._unit(x)
        return self._back(tf.where(mask, _OCCLUSION_FILL, u))

    # -- table and sequence corruptions -----------------------------------------------------------
    def _t_gaussian_noise(self, x, severity, seed):
        c = tf.gather(_table(OWN_SCALES["table_gaussian_noise"]), severity)
        return x + c * self.std * tf.random.stateless_normal(tf.shape(x), seed)

    def _t_feature_dropout(self, x, severity, seed):
        p = tf.gather(_table(OWN_SCALES["feature_dropout"]), severity)
        drop = tf.random.stateless_uniform(tf.shape(x), seed) < p
        return tf.where(drop, self.mean + tf.zeros_like(x), x)


def _blur_matrix(n: int, sigma, radius: int):
    """``B`` with ``(B @ v)[i] = sum_k w_k v[clip(i + k)]``: scipy's ``gaussian_filter1d``
    with ``mode="nearest"`` and ``truncate=4`` as an ``(n, n)`` matrix."""
    k = tf.range(-radius, radius + 1, dtype=tf.float32)
    trunc = tf.floor(_BLUR_TRUNCATE * sigma + 0.5)
    wts = tf.where(tf.abs(k) <= trunc, tf.exp(-0.5 * tf.square(k / sigma)), 0.0)
    wts = wts / tf.reduce_sum(wts)
    idx = tf.clip_by_value(tf.range(n)[:, None] + tf.range(-radius, radius + 1)[None, :],
                           0, n - 1)
    return tf.reduce_sum(tf.one_hot(idx, n) * wts[None, :, None], axis=1)


def _box_matrix(n: int, m):
    """``(m, n)`` weights of PIL's BOX filter reducing ``n`` pixels to ``m``: output ``j``
    averages the inputs whose centres fall in its box (PIL's ``precompute_coeffs``)."""
    scale = tf.cast(n, tf.float32) / tf.cast(m, tf.float32)
    centre = (tf.range(m, dtype=tf.float32) + 0.5) * scale
    lo = tf.floor(centre - 0.5 * scale + 0.5)[:, None]
    hi = tf.floor(centre + 0.5 * scale + 0.5)[:, None]
    i = tf.range(n, dtype=tf.float32)[None, :]
    arg = (i - centre[:, None] + 0.5) / scale
    inside = (i >= lo) & (i < hi) & (arg > -0.5) & (arg <= 0.5)
    wts = tf.cast(inside, tf.float32)
    return wts / tf.maximum(tf.reduce_sum(wts, axis=1, keepdims=True), 1.0)


def _nearest_index(n: int, m):
    """Source index of each of ``n`` outputs when PIL's NEAREST enlarges ``m`` pixels to ``n``."""
    src = tf.floor((tf.range(n, dtype=tf.float32) + 0.5) * tf.cast(m, tf.float32) / float(n))
    return tf.minimum(tf.cast(src, tf.int32), m - 1)


def batch_seed(seed: int, name: str, start: int) -> tf.Tensor:
    """The stateless seed of the chunk starting at ``start`` for corruption ``name``."""
    return tf.constant([int(seed) % (2 ** 31), (zlib.crc32(name.encode()) + int(start))
                        % (2 ** 31)], tf.int32)


def table_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over the batch axis (float64)."""
    xf = np.asarray(x, np.float64)
    return xf.mean(axis=0), xf.std(axis=0)


def corrupter_for(x: np.ndarray, kind: str, value_range=None) -> Corrupter:
    """A ``Corrupter`` for data like ``x``: its value range (images) or feature statistics."""
    if kind == "image":
        return Corrupter(kind, x.shape[1:], check_range(value_range, x))
    mean, std = table_stats(x)
    return Corrupter(kind, x.shape[1:], mean=mean, std=std)


def corrupt(x: ArrayLike, corruption: str, severity: int, seed: int = 0,
            value_range: tuple[float, float] | None = None, batch_size: int = 256
            ) -> np.ndarray:
    """Corrupt a batch of images ``(N, H, W, C)`` or tables ``(N, F)`` (sequences ``(N, T, F)``).

    Args:
        x: the batch (not modified).
        corruption: a name from ``IMAGE_CORRUPTIONS`` (images) or ``TABLE_CORRUPTIONS``.
        severity: ``0`` (unchanged) to ``5``; ImageNet-C's levels where it defines them.
        seed: seeds the random draws (noise, occlusion positions, dropped values).
        value_range: ``(lo, hi)`` of image values; ``None`` infers it (see ``infer_range``).
            Table corruptions use ``x``'s per-feature mean and std.
        batch_size: the largest chunk corrupted at once.

    Returns:
        float32 array of ``x``'s shape, in ``x``'s scale (images clipped to the range).

    Raises:
        ValueError: an unknown corruption (the message lists the choices), a severity outside
            ``0..5``, a bad ``value_range`` or ``batch_size``, or ``x`` that is not a batch.
    """
    arr = np.asarray(x)
    if arr.ndim < 2 or arr.dtype.kind not in "biuf":
        raise ValueError(f"x must be a numeric batch (N, ...); got shape {arr.shape} and dtype "
                         f"{arr.dtype}")
    kind = "image" if arr.ndim == 4 else "table"
    (name,) = check_corruptions(corruption, kind)
    (level,) = check_severities(severity)
    positive_int(batch_size, "batch_size")
    return corrupter_for(arr, kind, value_range)(arr, name, level, seed, batch_size)
