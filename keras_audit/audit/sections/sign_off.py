"""The last section: a blank sign-off block for the reviewer."""

from __future__ import annotations

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section

KEY = "sign_off"
TITLE = "Sign-off"
OPTIONS: dict[str, dict] = {}


def build(ctx: AuditContext, options: dict) -> Section:
    """Empty fields a reviewer fills in (HTML form and JSON nulls)."""
    sec = new_section(KEY, ctx)
    sec.content = {"reviewer": None, "role": None, "date": None, "decision": None,
                   "findings": None, "signature": None}
    return sec
