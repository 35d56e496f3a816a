"""Post-training analyses (performance, pruning impact, explanation quality, SHAP, LIME) and
the compliance report.

Each analysis is a plain function that returns data (a result object or a pandas DataFrame)
with its matplotlib figures; the report's sections (``keras_audit.audit.sections``) call them
and ``run`` assembles the report::

    from keras_audit import audit
    table = audit.pruning_impact(model, x, y)
    report = audit.run(model, x, y, out_dir="audit_report")

The names load on first use (PEP 562): ``from keras_audit import audit`` imports neither
TensorFlow nor the audit's optional dependencies, so the ``keras-audit`` command checks its
arguments fast, and a missing ``keras-audit[audit]`` extra is one clear ``ImportError`` naming
it when an analysis is first used.
"""

from __future__ import annotations

from typing import Any

from keras_audit.audit.catalog import CHECKS, AuditInputError

#: public name -> the module (in this package) that defines it
_EXPORTS = {
    "preserved_weights": "_weights", "weights_hash": "_weights",
    "load_card": "card", "DataSource": "sources", "Report": "document", "run": "runner",
    "AnalysisResult": "result",
    "group_performance": "groups", "load_policy": "policy",
    "LimeResult": "lime_analysis", "lime_explanations": "lime_analysis",
    "segment_image": "lime_analysis",
    "PerformanceResult": "performance_analysis", "performance": "performance_analysis",
    "pruning_figures": "pruning_plots", "pruning_impact": "pruning", "pruning_summary": "pruning",
    "faithfulness": "quality", "faithfulness_figure": "quality", "sanity": "quality",
    "sanity_figure": "quality",
    "SHAP_METHODS": "shap_analysis", "ShapResult": "shap_analysis",
    "shap_values": "shap_analysis",
    "SurrogateResult": "tabular", "permutation_importance": "tabular",
    "surrogate_tree": "tabular",
    "robustness": "robustness_analysis", "robustness_figures": "robustness_analysis",
    "corrupt": "corruptions", "IMAGE_CORRUPTIONS": "corruptions",
    "TABLE_CORRUPTIONS": "corruptions",
    "adversarial": "adversarial_analysis", "adversarial_examples": "adversarial_analysis",
    "adversarial_figure": "adversarial_analysis",
    "ShiftResult": "shift_analysis", "shift": "shift_analysis",
    "shift_figures": "shift_analysis",
    "ExamplesResult": "example_analysis", "examples": "example_analysis",
    "CounterfactualResult": "counterfactual_analysis",
    "counterfactuals": "counterfactual_analysis",
    "CVResult": "cross_validation", "cross_validate": "cross_validation",
}


def _module(name: str) -> Any:
    # explicit imports (no importlib): each module is imported the first time one of its
    # names is used
    if name == "_weights":
        from keras_audit.audit import _weights as m
    elif name == "card":
        from keras_audit.audit import card as m
    elif name == "document":
        from keras_audit.audit import document as m
    elif name == "groups":
        from keras_audit.audit import groups as m
    elif name == "policy":
        from keras_audit.audit import policy as m
    elif name == "sources":
        from keras_audit.audit import sources as m
    elif name == "runner":
        from keras_audit.audit import runner as m
    elif name == "result":
        from keras_audit.audit import result as m
    elif name == "lime_analysis":
        from keras_audit.audit import lime_analysis as m
    elif name == "performance_analysis":
        from keras_audit.audit import performance_analysis as m
    elif name == "pruning":
        from keras_audit.audit import pruning as m
    elif name == "pruning_plots":
        from keras_audit.audit import pruning_plots as m
    elif name == "quality":
        from keras_audit.audit import quality as m
    elif name == "example_analysis":
        from keras_audit.audit import example_analysis as m
    elif name == "counterfactual_analysis":
        from keras_audit.audit import counterfactual_analysis as m
    elif name == "cross_validation":
        from keras_audit.audit import cross_validation as m
    elif name == "shap_analysis":
        from keras_audit.audit import shap_analysis as m
    elif name == "robustness_analysis":
        from keras_audit.audit import robustness_analysis as m
    elif name == "corruptions":
        from keras_audit.audit import corruptions as m
    elif name == "adversarial_analysis":
        from keras_audit.audit import adversarial_analysis as m
    elif name == "shift_analysis":
        from keras_audit.audit import shift_analysis as m
    else:
        from keras_audit.audit import tabular as m
    return m


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from keras_audit._extras import check_installed

    check_installed("audit", feature=f"keras_audit.audit.{name}")  # finds, imports nothing
    value = getattr(_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["CHECKS", "AuditInputError", *sorted(_EXPORTS)]
