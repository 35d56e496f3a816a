"""Section 4, data: what was audited (shape, range, labels, class balance, explained samples)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.serialize import records

KEY = "data"
TITLE = "Data"
OPTIONS: dict[str, dict] = {}

SMALL_DATA = 100        # fewer audited samples than this is flagged
IMBALANCE_RATIO = 3.0   # largest class over smallest above this is flagged

_Y_FORMATS = {"classification": "class ids", "binary": "binary labels {0, 1}",
              "regression": "regression targets"}


def build(ctx: AuditContext, options: dict) -> Section:
    """Summary statistics of ``x`` and ``y``, the class balance and the explained samples."""
    sec = new_section(KEY, ctx)
    x = ctx.x
    xf = x.astype(np.float64, copy=False)
    data = {
        "kind": ctx.kind,
        "n_samples": ctx.n_samples,
        "x_shape": [ctx.n_samples, *x.shape[1:]],
        "x_dtype": str(x.dtype),
        "inputs": {s.name: {"shape": list(a.shape), "dtype": str(a.dtype)}
                   for s, a in zip(ctx.input_specs, ctx.inputs)},
        "x_min": float(np.nanmin(xf)), "x_max": float(np.nanmax(xf)),
        "x_mean": float(np.nanmean(xf)), "x_std": float(np.nanstd(xf)),
        "y_shape": [ctx.n_samples, *ctx.y.shape[1:]],
        "y_format": "one-hot" if ctx.spec.one_hot else _Y_FORMATS[ctx.spec.task],
        "explained_samples": {"count": int(len(ctx.explain_idx)),
                              "indices": ctx.explained_indices.tolist(),
                              "selection": ("class-balanced round robin, seeded" if
                                            ctx.classifier else "seeded random")},
    }
    if ctx.stream is not None:  # x statistics are the drawn samples'; counts every sample's
        data["streamed"] = True
        data["x_statistics_over"] = f"the {len(x)} drawn samples"
    if ctx.classifier:
        spec = ctx.spec if ctx.stream is None else ctx.stream.spec
        counts = np.bincount(spec.y_true, minlength=spec.n_classes)
        balance = pd.DataFrame({"class": ctx.names, "count": counts.astype(int),
                                "share": counts / max(1, counts.sum())})
        sec.tables["data_class_balance"] = balance
        data["class_balance"] = records(balance)
        present = counts[counts > 0]
        ratio = float(present.max() / present.min()) if len(present) else None
        data["imbalance_ratio"] = ratio
        if ratio is not None and ratio > IMBALANCE_RATIO:
            sec.finding("warning", f"the classes are imbalanced: the largest has {ratio:.1f}x "
                        "the samples of the smallest")
        missing = [ctx.names[i] for i in range(len(counts)) if counts[i] == 0]
        if missing:
            sec.finding("warning", f"no audited sample has class {', '.join(missing)}: its "
                        "performance is not measured")
    if ctx.n_samples < SMALL_DATA:
        sec.finding("warning", f"only {ctx.n_samples} samples were audited: the confidence "
                    "intervals are wide")
    sec.content = data
    return sec
