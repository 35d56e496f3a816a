"""Section 1, provenance: what was audited (content hashes), with which settings, and the id.

The report id names the content: the same weights, data, seed, settings and card give the
same id.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.serialize import array_hash, jsonable

KEY = "provenance"
TITLE = "Provenance"
OPTIONS: dict[str, dict] = {}


def build(ctx: AuditContext, options: dict) -> Section:
    """Hashes of the weights, data and background, the settings and the report id."""
    import keras_audit

    sec = new_section(KEY, ctx)
    x_hash, y_hash = _hash_all(ctx.inputs or (ctx.x,)), _hash_all(
        [h.y for h in ctx.heads if h.y is not None] or [ctx.y])
    data_hash = hashlib.sha256(f"{x_hash}|{y_hash}".encode()).hexdigest()
    settings = {"checks": list(ctx.checks), "samples": ctx.samples_requested,
                "options": jsonable(ctx.options)}
    background = None if ctx.background is None else array_hash(ctx.background)
    fingerprint = json.dumps({"weights": ctx.weights_sha256, "data": data_hash,
                              "background": background, "seed": ctx.seed,
                              "settings": settings, "card": ctx.card,
                              "class_names": ctx.names,
                              "feature_names": ctx.feature_names, **_gate_inputs(ctx)},
                             sort_keys=True)
    sec.content = {
        "report_id": "KA-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16].upper(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "generator": f"keras_audit {keras_audit.__version__}",
        "seed": ctx.seed,
        "checks": list(ctx.checks),
        "samples": int(len(ctx.explain_idx)),
        "weights_sha256": ctx.weights_sha256,
        "data_sha256": data_hash,
        "x_sha256": x_hash,
        "y_sha256": y_hash,
        "background_sha256": background,
        "settings": settings["options"],
    }
    return sec


def _hash_all(arrays) -> str:
    """One array's hash as ``array_hash`` gives it; several arrays' hashes hashed together."""
    hashes = [array_hash(a) for a in arrays]
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("|".join(hashes).encode()).hexdigest()
def _gate_inputs(ctx: AuditContext) -> dict:
    """The policy, groups, baseline and cross-validation, when given: they change the report,
    so its id."""
    from keras_audit.audit._weights import weights_hash

    out: dict = {}
    if ctx.policy is not None:
        out["policy"] = [c.to_dict() for c in ctx.policy]
    if ctx.groups:
        out["groups"] = {k: array_hash(v) for k, v in ctx.groups.items()}
    if ctx.baseline is not None:
        out["baseline"] = weights_hash(ctx.baseline)
    if ctx.cross_validation is not None:
        cv = ctx.cross_validation
        out["cross_validation"] = jsonable({"task": cv.task, "confidence": cv.confidence,
                                            "per_fold": cv.per_fold})
    return out
