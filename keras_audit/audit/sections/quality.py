"""Section 7, explanation quality: the randomisation sanity test and deletion/insertion AUCs.

A method whose maps survive randomising the model's weights is not explaining the model; a
map whose deletion AUC is no better than a random pixel order does not rank what matters.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section, requested
from keras_audit.audit.serialize import records

KEY = "quality"
TITLE = "Explanation quality"
OPTIONS = {"sanity": {"methods": None, "steps": 20, "max_layers": None}}


def build(ctx: AuditContext, options: dict) -> Section:
    """Sanity and faithfulness of each method on the explained samples."""
    sec = new_section(KEY, ctx)
    c = sec.content
    if not requested(ctx, "sanity", c):
        return sec
    opts = options["sanity"]
    methods = list(opts["methods"] or default_methods(ctx))
    if "lrp" in ctx.checks and "lrp" not in methods:  # the "lrp" check: LRP's sanity too
        from keras_audit.audit.sections.explanation_methods import refusal

        reason = refusal("lrp", ctx.view)
        if reason is None:
            methods.append("lrp")
        else:
            c["lrp"] = {"status": "skipped", "reason": reason}
            sec.finding("info", f"LRP left out of the quality checks: {reason}")
    c.update({"status": "ok", "methods": methods, "samples": int(len(ctx.explain_idx))})
    if opts["methods"] is None and ctx.kind == "image" and "gradcam" not in methods:
        c["gradcam"] = {"status": "skipped", "reason": ctx.cam_refusal or "not chosen"}
    c["sanity"] = {}
    with sec.step("sanity", c["sanity"], total=len(methods)) as bar:
        _sanity(ctx, opts, methods, sec, c["sanity"], bar)
    c["faithfulness"] = {}
    with sec.step("faithfulness", c["faithfulness"], total=len(methods)) as bar:
        _faithfulness(ctx, int(opts["steps"]), methods, sec, c["faithfulness"], bar)
    return sec


def default_methods(ctx: AuditContext) -> list[str]:
    """Grad-CAM and two gradient methods for images with a CAM layer; gradients otherwise."""
    if ctx.kind == "image":
        if ctx.cam_refusal is None:
            return ["gradcam", "saliency", "smoothgrad"]
        return ["saliency", "smoothgrad", "integrated_gradients"]
    return ["saliency", "gradient_input", "integrated_gradients"]


def _sanity(ctx: AuditContext, opts: dict, methods: list[str], sec: Section, part: dict,
            bar) -> None:
    from keras_audit.audit.quality import SANITY_THRESHOLD, sanity, sanity_figure
    from keras_audit.audit.sections.explanation_methods import method_title

    parts = []
    for m in methods:
        parts.append(sanity(ctx.view, ctx.x_explain, targets=ctx.targets_explain,
                            methods=(m,), seed=ctx.seed, max_layers=opts["max_layers"]))
        bar.update(1)
    table = pd.concat(parts, ignore_index=True)
    sec.tables["quality_sanity"] = table
    thr = float(SANITY_THRESHOLD)
    verdicts: dict[str, Any] = {}
    for m, g in table.groupby("method", sort=False):
        final = float(g.sort_values("step")["spearman"].iloc[-1])
        verdicts[m] = {"passed": bool(g["passed"].iloc[0]), "final_spearman": final,
                       "layers_randomised": int(g["step"].max())}
        title = method_title(m)
        if verdicts[m]["passed"]:
            sec.finding("info", f"{title} passed the randomisation test (Spearman {final:.2f} "
                        f"after randomising the model, threshold {thr})")
        else:
            sec.finding("warning", f"{title} failed the randomisation test: its maps keep "
                        f"Spearman {final:.2f} with the trained model's after randomising the "
                        f"weights (threshold {thr})")
    part.update({"status": "ok", "threshold": thr, "verdicts": verdicts,
                 "rows": records(table),
                 "protocol": "cascading model-parameter randomisation (Adebayo et al. 2018), "
                 "top layer first"})
    sec.add_figure("sanity", sanity_figure(table), "Model-parameter randomisation test")


def _faithfulness(ctx: AuditContext, steps: int, methods: list[str], sec: Section,
                  part: dict, bar) -> None:
    from keras_audit.audit.quality import faithfulness, faithfulness_figure
    from keras_audit.audit.sections.explanation_methods import method_title

    parts = []
    for m in methods:
        parts.append(faithfulness(ctx.view, ctx.x_explain, targets=ctx.targets_explain,
                                  methods=(m,), steps=steps, seed=ctx.seed))
        bar.update(1)
    table = pd.concat(parts, ignore_index=True)
    sec.tables["quality_faithfulness"] = table
    part.update({"status": "ok", "steps": steps, "rows": records(table),
                 "protocol": "deletion/insertion AUC (RISE), against a random pixel order"})
    sec.add_figure("faithfulness", faithfulness_figure(table), "Deletion and insertion AUC")
    for row in table.itertuples(index=False):
        if row.deletion_auc >= row.random_deletion_auc:
            sec.finding("warning", f"{method_title(row.method)}: deletion AUC "
                        f"{row.deletion_auc:.3f} is not below the random-order baseline "
                        f"{row.random_deletion_auc:.3f}")
