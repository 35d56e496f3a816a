"""Section 8, pruning impact: accuracy against global and per-layer magnitude pruning, and
how far Grad-CAM explanations drift from the dense model's.

Every pruning level is applied in place and the weights restored exactly (``pruning_impact``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section, requested
from keras_audit.audit.serialize import records

KEY = "pruning"
TITLE = "Pruning impact"
OPTIONS = {"pruning": {"sparsities": tuple(round(0.1 * i, 1) for i in range(10)),
                       "per_layer_sparsities": (0.0, 0.25, 0.5, 0.75, 0.9),
                       "method": "magnitude", "per_layer": True, "drift": True,
                       "drift_samples": 16}}

PRUNING_DROP_POINTS = 5.0  # the first global sparsity costing this many accuracy points
SAFE_POINTS = 1.0          # "within one point of the dense model"
DRIFT_WARNING = 0.5        # Grad-CAM Spearman vs dense below this is flagged


def build(ctx: AuditContext, options: dict) -> Section:
    """The global sweep, one sweep per prunable layer, figures and findings."""
    sec = new_section(KEY, ctx)
    if not requested(ctx, "pruning", sec.content):
        return sec
    from keras_audit.audit.pruning import prunable_kernels

    opts = options["pruning"]
    layers = list(dict.fromkeys(k.layer_path for k in prunable_kernels(ctx.model)))
    total = 1 + (len(layers) if opts["per_layer"] else 0)
    with sec.step("pruning", sec.content, total=total) as bar:
        _pruning(ctx, opts, layers, sec, bar)
    return sec


def _pruning(ctx: AuditContext, opts: dict, layers: list[str], sec: Section, bar) -> None:
    from keras_audit.audit.pruning import pruning_impact, pruning_summary
    from keras_audit.audit.pruning_plots import pruning_figures

    summary = pruning_summary(ctx.model)
    sec.tables["pruning_summary"] = summary
    # drift runs Grad-CAM on the model itself: one input and one output only
    single = not ctx.multi_input and len(ctx.heads) <= 1
    drift = bool(opts["drift"]) and ctx.kind == "image" and single and ctx.cam_refusal is None
    if bool(opts["drift"]) and ctx.kind == "image" and not drift:
        sec.content["drift_reason"] = (
            "explanation drift (Grad-CAM, pruned vs dense) is measured on single-input, "
            "single-output models only" if not single else
            "explanation drift needs Grad-CAM, which cannot read this model's inner layers "
            f"(a {type(ctx.model).__name__} model"
            + (", subclassed: its call() has no functional graph)" if _subclassed(ctx.model)
               else " without a layer with spatial axes)"))
    drift_samples = min(int(opts["drift_samples"]), ctx.n_samples)
    common = {"method": opts["method"], "seed": ctx.seed, "forward": ctx.forward,
              "output": ctx.output if len(ctx.heads) > 1 else None}
    x, y = ctx.model_x, ctx.y
    if ctx.stream is not None:  # every level streams the data; x is the drift's first rows
        x, y = ctx.stream.head, ctx.stream.y
        common["stream"] = ctx.stream.stream
    glob = pruning_impact(ctx.model, x, y, sparsities=opts["sparsities"],
                          scope="global", drift=drift, drift_samples=drift_samples, **common)
    bar.update(1)
    sec.tables["pruning_global"] = glob
    parts = [glob]
    per_layer = None
    if opts["per_layer"]:
        rows = []
        for path in layers:
            rows.append(pruning_impact(ctx.model, x, y,
                                       sparsities=opts["per_layer_sparsities"],
                                       scope="per_layer", layers=[path], **common))
            bar.update(1)
        per_layer = pd.concat(rows, ignore_index=True)
        sec.tables["pruning_per_layer"] = per_layer
        parts.append(per_layer)
    metric = "loss" if ctx.spec.task == "regression" else "accuracy"
    titles = {"accuracy_vs_sparsity": f"{metric.capitalize()} against sparsity (global and "
              "per layer)",
              "delta_accuracy_heatmap": f"Δ {metric} per layer and sparsity",
              "explanation_drift": "Explanation drift: Grad-CAM Spearman, pruned vs dense"}
    # drift (global sweep only) skips per-layer rows
    figures = pruning_figures(pd.concat(parts, ignore_index=True),
                              dense_accuracy=glob.attrs.get("dense_accuracy"))
    for name, fig in figures.items():
        sec.add_figure(name, fig, titles.get(name))
    sec.content.update({
        "status": "ok", "method": opts["method"], "task": glob.attrs.get("task"),
        "dense_accuracy": glob.attrs.get("dense_accuracy"),
        "dense_loss": glob.attrs.get("dense_loss"),
        "loss": glob.attrs.get("loss_name"),
        "sparsities": list(opts["sparsities"]),
        "per_layer_sparsities": list(opts["per_layer_sparsities"]) if opts["per_layer"]
        else None,
        "drift": drift,
        "drift_samples": drift_samples if drift else None,
        "summary": records(summary),
        "totals": dict(summary.attrs),
        "global": records(glob),
        "per_layer": records(per_layer) if per_layer is not None else None,
    })
    _findings(sec, glob, per_layer)


def _subclassed(model) -> bool:
    import keras

    return not isinstance(model, keras.Sequential) and not hasattr(model, "_nodes_by_depth")


def _findings(sec: Section, glob: pd.DataFrame, per_layer: pd.DataFrame | None) -> None:
    if glob.attrs.get("task") == "regression" or glob["accuracy"].isna().all():
        return
    g = glob.sort_values("sparsity")
    drop = -100.0 * g["delta_accuracy"].to_numpy()
    levels = g["sparsity"].to_numpy()
    bad = np.flatnonzero(drop >= PRUNING_DROP_POINTS)
    if len(bad):
        i = bad[0]
        sec.finding("warning", f"accuracy drops {drop[i]:.0f} points at "
                    f"{100 * levels[i]:.0f}% global sparsity")
    # the largest level such that every level up to it stays within one point
    ok = 0.0
    for s, d in zip(levels, drop):
        if d > SAFE_POINTS:
            break
        ok = s
    if ok > 0:
        sec.finding("info", f"accuracy stays within 1 point of the dense model up to "
                    f"{100 * ok:.0f}% global sparsity")
    if "drift_spearman" in g.columns:
        low = g[g["drift_spearman"] < DRIFT_WARNING]
        if len(low):
            row = low.iloc[0]
            sec.finding("warning", f"Grad-CAM explanations drift at "
                        f"{100 * row.sparsity:.0f}% global sparsity (Spearman "
                        f"{row.drift_spearman:.2f} against the dense model)")
    if per_layer is not None and len(per_layer):
        _sensitive_layer(sec, per_layer)


def _sensitive_layer(sec: Section, per_layer: pd.DataFrame) -> None:
    mid = per_layer[per_layer["sparsity"] > 0]
    if not len(mid):
        return
    levels = np.unique(mid["sparsity"].to_numpy())
    level = 0.5 if 0.5 in levels else float(levels[len(levels) // 2])
    at = mid[mid["sparsity"] == level]
    worst = at.loc[at["delta_accuracy"].idxmin()]
    if -worst.delta_accuracy * 100 >= SAFE_POINTS:
        sec.finding("info", f"the most sensitive layer is {worst.layer}: pruning it alone to "
                    f"{100 * level:.0f}% costs {-100 * worst.delta_accuracy:.0f} accuracy "
                    "points")
