"""Scoring a model's outputs on changed inputs against the clean ones (robustness, attacks)."""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_audit.audit._labels import (
    LabelSpec,
    compiled_loss_fn,
    default_loss_fn,
    labels_for_loss,
    loss_name,
    mean_loss,
    read_outputs,
)


class OutputScorer:
    """Accuracy, loss, flip rate and confidence of raw outputs, next to the clean outputs.

    Args:
        model: the model (its compiled loss is used; an uncompiled model gets a crossentropy
            that matches its output, MSE for regression).
        spec: the labels' ``LabelSpec``.
        clean_raw: the model's outputs on the clean inputs.
    """

    def __init__(self, model: keras.Model, spec: LabelSpec, clean_raw: np.ndarray) -> None:
        self.spec = spec
        clean = read_outputs(clean_raw, spec)
        self.loss_fn = compiled_loss_fn(model)
        self.loss_name = loss_name(self.loss_fn) if self.loss_fn is not None else None
        if self.loss_fn is None:
            self.loss_fn = default_loss_fn(spec, from_logits=clean.transform in ("sigmoid",
                                                                               "softmax"))
            self.loss_name = loss_name(self.loss_fn) + " (default: model not compiled)"
        self._y = labels_for_loss(self.loss_fn, spec.y_raw, np.asarray(clean_raw))
        self.clean_pred = clean.y_pred
        self.clean = self.score(clean_raw)

    @property
    def classifier(self) -> bool:
        """True for classification and binary tasks."""
        return self.spec.task != "regression"

    def score(self, raw: np.ndarray, rows: np.ndarray | None = None) -> dict[str, float]:
        """``accuracy`` (NaN for regression), ``loss``, ``flip_rate`` (share of predicted
        classes that differ from the clean ones; NaN for regression) and ``mean_confidence``
        (mean top-class probability; NaN for regression) of ``raw``, the outputs on the rows
        ``rows`` of the data (default: all of them)."""
        out = read_outputs(raw, self.spec)
        y = self._y if rows is None else self._y[rows]
        truth = self.spec.y_true if rows is None else self.spec.y_true[rows]
        loss = mean_loss(self.loss_fn, y, np.asarray(raw))
        if not self.classifier:
            return {"accuracy": math.nan, "loss": loss, "flip_rate": math.nan,
                    "mean_confidence": math.nan}
        clean = self.clean_pred if rows is None else self.clean_pred[rows]
        return {"accuracy": float(np.mean(out.y_pred == truth)), "loss": loss,
                "flip_rate": float(np.mean(out.y_pred != clean)),
                "mean_confidence": float(np.mean(out.probs.max(axis=1)))}
