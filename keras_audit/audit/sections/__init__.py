"""The report's sections, in report order: one module each, one row each in ``TABLE``.

Every module has ``KEY`` (its report.json key and HTML anchor), ``TITLE`` (its heading),
``OPTIONS`` (its option groups and defaults, overridable through ``run(options=...)``) and
``build(ctx, options) -> Section``; its HTML is ``templates/sections/<KEY>.html``. To add an
analysis, write one module and add it here.
"""

from __future__ import annotations

from keras_audit.audit.sections import (
    adversarial,
    card,
    comparison,
    counterfactuals,
    cross_validation,
    data,
    examples,
    explanations,
    groups,
    model_details,
    performance,
    provenance,
    pruning,
    quality,
    robustness,
    shift,
    sign_off,
    training,
)

#: the section modules, in report order
TABLE = (provenance, model_details, training, card, data, performance, cross_validation, groups,
         comparison, explanations, quality, pruning, robustness, adversarial, shift, examples,
         counterfactuals, sign_off)
#: (anchor, heading) of the report's sections, in order
SECTIONS = tuple((m.KEY, m.TITLE) for m in TABLE)
#: per-analysis settings; ``run(options=...)`` overrides them key by key
DEFAULT_OPTIONS = {group: values for m in TABLE for group, values in m.OPTIONS.items()}

__all__ = ["DEFAULT_OPTIONS", "SECTIONS", "TABLE"]
