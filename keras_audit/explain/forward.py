"""A compiled, batched forward pass: what shap, lime and the audit call instead of ``model.predict``.

``model.predict`` pays a per-call set-up cost that dominates when shap or lime call it thousands
of times on small batches (FIELD_NOTES: 152x a compiled pass for KernelExplainer). This wrapper
traces ``model(x, training=False)`` once with a batch-agnostic signature and reuses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import keras
import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.explain._graph import GraphTap

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

_T = TypeVar("_T")


def _declared_shape(model: keras.Model):
    """``model.input_shape`` (a list for several inputs), or the shape a subclassed model was
    built with; ValueError when the model has not been built."""
    shape = None
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        # A subclassed model has no input_shape; Keras records the shape it was built with.
        built = getattr(model, "_build_shapes_dict", None) or {}
        if len(built) == 1:
            shape = next(iter(built.values()))
            shape = (None, *tuple(shape)[1:]) if shape is not None else None
    if shape is None:
        raise ValueError(
            f"model {model.name!r} has not been built: call it on a batch or build it with "
            "keras.Input before explaining it"
        )
    return shape


def _nested(shape) -> bool:
    return isinstance(shape, list | tuple) and bool(shape) and isinstance(shape[0], list | tuple)


def model_input_shape(model: keras.Model) -> tuple:
    """Return the model's input shape without the batch axis, e.g. ``(32, 32, 3)``.

    Raises:
        ValueError: the model has not been built, or has several inputs.
    """
    shape = _declared_shape(model)
    if _nested(shape):
        if len(shape) != 1:
            raise ValueError(
                f"model {model.name!r} has {len(shape)} inputs; keras_audit explains "
                "single-input models"
            )
        shape = shape[0]
    return tuple(shape[1:])


@dataclass(frozen=True)
class InputSpec:
    """One input of a model.

    Attributes:
        name: the input's name (``keras.Input(name=...)``; the key a dict batch uses).
        shape: one sample's shape (no batch axis), ``None`` where any size goes.
        dtype: the dtype the model declares (``"float32"``, ``"uint8"``, ``"int32"``, ...).
    """

    name: str
    shape: tuple
    dtype: str

    @property
    def integer(self) -> bool:
        """Whether the input holds integers (token ids, uint8 pixels)."""
        return np.dtype(self.dtype).kind in "iub"


def model_inputs(model: keras.Model) -> list[InputSpec]:
    """Every input of a built model, in the order ``model.inputs`` lists them.

    A subclassed model has no symbolic inputs: it has one input, of the shape it was built with.

    Raises:
        ValueError: the model has not been built.
    """
    inputs = None
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        return [InputSpec(str(getattr(t, "name", f"input_{i}")), tuple(t.shape[1:]),
                          str(np.dtype(getattr(t, "dtype", "float32") or "float32")))
                for i, t in enumerate(inputs)]
    shape = _single_shape(model)
    return [InputSpec("input", shape, "float32")]


def _single_shape(model: keras.Model) -> tuple:
    shape = _declared_shape(model)
    return tuple((shape[0] if _nested(shape) else shape)[1:])


def check_inputs(model: keras.Model, x, specs: list[InputSpec] | None = None,
                 what: str = "x") -> list[np.ndarray]:
    """Return the batch as one NumPy array per model input, in ``model.inputs`` order.

    Args:
        model: the model the batch is for.
        x: an array or tensor (one input), a list/tuple in the model's input order, or a dict
            keyed by input name.
        specs: ``model_inputs(model)``, when the caller has it already.
        what: the argument's name in error messages.

    Raises:
        ValueError: the number of inputs, a name, a shape or the batch sizes do not fit.
    """
    specs = specs if specs is not None else model_inputs(model)
    names = [s.name for s in specs]
    if isinstance(x, Mapping):
        unknown = sorted(set(x) - set(names))
        missing = [n for n in names if n not in x]
        if unknown or missing:
            raise ValueError(
                f"{what} is a dict with keys {sorted(x)}; the model's inputs are {names}"
                + (f" (unknown: {unknown})" if unknown else "")
                + (f" (missing: {missing})" if missing else "")
            )
        parts = [x[n] for n in names]
    elif isinstance(x, list | tuple):
        if len(x) != len(specs):
            raise ValueError(
                f"{what} has {len(x)} arrays; the model has {len(specs)} input(s): {names}"
            )
        parts = list(x)
    else:
        if len(specs) != 1:
            raise ValueError(
                f"the model has {len(specs)} inputs {names}; give {what} as a list in that "
                "order or a dict keyed by input name"
            )
        parts = [x]
    arrays = []
    for spec, part in zip(specs, parts):
        if isinstance(part, tf.Tensor):
            part = part.numpy()
        part = np.asarray(part)
        label = what if len(specs) == 1 else f"{what}[{spec.name!r}]"
        if part.dtype == object:
            raise ValueError(f"{label} is an object array; give a numeric NumPy array or tensor")
        ok = part.ndim == len(spec.shape) + 1 and all(
            e is None or e == g for e, g in zip(spec.shape, part.shape[1:]))
        if not ok:
            raise ValueError(
                f"the model takes batches of shape {(None, *spec.shape)}"
                + ("" if len(specs) == 1 else f" for input {spec.name!r}")
                + f"; {label} has shape {part.shape}"
            )
        if part.shape[0] == 0:
            raise ValueError(f"{label} is an empty batch")
        arrays.append(part)
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(
            f"the inputs of {what} have different batch sizes: "
            f"{dict(zip(names, (len(a) for a in arrays)))}"
        )
    return arrays


def check_batch(model: keras.Model, x: tf.Tensor | ArrayLike, what: str = "x") -> np.ndarray:
    """Return ``x`` as a NumPy array after checking that the model takes its shape.

    Raises:
        ValueError: ``x`` is not a batch of the model's input shape.
    """
    if isinstance(x, tf.Tensor):
        x = x.numpy()
    x = np.asarray(x)
    if x.dtype == object:
        raise ValueError(f"{what} is an object array; give a numeric NumPy array or tensor")
    expected = model_input_shape(model)
    ok = x.ndim == len(expected) + 1 and all(
        e is None or e == g for e, g in zip(expected, x.shape[1:])
    )
    if not ok:
        raise ValueError(
            f"the model takes batches of shape {(None, *expected)}; {what} has shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{what} is an empty batch")
    return x


class CompiledForward:
    """``model(x, training=False)`` compiled once and run in batches; returns NumPy.

    Args:
        model: a built Keras model. A model with several inputs takes a list (in
            ``model.inputs`` order) or a dict keyed by input name.
        output: for a multi-output model, the output's index or name; ``None`` for the first.
        batch_size: the largest batch sent to the device at once.

    The outputs are what ``model.predict`` returns (probabilities for a softmax model).
    The function is traced with a batch-agnostic signature, so it never retraces. Float and
    uint8 inputs are fed as float32 (uint8 pixels are exact in float32); other integer inputs
    (token ids) in their declared dtype, so large ids are not rounded.

    Attributes:
        input_shape: the sample shape of the one input; for several inputs, one per input.
        inputs: ``InputSpec`` per model input.
        output: the output selected (``None``: the first).
    """

    def __init__(self, model: keras.Model, output: int | str | None = None,
                 batch_size: int = 256) -> None:
        positive_int(batch_size, "batch_size")
        self.model = model
        self.batch_size = int(batch_size)
        self.inputs = model_inputs(model)
        # one input: its shape (as before); several: one shape per input, in model order
        self.input_shape = (model_input_shape(model) if len(self.inputs) == 1
                            else tuple(s.shape for s in self.inputs))
        self._dtypes = [tf.as_dtype(s.dtype) if s.integer and s.dtype not in ("uint8", "bool")
                        else tf.float32 for s in self.inputs]
        self._output = output
        self.output = output  # the output selected (None: the first)
        self._fn = None

    def _select(self, out):
        return select_output(out, self._output, self.model)

    def _build(self, dtype) -> None:
        # the model's own layers through GraphTap (the same numbers as model(x)): it traces a
        # DenseNet121 in 1.0 s where model(x) takes 1.6 s (see GraphTap's batch normalisation)
        tap = GraphTap(self.model)
        specs = [tf.TensorSpec((None, *s.shape), d) for s, d in zip(self.inputs, self._dtypes)]

        @tf.function(input_signature=specs, reduce_retracing=True, autograph=False)
        def fn(*xs):
            out, _ = tap.run(list(xs), linear=False)
            return self._select(out)

        self._fn = fn

    def _arrays(self, x) -> list[np.ndarray]:
        if isinstance(x, Mapping):
            x = [x[s.name] for s in self.inputs]
        if len(self.inputs) > 1:
            if not isinstance(x, list | tuple) or len(x) != len(self.inputs):
                raise ValueError(f"the model has {len(self.inputs)} inputs "
                                 f"{[s.name for s in self.inputs]}; give a list in that order "
                                 "or a dict keyed by input name")
            arrays = [np.asarray(a) for a in x]
            return [a[None] if a.ndim == len(s.shape) else a
                    for a, s in zip(arrays, self.inputs)]
        if isinstance(x, list | tuple) and len(x) == 1 and np.ndim(x[0]) == len(
                self.input_shape) + 1:
            x = x[0]  # one input given as a one-element list
        x = np.asarray(x)
        return [x[None] if x.ndim == len(self.input_shape) else x]

    @property
    def dtypes(self) -> tuple:
        """The dtype each input is fed in (float32, or a declared integer dtype)."""
        return tuple(self._dtypes)

    def traced(self):
        """The compiled ``fn(*inputs) -> outputs`` (one tensor per model input, each fed in
        its ``InputSpec`` dtype as ``__call__`` feeds it). Called inside another
        ``tf.function`` it is traced once, not once per caller: the robustness sweep calls
        it from every corruption's graph."""
        if self._fn is None:
            self._build(tf.float32)
        return self._fn

    def __call__(self, x: tf.Tensor | ArrayLike | Sequence | Mapping) -> np.ndarray:
        """Run the model on ``x`` (any batch size) and return its outputs as float NumPy."""
        arrays = self._arrays(x)
        fn = self.traced()
        arrays = [a.astype(d.as_numpy_dtype, copy=False) for a, d in zip(arrays, self._dtypes)]
        n = len(arrays[0])
        outs = [fn(*(tf.constant(a[i:i + self.batch_size]) for a in arrays)).numpy()
                for i in range(0, n, self.batch_size)]
        return np.concatenate(outs, axis=0)


def select_output(out: _T | Sequence[_T] | Mapping[str, _T], output: int | str | None,
                  model: keras.Model) -> _T:
    """Pick one output from a model's outputs (a tensor, a list or a dict) by index or name."""
    if isinstance(out, dict):
        keys = list(out)
        if output is None:
            return out[keys[0]]
        return out[keys[output] if isinstance(output, int) else output]
    if isinstance(out, list | tuple):
        idx = 0 if output is None else output
        if isinstance(idx, str):
            idx = output_names(model).index(idx)
        return out[idx]
    return out


def validate_output(model: keras.Model, output: int | str | None, n_outputs: int,
                    keys: list[str] | None = None) -> None:
    """Raise ValueError unless ``output`` names one of the model's ``n_outputs`` outputs."""
    if output is None:
        return
    names = keys if keys is not None else output_names(model)
    if isinstance(output, bool) or not isinstance(output, int | str):
        raise ValueError(f"output must be an index or a name; got {output!r}")
    if isinstance(output, int) and not 0 <= output < n_outputs:
        raise ValueError(
            f"output index {output} is out of range; the model has {n_outputs} output(s): "
            f"indices 0..{n_outputs - 1}, names {names}"
        )
    if isinstance(output, str) and output not in names:
        raise ValueError(f"unknown output {output!r}; the model's outputs are {names}")


def output_names(model: keras.Model) -> list[str]:
    """Names of a model's outputs, in order (the layer that produces each output)."""
    outs = getattr(model, "outputs", None) or []
    names: list[str] = []
    for t in outs:
        hist = getattr(t, "_keras_history", None)
        names.append(hist.operation.name if hist is not None else getattr(t, "name", "output"))
    return names
