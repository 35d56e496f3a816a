"""Activation maximisation: the inputs that most excite chosen convolution filters.

Regularised gradient ascent on the input (normalised gradients, L2 and total-variation
penalties, random jitter), for every (layer, filter) pair at once, compiled once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit.explain._graph import GraphTap
from keras_audit.explain.base import quiet_function
from keras_audit.explain.forward import model_input_shape

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


class ActivationMaximizer:
    """Regularised gradient ascent on the input for chosen filters, compiled once.

    Hand-written because tf-keras-vis's ``ActivationMaximization`` fails on Keras 3 models
    without a usable ``model.output`` (Sequential built with ``keras.Input``) and cannot reach
    layers inside nested models; this runs the live model through the engine's ``GraphTap``.

    Args:
        model: a built model with image inputs ``(H, W, C)``.
        filters: ``{layer path: filter indices}``; every (layer, filter) pair is one image.
        steps: ascent steps.
        learning_rate: step size as a fraction of the input range (gradients are normalised).
        input_range: ``(low, high)``: the images start at its middle plus seeded noise and are
            clipped to it.
        l2, tv: weights of the L2 (towards the middle of the range) and total-variation
            penalties, relative to the mean activation.
        seed: seeds the starting noise and the jitter; the same seed gives the same images for
            the same weights.

    Call ``images = maximizer()`` -> ``{layer path: (k, H, W, C) float32}``.
    """

    def __init__(self, model: keras.Model, filters: dict[str, np.ndarray], steps: int = 20,
                 learning_rate: float = 0.05, input_range: tuple[float, float] = (0.0, 1.0),
                 l2: float = 1e-3, tv: float = 1e-2, seed: int = 0) -> None:
        self.model = model
        self.tap = GraphTap(model)
        self.paths = list(filters)
        self.sizes = [len(filters[p]) for p in self.paths]
        shape = model_input_shape(model)
        lo, hi = input_range
        self._lo, self._hi = float(lo), float(hi)
        self._mid, span = (lo + hi) / 2.0, hi - lo
        self._lr = float(learning_rate) * span
        self._l2, self._tv = float(l2), float(tv)
        self.steps, self.seed = int(steps), int(seed)
        total = sum(self.sizes)
        rng = np.random.default_rng(seed)
        start = self._mid + 0.05 * span * rng.standard_normal((total, *shape))
        self._start = tf.constant(np.clip(start, lo, hi).astype(np.float32))
        self._filters = [tf.constant(np.asarray(filters[p], np.int32)) for p in self.paths]
        self.trace_count = 0
        self._fn = quiet_function(self._traced)

    def _objective(self, x):
        """Per-image mean activation of its own filter, ``(total,)``."""
        _, captured = self.tap.run(x, capture=self.paths, linear=False)
        parts, start = [], 0
        for path, size, ids in zip(self.paths, self.sizes, self._filters):
            acts = captured[path][start:start + size]  # (k, h, w, C): this layer's images
            chans = tf.gather(tf.transpose(acts, [0, 3, 1, 2]), ids, axis=1, batch_dims=1)
            parts.append(tf.reduce_mean(chans, axis=[1, 2]))
            start += size
        return tf.concat(parts, axis=0)

    def _traced(self):
        self.trace_count += 1
        x = self._start
        for i in tf.range(self.steps):
            shift = tf.random.stateless_uniform([2], seed=[self.seed, i], minval=-2, maxval=3,
                                                dtype=tf.int32)
            with tf.GradientTape() as tape:
                tape.watch(x)
                rolled = tf.roll(x, shift=shift, axis=[1, 2])
                act = self._objective(rolled)
                reg = self._l2 * tf.reduce_mean(tf.square(x - self._mid), axis=[1, 2, 3]) \
                    + self._tv * _total_variation(x)
                total = tf.reduce_sum(act - reg)
            g = tape.gradient(total, x)
            g = g / (tf.math.reduce_std(g, axis=[1, 2, 3], keepdims=True) + 1e-8)
            x = tf.clip_by_value(x + self._lr * g, self._lo, self._hi)
        return x

    def activations(self, x: ArrayLike) -> np.ndarray:
        """Each image's mean activation of its own filter (to check the ascent worked)."""
        return self._objective(tf.constant(np.asarray(x, np.float32))).numpy()

    def __call__(self) -> dict[str, np.ndarray]:
        """Run the ascent; ``{layer path: (k, H, W, C)}`` images."""
        x = self._fn().numpy()
        out, start = {}, 0
        for path, size in zip(self.paths, self.sizes):
            out[path] = x[start:start + size]
            start += size
        return out

    @property
    def start(self) -> np.ndarray:
        """The starting images, all layers concatenated."""
        return self._start.numpy()


def _total_variation(x):
    """Mean absolute difference between neighbouring pixels, per image."""
    dh = tf.reduce_mean(tf.abs(x[:, 1:] - x[:, :-1]), axis=[1, 2, 3])
    dw = tf.reduce_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1]), axis=[1, 2, 3])
    return dh + dw
