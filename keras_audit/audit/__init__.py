"""Post-training analyses (performance, pruning impact, explanation quality, SHAP, LIME) and
the compliance report.

Each analysis is a plain function that returns data (a result object or a pandas DataFrame)
with its matplotlib figures; the report only assembles them::

    from keras_audit import audit
    table = audit.pruning_impact(model, x, y)
    report = audit.run(model, x, y, out_dir="audit_report")
"""

from keras_audit.audit._weights import preserved_weights, weights_hash
from keras_audit.audit.performance import PerformanceResult, performance
from keras_audit.audit.pruning import pruning_figures, pruning_impact, pruning_summary
from keras_audit.audit.quality import (
    faithfulness,
    faithfulness_figure,
    sanity,
    sanity_figure,
)

__all__ = [
    "PerformanceResult", "faithfulness", "faithfulness_figure", "performance",
    "preserved_weights", "pruning_figures", "pruning_impact", "pruning_summary", "sanity",
    "sanity_figure", "weights_hash",
]
