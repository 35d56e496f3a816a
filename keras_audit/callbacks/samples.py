"""The validation samples a callback shows: reading ``validation_data`` and choosing fixed,
class-balanced samples from it.

``validation_data`` is ``(x, y)`` (labels as ids or one-hot), ``(x, y, w)``, ``x`` alone, or a
``tf.data.Dataset`` of those. ``x`` is one array for a single-input model, or a list/tuple (in
``model.inputs`` order) or dict (by input name) of arrays for a model with several inputs; a
dict also holds a single input (``{"image": x}``: the entry named like it, else the only entry).
``y`` of a model with several outputs is what Keras takes: a dict by output name or a list in
output order; the labels of the explained output (``output=``) choose the samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit.explain import LayerInfo, balanced_order, list_layers, map_specs
from keras_audit.explain.forward import (
    InputSpec,
    check_inputs,
    model_inputs,
    output_names,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    from numpy.typing import ArrayLike

    #: what the callbacks take as ``validation_data``: ``(x, y)``, ``x`` alone or a dataset
    ValidationData: TypeAlias = (
        tf.data.Dataset | tuple[tf.Tensor | ArrayLike, ...] | tf.Tensor | ArrayLike
    )

#: how many elements of a ``tf.data.Dataset`` are read, at most, to choose samples from
DATASET_SCAN = 2048


@dataclass
class Samples:
    """The fixed validation samples a callback shows every epoch.

    Attributes:
        x: the first model input's batch ``(N, *input_shape)``: float32, or int32 for integer
            inputs the model reads as token ids (exact, whatever their stored dtype).
        y: int class ids ``(N,)`` of the explained output, or ``None`` when the data had no
            labels (or the explained output's labels are not class ids, e.g. a regression head).
        index: each sample's position in the validation data (or in the part of a dataset read).
        inputs: one batch per model input, in ``model.inputs`` order (``inputs[0]`` is ``x``).
        names: the model's input names, in the same order.
    """

    x: np.ndarray
    y: np.ndarray | None
    index: np.ndarray
    inputs: list[np.ndarray] = field(default_factory=list)
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = [self.x]

    @property
    def feed(self) -> np.ndarray | list[np.ndarray]:
        """What the model and the explainers take: ``x`` for one input, else ``inputs``."""
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    def head(self, n: int) -> Samples:
        """The first ``n`` samples (the balanced order keeps any prefix balanced)."""
        inputs = [a[:n] for a in self.inputs]
        return Samples(inputs[0], None if self.y is None else self.y[:n], self.index[:n],
                       inputs, self.names)


# -- the parts of validation_data ------------------------------------------------------------------
def _input_names(model: keras.Model | None) -> list[str]:
    """The names of a model's inputs (empty when Keras cannot say, e.g. before it is built)."""
    try:
        return [str(t.name) for t in (getattr(model, "inputs", None) or [])]
    except (AttributeError, ValueError):
        return []


def single_input(x: Any, model: keras.Model | None = None) -> Any:
    """The model's one input from ``x``: ``x`` itself, or the entry of a dict of inputs named
    like the model's input (else the dict's only entry).

    Raises:
        ValueError: a dict with several entries, none named like the model's single input.
    """
    if not isinstance(x, Mapping):
        return x
    names = _input_names(model)
    for name in names[:1] if len(names) == 1 else []:
        if name in x:
            return x[name]
    if len(x) == 1:
        return next(iter(x.values()))
    raise ValueError(
        f"validation inputs are a dict with entries {sorted(map(str, x))}; the model has one "
        "input: give it"
        + (f" under its name {names[0]!r}" if len(names) == 1 else " as the dict's only entry")
    )


def split(validation_data: Any) -> tuple[Any, Any]:
    """``(x, y_or_None)`` from ``(x, y)``, ``(x, y, w)`` or ``x`` (arrays, tensors or dicts).

    Raises:
        ValueError: a sequence of another length.
    """
    if isinstance(validation_data, list | tuple):
        if len(validation_data) not in (1, 2, 3):
            raise ValueError(
                "validation_data must be (x, y), x alone, or a tf.data.Dataset of (x, y) "
                f"batches; got a sequence of length {len(validation_data)}"
            )
        x = validation_data[0]
        y = validation_data[1] if len(validation_data) > 1 else None
        return x, y
    return validation_data, None


def input_array(validation_data: Any, model: keras.Model | None = None) -> Any:
    """The inputs of NumPy/tensor ``validation_data`` (the one input of a dict of inputs)."""
    return single_input(split(validation_data)[0], model)


def input_spec(element_spec: Any) -> Any:
    """The ``TypeSpec`` of the inputs of a dataset's elements, or ``None`` when they are
    several inputs."""
    spec = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    if isinstance(spec, dict):
        return next(iter(spec.values())) if len(spec) == 1 else None
    return spec


def model_input_arrays(model: keras.Model, x: Any, specs: list[InputSpec] | None = None,
                       what: str = "validation x") -> list[np.ndarray]:
    """One NumPy batch per model input (``model.inputs`` order) from an array, a list/tuple or
    a dict of arrays.

    Raises:
        ValueError: the inputs' number, names or shapes do not fit the model.
    """
    specs = specs if specs is not None else model_inputs(model)
    if len(specs) == 1:
        x = single_input(x, model)
        if isinstance(x, list | tuple) and len(x) == 1:
            x = x[0]
    elif isinstance(x, list | tuple | Mapping):
        pass
    else:
        raise ValueError(
            f"the model has {len(specs)} inputs {[s.name for s in specs]}; give {what} as a "
            "list/tuple in that order or a dict keyed by input name"
        )
    if x is None or isinstance(x, str) or not (
            isinstance(x, list | tuple | Mapping) or hasattr(x, "__len__")):
        raise ValueError(
            "validation_data must be (x, y), x alone (a NumPy array or tensor, a list or a "
            "dict of them for several inputs), or a tf.data.Dataset of (x, y) batches; got "
            f"{type(x).__name__}"
        )
    return check_inputs(model, x, specs, what=what)


def _n_outputs(model: keras.Model) -> int:
    try:
        outs = model.outputs
    except (AttributeError, ValueError):
        return 1
    return len(outs) if outs else 1


def output_index(model: keras.Model, output: int | str | None) -> int:
    """The position of the explained output among the model's outputs.

    Raises:
        ValueError: ``output`` is not an index or name of one of the model's outputs.
    """
    n = _n_outputs(model)
    names = output_names(model) if n > 1 or output is not None else []
    if output is None:
        return 0
    if isinstance(output, bool) or not isinstance(output, int | str):
        raise ValueError(f"output must be an output's index or name; got {output!r}")
    if isinstance(output, int):
        if not 0 <= output < n:
            raise ValueError(f"output index {output} is out of range; the model has {n} "
                             f"output(s): indices 0..{n - 1}, names {names}")
        return output
    if output not in names:
        raise ValueError(f"unknown output {output!r}; the model's outputs are {names}")
    return names.index(output)


def output_labels(y: Any, model: keras.Model, output: int | str | None = None) -> Any:
    """The labels of the explained output from labels as Keras takes them: a dict by output
    name, a list/tuple in output order, or one array for a single-output model.

    Raises:
        ValueError: a dict without the explained output's name, or a list of the wrong length.
    """
    if y is None:
        return None
    n = _n_outputs(model)
    k = output_index(model, output)
    if isinstance(y, Mapping):
        names = output_names(model)
        name = names[k] if k < len(names) else None
        if name in y:
            return y[name]
        if len(y) == 1:
            return next(iter(y.values()))
        raise ValueError(
            f"validation labels are a dict with keys {sorted(map(str, y))}; the explained "
            f"output is {name!r} (the model's outputs: {names}): key the labels by output name"
        )
    if n > 1 and isinstance(y, list | tuple):
        if len(y) != n:
            raise ValueError(f"validation labels are a list of {len(y)} arrays; the model has "
                             f"{n} outputs {output_names(model)}: give one array per output")
        return y[k]
    return y


def _as_labels(y: Any, n: int) -> np.ndarray | None:
    """Class ids from ids ``(N,)``, ``(N, 1)`` or one-hot/probabilities ``(N, C)``; ``None``
    for the continuous targets of a regression output ``(N,)``/``(N, 1)``."""
    if isinstance(y, tf.Tensor):
        y = y.numpy()
    y = np.asarray(y)
    if y.dtype == object:
        raise ValueError("validation labels are an object array; give class ids or one-hot rows "
                         "(several outputs: a dict by output name or a list in output order)")
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim != 1:
        raise ValueError(
            f"validation labels must be class ids (N,) or one-hot rows (N, classes); got shape "
            f"{y.shape}"
        )
    if len(y) != n:
        raise ValueError(f"validation data has {n} samples but {len(y)} labels")
    if y.dtype.kind not in "iufb":
        raise ValueError(f"validation labels must be numeric class ids; got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        return None  # a regression target: no classes to balance or to caption
    return y.astype(np.int64)


def _numpy(t: Any) -> Any:
    return tf.nest.map_structure(lambda a: np.asarray(a), t)


def _read_dataset(ds: tf.data.Dataset, model: keras.Model, specs: list[InputSpec], limit: int):
    """Up to ``limit`` elements of a dataset of ``x`` or ``(x, y[, w])``, batched or not.

    Returns one array per model input and the labels (a structure like the elements', or
    ``None``).
    """
    xs, ys, count, labelled = [], [], 0, None
    for elem in ds:
        if isinstance(elem, list | tuple):
            x, y = elem[0], (elem[1] if len(elem) > 1 else None)
        else:
            x, y = elem, None
        if len(specs) == 1:
            x = single_input(x, model)
        x = _numpy(x)
        first = np.asarray(x[specs[0].name] if isinstance(x, Mapping) and len(specs) > 1
                           else (x[0] if isinstance(x, list | tuple) else x))
        single = first.ndim == len(specs[0].shape)
        if single:
            x = tf.nest.map_structure(lambda a: a[None], x)
        if labelled is None:
            labelled = y is not None
        if labelled:
            y = _numpy(y)
            ys.append(tf.nest.map_structure(lambda a: a[None], y) if single else y)
        xs.append(model_input_arrays(model, x, specs))
        count += len(xs[-1][0])
        if count >= limit:
            break
    if not xs:
        raise ValueError("the validation dataset is empty")
    try:
        x = [np.concatenate([b[k] for b in xs]) for k in range(len(specs))]
        y = tf.nest.map_structure(lambda *a: np.concatenate(a), *ys) if labelled else None
    except ValueError as exc:
        raise ValueError(f"validation dataset batches have inconsistent shapes: {exc}") from None
    return x, y


def token_inputs(model: keras.Model, specs: list[InputSpec],
                 infos: list[LayerInfo] | None = None) -> list[bool]:
    """Whether each input holds integer token ids (read by an ``Embedding``), by the engine's
    rule (``explain.map_specs``); ``infos``: ``explain.list_layers(model)`` when known."""
    if not any(s.integer for s in specs):
        return [False] * len(specs)
    infos = infos if infos is not None else list_layers(model)
    return [m.kind == "tokens" for m in map_specs(model, specs, infos)]


def select_samples(validation_data: ValidationData, num_samples: int, model: keras.Model,
                   seed: int = 0, output: int | str | None = None,
                   infos: list[LayerInfo] | None = None) -> Samples:
    """Choose ``num_samples`` fixed, class-balanced, deterministic samples.

    Args:
        validation_data: ``(x, y)`` (labels as ids or one-hot; for several outputs a dict by
            output name or a list in output order), ``x`` alone, or a ``tf.data.Dataset`` of
            ``(x, y)`` or ``x`` elements, batched or not (at most 2048 elements are read from
            it); ``x`` is an array, or a list/dict of arrays for several inputs.
        num_samples: how many to choose; fewer when the data has fewer.
        model: the model the samples must fit.
        seed: seeds the choice.
        output: the explained output (index or name; ``None``: the first), whose labels
            balance the choice.
        infos: ``explain.list_layers(model)``, when the caller has it (token ids are told from
            integer pixels with it).

    Returns:
        ``Samples`` in the balanced order (class 0, class 1, ..., class 0, ...).

    Raises:
        ValueError: the data's type or shape does not fit the model, or the labels are not
            class ids.
    """
    specs = model_inputs(model)  # an unbuilt model is refused first
    output_index(model, output)
    if isinstance(validation_data, tf.data.Dataset):
        arrays, y = _read_dataset(validation_data, model, specs, DATASET_SCAN)
    else:
        x, y = split(validation_data)
        arrays = model_input_arrays(model, x, specs)
    for spec, a in zip(specs, arrays):
        if a.dtype.kind not in "uifb":
            label = "validation x" if len(specs) == 1 else f"validation x[{spec.name!r}]"
            raise ValueError(f"{label} must be numeric; got dtype {a.dtype}")
    n = len(arrays[0])
    labels = None if y is None else _as_labels(output_labels(y, model, output), n)
    order = balanced_order(labels, num_samples, seed=seed, n_pool=n)
    ids = token_inputs(model, specs, infos)
    inputs = [a[order].astype(np.int32 if tok else np.float32) for a, tok in zip(arrays, ids)]
    return Samples(
        x=inputs[0],
        y=None if labels is None else labels[order],
        index=order,
        inputs=inputs,
        names=tuple(s.name for s in specs),
    )
