"""Performance per group: the task's metrics for each value of each attribute, with bootstrap
CIs, and their spread across groups (min, max, largest difference, smallest ratio).

The by-group computation, the bootstrap and the across-group statistics are fairlearn's
``MetricFrame`` (``difference`` and ``ratio`` with ``method="between_groups"``); this module
chooses the metrics, leaves small groups out of the ranking and lays the result out for the
report. Groups smaller than ``min_group_size`` are reported but not ranked: their metrics
are too noisy to name them the worst.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keras_audit.audit._repr import short_repr
from keras_audit.audit.catalog import AuditInputError

if TYPE_CHECKING:
    import keras
    from numpy.typing import ArrayLike

#: groups smaller than this are shown and not ranked
MIN_GROUP_SIZE = 20
#: the across-group statistics, as fairlearn's MetricFrame defines them
STATISTICS = ("min", "max", "max_difference", "min_ratio")
#: keys of ``report.json["groups"]`` that are not attributes (an attribute may not use them)
RESERVED = ("status", "note", "attributes", "metrics", "min_group_size", "bootstrap",
            "headline", "figures")


@dataclass
class GroupResult:
    """What ``group_metrics`` measured.

    Attributes:
        metrics: the metric names, in column order.
        table: one row per attribute and group: ``attribute``, ``group``, ``n``, ``ranked``,
            then per metric its value, ``<metric>_ci_low`` and ``<metric>_ci_high``.
        summary: one row per attribute and statistic (``min``, ``max``, ``max_difference``,
            ``min_ratio``) over the ranked groups; ``argmin`` / ``argmax`` name the groups.
        content: the same as JSON (``report.json["groups"]``).
    """

    metrics: list[str]
    table: pd.DataFrame
    summary: pd.DataFrame
    content: dict = field(default_factory=dict)

    __repr__ = short_repr  # shapes and sizes, not the arrays


def check_groups(groups: Any, n: int) -> dict[str, np.ndarray] | None:
    """``groups`` as ``{attribute: (N,) string labels}``, or None.

    Args:
        groups: a dict name -> (N,) labels, or a pandas DataFrame (one column per attribute).
        n: the number of audited samples.

    Raises:
        AuditInputError: not a dict or DataFrame, an empty or reserved attribute name, labels
            that are not 1-D of length ``n``, or missing labels (None / NaN).
    """
    if groups is None:
        return None
    if isinstance(groups, pd.DataFrame):
        groups = {str(c): groups[c].to_numpy() for c in groups.columns}
    if not isinstance(groups, Mapping) or not groups:
        raise AuditInputError("groups must be a non-empty dict {attribute: (N,) labels} or a "
                              f"pandas DataFrame; got {type(groups).__name__}")
    out = {}
    for name, labels in groups.items():
        if not isinstance(name, str) or not name or "." in name or name in RESERVED:
            raise AuditInputError(f"group attribute names must be non-empty strings without "
                                  f"'.' and not one of {list(RESERVED)}; got {name!r}")
        a = np.asarray(labels)
        if a.ndim != 1 or len(a) != n:
            raise AuditInputError(f"groups[{name!r}] must have one label per sample, shape "
                                  f"({n},); got shape {a.shape}")
        if a.dtype.kind == "f" and np.isnan(a).any() or a.dtype.kind == "O" and any(
                v is None or (isinstance(v, float) and math.isnan(v)) for v in a):
            raise AuditInputError(f"groups[{name!r}] has missing labels (None or NaN); give "
                                  "every sample a group (e.g. 'unknown')")
        out[name] = a.astype(str)
    return out


def _metric_functions(task: str, names: list[str], probs: np.ndarray | None
                      ) -> tuple[dict[str, Callable], dict[str, dict]]:
    """The task's metrics as MetricFrame functions, and their per-sample parameters."""
    from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate
    from sklearn import metrics as skm

    from keras_audit.audit.performance_analysis import expected_calibration_error

    if task == "regression":
        def r2(yt, yp):  # R² is undefined on one sample
            return float(skm.r2_score(yt, yp)) if len(yt) > 1 else float("nan")

        return {"mae": skm.mean_absolute_error, "r2": r2}, {}

    def macro_f1(yt, yp):  # over the classes this group has, as the overall macro-F1
        return float(skm.f1_score(yt, yp, labels=np.unique(yt), average="macro",
                                  zero_division=0))

    def ece(yt, yp, idx):  # idx: the samples' rows of probs, resampled with them
        return expected_calibration_error(probs[np.asarray(idx, np.int64)], yt)[0]

    def recall_of(c: int) -> Callable:
        def recall(yt, yp):
            pos = yt == c
            return float(np.mean(yp[pos] == c)) if pos.any() else float("nan")

        return recall

    fns: dict[str, Callable] = {"accuracy": skm.accuracy_score, "macro_f1": macro_f1}
    if task == "binary":
        fns["selection_rate"] = lambda yt, yp: float(selection_rate(yt, yp, pos_label=1))
        fns["tpr"] = lambda yt, yp: float(true_positive_rate(yt, yp, pos_label=1))
        fns["fpr"] = lambda yt, yp: float(false_positive_rate(yt, yp, pos_label=1))
    for c, name in enumerate(names):
        fns[f"recall_{name}"] = recall_of(c)
    fns["ece"] = ece
    return fns, {"ece": {"idx": np.arange(len(probs))}}


def group_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None,
                  groups: Mapping[str, np.ndarray], names: list[str], n_bootstrap: int = 200,
                  seed: int = 0, min_group_size: int = MIN_GROUP_SIZE) -> GroupResult:
    """Per attribute and group: the task's metrics with bootstrap CIs, and their spread.

    Args:
        task: ``"classification"``, ``"binary"`` or ``"regression"``.
        y_true, y_pred: class ids (classifiers) or targets and predictions (regression).
        probs: class probabilities ``(N, C)`` (classifiers), else None.
        groups: ``{attribute: (N,) labels}`` (see ``check_groups``).
        names: class names (one per class).
        n_bootstrap: bootstrap resamples (fairlearn's ``n_boot``; 0 turns the CIs off).
        seed: seeds the bootstrap.
        min_group_size: groups with fewer samples are reported and not ranked.

    Returns:
        A ``GroupResult``.
    """
    from fairlearn.metrics import MetricFrame

    y_true = np.asarray(y_true).reshape(len(y_true), -1)[:, 0] if task == "regression" \
        else np.asarray(y_true)
    y_pred = np.asarray(y_pred).reshape(len(y_pred), -1)[:, 0] if task == "regression" \
        else np.asarray(y_pred)
    fns, params = _metric_functions(task, names, probs)
    metric_names = list(fns)
    rows, summary_rows = [], []
    content: dict[str, Any] = {}
    for attr, labels in groups.items():
        boot = {"n_boot": int(n_bootstrap), "ci_quantiles": [0.025, 0.975],
                "random_state": int(seed)} if n_bootstrap else {}
        frame = MetricFrame(metrics=fns, y_true=y_true, y_pred=y_pred,
                            sensitive_features={attr: labels}, sample_params=params, **boot)
        levels, counts = np.unique(labels, return_counts=True)
        size = dict(zip(levels.tolist(), counts.tolist(), strict=True))
        by = frame.by_group
        ci = frame.by_group_ci if n_bootstrap else None
        ranked = [g for g in by.index if size[g] >= min_group_size]
        group_rows = []
        for g in by.index:
            row: dict[str, Any] = {"attribute": attr, "group": str(g), "n": int(size[g]),
                                   "ranked": g in ranked}
            for m in metric_names:
                row[m] = _float(by.loc[g, m])
                row[f"{m}_ci_low"] = _float(ci[0].loc[g, m]) if ci is not None else None
                row[f"{m}_ci_high"] = _float(ci[1].loc[g, m]) if ci is not None else None
            group_rows.append(row)
        rows.extend(group_rows)
        stats = _spread(frame, by, ranked, labels, fns, params, y_true, y_pred, attr)
        for stat in ("min", "max", "max_difference", "min_ratio", "argmin", "argmax"):
            summary_rows.append({"attribute": attr, "statistic": stat, **stats[stat]})
        content[attr] = {
            "groups": [{"group": r["group"], "n": r["n"], "ranked": r["ranked"],
                        **{m: r[m] for m in metric_names},
                        **{f"{m}_ci95": [r[f"{m}_ci_low"], r[f"{m}_ci_high"]]
                           for m in metric_names if ci is not None}}
                       for r in group_rows],
            "ranked_groups": [str(g) for g in ranked],
            "unranked_groups": [str(g) for g in by.index if g not in ranked],
            **stats,
        }
    table = pd.DataFrame(rows)
    summary = pd.DataFrame(summary_rows)
    return GroupResult(metrics=metric_names, table=table, summary=summary, content=content)


def _spread(frame, by: pd.DataFrame, ranked: list, labels: np.ndarray, fns: dict,
            params: dict, y_true: np.ndarray, y_pred: np.ndarray, attr: str) -> dict:
    """min / max / max_difference / min_ratio over the ranked groups (MetricFrame's)."""
    from fairlearn.metrics import MetricFrame

    empty = {m: None for m in fns}
    if not ranked:
        return {k: dict(empty) for k in ("min", "max", "max_difference", "min_ratio",
                                         "argmin", "argmax")}
    if len(ranked) < len(by.index):  # the ranked groups only: a frame on their samples
        keep = np.isin(labels, ranked)
        sub_params = {k: {p: np.asarray(v)[keep] for p, v in d.items()}
                      for k, d in params.items()}
        frame = MetricFrame(metrics=fns, y_true=y_true[keep], y_pred=y_pred[keep],
                            sensitive_features={attr: labels[keep]}, sample_params=sub_params)
    sub = frame.by_group
    out = {"min": _series(frame.group_min(errors="coerce")),
           "max": _series(frame.group_max(errors="coerce")),
           "max_difference": _series(frame.difference(method="between_groups",
                                                      errors="coerce")),
           "min_ratio": _series(frame.ratio(method="between_groups", errors="coerce"))}
    out["argmin"] = {m: (str(sub[m].astype(float).idxmin()) if sub[m].notna().any() else None)
                     for m in fns}
    out["argmax"] = {m: (str(sub[m].astype(float).idxmax()) if sub[m].notna().any() else None)
                     for m in fns}
    return out


def _series(s: pd.Series) -> dict:
    return {str(k): _float(v) for k, v in s.items()}


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def group_performance(model: keras.Model, x: ArrayLike, y: ArrayLike, groups: Any,
                      class_names: list[str] | None = None, n_bootstrap: int = 200,
                      seed: int = 0, min_group_size: int = MIN_GROUP_SIZE,
                      batch_size: int = 256) -> pd.DataFrame:
    """The task's metrics per attribute and group, with bootstrap CIs and their spread.

    Args:
        model: a trained, built Keras model (classifier or regressor).
        x: the inputs.
        y: the labels (as ``audit.run`` takes them).
        groups: a dict name -> (N,) labels, or a pandas DataFrame (one column per attribute).
        class_names: one name per class (default ``"0"``, ``"1"``, ...).
        n_bootstrap: bootstrap resamples for the 95% CIs (0 turns them off).
        seed: seeds the bootstrap.
        min_group_size: groups with fewer samples are reported and not ranked.
        batch_size: the largest batch of the forward pass.

    Returns:
        One row per attribute and group (``statistic == "value"``: ``n``, ``ranked``, each
        metric with ``<metric>_ci_low`` / ``_ci_high``), then per attribute one row per
        statistic (``min``, ``max``, ``max_difference``, ``min_ratio``; ``group`` names the
        group at the minimum or maximum of the headline metric for ``min`` / ``max``).

    Raises:
        ValueError: before any work: bad ``groups`` (see ``check_groups``), ``x`` the model
            cannot take, or labels that do not fit the model's output.
    """
    from keras_audit.audit._labels import (
        as_label_array,
        class_names_for,
        label_spec,
        read_outputs,
    )
    from keras_audit.explain.forward import CompiledForward, check_batch

    xa = check_batch(model, x)
    ya = as_label_array(y, len(xa))
    checked = check_groups(groups, len(xa))
    if checked is None:
        raise AuditInputError("groups is required: a dict {attribute: (N,) labels} or a "
                              "DataFrame")
    _size(min_group_size)
    forward = CompiledForward(model, batch_size=batch_size)
    spec = label_spec(ya, forward(xa[:1]).shape[1:])
    names = class_names_for(class_names, spec)
    out = read_outputs(forward(xa), spec)
    res = group_metrics(spec.task, spec.y_true, out.y_pred, out.probs, checked, names,
                        n_bootstrap=n_bootstrap, seed=seed, min_group_size=min_group_size)
    return as_frame(res)


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise AuditInputError(f"min_group_size must be a positive integer; got {value!r}")
    return int(value)


def as_frame(res: GroupResult) -> pd.DataFrame:
    """The per-group rows and the per-attribute statistics in one DataFrame."""
    groups = res.table.assign(statistic="value")
    stats = []
    headline = res.metrics[0]
    for attr, part in res.summary.groupby("attribute", sort=False):
        by = part.set_index("statistic")
        for stat in STATISTICS:
            row = {"attribute": attr, "statistic": stat, "group": None, "n": None,
                   "ranked": None, **{m: by.loc[stat, m] for m in res.metrics}}
            if stat in ("min", "max"):
                row["group"] = by.loc["arg" + stat, headline]
            stats.append(row)
    frame = pd.concat([groups, pd.DataFrame(stats)], ignore_index=True)
    first = ["attribute", "statistic", "group", "n", "ranked"]
    return frame[first + [c for c in frame.columns if c not in first]]
