"""Section 5, performance: the task's metrics with CIs, calibration, cost, and their findings."""

from __future__ import annotations

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section, requested
from keras_audit.audit.serialize import records

KEY = "performance"
TITLE = "Performance"
OPTIONS = {"performance": {"n_bootstrap": 200, "latency_repeats": 5, "batch_size": 256}}

RECALL_GAP = 0.05    # a class whose recall is this far below accuracy is flagged
ECE_WARNING = 0.05   # calibration error above this is flagged

_TITLES = {"confusion_matrix": "Confusion matrix",
           "reliability_diagram": "Reliability diagram (calibration)",
           "roc_curves": "ROC curves (one-vs-rest)"}


def build(ctx: AuditContext, options: dict) -> Section:
    """``audit.performance`` on the whole of ``x`` (every streamed sample when the data
    streams); latency goes to the environment."""
    sec = new_section(KEY, ctx)
    content = sec.content
    if not requested(ctx, "performance", content):
        return sec
    from keras_audit.audit.performance_analysis import performance

    opts = options["performance"]
    with sec.step("performance", content):
        if ctx.stream is not None:  # every sample: the context's streamed pass
            from keras_audit.audit.performance_analysis import performance_of_outputs

            res = performance_of_outputs(ctx.model, ctx.stream.raw, ctx.stream.y,
                                         forward=ctx.forward, latency_x=ctx.x,
                                         class_names=ctx.names,
                                         n_bootstrap=int(opts["n_bootstrap"]), seed=ctx.seed,
                                         latency_repeats=int(opts["latency_repeats"]))
        else:
            res = performance(ctx.model, ctx.model_x, ctx.y, class_names=ctx.names,
                              n_bootstrap=int(opts["n_bootstrap"]), seed=ctx.seed,
                              latency_repeats=int(opts["latency_repeats"]),
                              forward=ctx.forward)
        metrics = dict(res.metrics)
        for k in [k for k in metrics if k.startswith("latency_")]:
            sec.latency[k] = metrics.pop(k)  # clock-dependent: kept in environment
        content.update({"status": "ok", "task": res.task, **metrics})
        content["tables"] = {}
        for name, df in res.tables.items():
            if name == "latency":
                sec.tables["performance_latency"] = df
                continue
            sec.tables[f"performance_{name}"] = df
            content["tables"][name] = records(df)
        for name, fig in res.figures.items():
            sec.add_figure(name, fig, _TITLES.get(name))
        content["figures"] = list(res.figures)
        _findings(sec, res)
    if len(ctx.heads) > 1:
        content["output"] = ctx.output_name
        content["outputs"] = {}
        for head in ctx.heads:
            part: dict = {}
            content["outputs"][head.name] = part
            with sec.step(f"performance of output {head.name}", part):
                _head(ctx, opts, head, part)
    return sec


def _head(ctx: AuditContext, opts: dict, head, part: dict) -> None:
    """The task's metrics of one output of a multi-output model (no figures, no latency)."""
    from keras_audit.audit.performance_analysis import performance
    from keras_audit.explain.forward import CompiledForward

    if head.y is None:
        part.update({"status": "skipped", "reason": f"y has no labels for output "
                     f"{head.name!r}"})
        return
    forward = (ctx.forward if head.index == ctx.output else
               CompiledForward(ctx.model, output=head.index,
                               batch_size=int(opts["batch_size"])))
    res = performance(ctx.model, ctx.model_x, head.y,
                      class_names=ctx.names if head.index == ctx.output else None,
                      n_bootstrap=int(opts["n_bootstrap"]), seed=ctx.seed,
                      latency_repeats=1, forward=forward)
    metrics = {k: v for k, v in res.metrics.items()
               if not k.startswith("latency_") and k not in ("parameters",
                                                           "trainable_parameters",
                                                           "model_bytes")}
    part.update({"status": "ok", "task": res.task, "explained": head.index == ctx.output,
                 **metrics})
def beyond(value: float, bound: float, digits: int = 3) -> str:
    """``value`` with enough decimals that it reads differently from ``bound`` (0.0504, not
    0.050 next to a bound of 0.05)."""
    for d in range(digits, 10):
        text = f"{value:.{d}f}"
        if float(text) != bound:
            return text
    return repr(value)


def _findings(sec: Section, res) -> None:
    c = sec.content
    if res.task == "regression":
        sec.finding("info", f"MAE {c['mae']:.4g}, RMSE {c['rmse']:.4g}"
                    + (f", R² {c['r2']:.3f}" if c.get("r2") is not None else ""))
        return
    acc = c["accuracy"]
    ci = c.get("accuracy_ci95")
    sec.finding("info", f"accuracy is {acc:.3f}"
                + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
                + f" on {c['n_samples']} samples")
    per_class = res.tables.get("per_class")
    if per_class is not None:
        for row in per_class.to_dict(orient="records"):
            if row["support"] > 0 and row["recall"] < acc - RECALL_GAP:
                # a warning only when the whole interval lies below the bar; else a note
                high = row.get("recall_ci_high")
                sure = high is None or high != high or high < acc - RECALL_GAP
                ci = ("" if high is None or high != high else
                      f", 95% CI {row['recall_ci_low']:.2f}–{high:.2f}")
                sec.finding("warning" if sure else "info",
                            f"recall of class {row['class']} is {row['recall']:.2f}{ci} on "
                            f"{int(row['support'])} samples (overall accuracy {acc:.2f})"
                            + ("" if sure else ": the interval reaches the bar, so this may "
                               "be chance"))
    ece = c.get("ece")
    if ece is not None and ece > ECE_WARNING:
        sec.finding("warning", f"the model is miscalibrated: expected calibration error "
                    f"{beyond(ece, ECE_WARNING)} (above {ECE_WARNING})")
