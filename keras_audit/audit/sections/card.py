"""Section 3, intended use, limitations and risks: the model card, and the findings list.

The findings of every section are shown here (the runner gathers them); this builder only
carries the card.
"""

from __future__ import annotations

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section

KEY = "card"
TITLE = "Intended use, limitations and risks"
OPTIONS: dict[str, dict] = {}


def build(ctx: AuditContext, options: dict) -> Section:
    """The model card as given (see ``keras_audit.audit.load_card``)."""
    sec = new_section(KEY, ctx)
    sec.content = dict(ctx.card)
    return sec
