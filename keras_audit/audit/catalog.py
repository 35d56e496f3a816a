"""The report's vocabulary: check names, report.json layout, input errors.

Light on purpose (no NumPy, no TensorFlow): the ``keras-audit`` command validates its arguments
against these names before anything heavy is imported.
"""

from __future__ import annotations

#: version of the report.json layout (docs/report_schema.md)
SCHEMA_VERSION = "1.0"
#: the analyses ``run`` can do, in their default order
CHECKS = ("performance", "shap", "lime", "pruning", "sanity", "robustness", "adversarial",
          "shift", "examples", "counterfactuals", "lrp")
#: the analyses ``run`` does by default (the others on request: shift and examples need
#: reference data, counterfactuals and the attacks are slow)
DEFAULT_CHECKS = ("performance", "shap", "lime", "pruning", "sanity")
#: report.json top-level keys, in order
TOP_LEVEL_KEYS = ("schema_version", "verdict", "criteria", "provenance", "model", "training",
                  "data", "environment", "card", "performance", "cross_validation", "groups",
                  "comparison",
                  "explanations", "quality", "pruning", "robustness", "adversarial", "shift",
                  "examples", "counterfactuals", "findings", "sign_off")
#: explanation samples when ``samples`` is None
DEFAULT_SAMPLES = 32


class AuditInputError(ValueError):
    """Bad input to ``run``, found before any analysis ran (the command exits 2 on it)."""


def check_checks(checks: object) -> tuple[str, ...]:
    """``checks`` as a tuple of known check names, duplicates dropped, order kept.

    Raises:
        AuditInputError: not a sequence of names, empty, or a name not in ``CHECKS``.
    """
    if isinstance(checks, str):
        checks = (checks,)
    try:
        names = list(checks)  # type: ignore[call-overload]
    except TypeError:
        raise AuditInputError(f"checks must be a sequence of names from {list(CHECKS)}; got "
                              f"{checks!r}") from None
    unknown = [c for c in names if c not in CHECKS]
    if unknown or not names:
        raise AuditInputError(f"unknown check(s) {unknown or names}; valid checks: "
                              f"{list(CHECKS)}")
    return tuple(dict.fromkeys(names))
