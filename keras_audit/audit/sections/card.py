"""Section 3, intended use, limitations and risks: the model card.

A missing card, or a card that leaves the intended use, limitations or risks unstated, is a
finding of its own (the executive summary lists every section's findings).
"""

from __future__ import annotations

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section

KEY = "card"
TITLE = "Intended use, limitations and risks"
OPTIONS: dict[str, dict] = {}
#: the card fields a reviewer needs; each one left out is named in a finding
CARD_FIELDS = ("intended_use", "limitations", "risks")


def build(ctx: AuditContext, options: dict) -> Section:
    """The model card as given (see ``keras_audit.audit.load_card``)."""
    sec = new_section(KEY, ctx)
    sec.content = dict(ctx.card)
    if not ctx.card:
        sec.finding("warning", "no model card was given: the intended use, limitations and "
                    "risks are not stated (pass card=... or --card card.yaml)")
    else:
        unstated = [k for k in CARD_FIELDS if ctx.card.get(k) in (None, "", [], {})]
        if unstated:
            sec.finding("warning", "the model card does not state: "
                        + ", ".join(k.replace("_", " ") for k in unstated))
    return sec
