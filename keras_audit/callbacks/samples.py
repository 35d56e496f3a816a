"""The validation samples a callback shows: reading ``validation_data`` and choosing fixed,
class-balanced samples from it.

``validation_data`` is ``(x, y)`` (labels as ids or one-hot), ``(x, y, w)``, ``x`` alone, or a
``tf.data.Dataset`` of those; ``x`` may be a dict of inputs (``{"image": x}``), which is read as
the model's single input: the entry named like it, else the only entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit.explain import balanced_order
from keras_audit.explain.forward import check_batch, model_input_shape

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
        x: float32 batch ``(N, *input_shape)``.
        y: int class ids ``(N,)``, or ``None`` when the data had no labels.
        index: each sample's position in the validation data (or in the part of a dataset read).
    """

    x: np.ndarray
    y: np.ndarray | None
    index: np.ndarray

    def head(self, n: int) -> Samples:
        """The first ``n`` samples (the balanced order keeps any prefix balanced)."""
        return Samples(self.x[:n], None if self.y is None else self.y[:n], self.index[:n])


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
    if not isinstance(x, dict):
        return x
    names = _input_names(model)
    for name in names[:1] if len(names) == 1 else []:
        if name in x:
            return x[name]
    if len(x) == 1:
        return next(iter(x.values()))
    raise ValueError(
        f"validation inputs are a dict with entries {sorted(map(str, x))}; keras_audit explains "
        f"single-input models: give the model's one input"
        + (f" under its name {names[0]!r}" if len(names) == 1 else "")
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


def _as_labels(y: Any, n: int) -> np.ndarray:
    """Class ids from ids ``(N,)``, ``(N, 1)`` or one-hot/probabilities ``(N, C)``."""
    if isinstance(y, tf.Tensor):
        y = y.numpy()
    y = np.asarray(y)
    if y.dtype == object:
        raise ValueError("validation labels are an object array; give class ids or one-hot rows")
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
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        raise ValueError("validation labels must be class ids or one-hot rows; got fractions")
    if y.dtype.kind not in "iufb":
        raise ValueError(f"validation labels must be numeric class ids; got dtype {y.dtype}")
    return y.astype(np.int64)


def _read_dataset(ds: tf.data.Dataset, model: keras.Model, limit: int):
    """Up to ``limit`` elements of a dataset of ``x`` or ``(x, y[, w])``, batched or not."""
    input_rank = len(model_input_shape(model))
    xs, ys, count, labelled = [], [], 0, None
    for elem in ds:
        if isinstance(elem, list | tuple):
            x, y = elem[0], (elem[1] if len(elem) > 1 else None)
        else:
            x, y = elem, None
        x = np.asarray(single_input(x, model))
        single = x.ndim == input_rank
        if single:
            x = x[None]
        if labelled is None:
            labelled = y is not None
        if labelled:
            y = np.asarray(y)
            y = y[None] if single else y
            ys.append(y)
        xs.append(x)
        count += len(x)
        if count >= limit:
            break
    if not xs:
        raise ValueError("the validation dataset is empty")
    try:
        x = np.concatenate(xs)
    except ValueError as exc:
        raise ValueError(f"validation dataset batches have inconsistent shapes: {exc}") from None
    return x, (np.concatenate(ys) if labelled else None)


def select_samples(validation_data: ValidationData, num_samples: int, model: keras.Model,
                   seed: int = 0) -> Samples:
    """Choose ``num_samples`` fixed, class-balanced, deterministic samples.

    Args:
        validation_data: ``(x, y)`` (labels as ids or one-hot), ``x`` alone, or a
            ``tf.data.Dataset`` of ``(x, y)`` or ``x`` elements, batched or not (at most
            2048 elements are read from it); ``x`` may be a dict holding the model's one input.
        num_samples: how many to choose; fewer when the data has fewer.
        model: the model the samples must fit.
        seed: seeds the choice.

    Returns:
        ``Samples`` in the balanced order (class 0, class 1, ..., class 0, ...).

    Raises:
        ValueError: the data's type or shape does not fit the model, or the labels are not
            class ids.
    """
    model_input_shape(model)  # an unbuilt or multi-input model is refused first
    if isinstance(validation_data, tf.data.Dataset):
        x, y = _read_dataset(validation_data, model, DATASET_SCAN)
    else:
        x, y = split(validation_data)
        x = single_input(x, model)
        if x is None or isinstance(x, str) or not hasattr(x, "__len__"):
            raise ValueError(
                "validation_data must be (x, y), x alone (a NumPy array or tensor, or a dict "
                "holding the model's one input), or a tf.data.Dataset of (x, y) batches; got "
                f"{type(validation_data).__name__}"
            )
    x = check_batch(model, x, what="validation x")
    if x.dtype.kind not in "uif":
        raise ValueError(f"validation x must be numeric; got dtype {x.dtype}")
    labels = None if y is None else _as_labels(y, len(x))
    order = balanced_order(labels, num_samples, seed=seed, n_pool=len(x))
    return Samples(
        x=x[order].astype(np.float32),
        y=None if labels is None else labels[order],
        index=order,
    )
