"""Section: comparison with the baseline model (``run(baseline=...)``), the one being
replaced: both models' metrics, paired deltas with CIs, McNemar's test, flipped predictions,
and per-group deltas when groups are given."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section

KEY = "comparison"
TITLE = "Comparison with the baseline model"
OPTIONS = {"comparison": {"n_bootstrap": 200, "gallery": 12}}

NO_BASELINE = ("no baseline model was given (run(baseline=...) or --baseline OLD.keras): "
               "there is nothing to compare with")


def build(ctx: AuditContext, options: dict) -> Section:
    """Run the baseline on ``x`` and compare it with the audited model."""
    sec = new_section(KEY, ctx)
    c = sec.content
    if ctx.baseline is None:
        c.update({"status": "no baseline", "note": NO_BASELINE})
        return sec
    opts = options["comparison"]
    with sec.step("comparison", c, total=2) as bar:
        _compare(ctx, opts, sec, bar)
    return sec


def _compare(ctx: AuditContext, opts: dict, sec: Section, bar) -> None:
    from keras_audit.audit._labels import read_outputs
    from keras_audit.audit._weights import weights_hash
    from keras_audit.audit.comparison import compare
    from keras_audit.explain.forward import CompiledForward

    base = ctx.baseline
    fwd = CompiledForward(base, batch_size=int(ctx.options["performance"]["batch_size"]))
    out = read_outputs(fwd(ctx.x), ctx.spec)
    bar.update(1)
    base_pred = np.asarray(out.y_pred)
    res = compare(ctx.spec.task, ctx.spec.y_true, ctx.pred, ctx.outputs.probs, base_pred,
                  out.probs, n_bootstrap=int(opts["n_bootstrap"]), seed=ctx.seed)
    c = sec.content
    c.update({"status": "ok", "task": res.task,
              "baseline_model": {"name": base.name, "parameters": int(base.count_params()),
                                 "weights_sha256": weights_hash(base)},
              "candidate": res.candidate, "baseline": res.baseline, "delta": res.delta,
              "delta_ci95": res.delta_ci95,
              "bootstrap": {"resamples": int(opts["n_bootstrap"]), "seed": ctx.seed,
                            "method": "paired (one resample scores both models), percentile"}})
    table = pd.DataFrame({"metric": list(res.delta), "candidate": list(res.candidate.values()),
                          "baseline": list(res.baseline.values()),
                          "delta": list(res.delta.values()),
                          "delta_ci_low": [(res.delta_ci95.get(m) or [None, None])[0]
                                           for m in res.delta],
                          "delta_ci_high": [(res.delta_ci95.get(m) or [None, None])[1]
                                            for m in res.delta]})
    sec.tables["comparison_metrics"] = table
    if res.mcnemar is not None:
        c["mcnemar"] = res.mcnemar
        flips = dict(res.flips)
        c["flips"] = flips
        idx = np.asarray(flips["indices"], np.int64)
        sec.tables["comparison_flips"] = pd.DataFrame({
            "index": idx, "true": [ctx.class_name(i) for i in ctx.spec.y_true[idx]],
            "baseline": [ctx.class_name(i) for i in base_pred[idx]],
            "candidate": [ctx.class_name(i) for i in ctx.pred[idx]]})
        shown = idx[: int(opts["gallery"])]
        if ctx.kind == "image" and len(shown):
            sec.add_figure("flips", _flip_figure(ctx, shown, base_pred),
                           f"Flipped predictions (first {len(shown)} of {len(idx)})")
        _findings(sec, res)
    if ctx.groups:
        _group_deltas(ctx, sec, base_pred, out.probs)
    bar.update(1)


def _findings(sec: Section, res) -> None:
    m, f = res.mcnemar, res.flips
    d = res.delta["accuracy"]
    ci = res.delta_ci95.get("accuracy")
    ci_txt = f" (95% CI {ci[0]:+.3f} to {ci[1]:+.3f})" if ci else ""
    sig = m["p_value"] < 0.05
    sec.finding("warning" if sig and d < 0 else "info",
                f"accuracy changes by {d:+.3f} against the baseline{ci_txt}; McNemar's exact "
                f"p = {m['p_value']:.3g} on {m['discordant']} discordant samples"
                + (" (significant at 0.05)" if sig else ""))
    sec.finding("info", f"{f['count']} predictions flip ({f['fixed']} fixed, {f['broken']} "
                "broken)")


def _group_deltas(ctx: AuditContext, sec: Section, base_pred: np.ndarray,
                  base_probs: np.ndarray | None) -> None:
    from keras_audit.audit.comparison import scores

    out, rows = {}, []
    for attr, labels in ctx.groups.items():
        part = []
        for g in np.unique(labels):
            keep = labels == g
            cand = scores(ctx.spec.task, ctx.spec.y_true[keep], ctx.pred[keep],
                          None if ctx.outputs.probs is None else ctx.outputs.probs[keep])
            base = scores(ctx.spec.task, ctx.spec.y_true[keep], base_pred[keep],
                          None if base_probs is None else base_probs[keep])
            delta = {m: None if cand[m] is None or base[m] is None else cand[m] - base[m]
                     for m in cand}
            part.append({"group": str(g), "n": int(keep.sum()), "delta": delta})
            rows.append({"attribute": attr, "group": str(g), "n": int(keep.sum()),
                         **{f"delta_{m}": v for m, v in delta.items()}})
        out[attr] = part
    sec.content["groups"] = out
    sec.tables["comparison_groups"] = pd.DataFrame(rows)


def _flip_figure(ctx: AuditContext, idx: np.ndarray, base_pred: np.ndarray):
    from keras_audit.render.figures import new_figure
    from keras_audit.render.images import to_uint8_images

    images = to_uint8_images(ctx.x[idx])
    cols = min(6, len(idx))
    rows = int(np.ceil(len(idx) / cols))
    fig = new_figure((1.9 * cols, 2.1 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i, img in zip(axes, idx, images, strict=False):
        ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
        right = ctx.pred[i] == ctx.spec.y_true[i]
        ax.set_title(f"#{i} true {ctx.class_name(ctx.spec.y_true[i])}\n"
                     f"{ctx.class_name(base_pred[i])} → {ctx.class_name(ctx.pred[i])}",
                     fontsize=7, color="#2d6e2d" if right else "#a11a1a")
    return fig
