"""The classes a model predicts, read from its outputs (the one place the callbacks do it)."""

from __future__ import annotations

import numpy as np

from keras_audit.explain import predicted_classes as engine_predicted_classes


def predicted_classes(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and their confidence from a model's outputs.

    Args:
        outputs: ``(N, classes)`` probabilities, or ``(N,)`` / ``(N, 1)`` for one sigmoid unit
            (class 1 when above 0.5); extra axes are flattened.

    Returns:
        ``(int64 class ids (N,), float64 confidence of that class (N,))``.
    """
    out = np.asarray(outputs, np.float64)
    if out.ndim == 1:
        out = out[:, None]
    out = out.reshape(len(out), -1)
    pred = engine_predicted_classes(out)
    if out.shape[1] == 1:  # one sigmoid unit: the confidence of the class it predicts
        return pred, np.where(pred == 1, out[:, 0], 1.0 - out[:, 0])
    return pred, out[np.arange(len(out)), pred]
