"""Class activation maps: Grad-CAM, Grad-CAM++ and Score-CAM on any layer with spatial axes."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_audit.explain.base import Explainer, chunk_size, resolve_layer


class _CAM(Explainer):
    """Shared set-up of the CAM methods: the layer, and upsampling to the input's resolution.

    Args:
        model: a built Keras model.
        layer: a layer name or path (``"backbone/conv2"``); ``None`` picks the last layer with a
            4-D ``(N, H, W, C)`` output (for sequence models, the last with a 3-D output).
        output, normalize, batch_size: as for every explainer.

    Raises:
        ValueError: the layer is unknown or has no spatial axes (the message lists the layers
            that do), or the model has no such layer.
    """

    def __init__(self, model: keras.Model, layer: str | None = None,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256) -> None:
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size)
        spatial = [i for i in self.layers if len(i.output_shape) in (3, 4)
                   and all(d is not None and d > 1 for d in i.output_shape[1:-1])]
        if layer is None:
            leaves = [i for i in spatial if not isinstance(i.layer, keras.Model)]
            rank = len(self.input_shape) + 1
            pick = [i for i in leaves if len(i.output_shape) == 4] or \
                [i for i in leaves if len(i.output_shape) == rank]
            if not pick:
                raise ValueError(
                    f"{type(self).__name__}: model {model.name!r} has no layer with spatial axes "
                    "(a 4-D (N, H, W, C) or 3-D (N, T, C) output); CAM methods need one. Use a "
                    "gradient method (Saliency, IntegratedGradients) instead."
                )
            self.layer_info = pick[-1]
        else:
            self.layer_info = resolve_layer(self.layers, layer, "layer", allowed=spatial)
        self.layer_name = self.layer_info.path
        self._spatial_axes = list(range(1, len(self.layer_info.output_shape) - 1))

    def _upsample(self, cam):
        """Resize (N, h, w) or (N, t) maps to the input's spatial size (bilinear)."""
        target = self.input_shape[:-1] if len(self.input_shape) >= 2 else None
        if target is None or len(target) != len(cam.shape) - 1 or None in target:
            return cam
        if len(target) == 2:
            return tf.image.resize(cam[..., None], target, method="bilinear")[..., 0]
        # 1-D: resize (N, t, 1, 1) along the first spatial axis
        up = tf.image.resize(cam[:, :, None, None], (target[0], 1), method="bilinear")
        return up[:, :, 0, 0]

    def _activations_and_grads(self, x, targets):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits, captured = self._logits(x, capture=(self.layer_name,))
            used = self._resolve_targets(logits, targets)
            score = self._score(logits, used)
        acts = captured[self.layer_name]
        return acts, tape.gradient(score, acts), used


class GradCAM(_CAM):
    """Grad-CAM (Selvaraju et al. 2017): channel weights = spatially averaged gradients.

    ``maps = GradCAM(model, layer=None)(x, targets=None)``; see ``_CAM`` for the arguments.
    The backward pass stops at the layer, so a call costs about half a forward+backward pass.
    """

    def _compute(self, x, targets):
        acts, grads, used = self._activations_and_grads(x, targets)
        weights = tf.reduce_mean(grads, axis=self._spatial_axes, keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1))
        return self._upsample(cam), used


class GradCAMPlusPlus(_CAM):
    """Grad-CAM++ (Chattopadhay et al. 2018): pixel-wise weighted positive gradients.

    Uses the closed form for an exponential score, in which exp(score) cancels from the alphas;
    the remaining per-sample factor exp(score) is dropped (it does not change a normalised
    map, and would overflow for large logits).
    """

    def _compute(self, x, targets):
        acts, grads, used = self._activations_and_grads(x, targets)
        g2, g3 = grads ** 2, grads ** 3
        total = tf.reduce_sum(acts, axis=self._spatial_axes, keepdims=True)
        denom = 2.0 * g2 + total * g3
        alphas = g2 / tf.where(denom != 0.0, denom, tf.ones_like(denom))
        norm = tf.reduce_sum(alphas, axis=self._spatial_axes, keepdims=True)
        alphas = alphas / tf.where(norm != 0.0, norm, tf.ones_like(norm))
        weights = tf.reduce_sum(alphas * tf.nn.relu(grads), axis=self._spatial_axes,
                                keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1))
        return self._upsample(cam), used


class ScoreCAM(_CAM):
    """Score-CAM (Wang et al. 2020): each channel weighted by the score of the input masked by it.

    Channels are processed ``batch_size // N`` at a time inside one compiled loop, so memory
    stays bounded. Scores are the model's outputs after its activation (probabilities).

    Raises:
        ValueError: as ``GradCAM``, or the layer's spatial axes do not match the input's.
    """

    def __init__(self, model: keras.Model, layer: str | None = None,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256) -> None:
        super().__init__(model, layer=layer, output=output, normalize=normalize,
                         batch_size=batch_size)
        target = self.input_shape[:-1] if len(self.input_shape) >= 2 else ()
        if len(target) != len(self._spatial_axes) or None in target:
            raise ValueError(
                "ScoreCAM masks the input with the layer's upsampled channels, so the layer's "
                f"spatial axes must match the input's {self.input_shape}; layer "
                f"{self.layer_name!r} has shape {self.layer_info.output_shape}"
            )

    def _compute(self, x, targets):
        logits, captured = self._logits(x, capture=(self.layer_name,))
        used = self._resolve_targets(logits, targets)
        acts = captured[self.layer_name]
        masks = self._upsample_channels(acts)  # (N, *spatial, K) in [0, 1]
        n, k_total = x.shape[0], acts.shape[-1]
        k = chunk_size(k_total, n, self.batch_size)
        # Channels first, so each chunk is a contiguous slice.
        masks_t = tf.transpose(masks, [len(masks.shape) - 1] + list(range(len(masks.shape) - 1)))
        scores = tf.TensorArray(tf.float32, size=k_total // k)
        for j in tf.range(k_total // k):
            m = masks_t[j * k:(j + 1) * k]  # (k, N, *spatial)
            if len(self.input_shape) >= 2:
                m = m[..., None]
            masked = tf.reshape(x[None] * m, (k * n, *x.shape[1:]))
            lg, _ = self._logits(masked)
            p = self._prob(lg, tf.tile(used, [k]))
            scores = scores.write(j, tf.reshape(p, (k, n)))
        weights = tf.transpose(tf.reshape(scores.stack(), (k_total, n)))  # (N, K)
        shape = [n] + [1] * (len(acts.shape) - 2) + [k_total]
        cam = tf.nn.relu(tf.reduce_sum(tf.reshape(weights, shape) * acts, axis=-1))
        return self._upsample(cam), used

    def _upsample_channels(self, acts):
        axes = self._spatial_axes
        lo = tf.reduce_min(acts, axis=axes, keepdims=True)
        hi = tf.reduce_max(acts, axis=axes, keepdims=True)
        span = hi - lo
        norm = tf.where(span > 0, (acts - lo) / tf.where(span > 0, span, 1.0), 0.0)
        target = self.input_shape[:-1]
        if len(target) == 2:
            return tf.image.resize(norm, target, method="bilinear")
        up = tf.image.resize(norm[:, :, None, :], (target[0], 1), method="bilinear")
        return up[:, :, 0, :]
