"""The audit as a gate: the default policy (today's fixed thresholds, as warnings) and the
verdict, evaluated by ``assemble`` on the finished report.json content.

The default policy holds only the criteria the requested analyses can measure on this model
(no LIME criterion when LIME was not requested, no surrogate-tree criterion for images), so a
``missing`` in it means an analysis that should have measured its metric did not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_audit.audit.policy import Criterion, evaluate

if TYPE_CHECKING:
    from keras_audit.audit.context import AuditContext


def default_policy(ctx: AuditContext) -> tuple[Criterion, ...]:
    """Today's fixed thresholds as ``warn`` criteria, those that apply to this audit."""
    from keras_audit.audit.sections import data, explain_lime, explain_tabular, performance
    from keras_audit.audit.sections.quality import default_methods

    out = [Criterion("enough audit samples", "data.n_samples", "min", data.SMALL_DATA, "warn")]
    if ctx.classifier:
        out.append(Criterion("class balance", "data.imbalance_ratio", "max",
                             data.IMBALANCE_RATIO, "warn"))
        if "performance" in ctx.checks:
            out.append(Criterion("calibration", "performance.ece", "max",
                                 performance.ECE_WARNING, "warn"))
    if "lime" in ctx.checks and ctx.kind in ("image", "tabular"):
        out.append(Criterion("LIME local fit", "explanations.lime.mean_score", "min",
                             explain_lime.LIME_SCORE_WARNING, "warn"))
    if ctx.kind == "tabular" and ("shap" in ctx.checks or "lime" in ctx.checks):
        out.append(Criterion("surrogate tree fidelity", "explanations.surrogate_tree.fidelity",
                             "min", explain_tabular.FIDELITY_WARNING, "warn"))
    if "sanity" in ctx.checks:
        from keras_audit.audit.sections.explanation_methods import method_title

        for m in ctx.options["sanity"]["methods"] or default_methods(ctx):
            out.append(Criterion(f"{method_title(m)} randomisation test",
                                 f"quality.sanity.verdicts.{m}.passed", "equals", True, "warn"))
    return tuple(out)


def verdict_of(ctx: AuditContext, content: dict, sections: tuple[str, ...]
               ) -> tuple[str, list[dict], str]:
    """``(verdict, criteria rows, policy source)`` for the finished content."""
    criteria = ctx.policy if ctx.policy is not None else default_policy(ctx)
    verdict, rows = evaluate(criteria, content, sections)
    return verdict, rows, "given" if ctx.policy is not None else "default"
