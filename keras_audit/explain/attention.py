"""Attention weights of ``keras.layers.MultiHeadAttention`` layers, read without changing the model.

Keras's ``MultiHeadAttention`` returns its attention weights only when it is called with
``return_attention_scores=True``, and a trained model does not call it that way. Rebuilding the
model to return them would mean a second model (or a clone) per layer, and fails when the layer
sits inside a custom layer (the usual ``TransformerBlock``). Instead, ``AttentionScores`` runs the
model's own forward pass inside its own ``tf.function`` and, only while that function is being
traced, gives each chosen attention layer an instance-level ``call`` that asks the original
``call`` for the scores as well, records them and returns the output the model expects. The
patch is removed as soon as tracing ends, so the model being trained never sees it, its outputs
are unchanged (the test checks them against ``model.predict``) and it shares the live weights.

The module also computes attention rollout (Abnar & Zuidema, 2020) for patch-based image models.
Everything here returns NumPy arrays; it knows nothing of pictures or TensorBoard.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.explain.base import quiet_function
from keras_audit.explain.forward import check_batch, model_input_shape

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: key of the model's own output in the dict an ``AttentionScores`` call returns
OUTPUT_KEY = "__output__"


def _sublayers(layer) -> list:
    """The layers directly held by ``layer`` (a model or a custom layer), in tracking order."""
    flatten = getattr(layer, "_flatten_layers", None)  # Keras 3 Layer API, not public
    if flatten is not None:
        return list(flatten(include_self=False, recursive=False))
    return list(getattr(layer, "layers", []))


def find_attention_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """Every ``MultiHeadAttention`` layer of ``model``, nested models and custom layers included.

    Returns:
        ``(path, layer)`` pairs; a path is the layer's name prefixed by the names of the models
        or custom layers that hold it (``"block1/attention"``). Order: as the layers are tracked,
        which is not always the call order (``AttentionScores.layers`` is in call order).
    """
    found: list[tuple[str, keras.layers.Layer]] = []
    seen: set[int] = set()

    def walk(layer, prefix: str) -> None:
        for sub in _sublayers(layer):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            path = prefix + sub.name
            if isinstance(sub, keras.layers.MultiHeadAttention):
                found.append((path, sub))
            else:
                walk(sub, path + "/")

    walk(model, "")
    return found


class _Recorder:
    """Collects the attention scores of patched layers during one forward pass."""

    def __init__(self, layers: dict[int, str]) -> None:
        self.paths = layers          # id(layer) -> path
        self.scores: dict[str, tf.Tensor] = {}
        self.order: list[str] = []

    def record(self, layer, scores) -> None:
        path = self.paths[id(layer)]
        key, k = path, 1
        while key in self.scores:  # a shared layer called again: path@1, path@2, ...
            key, k = f"{path}@{k}", k + 1
        self.scores[key] = scores
        self.order.append(key)


@contextlib.contextmanager
def _recording(layers: Sequence[keras.layers.Layer], recorder: _Recorder):
    """Give each layer an instance ``call`` that also records its attention scores; undo after.

    ``object.__setattr__`` bypasses Keras's attribute tracking, so the patch leaves no trace in
    the layer's tracked state; deleting the instance attribute restores the class's ``call``.
    """
    patched = []
    try:
        for layer in layers:
            original = layer.call

            def call(*args, _layer=layer, _original=original, **kwargs):
                wanted = kwargs.pop("return_attention_scores", False)
                out, scores = _original(*args, return_attention_scores=True, **kwargs)
                recorder.record(_layer, scores)
                return (out, scores) if wanted else out

            object.__setattr__(layer, "call", call)
            patched.append(layer)
        yield recorder
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


def _as_4d(scores) -> tf.Tensor:
    """(N, heads, *query_axes, *key_axes) -> (N, heads, Tq, Tk); one attention axis is a no-op."""
    shape = scores.shape
    rank = len(shape)
    if rank == 4:
        return scores
    half = (rank - 2) // 2
    n, h = tf.shape(scores)[0], shape[1]
    tq = int(np.prod(shape[2:2 + half]))
    tk = int(np.prod(shape[2 + half:]))
    return tf.reshape(scores, (n, h, tq, tk))


def _input_dtype(model) -> tf.DType:
    try:
        dtype = tf.as_dtype(model.inputs[0].dtype)
    except (AttributeError, IndexError, TypeError, ValueError):
        return tf.float32
    return dtype if dtype.is_integer or dtype.is_floating else tf.float32


class AttentionScores:
    """``AttentionScores(model, layers)(x) -> {path: scores}``: attention weights per head.

    Args:
        model: a built Keras model with one input and at least one
            ``keras.layers.MultiHeadAttention`` layer (at the top level, in a nested model, or
            inside a custom layer).
        layers: attention layer names or paths (``"block1/attention"``); ``None`` takes every
            attention layer the forward pass calls.
        batch_size: the most samples sent through the model at once.

    Calling it on a batch ``x`` returns a dict: for each chosen layer, by path, a float32 array
    ``(N, heads, Tq, Tk)`` (query positions x key positions; several attention axes are
    flattened), whose rows sum to 1; and ``"__output__"``, the model's own output for ``x`` from
    the same pass (what ``model.predict`` returns). A shared layer called again appears again as
    ``"<path>@1"``, ``"<path>@2"``. The computation is compiled once per input shape and
    ``trace_count`` counts tracings.

    Attributes:
        layers: the chosen paths, in the order the forward pass calls them.
        num_heads: ``{path: number of heads}``.
        shapes: ``{path: (Tq, Tk)}`` as seen when the model was probed.

    Raises:
        ValueError: the model is not built, has no ``MultiHeadAttention`` layer, a named layer is
            unknown or is not an attention layer (the message lists the attention layers), or
            ``batch_size`` is not a positive integer.
    """

    def __init__(self, model: keras.Model, layers: Sequence[str] | str | None = None,
                 batch_size: int = 256) -> None:
        positive_int(batch_size, "batch_size")
        self.model = model
        self.batch_size = int(batch_size)
        self.input_shape = model_input_shape(model)  # ValueError when not built
        self.dtype = _input_dtype(model)
        found = find_attention_layers(model)
        if not found:
            names = [layer.name for layer in _sublayers(model)
                     if not isinstance(layer, keras.layers.InputLayer)]
            raise ValueError(
                f"model {model.name!r} has no keras.layers.MultiHeadAttention layer, so it has no "
                f"attention weights to show; its layers are {names}"
            )
        self._all = found
        chosen = found if layers is None else [
            self._resolve(name) for name in ([layers] if isinstance(layers, str) else layers)
        ]
        self._layers = [layer for _, layer in chosen]
        self._paths = {id(layer): path for path, layer in chosen}
        # One eager pass on zeros (a valid token id as well as a valid image) learns the call
        # order and the shapes, and proves the layers are called at all.
        probe = np.zeros((1, *(8 if d is None else d for d in self.input_shape)))
        recorder = _Recorder(self._paths)
        with _recording(self._layers, recorder):
            model(tf.constant(probe, self.dtype), training=False)
        missing = [p for p in self._paths.values() if p not in recorder.scores]
        if missing:
            raise ValueError(
                f"attention layer(s) {missing} are not called by the model's forward pass; "
                f"attention layers: {[p for p, _ in found]}"
            )
        self.layers: list[str] = list(recorder.order)
        self.num_heads = {k: int(v.shape[1]) for k, v in recorder.scores.items()}
        self.shapes = {k: tuple(int(d) for d in _as_4d(v).shape[2:])
                       for k, v in recorder.scores.items()}
        self.trace_count = 0
        self._fn = quiet_function(self._traced)

    def _resolve(self, name) -> tuple[str, keras.layers.Layer]:
        choices = [p for p, _ in self._all]
        if not isinstance(name, str):
            raise ValueError(f"layers must be layer names (str); got {name!r}. Choices: {choices}")
        for path, layer in self._all:
            if path == name:
                return path, layer
        by_name = [(p, layer) for p, layer in self._all if layer.name == name]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            raise ValueError(
                f"attention layer {name!r} is ambiguous: {[p for p, _ in by_name]}; "
                "give the full path"
            )
        raise ValueError(
            f"{name!r} is not a MultiHeadAttention layer of model {self.model.name!r}; "
            f"attention layers: {choices}"
        )

    def _traced(self, x):
        self.trace_count += 1  # runs only while tracing
        recorder = _Recorder(self._paths)
        with _recording(self._layers, recorder):
            out = self.model(x, training=False)
        result = {k: _as_4d(v) for k, v in recorder.scores.items()}
        result[OUTPUT_KEY] = out
        return result

    def __call__(self, x: tf.Tensor | ArrayLike) -> dict[str, np.ndarray]:
        """Run the model on ``x``; return each chosen layer's attention weights, by path.

        Raises:
            ValueError: ``x`` is not a batch of the model's input shape.
        """
        x = check_batch(self.model, x)
        if self.dtype.is_integer:  # token ids given as floats (as callbacks store samples)
            x = np.rint(x)
        x = x.astype(self.dtype.as_numpy_dtype, copy=False)
        parts = []
        for i in range(0, len(x), self.batch_size):
            out = self._fn(tf.constant(x[i:i + self.batch_size]))
            parts.append(tf.nest.map_structure(lambda t: t.numpy(), out))
        return {k: tf.nest.map_structure(lambda *a: np.concatenate(a), *[p[k] for p in parts])
                for k in parts[0]}


def attention_rollout(scores: Sequence[np.ndarray], residual: bool = True) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): how much each token draws on each input token.

    Args:
        scores: the attention weights of successive self-attention layers, in call order, each
            ``(N, heads, T, T)``. Heads are averaged.
        residual: add the identity (the residual connection) before renormalising each layer's
            rows, as the paper does: ``A' = (A + I) / 2``.

    Returns:
        float32 ``(N, T, T)``: row ``i`` is query token ``i``'s attribution over the input
        tokens; rows sum to 1.

    Raises:
        ValueError: no layers, or a layer whose weights are not square ``(N, heads, T, T)`` with
            the same ``T`` and ``N`` as the others (cross-attention cannot be rolled out).
    """
    if len(scores) == 0:
        raise ValueError("attention_rollout needs the weights of at least one layer")
    first = np.asarray(scores[0])
    n, t = first.shape[0], first.shape[-1]
    out = np.broadcast_to(np.eye(t, dtype=np.float64), (n, t, t)).copy()
    for i, s in enumerate(scores):
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 4 or s.shape[0] != n or s.shape[2:] != (t, t):
            raise ValueError(
                f"layer {i} has attention weights of shape {s.shape}; rollout needs square "
                f"self-attention weights (N={n}, heads, {t}, {t}) in every layer"
            )
        a = s.mean(axis=1)
        if residual:
            a = 0.5 * a + 0.5 * np.eye(t)
        a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-12)
        out = a @ out
    return out.astype(np.float32)


def patch_grid(image_shape: Sequence[int], num_tokens: int) -> tuple[int, int, bool] | None:
    """How ``num_tokens`` tokens tile an image: ``(rows, cols, has_class_token)``, or None.

    A patch-based (ViT-style) model cuts an ``H x W`` image into square ``p x p`` patches, one
    token each, and may prepend one class token. The tokens tile the image when some ``p``
    divides both sides and ``(H / p) * (W / p)`` equals ``num_tokens`` (no class token) or
    ``num_tokens - 1`` (a class token, taken to be the first, as in ViT).

    Args:
        image_shape: the model's input shape without the batch axis: ``(H, W)`` or ``(H, W, C)``.
        num_tokens: the attention layer's sequence length.
    """
    if len(image_shape) not in (2, 3) or any(d is None for d in image_shape[:2]):
        return None
    h, w = int(image_shape[0]), int(image_shape[1])
    for cls, count in ((False, num_tokens), (True, num_tokens - 1)):
        if count < 1:
            continue
        for p in range(1, min(h, w) + 1):
            if h % p == 0 and w % p == 0 and (h // p) * (w // p) == count:
                return h // p, w // p, cls
    return None


def rollout_maps(scores: Sequence[np.ndarray], image_shape: Sequence[int]) -> np.ndarray:
    """Per-image relevance of each patch, from the attention rollout of a ViT-style model.

    With a class token, the map is the class token's row of the rollout over the patch tokens;
    without one (global-average-pooled models), the mean of all rows. Maps are scaled to [0, 1]
    per image (a constant map becomes zeros).

    Args:
        scores: self-attention weights of successive layers, each ``(N, heads, T, T)``.
        image_shape: the model's input shape without the batch axis.

    Returns:
        float32 ``(N, rows, cols)``, one value per patch.

    Raises:
        ValueError: the tokens do not tile the image (see ``patch_grid``), or the weights cannot
            be rolled out (see ``attention_rollout``).
    """
    roll = attention_rollout(scores)
    t = roll.shape[-1]
    grid = patch_grid(image_shape, t)
    if grid is None:
        raise ValueError(
            f"{t} tokens do not tile an image of shape {tuple(image_shape)} as square patches "
            "(with or without one class token); attention rollout needs a patch-based model"
        )
    rows, cols, cls = grid
    rel = roll[:, 0, 1:] if cls else roll.mean(axis=1)
    rel = rel.reshape(-1, rows, cols).astype(np.float64)
    lo = rel.min(axis=(1, 2), keepdims=True)
    span = rel.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (rel - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
