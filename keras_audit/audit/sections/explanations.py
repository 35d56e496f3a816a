"""Section 6, explanations: what the model looks at.

Images: a gallery of Grad-CAM and saliency maps on correct and misclassified samples; tables:
permutation importance and a surrogate tree; both: SHAP and LIME on the explained samples.
Each part runs in its own guarded step and fills its own key of the section's content.
"""

from __future__ import annotations

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
    if not any(check in ctx.checks for check in ("shap", "lime", "sanity")):
        c["status"] = "not requested"
        return sec
    c["status"] = "ok"
    if "shap" in ctx.checks or "lime" in ctx.checks:
        if ctx.kind == "image":
            explain_gallery.build_part(ctx, options, sec)
        elif ctx.kind == "tabular":
            explain_tabular.build_part(ctx, options, sec)
    else:
        c["gallery"] = {"status": "not requested"}
    explain_shap.build_part(ctx, options, sec)
    explain_lime.build_part(ctx, options, sec)
    return sec
