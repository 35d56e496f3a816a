"""The explanations section's LIME part: local linear surrogates of the explained samples.

A low R² of the surrogates means their weights describe the model poorly; that is a finding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, requested
from keras_audit.audit.serialize import records

OPTIONS = {"lime": {"num_samples": 1000, "max_samples": 4}}

LIME_SCORE_WARNING = 0.3   # mean R² of LIME's local surrogates below this is flagged
TRAINING_SIZE = 500        # tabular LIME's training statistics: this many background rows


def build_part(ctx: AuditContext, options: dict, sec: Section) -> None:
    """Fill ``sec.content["lime"]``."""
    part: dict[str, Any] = {}
    sec.content["lime"] = part
    if not requested(ctx, "lime", part):
        return
    if ctx.kind == "sequence":
        part.update({"status": "skipped", "reason": "LIME explains images (N, H, W, C) and "
                     "tables (N, F); this input is neither"})
        return
    n = min(len(ctx.explain_idx), int(options["lime"]["max_samples"]))
    with sec.step("lime", part, total=n) as bar:
        _lime(ctx, options["lime"], sec, part, n)
        bar.update(n)


def _lime(ctx: AuditContext, opts: dict, sec: Section, part: dict, n: int) -> None:
    from keras_audit.audit.lime_analysis import lime_explanations

    kwargs: dict[str, Any] = {}
    if ctx.kind == "tabular":
        train, _ = ctx.background_set(TRAINING_SIZE)
        kwargs.update(training_data=train, feature_names=ctx.feature_names)
    res = lime_explanations(ctx.view, ctx.x_explain[:n], num_samples=int(opts["num_samples"]),
                            kind="auto", class_names=ctx.names, targets=ctx.targets_explain[:n],
                            seed=ctx.seed, **kwargs)
    part.update({"num_samples": int(opts["num_samples"]), "samples": int(n),
                 "sample_indices": ctx.explain_idx[:n].tolist(), "kind": res.kind})
    if res.segmentation is not None:
        part["segmentation"] = res.segmentation
    if res.kernel_width is not None:
        part["kernel_width"] = float(res.kernel_width)
    if res.segments_per_image is not None:
        part["segments_per_image"] = [int(v) for v in np.asarray(res.segments_per_image).ravel()]
    if res.table is not None:
        table = res.table.copy()  # the position among the explained samples -> x's index
        if "index" not in table.columns:
            table.insert(0, "index", ctx.explain_idx[:n][table["sample"].to_numpy()])
        sec.tables["lime_explanations"] = table
        part["explanations"] = records(table)
    for name, fig in res.figures.items():
        sec.add_figure(f"lime_{name}", fig, f"LIME: {name.replace('_', ' ')}")
    part["figures"] = [f"lime_{k}" for k in res.figures]
    scores = np.asarray(res.scores, float)
    finite = scores[np.isfinite(scores)]
    if finite.size:
        score = float(finite.mean())
        part["mean_score"] = score
        if score < LIME_SCORE_WARNING:
            sec.finding("warning", f"LIME's local linear surrogates explain little of the "
                        f"model's behaviour (mean R² {score:.2f}, below {LIME_SCORE_WARNING}): "
                        "read its weights with care")
