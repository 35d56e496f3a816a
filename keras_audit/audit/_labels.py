"""Reading labels and model outputs the same way in every audit analysis.

A classifier may end in a softmax ``(N, C)`` or in one sigmoid unit ``(N, 1)``; labels may come
as class ids ``(N,)`` or one-hot ``(N, C)``. ``label_spec`` checks the labels against the output
width before any work is done; ``read_outputs`` then turns the model's outputs into class
probabilities and predicted classes (or regression predictions).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from keras_audit.explain import predicted_classes

TASKS = ("classification", "binary", "regression")


@dataclass
class LabelSpec:
    """What the labels say about the task.

    Attributes:
        task: ``"classification"`` (C > 1 outputs), ``"binary"`` (one sigmoid unit) or
            ``"regression"``.
        n_classes: number of classes (2 for binary), or the number of regression outputs.
        y_raw: the labels as given (as a NumPy array), for the model's own loss.
        y_true: class ids ``(N,)`` for classifiers, float targets for regression (shaped like
            the outputs).
        one_hot: the labels were given one-hot.
    """

    task: str
    n_classes: int
    y_raw: np.ndarray
    y_true: np.ndarray
    one_hot: bool


@dataclass
class Outputs:
    """A model's outputs read against a ``LabelSpec``.

    Attributes:
        raw: the outputs as the model returns them.
        probs: class probabilities ``(N, C)`` (``(N, 2)`` for binary); ``None`` for regression.
        y_pred: predicted class ids, or the regression predictions.
        transform: how ``probs`` were obtained from ``raw``: ``"none"``, ``"softmax"``,
            ``"sigmoid"`` or ``"renormalised"``.
    """

    raw: np.ndarray
    probs: np.ndarray | None
    y_pred: np.ndarray
    transform: str


def as_label_array(y, n: int, what: str = "y") -> np.ndarray:
    """``y`` as a numeric NumPy array with ``n`` rows and no NaN; ValueError otherwise."""
    if hasattr(y, "numpy"):
        y = y.numpy()
    try:
        y = np.asarray(y)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{what} could not be read as an array: {exc}") from None
    if y.dtype == object or y.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric (class ids, one-hot rows or targets); "
                         f"got dtype {y.dtype}")
    if y.ndim == 0 or len(y) != n:
        raise ValueError(f"x has {n} samples but {what} has "
                         f"{'no length' if y.ndim == 0 else len(y)}; they must match")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return y


def _integral(y: np.ndarray) -> bool:
    return y.dtype.kind in "biu" or bool(np.all(np.mod(y, 1) == 0))


def label_spec(y: np.ndarray, out_shape: tuple, task: str | None = None) -> LabelSpec:
    """Check labels against the model's output shape (without the batch axis) and infer the task.

    Rules: one output unit and labels in {0, 1} -> binary; several output units and class ids
    in ``[0, C)`` or one-hot rows of width C -> classification; float targets shaped like the
    outputs -> regression. ``task`` forces a choice.

    Raises:
        ValueError: the labels do not fit the outputs (class ids out of range, one-hot of the
            wrong width, a shape mismatch), an unknown ``task``, or outputs that are not one
            score vector per sample.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choices: {list(TASKS)} or None (infer)")
    out_shape = tuple(out_shape)
    if len(out_shape) > 1:
        raise ValueError(f"the model's output has shape {(None, *out_shape)}; the audit needs "
                         "one score vector per sample (N,) or (N, C)")
    width = out_shape[0] if out_shape else 1
    y_flat = y.reshape(len(y)) if (y.ndim == 2 and y.shape[1] == 1) else y
    if width == 1:
        binary_labels = y_flat.ndim == 1 and _integral(y_flat) and set(
            np.unique(y_flat).tolist()) <= {0, 1}
        if task == "binary" or (task is None and binary_labels):
            if not binary_labels:
                raise ValueError("task='binary' needs labels in {0, 1} of shape (N,) or (N, 1); "
                                 f"got shape {y.shape} with values {np.unique(y)[:5]}")
            return LabelSpec("binary", 2, y, y_flat.astype(np.int64), False)
        if task == "classification":
            raise ValueError("the model has one output unit: use task='binary' (sigmoid) or "
                             "'regression'")
        if y_flat.ndim != 1:
            raise ValueError(f"the model has one output unit but y has shape {y.shape}")
        return LabelSpec("regression", 1, y, y_flat.astype(np.float64), False)
    # several output units
    if task == "regression":
        if y.shape[1:] != (width,):
            raise ValueError(f"regression targets must have shape (N, {width}) to match the "
                             f"outputs; got {y.shape}")
        return LabelSpec("regression", width, y, y.astype(np.float64), False)
    if task == "binary":
        raise ValueError(f"task='binary' needs a model with one sigmoid unit; this one has "
                         f"{width} outputs (use 'classification')")
    if y.ndim == 1:
        if not _integral(y):
            raise ValueError(f"the model has {width} outputs, so y must be class ids in "
                             f"[0, {width}) or one-hot rows; got non-integer values")
        ids = y.astype(np.int64)
        bad = sorted({int(v) for v in np.unique(ids) if not 0 <= v < width})
        if bad:
            raise ValueError(f"class id(s) {bad[:10]} out of range; the model has {width} "
                             f"classes: ids 0..{width - 1}")
        return LabelSpec("classification", width, y, ids, False)
    if y.ndim == 2 and y.shape[1] == width:
        one_hot = _integral(y) and set(np.unique(y).tolist()) <= {0, 1} and bool(
            np.all(y.sum(axis=1) == 1))
        if one_hot:
            return LabelSpec("classification", width, y, y.argmax(axis=1).astype(np.int64), True)
        if task == "classification":
            raise ValueError("y has shape (N, C) but its rows are not one-hot")
        return LabelSpec("regression", width, y, y.astype(np.float64), False)
    raise ValueError(f"the model has {width} outputs; y must be class ids (N,) or one-hot "
                     f"(N, {width}); got shape {y.shape}")


def read_outputs(raw: np.ndarray, spec: LabelSpec) -> Outputs:
    """Turn the model's outputs into probabilities and predictions according to ``spec``."""
    raw = np.asarray(raw)
    n = len(raw)
    if spec.task == "regression":
        pred = raw.reshape(n) if spec.n_classes == 1 else raw.reshape(n, spec.n_classes)
        return Outputs(raw, None, pred.astype(np.float64), "none")
    out = raw.astype(np.float64).reshape(n, -1)
    in_unit = bool(np.all((out >= 0) & (out <= 1)))
    if spec.task == "binary":
        p = out[:, 0]
        transform = "none"
        if not in_unit:  # a linear unit trained with from_logits=True
            p, transform = 1.0 / (1.0 + np.exp(-p)), "sigmoid"
        probs = np.stack([1.0 - p, p], axis=1)
        return Outputs(raw, probs, predicted_classes(p), transform)
    if in_unit and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        probs, transform = out, "none"
    elif in_unit and np.all(out.sum(axis=1) > 0):
        probs, transform = out / out.sum(axis=1, keepdims=True), "renormalised"
    else:
        e = np.exp(out - out.max(axis=1, keepdims=True))
        probs, transform = e / e.sum(axis=1, keepdims=True), "softmax"
    return Outputs(raw, probs, predicted_classes(out), transform)


def compiled_loss_fn(model: keras.Model, output: int | str | None = None):
    """The loss the model was compiled with, for its first output (or ``output``), or ``None``.

    Returns a callable ``(y_true, y_pred) -> per-sample or scalar loss``.
    """
    spec = getattr(model, "loss", None)
    if spec is None:
        return None
    if isinstance(spec, list | tuple):
        i = output if isinstance(output, int) else 0
        if isinstance(output, str):
            from keras_audit.explain.forward import output_names

            names = output_names(model)
            i = names.index(output) if output in names else 0
        spec = spec[i] if i < len(spec) else None
    elif isinstance(spec, dict):
        if isinstance(output, str):
            spec = spec.get(output)
        else:
            values = list(spec.values())
            i = output or 0
            from keras_audit.explain.forward import output_names

            names = output_names(model)
            if names and i < len(names) and names[i] in spec:
                spec = spec[names[i]]
            else:
                spec = values[i] if i < len(values) else None
    if spec is None:
        return None
    try:
        return keras.losses.get(spec)
    except (ValueError, TypeError):
        return spec if callable(spec) else None


def default_loss_fn(spec: LabelSpec, from_logits: bool):
    """A crossentropy matching the output and labels (MSE for regression)."""
    if spec.task == "regression":
        return keras.losses.MeanSquaredError()
    if spec.task == "binary":
        return keras.losses.BinaryCrossentropy(from_logits=from_logits)
    if spec.one_hot:
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def loss_name(fn) -> str:
    """The name Keras gives a loss (function or ``Loss`` object)."""
    return getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__


def labels_for_loss(fn, y_raw: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """``y_raw`` as the loss ``fn`` takes it next to the model's outputs ``raw`` (done once).

    Labels in the other encoding than the loss takes are converted, as a user who audits a
    sparse-loss model with one-hot labels (or the reverse) expects. A one-unit output
    ``(N, 1)`` with labels ``(N,)`` gets the labels as ``(N, 1)``, the reshaping
    ``model.evaluate`` does before calling a loss function.
    """
    y = np.asarray(y_raw)
    name = loss_name(fn).lower()
    if raw.ndim == 2 and raw.shape[1] > 1:
        if "sparse" in name and y.ndim == 2 and y.shape == raw.shape:
            y = y.argmax(axis=1)
        elif "categorical" in name and "sparse" not in name and y.ndim == 1:
            y = np.eye(raw.shape[1], dtype=np.float32)[y.astype(np.int64)]
    if raw.ndim == 2 and raw.shape[1] == 1 and y.ndim == 1:
        y = y[:, None]
    if y.dtype.kind in "biu" and np.asarray(raw).dtype.kind == "f":
        y = y.astype(np.asarray(raw).dtype) if raw.shape == y.shape else y
    return y


def mean_loss(fn, y: np.ndarray, raw: np.ndarray) -> float:
    """``fn(y, outputs)`` averaged over samples; ``y`` from ``labels_for_loss``."""
    value = fn(y, raw)
    return float(np.mean(keras.ops.convert_to_numpy(value)))


def regularization_penalty(model: keras.Model) -> float:
    """The weight-regularisation terms ``model.evaluate`` adds to its loss, at current weights."""
    total = 0.0
    for v in model.trainable_weights:
        reg = getattr(v, "regularizer", None)
        if reg is not None:
            total += float(keras.ops.convert_to_numpy(reg(v)))
    return total


def class_names_for(class_names, spec: LabelSpec) -> list[str]:
    """One display name per class (classifiers) or per output (regression).

    Args:
        class_names: ``None`` (``"0"``, ``"1"``, ... or ``output_<i>``), a sequence of names in
            class-id order, or a dict ``{class id: name}`` covering every id ``0..C-1``.
        spec: the labels' ``LabelSpec`` (the number of classes or outputs).

    Raises:
        ValueError: one string instead of a sequence, the wrong number of names, a dict whose
            keys are not exactly the class ids, or duplicate class names.
    """
    what = "regression output(s)" if spec.task == "regression" else "classes"
    if class_names is None:
        if spec.task == "regression":
            return [f"output_{i}" for i in range(spec.n_classes)]
        return [str(i) for i in range(spec.n_classes)]
    if isinstance(class_names, str):
        raise ValueError("class_names must be a sequence of names, not one string")
    if isinstance(class_names, dict):
        try:
            ids = {int(k): str(v) for k, v in class_names.items()}
        except (TypeError, ValueError):
            raise ValueError(f"class_names as a dict maps class ids (integers) to names; got "
                             f"keys {list(class_names)}") from None
        if sorted(ids) != list(range(spec.n_classes)):
            raise ValueError(f"class_names as a dict must have the keys 0..{spec.n_classes - 1} "
                             f"(one per {what[:-3] if what.endswith('(s)') else 'class'}); got "
                             f"{sorted(ids)}")
        names = [ids[i] for i in range(spec.n_classes)]
    else:
        names = [str(c) for c in class_names]  # read once: a generator is used up
    if len(names) != spec.n_classes:
        raise ValueError(f"class_names has {len(names)} names but the model has "
                         f"{spec.n_classes} {what}")
    if spec.task != "regression" and len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    return names
