"""Section: performance per group (``run(groups=...)``): the task's metrics per attribute and
group with bootstrap CIs, and their spread across groups (fairlearn's MetricFrame)."""

from __future__ import annotations

import numpy as np

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.serialize import records

KEY = "groups"
TITLE = "Performance per group"
OPTIONS = {"groups": {"min_group_size": 20, "n_bootstrap": 200}}

NO_GROUPS = ("no groups were given (run(groups=...) or --groups-key): performance per group "
             "is not measured, and no groups are inferred from the data")


def build(ctx: AuditContext, options: dict) -> Section:
    """``group_metrics`` on the context's predictions, one table and figure per attribute."""
    sec = new_section(KEY, ctx)
    c = sec.content
    spec, outputs, groups = ctx.per_sample()  # every sample, also when the data streamed
    if not groups:
        c.update({"status": "no groups", "note": NO_GROUPS})
        return sec
    from keras_audit.audit.groups import group_metrics

    opts = options["groups"]
    size, n_boot = int(opts["min_group_size"]), int(opts["n_bootstrap"])
    with sec.step("groups", c, total=len(groups)):
        res = group_metrics(spec.task, spec.y_true, np.asarray(outputs.y_pred), outputs.probs,
                            groups, ctx.names, n_bootstrap=n_boot, seed=ctx.seed,
                            min_group_size=size)
        headline = res.metrics[0]
        c.update({"status": "ok", "attributes": list(groups), "metrics": res.metrics,
                  "headline": headline, "min_group_size": size,
                  "bootstrap": {"resamples": n_boot, "seed": ctx.seed, "method":
                                "fairlearn MetricFrame bootstrap, percentile 2.5-97.5"},
                  **res.content})
        sec.tables["groups"] = res.table
        sec.tables["groups_summary"] = res.summary
        c["tables"] = {"summary": records(res.summary)}
        for attr in groups:
            sec.add_figure(f"{attr}", _figure(res.content[attr], res.metrics, attr),
                           f"{attr}: metrics per group (95% bootstrap CI)")
        c["figures"] = list(groups)
        _findings(sec, res.content, headline)
    return sec


def _findings(sec: Section, content: dict, headline: str) -> None:
    lower_better = headline == "mae"
    for attr, part in content.items():
        rows = {r["group"]: r for r in part["groups"]}
        if part["unranked_groups"]:
            sec.finding("info", f"{attr}: groups {', '.join(part['unranked_groups'])} have fewer "
                        "samples than min_group_size: shown, not ranked")
        worst = part["argmax" if lower_better else "argmin"].get(headline)
        best = part["argmin" if lower_better else "argmax"].get(headline)
        if worst is None or worst == best:
            continue
        w, b = rows[worst], rows[best]
        diff = part["max_difference"][headline]
        text = (f"{attr}: {headline.replace('_', ' ')} is {w[headline]:.3f} for group {worst} "
                f"and {b[headline]:.3f} for group {best} (largest difference {diff:.3f})")
        ci_w, ci_b = w.get(f"{headline}_ci95"), b.get(f"{headline}_ci95")
        apart = ci_w and ci_b and None not in ci_w + ci_b and (
            ci_w[0] > ci_b[1] if lower_better else ci_w[1] < ci_b[0])
        sec.finding("warning" if apart else "info",
                    text + (": the 95% intervals do not overlap" if apart else ""))


def _figure(part: dict, metrics: list[str], attr: str):
    """One panel per metric: each group's value with its CI as an error bar."""

    from keras_audit.render.figures import new_figure

    shown = [m for m in metrics if not m.startswith("recall_")][:4]
    groups = part["groups"]
    fig = new_figure((2.6 * len(shown) + 0.6, 0.45 * len(groups) + 1.6))
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    pos = np.arange(len(groups))
    for ax, m in zip(axes, shown, strict=True):
        vals = np.array([np.nan if g[m] is None else g[m] for g in groups], float)
        ci = [g.get(f"{m}_ci95") or [None, None] for g in groups]
        lo = np.array([np.nan if c[0] is None else c[0] for c in ci], float)
        hi = np.array([np.nan if c[1] is None else c[1] for c in ci], float)
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        colors = ["#1f5fa8" if g["ranked"] else "#9aa5b1" for g in groups]
        ax.barh(pos, vals, color=colors, alpha=0.8)
        ax.errorbar(vals, pos, xerr=np.nan_to_num(err), fmt="none", ecolor="#1d232b",
                    capsize=3)
        ax.set_yticks(pos, [f"{g['group']} (n={g['n']})" for g in groups])
        ax.set_title(m.replace("_", " "), fontsize=9)
        ax.invert_yaxis()
    fig.suptitle(f"{attr} (grey: too small to rank)", fontsize=9)
    return fig
