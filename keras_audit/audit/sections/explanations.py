"""Section 6, explanations: what the model looks at.

Images: a gallery of Grad-CAM and saliency maps on correct and misclassified samples; tables:
permutation importance and a surrogate tree; both: SHAP and LIME on the explained samples.
Each part runs in its own guarded step and fills its own key of the section's content.
"""

from __future__ import annotations

import numpy as np

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.sections import explain_gallery, explain_lime, explain_shap, explain_tabular

KEY = "explanations"
TITLE = "Explanations"
OPTIONS = {
    **explain_gallery.OPTIONS,
    **explain_shap.OPTIONS,
    **explain_lime.OPTIONS,
    **explain_tabular.OPTIONS,
}


def build(ctx: AuditContext, options: dict) -> Section:
    """The gallery (images) or model-level importances (tables), then SHAP and LIME."""
    sec = new_section(KEY, ctx)
    c = sec.content
    c.update({"kind": ctx.kind,
              "targets": "the model's predicted class" if ctx.classifier else "output 0"})
    c.update(explained_what(ctx))
    if not any(check in ctx.checks for check in ("shap", "lime", "sanity", "lrp")):
        c["status"] = "not requested"
        return sec
    c["status"] = "ok"
    if "shap" in ctx.checks or "lime" in ctx.checks or "lrp" in ctx.checks:
        if ctx.kind == "image":
            explain_gallery.build_part(ctx, options, sec)
        elif ctx.kind == "tabular":
            explain_tabular.build_part(ctx, options, sec)
        else:
            c["gallery"] = {"status": "skipped", "reason": (
                "the gallery draws Grad-CAM and saliency overlays on images; this input is a "
                f"sequence {list(ctx.x.shape[1:])} (the quality section scores gradient "
                "methods on it, one score per token for token ids)")}
    else:
        c["gallery"] = {"status": "not requested"}
    explain_shap.build_part(ctx, options, sec)
    explain_lime.build_part(ctx, options, sec)
    return sec


def explained_what(ctx: AuditContext) -> dict:
    """Which input and output the explanations explain, and what the other inputs are held at.
    """
    spec = ctx.input_specs[ctx.explained_input] if ctx.input_specs else None
    info: dict = {"explained_input": spec.name if spec is not None else "input",
                  "explained_output": ctx.output_name}
    if ctx.multi_input:
        info["held_fixed"] = {
            name: {"value": ("median over x" if np.asarray(v).dtype.kind in "biu"
                             else "mean over x"),
                   "shape": list(np.shape(v))}
            for name, v in (ctx.held or {}).items()}
        info["held_fixed_note"] = (
            f"the explanations explain input {info['explained_input']!r}; the model's other "
            "inputs are held at their mean over the audited samples (median for integer "
            "inputs), the same value for every explained sample")
    return info
