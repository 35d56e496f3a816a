"""Class activation maps: Grad-CAM, Grad-CAM++ and Score-CAM on any layer with spatial axes."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_audit.explain._graph import has_generated_name, is_merge
from keras_audit.explain.base import Explainer, chunk_size, resolve_layer
from keras_audit.explain.gradients import GRADIENT_METHODS


class _CAM(Explainer):
    """Shared set-up of the CAM methods: the layer, and upsampling to the input's resolution.

    Args:
        model: a built Keras model (functional or Sequential: a CAM reads an inner layer).
        layer: a layer name or path (``"backbone/conv2"``); ``None`` picks the default below.
        output, normalize, batch_size: as for every explainer.

    The explained input: the first image input (maps ``(H, W)``), else the first sequence or
    token-id input (maps ``(T,)``); with several inputs the CAM explains through it and its map
    comes back resized to it (``input_index``, ``input_name``).

    The default layer (``layer=None``): among the layers (nested models' included) whose output
    has the explained input's spatial axes (4-D ``(N, h, w, C)`` for images, 3-D ``(N, t, C)``
    for sequences and tokens: Conv1D, recurrent layers with ``return_sequences``, ...), each
    axis longer than 1, the last one whose name was given (not a Keras-generated
    ``<class>_<n>`` name such as ``add_12`` or ``conv2d_3``, which changes between sessions)
    and which is a layer, not a bare operation (``x + y``). Without one: the last such layer
    that is not a merge (Add, Concatenate) or bare operation; then the last of any.
    ``layer_name`` holds the chosen path.

    Raises:
        ValueError: the model is subclassed (its inner layers cannot be read), the layer is
            unknown or has no spatial axes (the message lists the layers that do), or the model
            has no such layer.
    """

    def __init__(self, model: keras.Model, layer: str | None = None,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256) -> None:
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size)
        name = type(self).__name__
        if self.tap.kind == "subclassed":
            raise ValueError(
                f"{name}: model {model.name!r} is subclassed, so its inner layers cannot be "
                "read and it has no layer with spatial axes a CAM can use: a CAM needs an "
                "inner layer's output, and a subclassed model's call() has no functional graph "
                f"to read it from. Gradient methods on the input work on it ({GRADIENT_METHODS}); "
                "or build the model with the functional API"
            )
        spatial = [i for i in self.layers if len(i.output_shape) in (3, 4)
                   and all(d is not None and d > 1 for d in i.output_shape[1:-1])]
        inputs = ([m for m in self.maps_for if m.kind == "image"]
                  + [m for m in self.maps_for if m.kind in ("sequence", "tokens")])
        if layer is None:
            rank = len(inputs[0].map_shape) + 2 if inputs else None
            leaves = [i for i in spatial if not isinstance(i.layer, keras.Model)
                      and len(i.output_shape) == rank]
            if not leaves:
                raise ValueError(
                    f"{name}: model {model.name!r} has no layer with spatial axes (a 4-D "
                    "(N, H, W, C) output for images, a 3-D (N, T, C) output for sequences); "
                    f"CAM methods need one. Use a gradient method ({GRADIENT_METHODS}) instead."
                )
            self.layer_info = _default_layer(leaves)
        else:
            self.layer_info = resolve_layer(self.layers, layer, "layer", allowed=spatial)
        self.layer_name = self.layer_info.path
        self._spatial_axes = list(range(1, len(self.layer_info.output_shape) - 1))
        match = [m for m in inputs if len(m.map_shape) == len(self._spatial_axes)]
        self.explained = match[0] if match else None
        if self.explained is None and len(self.inputs) > 1:
            raise ValueError(
                f"{name}: layer {self.layer_name!r} has {len(self._spatial_axes)} spatial "
                f"axes, and no input of the model has maps with as many "
                f"({[(m.name, m.map_shape) for m in self.maps_for]}), so its map cannot be "
                "resized to an input"
            )
        self.input_index = self.explained.index if self.explained else 0
        self.input_name = self.inputs[self.input_index].name

    def _upsample(self, cam):
        """Resize (N, h, w) or (N, t) maps to the explained input's spatial size (bilinear)."""
        target = self.explained.map_shape if self.explained is not None else None
        if target is None or len(target) != len(cam.shape) - 1 or None in target:
            return cam
        if len(target) == 2:
            return tf.image.resize(cam[..., None], target, method="bilinear")[..., 0]
        # 1-D: resize (N, t, 1, 1) along the first spatial axis
        up = tf.image.resize(cam[:, :, None, None], (target[0], 1), method="bilinear")
        return up[:, :, 0, 0]

    def _activations_and_grads(self, xs, targets):
        with tf.GradientTape() as tape:
            def watch(out):
                tape.watch(out)
                return out

            logits, captured = self._logits(xs, capture=(self.layer_name,),
                                            replace={self.layer_name: watch})
            used = self._resolve_targets(logits, targets)
            score = self._score(logits, used)
        acts = captured[self.layer_name]
        grads = tape.gradient(score, acts)
        return tf.cast(acts, tf.float32), tf.cast(grads, tf.float32), used


def _default_layer(leaves):
    """The default CAM layer (the rule in ``_CAM``'s docstring)."""
    named = [i for i in leaves if isinstance(i.layer, keras.layers.Layer)
             and not has_generated_name(i.layer)]
    plain = [i for i in leaves if not is_merge(i.layer)]
    return (named or plain or leaves)[-1]


class GradCAM(_CAM):
    """Grad-CAM (Selvaraju et al. 2017): channel weights = spatially averaged gradients.

    ``maps = GradCAM(model, layer=None)(x, targets=None)``; see ``_CAM`` for the arguments.
    The backward pass stops at the layer, so a call costs about half a forward+backward pass.
    """

    def _compute(self, xs, targets):
        acts, grads, used = self._activations_and_grads(xs, targets)
        weights = tf.reduce_mean(grads, axis=self._spatial_axes, keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1))
        return self._upsample(cam), used


class GradCAMPlusPlus(_CAM):
    """Grad-CAM++ (Chattopadhay et al. 2018): pixel-wise weighted positive gradients.

    Uses the closed form for an exponential score, in which exp(score) cancels from the alphas;
    the remaining per-sample factor exp(score) is dropped (it does not change a normalised
    map, and would overflow for large logits).
    """

    def _compute(self, xs, targets):
        acts, grads, used = self._activations_and_grads(xs, targets)
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
    stays bounded. Scores are the model's outputs after its activation (probabilities). Token
    ids are masked at their ``Embedding``'s output; other inputs of the model are kept as given.

    Raises:
        ValueError: as ``GradCAM``, or the layer's spatial axes do not match the input's.
    """

    def __init__(self, model: keras.Model, layer: str | None = None,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256) -> None:
        super().__init__(model, layer=layer, output=output, normalize=normalize,
                         batch_size=batch_size)
        if self.explained is None or None in self.explained.map_shape:
            raise ValueError(
                "ScoreCAM masks the input with the layer's upsampled channels, so the layer's "
                f"spatial axes must match the input's {self.input_shape}; layer "
                f"{self.layer_name!r} has shape {self.layer_info.output_shape}"
            )

    def _compute(self, xs, targets):
        ex = self.explained
        extra = (ex.layer,) if ex.kind == "tokens" else ()
        logits, captured = self._logits(xs, capture=(self.layer_name, *extra))
        used = self._resolve_targets(logits, targets)
        acts = tf.cast(captured[self.layer_name], tf.float32)
        masks = self._upsample_channels(acts)  # (N, *spatial, K) in [0, 1]
        n, k_total = xs[0].shape[0], acts.shape[-1]
        k = chunk_size(k_total, n, self.batch_size)
        # Channels first, so each chunk is a contiguous slice.
        masks_t = tf.transpose(masks, [len(masks.shape) - 1] + list(range(len(masks.shape) - 1)))
        tiled = [tf.tile(a, [k] + [1] * (len(a.shape) - 1)) for a in xs]
        target = xs[ex.index]
        if ex.kind == "tokens":  # mask the embedding's output, not the ids
            target = tf.cast(captured[ex.layer], tf.float32)
        scores = tf.TensorArray(tf.float32, size=k_total // k)
        for j in tf.range(k_total // k):
            m = masks_t[j * k:(j + 1) * k]  # (k, N, *spatial)
            if ex.kind == "tokens" or ex.channel_axis:
                m = m[..., None]
            masked = tf.reshape(target[None] * m, (k * n, *target.shape[1:]))
            feed, replace = list(tiled), None
            if ex.kind == "tokens":
                replace = {ex.layer: lambda out, v=masked: v}
            else:
                feed[ex.index] = masked
            lg, _ = self._logits(feed, replace=replace)
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
        target = self.explained.map_shape
        if len(target) == 2:
            return tf.image.resize(norm, target, method="bilinear")
        up = tf.image.resize(norm[:, :, None, :], (target[0], 1), method="bilinear")
        return up[:, :, 0, :]
