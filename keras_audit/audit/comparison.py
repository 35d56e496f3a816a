"""Comparison with a baseline model (the one being replaced), both on the same data.

Paired differences (candidate minus baseline) with paired-bootstrap CIs (one resample of the
samples scores both models), McNemar's exact test on the discordant pairs for classifiers
(statsmodels), the flipped predictions, and per-group deltas.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn import metrics as skm

from keras_audit.audit._repr import short_repr
from keras_audit.audit.catalog import AuditInputError

#: paired metrics per task, in report order
CLASSIFIER_METRICS = ("accuracy", "macro_f1", "ece")
REGRESSION_METRICS = ("mae", "rmse", "r2")


def load_baseline(baseline: Any, model: keras.Model, x: np.ndarray) -> keras.Model | None:
    """``baseline`` as a model that takes ``x`` and has the candidate's output shape.

    Args:
        baseline: a ``keras.Model``, a path to a saved ``.keras`` model (loaded in safe
            mode), or None.
        model: the candidate model.
        x: the audit inputs (already checked against ``model``).

    Raises:
        AuditInputError: a missing or unreadable file, not a Keras model, the same object as
            the candidate, inputs it cannot take, or an output shape unlike the candidate's.
    """
    from keras_audit.explain.forward import check_batch

    if baseline is None:
        return None
    if isinstance(baseline, str | os.PathLike):
        path = Path(baseline)
        if not path.is_file():
            raise AuditInputError(f"baseline model file not found: {path}")
        try:
            baseline = keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:  # Keras raises many types for unreadable files
            text = " ".join(str(exc).split())
            raise AuditInputError(f"could not load the baseline model {path}: {text}") from None
    if not isinstance(baseline, keras.Model):
        raise AuditInputError(f"baseline must be a keras.Model or a path to one; got "
                              f"{type(baseline).__name__}")
    if baseline is model:
        raise AuditInputError("baseline is the audited model itself; give the model it replaces")
    try:
        check_batch(baseline, x[:1], "x (for the baseline)")
    except ValueError as exc:
        raise AuditInputError(f"the baseline cannot take x: {exc}") from None
    if tuple(baseline.outputs[0].shape[1:]) != tuple(model.outputs[0].shape[1:]):
        raise AuditInputError(f"the baseline's output shape {tuple(baseline.outputs[0].shape)} "
                              f"differs from the model's {tuple(model.outputs[0].shape)}")
    return baseline


@dataclass
class ComparisonResult:
    """What ``compare`` measured.

    Attributes:
        task: the task.
        candidate, baseline: each model's metrics.
        delta: candidate minus baseline, per metric.
        delta_ci95: the paired-bootstrap 95% interval of each delta.
        mcnemar: classifiers: ``b`` (only the candidate right), ``c`` (only the baseline
            right), ``statistic``, ``p_value`` (exact binomial), else None.
        flips: classifiers: indices whose predicted class differs, ``fixed`` (now right),
            ``broken`` (now wrong).
    """

    task: str
    candidate: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)
    delta: dict = field(default_factory=dict)
    delta_ci95: dict = field(default_factory=dict)
    mcnemar: dict | None = None
    flips: dict | None = None

    __repr__ = short_repr  # shapes and sizes, not the arrays


def scores(task: str, y_true: np.ndarray, y_pred: np.ndarray,
           probs: np.ndarray | None) -> dict[str, float | None]:
    """The paired metrics of one model (``CLASSIFIER_METRICS`` or ``REGRESSION_METRICS``)."""
    from keras_audit.audit.performance_analysis import expected_calibration_error

    if task == "regression":
        y2 = np.asarray(y_true, float).reshape(len(y_true), -1)
        p2 = np.asarray(y_pred, float).reshape(len(y_pred), -1)
        return {"mae": float(skm.mean_absolute_error(y2, p2)),
                "rmse": float(math.sqrt(skm.mean_squared_error(y2, p2))),
                "r2": float(skm.r2_score(y2, p2)) if len(y2) > 1 else None}
    return {"accuracy": float(np.mean(y_pred == y_true)),
            "macro_f1": float(skm.f1_score(y_true, y_pred, labels=np.unique(y_true),
                                           average="macro", zero_division=0)),
            "ece": float(expected_calibration_error(probs, y_true)[0])}


def compare(task: str, y_true: np.ndarray, cand_pred: np.ndarray, cand_probs: np.ndarray | None,
            base_pred: np.ndarray, base_probs: np.ndarray | None, n_bootstrap: int = 200,
            seed: int = 0) -> ComparisonResult:
    """Paired comparison of two models' predictions on the same samples.

    Args:
        task: ``"classification"``, ``"binary"`` or ``"regression"``.
        y_true: class ids or regression targets.
        cand_pred, cand_probs: the candidate's predictions (and class probabilities).
        base_pred, base_probs: the baseline's.
        n_bootstrap: paired resamples for the CIs of the deltas (0: none).
        seed: seeds the resampling.

    Returns:
        A ``ComparisonResult``.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    res = ComparisonResult(task=task)
    res.candidate = scores(task, y_true, cand_pred, cand_probs)
    res.baseline = scores(task, y_true, base_pred, base_probs)
    res.delta = {m: _sub(res.candidate[m], res.baseline[m]) for m in res.candidate}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        draws = {m: [] for m in res.delta}
        for _ in range(int(n_bootstrap)):  # one resample scores both models: paired
            i = rng.integers(0, len(y_true), len(y_true))
            a = scores(task, y_true[i], cand_pred[i], None if cand_probs is None else cand_probs[i])
            b = scores(task, y_true[i], base_pred[i], None if base_probs is None else base_probs[i])
            for m in draws:
                d = _sub(a[m], b[m])
                if d is not None:
                    draws[m].append(d)
        res.delta_ci95 = {m: ([float(v) for v in np.percentile(d, [2.5, 97.5])] if d else None)
                          for m, d in draws.items()}
    if task != "regression":
        cand_ok, base_ok = cand_pred == y_true, base_pred == y_true
        b = int(np.sum(cand_ok & ~base_ok))
        c = int(np.sum(~cand_ok & base_ok))
        table = [[int(np.sum(cand_ok & base_ok)), b], [c, int(np.sum(~cand_ok & ~base_ok))]]
        test = mcnemar(table, exact=True)
        res.mcnemar = {"b_only_candidate_right": b, "c_only_baseline_right": c,
                       "discordant": b + c, "statistic": float(test.statistic),
                       "p_value": float(test.pvalue), "exact": True,
                       "method": "McNemar's exact test (binomial on the discordant pairs, "
                       "statsmodels)"}
        flipped = np.flatnonzero(cand_pred != base_pred)
        res.flips = {"count": int(len(flipped)), "rate": float(len(flipped) / len(y_true)),
                     "fixed": int(np.sum(cand_ok[flipped] & ~base_ok[flipped])),
                     "broken": int(np.sum(~cand_ok[flipped] & base_ok[flipped])),
                     "indices": flipped.tolist()}
    return res


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a - b)
