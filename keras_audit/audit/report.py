"""The compliance report's public names in one import (kept for ``keras_audit.audit.report``).

``run`` lives in ``runner``, the ``Report`` in ``document``, the sections in ``sections/``.
The report follows Model Cards, the EU AI Act (Annex IV, Article 13) and NIST AI RMF
"Measure": provenance, model details, intended use / limitations / risks, data, performance,
explanations, explanation quality, pruning impact and a blank sign-off.
"""

from keras_audit.audit.card import load_card
from keras_audit.audit.catalog import (
    CHECKS,
    DEFAULT_CHECKS,
    DEFAULT_SAMPLES,
    SCHEMA_VERSION,
    TOP_LEVEL_KEYS,
    AuditInputError,
)
from keras_audit.audit.document import Report
from keras_audit.audit.runner import run
from keras_audit.audit.sections import DEFAULT_OPTIONS, SECTIONS
from keras_audit.audit.serialize import jsonable, records

__all__ = ["CHECKS", "DEFAULT_CHECKS", "DEFAULT_OPTIONS", "DEFAULT_SAMPLES", "SCHEMA_VERSION",
           "SECTIONS", "TOP_LEVEL_KEYS", "AuditInputError", "Report", "jsonable", "load_card",
           "records", "run"]
