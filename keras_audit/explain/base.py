"""The explainer base class: validation, targets, compiled batched calls, normalisation.

An explainer is built once per model and called many times. The constructor checks arguments
and probes the model once (a single eager forward pass on two random samples) to learn its
layers' output shapes and whether it ends in a softmax or sigmoid. Every call then runs one
``tf.function`` per chunk of ``batch_size`` samples. The function is traced once per input
shape, and ``trace_count`` counts tracings.

What a map covers, for every method (API.md's rule): images give ``(N, H, W)`` at the input's
resolution; other inputs give the input's shape without a channel axis where there is one.
A sample of rank 3 ``(H, W, C)`` is an image with channels. A sample of rank 2 ``(A, B)`` is a
sequence of ``A`` steps with ``B`` channels when the first layer that reads it (past
shape-keeping layers such as Dropout or Rescaling) is a sequence layer (recurrent, Conv1D,
1-D pooling, attention, Masking, or a Dense/normalisation layer applied per step); otherwise
(Flatten, Reshape, a 2-D convolution after adding a channel) it is an ``(H, W)`` image without
a channel axis, and its maps are ``(N, H, W)``. A rank-1 sample is a table row ``(F,)`` or,
for integer token ids read by an ``Embedding``, a sequence ``(T,)``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.explain._graph import GraphTap, LayerInfo, input_consumers, layer_consumers
from keras_audit.explain.forward import (
    InputSpec,
    check_inputs,
    model_inputs,
    output_names,
    select_output,
    validate_output,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike



_SEQUENCE_LAYERS = tuple(c for c in (
    keras.layers.RNN, keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN,
    keras.layers.Bidirectional, keras.layers.Conv1D, keras.layers.SeparableConv1D,
    keras.layers.DepthwiseConv1D, keras.layers.Conv1DTranspose, keras.layers.MaxPooling1D,
    keras.layers.AveragePooling1D, keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling1D, keras.layers.MultiHeadAttention, keras.layers.Attention,
    keras.layers.Masking, keras.layers.Dense, keras.layers.EinsumDense,
    keras.layers.LayerNormalization, keras.layers.TimeDistributed, keras.layers.ZeroPadding1D,
    keras.layers.Cropping1D, keras.layers.UpSampling1D,
) if c is not None)


@dataclass(frozen=True)
class MapSpec:
    """How one model input is explained: where gradients are taken and what shape a map has.

    Attributes:
        index: the input's position in ``model.inputs``.
        name: the input's name.
        kind: ``"image"`` (``(H, W)`` maps), ``"sequence"`` (``(T,)``), ``"tokens"`` (integer
            ids read by an ``Embedding``: ``(T,)``), ``"tabular"`` (``(F,)``) or ``"other"``.
        map_shape: one map's shape (no batch axis).
        channel_axis: whether the input's last axis is reduced to make the map.
        layer: the path of the layer whose output gradient methods attribute to (the
            ``Embedding`` of token ids), or ``None`` for the input itself.
    """

    index: int
    name: str
    kind: str
    map_shape: tuple
    channel_axis: bool
    layer: str | None = None


def _probe_batch(specs: list[InputSpec]) -> list:
    """Two random samples per input: normal floats, or 0/1 for integer inputs (valid ids)."""
    rng = np.random.default_rng(0)
    out = []
    for spec in specs:
        shape = (2, *(8 if d is None else d for d in spec.shape))
        if spec.integer:
            out.append(tf.constant(rng.integers(0, 2, size=shape).astype(np.int32)))
        else:
            out.append(tf.constant(rng.normal(size=shape).astype("float32")))
    return out


#: each model's probe results by input specs (see ``_probe``); gone with the model
_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe(model: keras.Model, tap: GraphTap, specs: list[InputSpec]):
    """One eager pass over 2 random samples: every layer's output shape and the outputs.

    Returns ``(shapes, linear_out, plain_out)``: ``shapes`` maps each layer path to its output
    shape (``None`` where a layer returns several tensors). What it reads is the model's
    structure, so it is remembered per model and input specs: the explainers built on one model
    one after another (an ``AuditCallback``'s members, the report's sections) pay for one eager
    pass, which on a DenseNet121 takes about half a second on 2 cores. Any ``GraphTap`` of the
    model names its layers alike, so the shapes serve every tap.
    """
    key = tuple((s.name, tuple(s.shape), s.dtype) for s in specs)
    try:
        per_model = _PROBES.setdefault(model, {})
    except TypeError:  # not weak-referenceable: probe every time
        per_model = {}
    hit = per_model.get(key)
    if hit is None:
        x = _probe_batch(specs)
        paths = [p for p, _ in tap.layers()]
        linear_out, captured = tap.run(x, capture=paths, linear=True)
        plain_out = model(as_model_input(model, x, specs), training=False)
        shapes = {path: None if isinstance(t, list | tuple | dict) else tuple(t.shape)
                  for path, t in captured.items()}
        hit = per_model[key] = (shapes, linear_out, plain_out)
    return hit


def as_model_input(model: keras.Model, xs: list, specs: list[InputSpec]):
    """The list of per-input tensors in the structure ``model(...)`` expects (one tensor, a
    list, or a dict keyed by input name for a model built on a dict of inputs)."""
    if isinstance(getattr(model, "_inputs_struct", None), dict):
        return {s.name: t for s, t in zip(specs, xs)}
    return xs[0] if len(xs) == 1 else list(xs)


def list_layers(model: keras.Model) -> list[LayerInfo]:
    """Every layer of ``model`` that an explainer can read, nested models' layers included.

    This is the engine's one layer walker: the callbacks and the audit list layers with it.

    Returns:
        ``LayerInfo(path, layer, output_shape)`` in call order. A layer inside a nested model
        has the path ``"<model name>/<layer name>"``. A subclassed model lists only itself
        (its inner layers cannot be read).

    Raises:
        ValueError: the model is not built.
    """
    tap = GraphTap(model)
    captured, _, _ = _probe(model, tap, model_inputs(model))
    return _infos(tap, captured)


def _infos(tap: GraphTap, shapes: dict) -> list[LayerInfo]:
    infos = []
    for path, layer in tap.layers():
        shape = shapes.get(path)
        if shape is None:
            continue
        infos.append(LayerInfo(path, layer, (None, *shape[1:])))
    return infos


def _rank2_is_sequence(model, index: int, shapes: dict, in_shape: tuple) -> bool:
    """Whether the first layer reading input ``index`` treats its (A, B) samples as steps."""
    frontier = input_consumers(model, index)
    for _ in range(8):  # past a few shape-keeping layers (Dropout, Rescaling, Normalization)
        if not frontier:
            return False
        path, op = frontier[0]
        if isinstance(op, _SEQUENCE_LAYERS):
            return True
        if shapes.get(path) != (None, *in_shape) or "/" in path:
            return False
        frontier = layer_consumers(model, op)
    return False


def map_specs(model: keras.Model, specs: list[InputSpec], infos: list[LayerInfo]
              ) -> list[MapSpec]:
    """Classify each input (image, sequence, tokens, tabular) by the rule in the module doc."""
    shapes = {i.path: i.output_shape for i in infos}
    out = []
    for k, spec in enumerate(specs):
        rank = len(spec.shape)
        readers = input_consumers(model, k)
        emb = [p for p, op in readers if isinstance(op, keras.layers.Embedding)]
        if spec.integer and emb:
            out.append(MapSpec(k, spec.name, "tokens", spec.shape, False, emb[0]))
            continue
        if rank == 3:
            kind, channel = "image", True
        elif rank == 2:
            seq = _rank2_is_sequence(model, k, shapes, spec.shape)
            kind, channel = ("sequence", True) if seq else ("image", False)
        elif rank == 1:
            kind, channel = "tabular", False
        else:
            kind, channel = "other", rank >= 2
        shape = spec.shape[:-1] if channel else spec.shape
        out.append(MapSpec(k, spec.name, kind, tuple(shape), channel))
    return out


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


def _squash(linear, plain, half: bool = False) -> str | None:
    """Which activation turns the linear outputs into the model's: softmax, sigmoid or None.

    ``half``: the model computes in float16/bfloat16 (mixed precision), so compare loosely.
    """
    lin, out = np.asarray(linear, dtype=np.float64), np.asarray(plain, dtype=np.float64)
    if lin.shape != out.shape:
        return None
    tol = 2e-3 if half else 1e-5
    if np.allclose(lin, out, atol=tol):
        return None
    if lin.shape[-1] > 1:
        e = np.exp(lin - lin.max(axis=-1, keepdims=True))
        if np.allclose(e / e.sum(axis=-1, keepdims=True), out, atol=10 * tol):
            return "softmax"
    if np.allclose(1.0 / (1.0 + np.exp(-lin)), out, atol=10 * tol):
        return "sigmoid"
    return None


class Explainer:
    """Base class of every attribution method: ``maps = explainer(x, targets)``.

    Args:
        model: a built Keras model: Sequential, functional (nested models, several inputs and
            several outputs included) or subclassed (explained as a whole).
        output: for a multi-output model, which output to explain (index or name); ``None``
            explains the first.
        normalize: scale each map to [0, 1] (constant maps become zeros); ``False`` returns raw
            attributions.
        batch_size: the most samples (times noise samples or steps, for the methods that have
            them) sent through the model at once.

    Attributes:
        task: ``"classification"``, ``"binary"`` (one sigmoid unit) or ``"regression"`` (one linear
            unit).
        n_classes: the width of the explained output.
        head: the removed final activation (``"softmax"``, ``"sigmoid"``) or ``None``.
        inputs: ``InputSpec`` per model input; ``maps_for``: ``MapSpec`` per input (the kind of
            each input and its maps' shape).
        trace_count: how many times the compiled computation has been traced.
        last_targets: the class each map of the latest call explains.

    Raises:
        ValueError: the model is not built, ``output`` is unknown (the message lists the
            outputs), or ``batch_size`` is not a positive integer.
    """

    #: whether normalize=True takes the absolute value first (signed attributions)
    signed = False

    def __init__(self, model: keras.Model, output: int | str | None = None,
                 normalize: bool = True, batch_size: int = 256) -> None:
        positive_int(batch_size, "batch_size")
        self.model = model
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)
        self.tap = GraphTap(model)
        self.inputs = model_inputs(model)
        self.input_shape = self.inputs[0].shape
        captured, linear_out, plain_out = _probe(model, self.tap, self.inputs)
        self.layers = _infos(self.tap, captured)
        self.maps_for = map_specs(model, self.inputs, self.layers)
        keys = list(linear_out) if isinstance(linear_out, dict) else None
        n_out = len(linear_out) if isinstance(linear_out, list | tuple | dict) else 1
        if n_out > 1 or output is not None:
            validate_output(model, output, n_out, keys)
        self.output = output
        lin = tf.cast(select_output(linear_out, output, model), tf.float32)
        plain = tf.cast(select_output(plain_out, output, model), tf.float32)
        if len(lin.shape) == 1:
            self._flat_output = True
            lin, plain = tf.reshape(lin, (-1, 1)), tf.reshape(plain, (-1, 1))
        else:
            self._flat_output = False
        if len(lin.shape) != 2:
            names = keys or output_names(model)
            raise ValueError(
                f"{type(self).__name__}: the explained output has shape {tuple(lin.shape)}; "
                "explainers need one score vector per sample (N, classes). Choose another "
                f"output with output= (the model's outputs: {names})"
            )
        self.n_classes = int(lin.shape[-1])
        policy = getattr(getattr(model, "dtype_policy", None), "compute_dtype", "float32")
        self.head = _squash(lin.numpy(), plain.numpy(), half=policy in ("float16", "bfloat16"))
        if self.n_classes == 1:
            self.task = "binary" if self.head == "sigmoid" else "regression"
        else:
            self.task = "classification"
        self.trace_count = 0
        self.last_targets: np.ndarray | None = None
        # One trace per input shape; a shape already seen never retraces. (reduce_retracing
        # would hide the static batch size that the chunked methods size their chunks by.)
        self._fn = quiet_function(self._traced)

    # -- pieces shared by the methods ---------------------------------------------------------
    def _logits(self, xs, capture=(), replace=None):
        """Pre-activation float32 scores of the explained output, and the captured outputs."""
        out, captured = self.tap.run(list(xs), capture=capture, linear=True, replace=replace)
        logits = tf.cast(select_output(out, self.output, self.model), tf.float32)
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

    def _reduce(self, a, channel_axis: bool):
        """Drop the channel (or embedding) axis: summed when signed, else its max."""
        a = tf.cast(a, tf.float32)
        if channel_axis:
            return tf.reduce_sum(a, axis=-1) if self.signed else tf.reduce_max(a, axis=-1)
        return a

    def _reduce_channels(self, a):
        """Drop the channel axis of the first input's attribution (when it has one)."""
        return self._reduce(a, self.maps_for[0].channel_axis)

    def _finish(self, maps):
        if not self.normalize:
            return maps
        if self.signed:
            maps = tf.abs(maps)
        return normalize_maps(maps)

    # -- the call -------------------------------------------------------------------------------
    def _traced(self, xs, targets):
        self.trace_count += 1  # runs only while tracing
        maps, used = self._compute(list(xs), targets)
        maps = maps if isinstance(maps, list | tuple) else [maps]
        return tuple(self._finish(m) for m in maps), used

    def _compute(self, xs, targets):  # pragma: no cover - abstract
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

    def _prepare(self, x) -> list[np.ndarray]:
        """One array per input: token ids as int32, every other input as float32.

        Integer inputs that are not token ids (uint8 pixels) are fed as float32: the values are
        exact, and gradients exist only with respect to floats (the model's own cast inside
        the graph then does nothing).
        """
        arrays = check_inputs(self.model, x, self.inputs)
        return [a.astype(np.int32, copy=False) if m.kind == "tokens"
                else a.astype(np.float32, copy=False) for a, m in zip(arrays, self.maps_for)]

    def __call__(self, x: tf.Tensor | ArrayLike | Sequence | dict,
                 targets: int | Sequence[int] | ArrayLike | None = None
                 ) -> np.ndarray | list[np.ndarray]:
        """Explain a batch.

        Args:
            x: a batch (NumPy array or tensor) of the model's input shape; uint8 is accepted.
                A model with several inputs takes a list/tuple in ``model.inputs`` order or a
                dict keyed by input name (a dict also works for one named input).
            targets: ``None`` (each sample's predicted class), an ``int`` (that class for all)
                or an array of shape ``(N,)``.

        Returns:
            float32 maps, one per sample: ``(N, H, W)`` for images, ``(N, T)`` for sequences
            and token ids, ``(N, F)`` for tabular inputs. Gradient methods on a model with
            several inputs return a list with one such array per input (model input order).

        Raises:
            ValueError: ``x`` does not fit the model, or a target is out of range.
        """
        xs = self._prepare(x)
        n = len(xs[0])
        t = self._check_targets(targets, n)
        chunks = []
        for i in range(0, n, self.batch_size):
            maps, used, *extras = self._fn([tf.constant(a[i:i + self.batch_size]) for a in xs],
                                           tf.constant(t[i:i + self.batch_size]))
            chunks.append(([m.numpy() for m in maps], used.numpy(),
                           [e.numpy() for e in extras]))
        maps = [np.concatenate([c[0][k] for c in chunks]).astype(np.float32, copy=False)
                for k in range(len(chunks[0][0]))]
        self.last_targets = np.concatenate([c[1] for c in chunks])
        self._keep_extras([np.concatenate([c[2][k] for c in chunks])
                           for k in range(len(chunks[0][2]))])
        return maps[0] if len(maps) == 1 else maps

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
