"""Gradient attributions: Saliency, SmoothGrad, Integrated Gradients and Gradient x Input.

SmoothGrad and Integrated Gradients evaluate many copies of each sample. They do it in chunks
of ``batch_size // N`` copies inside one compiled loop, so a call is one ``tf.function`` run
whose memory never exceeds ``batch_size`` samples (plus the batch itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.explain.base import Explainer, chunk_size

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


class Saliency(Explainer):
    """Vanilla gradient saliency (Simonyan et al. 2014): ``max_c |d score / d x|`` per pixel.

    ``maps = Saliency(model)(x, targets=None)``. Arguments as ``Explainer``.
    """

    def _input_grads(self, x, targets):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits, _ = self._logits(x)
            used = self._resolve_targets(logits, targets)
            score = self._score(logits, used)
        return tape.gradient(score, x), used, logits

    def _compute(self, x, targets):
        grads, used, _ = self._input_grads(x, targets)
        return self._reduce_channels(tf.abs(grads)), used


class GradientInput(Saliency):
    """Gradient x Input (Shrikumar et al. 2016): ``sum_c x * d score / d x``; signed when raw."""

    signed = True

    def _compute(self, x, targets):
        grads, used, _ = self._input_grads(x, targets)
        return self._reduce_channels(x * grads), used


class _Repeated(Saliency):
    """Base for methods that average gradients over ``total`` perturbed copies of each sample."""

    def _averaged_grads(self, x, targets, total: int, make_copies):
        """Mean input gradient over copies; ``make_copies(j, k)`` gives chunk j: (k, N, ...)."""
        logits, _ = self._logits(x)
        used = self._resolve_targets(logits, targets)
        n = x.shape[0]
        k = chunk_size(total, n, self.batch_size)
        acc = tf.zeros_like(x)
        tiled = tf.tile(used, [k])
        for j in tf.range(total // k):
            copies = tf.reshape(make_copies(j, k), (k * n, *x.shape[1:]))
            with tf.GradientTape() as tape:
                tape.watch(copies)
                lg, _ = self._logits(copies)
                score = self._score(lg, tiled)
            g = tape.gradient(score, copies)
            acc += tf.reduce_sum(tf.reshape(g, (k, n, *x.shape[1:])), axis=0)
        return acc / float(total), used, logits


class SmoothGrad(_Repeated):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of each sample.

    Args:
        model, output, normalize, batch_size: as ``Explainer``.
        num_samples: noisy copies per sample.
        noise: the noise's standard deviation as a fraction of each sample's value range
            (the paper recommends 0.1-0.2).
        seed: seeds the noise; the same seed gives the same maps.

    The map is ``max_c |mean gradient|`` per pixel, as for ``Saliency``.

    Raises:
        ValueError: ``num_samples`` < 1 or ``noise`` < 0, besides ``Explainer``'s errors.
    """

    def __init__(self, model: keras.Model, num_samples: int = 20, noise: float = 0.2,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256, seed: int = 0) -> None:
        positive_int(num_samples, "num_samples")
        if not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a non-negative fraction of the range; got {noise!r}")
        self.num_samples, self.noise, self.seed = int(num_samples), float(noise), int(seed)
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size)

    def _compute(self, x, targets):
        axes = list(range(1, len(x.shape)))
        span = tf.reduce_max(x, axis=axes, keepdims=True) - tf.reduce_min(
            x, axis=axes, keepdims=True)
        sigma = self.noise * span

        def copies(j, k):
            eps = tf.random.stateless_normal((k, *x.shape), seed=tf.stack([self.seed, j]))
            return x[None] + eps * sigma[None]

        grads, used, _ = self._averaged_grads(x, targets, self.num_samples, copies)
        return self._reduce_channels(tf.abs(grads)), used


class IntegratedGradients(_Repeated):
    """Integrated Gradients (Sundararajan et al. 2017): path integral from a baseline to x.

    Args:
        model, output, normalize, batch_size: as ``Explainer``.
        steps: points on the straight path (midpoint Riemann sum).
        baseline: ``None`` (zeros), a number, or an array of one sample's shape.

    The raw map (``normalize=False``) is ``sum_c (x - baseline) * mean gradient``, signed; its
    sum over the map approximates ``score(x) - score(baseline)`` (completeness). After each call
    ``last_convergence_delta`` holds, per sample, ``score(x) - score(baseline) - sum(map)``.

    Raises:
        ValueError: ``steps`` < 1, or a baseline of the wrong shape.
    """

    signed = True

    def __init__(self, model: keras.Model, steps: int = 32,
                 baseline: float | ArrayLike | None = None,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256) -> None:
        positive_int(steps, "steps")
        self.steps = int(steps)
        self._baseline_arg = baseline
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size)
        if baseline is None:
            baseline = 0.0
        b = np.asarray(baseline, dtype=np.float32)
        if b.ndim and b.shape != tuple(self.input_shape):
            raise ValueError(
                f"baseline must be a number or one sample of shape {self.input_shape}; "
                f"got shape {b.shape}"
            )
        self.baseline = b
        self.last_convergence_delta: np.ndarray | None = None

    def _traced(self, x, targets):
        self.trace_count += 1
        base = tf.broadcast_to(tf.constant(self.baseline), tf.shape(x))
        diff = x - base
        alphas = (tf.range(self.steps, dtype=tf.float32) + 0.5) / float(self.steps)
        shape = [-1] + [1] * len(x.shape)

        def copies(j, k):
            a = tf.reshape(alphas[j * k:(j + 1) * k], shape)
            return base[None] + a * diff[None]

        grads, used, logits = self._averaged_grads(x, targets, self.steps, copies)
        attr = diff * grads
        base_logits, _ = self._logits(base)
        sum_axes = list(range(1, len(x.shape)))
        delta = (self._score(logits, used) - self._score(base_logits, used)
                 - tf.reduce_sum(attr, axis=sum_axes))
        return self._finish(self._reduce_channels(attr)), used, delta

    def _keep_extras(self, extras: list) -> None:
        self.last_convergence_delta = extras[0]
