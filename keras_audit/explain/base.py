"""The explainer base class: validation, targets, compiled batched calls, normalisation.

An explainer is built once per model and called many times. The constructor checks arguments
and probes the model once (a single eager forward pass on two random samples) to learn its
layers' output shapes and whether it ends in a softmax or sigmoid. Every call then runs one
``tf.function`` per chunk of ``batch_size`` samples. The function is traced once per input
shape, and ``trace_count`` counts tracings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.explain._graph import GraphTap, LayerInfo
from keras_audit.explain.forward import (
    check_batch,
    model_input_shape,
    output_names,
    select_output,
    validate_output,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def _probe(model: keras.Model, tap: GraphTap, input_shape: tuple):
    """One eager pass over 2 random samples: every layer's output shape and the outputs."""
    rng = np.random.default_rng(0)
    shape = tuple(8 if d is None else d for d in input_shape)
    x = tf.constant(rng.normal(size=(2, *shape)).astype("float32"))
    paths = [p for p, _ in tap.layers()]
    linear_out, captured = tap.run(x, capture=paths, linear=True)
    plain_out = model(x, training=False)
    return captured, linear_out, plain_out


def list_layers(model: keras.Model) -> list[LayerInfo]:
    """Every layer of ``model`` that an explainer can read, nested models' layers included.

    Returns:
        ``LayerInfo(path, layer, output_shape)`` in call order. A layer inside a nested model
        has the path ``"<model name>/<layer name>"``.

    Raises:
        ValueError: the model is not built.
    """
    tap = GraphTap(model)
    captured, _, _ = _probe(model, tap, model_input_shape(model))
    return _infos(tap, captured)


def _infos(tap: GraphTap, captured: dict) -> list[LayerInfo]:
    infos = []
    for path, layer in tap.layers():
        t = captured.get(path)
        if t is None or isinstance(t, list | tuple | dict):
            continue
        infos.append(LayerInfo(path, layer, (None, *t.shape[1:])))
    return infos


def resolve_layer(infos: list[LayerInfo], name: str, what: str = "layer",
                  allowed: list[LayerInfo] | None = None) -> LayerInfo:
    """Find a layer by path or by its own name (when unique); ValueError lists the choices."""
    pool = infos if allowed is None else allowed
    choices = [i.path for i in pool]
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a layer name (str); got {name!r}. Choices: {choices}")
    exact = [i for i in pool if i.path == name]
    if exact:
        return exact[0]
    by_name = [i for i in pool if i.name == name]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise ValueError(
            f"{what} {name!r} is ambiguous: {[i.path for i in by_name]}; give the full path"
        )
    if any(i.path == name or i.name == name for i in infos):
        raise ValueError(
            f"{what} {name!r} has no spatial output (shape "
            f"{next(i.output_shape for i in infos if name in (i.path, i.name))}); "
            f"layers with spatial axes: {choices}"
        )
    raise ValueError(f"unknown {what} {name!r}; choices: {choices}")


def _squash(linear, plain) -> str | None:
    """Which activation turns the linear outputs into the model's: softmax, sigmoid or None."""
    lin, out = np.asarray(linear, dtype=np.float64), np.asarray(plain, dtype=np.float64)
    if lin.shape != out.shape:
        return None
    if np.allclose(lin, out, atol=1e-5):
        return None
    if lin.shape[-1] > 1:
        e = np.exp(lin - lin.max(axis=-1, keepdims=True))
        if np.allclose(e / e.sum(axis=-1, keepdims=True), out, atol=1e-4):
            return "softmax"
    if np.allclose(1.0 / (1.0 + np.exp(-lin)), out, atol=1e-4):
        return "sigmoid"
    return None


class Explainer:
    """Base class of every attribution method: ``maps = explainer(x, targets)``.

    Args:
        model: a built Keras model with one input.
        output: for a multi-output model, which output to explain (index or name).
        normalize: scale each map to [0, 1] (constant maps become zeros); ``False`` returns raw
            attributions.
        batch_size: the most samples (times noise samples or steps, for the methods that have
            them) sent through the model at once.

    Attributes:
        task: ``"multiclass"``, ``"binary"`` (one sigmoid unit) or ``"regression"`` (one linear
            unit).
        n_classes: the width of the explained output.
        head: the removed final activation (``"softmax"``, ``"sigmoid"``) or ``None``.
        trace_count: how many times the compiled computation has been traced.
        last_targets: the class each map of the latest call explains.

    Raises:
        ValueError: the model is not built, has several inputs, ``output`` is unknown, or
            ``batch_size`` is not a positive integer.
    """

    #: whether normalize=True takes the absolute value first (signed attributions)
    signed = False

    def __init__(self, model: keras.Model, output: int | str | None = None,
                 normalize: bool = True, batch_size: int = 256) -> None:
        positive_int(batch_size, "batch_size")
        self.model = model
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)
        self.input_shape = model_input_shape(model)
        self.tap = GraphTap(model)
        captured, linear_out, plain_out = _probe(model, self.tap, self.input_shape)
        self.layers = _infos(self.tap, captured)
        keys = list(linear_out) if isinstance(linear_out, dict) else None
        n_out = len(linear_out) if isinstance(linear_out, list | tuple | dict) else 1
        if n_out > 1 or output is not None:
            validate_output(model, output, n_out, keys)
        self.output = output
        lin = select_output(linear_out, output, model)
        plain = select_output(plain_out, output, model)
        if len(lin.shape) == 1:
            self._flat_output = True
            lin, plain = tf.reshape(lin, (-1, 1)), tf.reshape(plain, (-1, 1))
        else:
            self._flat_output = False
        if len(lin.shape) != 2:
            names = keys or output_names(model)
            raise ValueError(
                f"the explained output has shape {tuple(lin.shape)}; explainers need one score "
                f"vector per sample (N, classes). Choose another output with output= ({names})"
            )
        self.n_classes = int(lin.shape[-1])
        self.head = _squash(lin.numpy(), plain.numpy())
        if self.n_classes == 1:
            self.task = "binary" if self.head == "sigmoid" else "regression"
        else:
            self.task = "multiclass"
        self.trace_count = 0
        self.last_targets: np.ndarray | None = None
        # One trace per input shape; a shape already seen never retraces. (reduce_retracing
        # would hide the static batch size that the chunked methods size their chunks by.)
        self._fn = quiet_function(self._traced)

    # -- pieces shared by the methods ---------------------------------------------------------
    def _logits(self, x, capture=()):
        """Pre-activation scores of the explained output, and the captured layer outputs."""
        out, captured = self.tap.run(x, capture=capture, linear=True)
        logits = select_output(out, self.output, self.model)
        if self._flat_output:
            logits = tf.reshape(logits, (-1, 1))
        return logits, captured

    def _resolve_targets(self, logits, targets):
        """Replace the ``-1`` entries of ``targets`` by the predicted class."""
        if self.task == "binary":
            pred = tf.cast(logits[:, 0] > 0, tf.int32)
        elif self.task == "regression":
            pred = tf.zeros_like(targets)
        else:
            pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return tf.where(targets < 0, pred, targets)

    def _score(self, logits, targets):
        """The score to explain per sample: a logit; negated for target 0 of a sigmoid unit."""
        if self.task == "binary":
            s = logits[:, 0]
            return tf.where(targets == 1, s, -s)
        return tf.gather(logits, targets, axis=1, batch_dims=1)

    def _prob(self, logits, targets):
        """The explained output after its activation (ScoreCAM and the deletion metrics)."""
        if self.task == "binary":
            s = tf.sigmoid(logits[:, 0])
            return tf.where(targets == 1, s, 1.0 - s)
        if self.head == "softmax":
            return tf.gather(tf.nn.softmax(logits, axis=-1), targets, axis=1, batch_dims=1)
        if self.head == "sigmoid":
            return tf.gather(tf.sigmoid(logits), targets, axis=1, batch_dims=1)
        return tf.gather(logits, targets, axis=1, batch_dims=1)

    def _reduce_channels(self, a):
        """Drop the channel axis of an input-shaped attribution (images and sequences)."""
        if len(self.input_shape) >= 2:
            return tf.reduce_sum(a, axis=-1) if self.signed else tf.reduce_max(a, axis=-1)
        return a

    def _finish(self, maps):
        if not self.normalize:
            return maps
        if self.signed:
            maps = tf.abs(maps)
        return normalize_maps(maps)

    # -- the call -------------------------------------------------------------------------------
    def _traced(self, x, targets):
        self.trace_count += 1  # runs only while tracing
        maps, used = self._compute(x, targets)
        return self._finish(maps), used

    def _compute(self, x, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_targets(self, targets, n: int) -> np.ndarray:
        if self.task == "binary":
            valid, desc = {0, 1}, "0 (the negated score) or 1 (the positive score)"
        elif self.task == "regression":
            valid, desc = {0}, "0 (the single regression output)"
        else:
            valid, desc = set(range(self.n_classes)), f"0..{self.n_classes - 1}"
        if targets is None:
            return np.full((n,), -1, np.int32)
        arr = np.asarray(targets)
        if arr.dtype.kind not in "iu" and not (
            arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)
        ):
            raise ValueError(f"targets must be class indices ({desc}); got {targets!r}")
        if arr.ndim == 0:
            arr = np.full((n,), int(arr))
        if arr.shape != (n,):
            raise ValueError(
                f"targets must be None, an int, or an array of shape ({n},) to match x; "
                f"got shape {arr.shape}"
            )
        arr = arr.astype(np.int64)
        bad = sorted({int(t) for t in arr} - valid)
        if bad:
            raise ValueError(f"target(s) {bad} out of range; valid targets are {desc}")
        return arr.astype(np.int32)

    def __call__(self, x: tf.Tensor | ArrayLike,
                 targets: int | Sequence[int] | ArrayLike | None = None) -> np.ndarray:
        """Explain a batch.

        Args:
            x: a batch (NumPy array or tensor) of the model's input shape; uint8 is accepted.
            targets: ``None`` (each sample's predicted class), an ``int`` (that class for all)
                or an array of shape ``(N,)``.

        Returns:
            float32 maps, one per sample: ``(N, H, W)`` for images, ``(N, T)`` for sequences,
            ``(N, F)`` for tabular inputs.

        Raises:
            ValueError: ``x`` does not fit the model, or a target is out of range.
        """
        x = check_batch(self.model, x).astype(np.float32, copy=False)
        t = self._check_targets(targets, len(x))
        chunks = [
            [part.numpy() for part in self._fn(tf.constant(x[i:i + self.batch_size]),
                                               tf.constant(t[i:i + self.batch_size]))]
            for i in range(0, len(x), self.batch_size)
        ]
        maps, used, *extras = (np.concatenate(parts) for parts in zip(*chunks))
        self.last_targets = used
        self._keep_extras(extras)
        return maps.astype(np.float32, copy=False)

    def _keep_extras(self, extras: list) -> None:
        """Store whatever a method's compiled function returns besides maps and targets."""


def normalize_maps(maps: tf.Tensor) -> tf.Tensor:
    """Scale each map to [0, 1] by its own min and max (a tensor op).

    A constant map becomes zeros; a map with NaN or inf stays NaN, so callers can see it.
    """
    axes = list(range(1, len(maps.shape)))
    lo = tf.reduce_min(maps, axis=axes, keepdims=True)
    hi = tf.reduce_max(maps, axis=axes, keepdims=True)
    span = hi - lo
    finite = tf.reduce_all(tf.math.is_finite(maps), axis=axes, keepdims=True)
    scaled = tf.where(span > 0, (maps - lo) / tf.where(span > 0, span, 1.0), 0.0)
    return tf.where(finite, scaled, tf.constant(np.nan, maps.dtype))


def quiet_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``tf.function(fn)`` without TF's "frequent retracing" warning.

    TF counts traces per code object, so N explainers of one class, each tracing once, look
    like one function retracing N times. ``trace_count`` on each explainer is the real measure.
    """
    compiled = tf.function(fn)
    compiled._omit_frequent_tracing_warning = True
    return compiled


def chunk_size(total: int, n: int, batch_size: int) -> int:
    """The largest divisor of ``total`` that keeps ``chunk * n`` within ``batch_size``."""
    cap = max(1, batch_size // max(n, 1))
    return max(d for d in range(1, min(total, cap) + 1) if total % d == 0)
