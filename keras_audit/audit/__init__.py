"""Post-training analyses (performance, pruning impact, explanation quality, SHAP, LIME) and
the compliance report.

Each analysis is a plain function that returns data (a result object or a pandas DataFrame)
with its matplotlib figures; the report only assembles them::

    from keras_audit import audit
    table = audit.pruning_impact(model, x, y)
    report = audit.run(model, x, y, out_dir="audit_report")
"""

# The function ``shap_values`` shadows its module's name in this package; the report imports
# the analyses through importlib, so both ``audit.shap_values(...)`` and the module stay usable.
from keras_audit.audit._weights import preserved_weights, weights_hash
from keras_audit.audit.lime_analysis import LimeResult, lime_explanations, segment_image
from keras_audit.audit.performance import PerformanceResult, performance
from keras_audit.audit.pruning import pruning_figures, pruning_impact, pruning_summary
from keras_audit.audit.quality import (
    faithfulness,
    faithfulness_figure,
    sanity,
    sanity_figure,
)
from keras_audit.audit.report import CHECKS, AuditInputError, Report, load_card, run
from keras_audit.audit.shap_values import SHAP_METHODS, ShapResult, shap_values
from keras_audit.audit.tabular import SurrogateResult, permutation_importance, surrogate_tree

__all__ = [
    "CHECKS", "SHAP_METHODS", "AuditInputError", "LimeResult", "PerformanceResult", "Report",
    "ShapResult", "SurrogateResult", "faithfulness", "faithfulness_figure", "lime_explanations",
    "load_card", "performance", "permutation_importance", "preserved_weights",
    "pruning_figures", "pruning_impact", "pruning_summary", "run", "sanity", "sanity_figure",
    "segment_image", "shap_values", "surrogate_tree", "weights_hash",
]
