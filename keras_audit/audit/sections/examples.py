"""Section "examples": the reference samples the model sees as closest to the audited ones.

Nearest references and class prototypes in the penultimate embedding, the nearest references
of the predicted and the true class for misclassified samples, and a PCA + t-SNE picture of
the embedding coloured by class with the misclassified marked. Needs ``run(reference=...)``.
"""

from __future__ import annotations

import numpy as np

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section, requested
from keras_audit.audit.serialize import records

KEY = "examples"
TITLE = "Example-based explanations"
OPTIONS = {"examples": {"k": 5, "layer": None, "max_misclassified": 8}}

AGREEMENT_WARNING = 0.8  # nearest reference of the predicted class for fewer samples: flagged
DUPLICATE_DISTANCE = 1e-6  # an embedding this close (relative) counts as a duplicate


def build(ctx: AuditContext, options: dict) -> Section:
    """Nearest references, prototypes, misclassified contrasts and the embedding figure."""
    sec = new_section(KEY, ctx)
    if not requested(ctx, "examples", sec.content):
        return sec
    if not ctx.classifier:
        sec.content.update({"status": "skipped", "reason": "example-based explanations "
                            "compare classes; the model is a regression model"})
        return sec
    with sec.step("examples", sec.content, total=2) as bar:
        _examples(ctx, options["examples"], sec, bar)
    return sec


def _samples(ctx: AuditContext, limit: int) -> np.ndarray:
    """The explained samples, then up to ``limit`` misclassified ones not among them."""
    wrong = np.flatnonzero(ctx.pred != ctx.spec.y_true)
    extra = np.setdiff1d(wrong, ctx.explain_idx)[:limit]
    return np.concatenate([ctx.explain_idx, extra]).astype(np.int64)


def _examples(ctx: AuditContext, opts: dict, sec: Section, bar) -> None:
    from keras_audit.audit.example_analysis import embed, examples
    from keras_audit.audit.examples_plots import embedding_figure

    pick = _samples(ctx, int(opts["max_misclassified"]))
    k = min(int(opts["k"]), len(ctx.reference))
    res = examples(ctx.model, ctx.x[pick], ctx.reference, reference_y=ctx.reference_y,
                   layer=opts["layer"], k=k, y=ctx.spec.y_true[pick], class_names=ctx.names)
    bar.update(1)
    titles = {"neighbours": "Nearest references in the penultimate embedding",
              "prototypes": "Class prototypes (medoids of the reference embeddings)",
              "misclassified": "Misclassified samples: nearest references of the predicted "
                               "and of the true class"}
    for name, fig in res.figures.items():
        sec.add_figure(name, fig, titles.get(name))
    emb, _, _ = embed(ctx.model, ctx.x, res.layer)
    wrong_all = ctx.pred != ctx.spec.y_true
    sec.add_figure("embedding", embedding_figure(emb, ctx.spec.y_true, wrong_all, ctx.names,
                                                 seed=ctx.seed, title=f"{res.layer}: "),
                   "Penultimate embedding of x: PCA and t-SNE, coloured by true class, "
                   "misclassified marked")
    bar.update(1)
    tables = {f"examples_{name}": t.copy() for name, t in res.tables.items()}
    for t in tables.values():  # sample positions into x, class ids as names
        if "sample" in t:
            t["sample"] = pick[t["sample"].to_numpy()]
        for col in ("predicted", "true", "reference_class", "class"):
            if col in t:
                t[col] = [ctx.class_name(c) for c in t[col]]
    sec.tables.update(tables)
    scale = float(np.median(np.linalg.norm(emb - emb.mean(axis=0), axis=1))) or 1.0
    duplicates = pick[res.distances[:, 0] <= DUPLICATE_DISTANCE * scale]
    m = res.misclassified
    closer_pred = int(np.sum(res.distances_predicted[:, 0] < res.distances_true[:, 0])) \
        if len(m) else 0
    sec.content.update({
        "status": "ok", "layer": res.layer, "k": k, "n_samples": int(len(pick)),
        "n_reference": int(len(ctx.reference)),
        "reference_labels": res.metrics["reference_labels"],
        "embedding_dim": res.metrics["embedding_dim"],
        "label_agreement": res.metrics["label_agreement"],
        "n_misclassified": int(len(m)), "misclassified_closer_to_predicted": closer_pred,
        "duplicates": duplicates.tolist(),
        "prototypes": {ctx.class_name(c): r for c, r in res.prototypes.items()},
        "misclassified": records(tables["examples_misclassified"])
        if "examples_misclassified" in tables else [],
    })
    _findings(sec, res, duplicates, closer_pred)


def _findings(sec: Section, res, duplicates: np.ndarray, closer_pred: int) -> None:
    agree = res.metrics["label_agreement"]
    if agree < AGREEMENT_WARNING:
        sec.finding("warning", f"for only {100 * agree:.0f}% of the samples is the nearest "
                    "reference of the predicted class: the embedding does not separate the "
                    "classes the way the head decides")
    else:
        sec.finding("info", f"for {100 * agree:.0f}% of the samples the nearest reference in "
                    f"the embedding ({res.layer}) has the predicted class")
    if len(duplicates):
        sec.finding("warning", f"{len(duplicates)} audited sample(s) have an exact duplicate in "
                    f"the reference data (e.g. x[{int(duplicates[0])}]): check for leakage "
                    "between the reference (training) and audit data")
    if len(res.misclassified):
        sec.finding("info", f"{closer_pred} of {len(res.misclassified)} misclassified samples "
                    "lie nearer to references of the predicted class than of their true class")
