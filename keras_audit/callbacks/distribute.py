"""Where the callbacks run: which process of a ``tf.distribute`` cluster writes, and building a
model that ``fit()`` has not built yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit.callbacks.samples import input_array, input_spec

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData


def is_chief(model: keras.Model | None = None) -> bool:
    """Whether this process is the one that writes under the active ``tf.distribute`` strategy.

    The strategy is the one in scope, else the one ``model`` was created under. Its cluster
    resolver names this task: the ``chief`` task writes, or worker 0 when the cluster has no
    chief; evaluators and parameter servers never do. Without a multi-worker cluster (no
    strategy, ``MirroredStrategy``, one worker) the process is the chief.

    Args:
        model: the model being trained (its ``distribute_strategy`` is used when no strategy is
            in scope, as when Keras calls callbacks or a custom loop runs outside ``scope()``).

    Returns:
        ``True`` when this process should write summaries.
    """
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    else:
        strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    if task_type == "worker":
        try:
            jobs = resolver.cluster_spec().jobs
        except Exception:  # a resolver without a cluster spec: trust the worker index
            jobs = []
        return "chief" not in jobs and int(task_id or 0) == 0
    return False


def warm_up_allowed(model: keras.Model | None) -> bool:
    """Whether the callbacks may trace their compiled work on their worker thread while the
    first epoch trains: only outside ``tf.distribute`` (a strategy's scope and its replica
    context belong to the thread that entered them), so under a strategy the tracing stays on
    the training thread at the first logged epoch, as before."""
    if tf.distribute.has_strategy():
        return False
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    return strategy is None or strategy is tf.distribute.get_strategy()


def ensure_built(model: keras.Model, validation_data: ValidationData | None) -> bool:
    """Build a model that ``fit()`` has not built yet, from the validation inputs' shape.

    A ``Sequential`` model without ``keras.Input`` is built by its first training batch, which
    comes after ``on_train_begin``; the callbacks need its layers then. Building it here from
    ``(None, *x.shape[1:])`` does what that first call would do (``Model.build``, or one call
    on a zero batch for models whose ``build`` cannot infer the graph), creating the same
    weights from the same initialisers before any training step, so training is unchanged.
    Datasets are taken as batched, as ``fit()`` requires.

    Args:
        model: the model being trained.
        validation_data: the callback's validation data (``None``: nothing to build from).

    Returns:
        Whether the model is built now (``False``: no data to take the shape from).
    """
    if model.built:  # Keras sets it once the layers have weights (keras.Input, build, a call)
        return True
    if validation_data is None:
        return False
    if isinstance(validation_data, tf.data.Dataset):
        spec = input_spec(validation_data.element_spec)
        if not isinstance(spec, tf.TensorSpec):
            return False
        shape = tuple(spec.shape)[1:]
        dtype = spec.dtype.name
    else:
        x = input_array(validation_data)
        if not hasattr(x, "shape") or len(x.shape) < 2:
            return False
        shape = tuple(x.shape)[1:]
        dtype = "float32"
    if any(d is None for d in shape):
        return False
    try:
        model.build((None, *shape))
    except Exception:  # noqa: BLE001 - a subclassed build() that cannot infer: call it
        model(np.zeros((1, *shape), dtype), training=False)
    return bool(model.built)
