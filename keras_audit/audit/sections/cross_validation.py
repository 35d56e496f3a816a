"""Section: cross-validation (``run(cross_validation=audit.cross_validate(...))``): each
fold's metrics, their mean, standard deviation and confidence interval, the figures, and
whether the result depends on the split.

The folds were fitted by ``cross_validate`` before the audit; this section reports them and
trains nothing.
"""

from __future__ import annotations

import math

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.serialize import records

KEY = "cross_validation"
TITLE = "Cross-validation"
OPTIONS: dict[str, dict] = {}

#: a standard deviation of the headline metric across folds above this is flagged
SPLIT_STD_WARNING = 0.05

NOT_GIVEN = ("no cross-validation was given (run(..., cross_validation="
             "audit.cross_validate(build_model, x, y))): how much the result depends on the "
             "train/test split is not shown")


def build(ctx: AuditContext, options: dict) -> Section:
    """The folds' table, mean, std and CI per metric, the figures and the split finding."""
    sec = new_section(KEY, ctx)
    cv = ctx.cross_validation
    if cv is None:
        sec.content.update({"status": "not requested", "note": NOT_GIVEN})
        return sec
    with sec.step("cross-validation", sec.content):
        _cross_validation(cv, sec)
    return sec


def headline(task: str) -> str:
    """The metric whose spread across folds the finding reads: ``accuracy``, or ``r2``."""
    return "r2" if task == "regression" else "accuracy"


def _cross_validation(cv, sec: Section) -> None:
    from keras_audit.audit.cross_validation import _figures, metric_names, summary_table

    per_fold = cv.per_fold
    names = metric_names(per_fold)
    sec.tables["cross_validation_per_fold"] = per_fold
    summary = cv.tables.get("summary")
    sec.tables["cross_validation_summary"] = summary if summary is not None else \
        summary_table(cv)
    sec.content.update({
        "status": "ok", "task": cv.task, "folds": int(cv.folds),
        "splitter": cv.metadata.get("splitter"), "shuffle": cv.metadata.get("shuffle"),
        "confidence": float(cv.confidence), "metrics": names,
        "n_samples": int(per_fold["n_test"].sum()) if "n_test" in per_fold else None,
        "mean": dict(cv.mean), "std": dict(cv.std),
        "ci": {m: list(v) for m, v in cv.ci.items()},
        "per_fold": records(per_fold),
    })
    # the result's own figures; drawn here when cross_validate ran with figures=False
    figures = cv.figures or _figures(cv, names)
    titles = {"metrics_per_fold": f"Metrics per fold, with the mean and its "
              f"{100 * cv.confidence:g}% confidence interval",
              "learning_curves": "Learning curves per fold (train and held-out loss)"}
    for name in ("metrics_per_fold", "learning_curves"):
        if name in figures:
            sec.add_figure(name, figures[name], titles[name])
    sec.content["figures"] = [k.split(".", 1)[1] for k in sec.figures]
    _finding(cv, sec)


def _finding(cv, sec: Section) -> None:
    metric = headline(cv.task)
    mean, std = cv.mean.get(metric), cv.std.get(metric)
    if mean is None or std is None or not math.isfinite(std):
        return
    lo, hi = cv.ci[metric]
    level = f"{100 * cv.confidence:g}%"
    label = "R²" if metric == "r2" else metric
    text = (f"{label} over {cv.folds} folds is {mean:.3f} ± {std:.3f} ({level} CI "
            f"{lo:.3f}–{hi:.3f})")
    if std > SPLIT_STD_WARNING:
        sec.finding("warning", f"{text}: the result depends on the split (the standard "
                    f"deviation across folds is above {SPLIT_STD_WARNING:g})")
    else:
        sec.finding("info", f"{text}: stable across the folds (standard deviation at most "
                    f"{SPLIT_STD_WARNING:g})")
