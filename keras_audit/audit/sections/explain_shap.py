"""The explanations section's SHAP part: values on the explained samples, and additivity.

SHAP values must sum, with the base value, to the model's output (additivity). Exact
explainers are held to shap's own tolerance; expected gradients (a sampling estimate) to a
looser one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, requested
from keras_audit.audit.serialize import jsonable, records

OPTIONS = {"shap": {"method": "auto", "max_samples": 8, "background_size": None,
                    "max_evals": None}}

SHAP_TOLERANCE = 1e-2              # shap's own additivity tolerance, for exact explainers
SHAP_APPROXIMATE = ("gradient",)   # expected gradients: additive only up to sampling error
SHAP_APPROXIMATE_TOLERANCE = 0.1
# expected gradients' additivity error shrinks like 1/sqrt(samples): on the demo CNN, 1000
# samples gave 0.12-0.15 and 4000 gave 0.03 (about 3 s more)
IMAGE_MAX_EVALS = 4000


def build_part(ctx: AuditContext, options: dict, sec: Section) -> None:
    """Fill ``sec.content["shap"]``."""
    part: dict[str, Any] = {}
    sec.content["shap"] = part
    if not requested(ctx, "shap", part):
        return
    with sec.step("shap", part):
        _shap(ctx, options["shap"], sec, part)


def _shap(ctx: AuditContext, opts: dict, sec: Section, part: dict) -> None:
    from keras_audit.audit.shap_analysis import shap_values

    n = min(len(ctx.explain_idx), int(opts["max_samples"]))
    size = opts["background_size"] or (16 if ctx.kind == "image" else 50)
    bg, source = ctx.background_set(int(size))
    xs = ctx.x_explain[:n]
    # shap names the model's outputs: one sigmoid unit is the positive class's score
    outputs = [ctx.names[1]] if ctx.spec.task == "binary" else ctx.names
    targets = None
    if ctx.kind != "tabular" and ctx.classifier:
        # images and sequences: explain the predicted class only, as the other image explanations do
        targets = ctx.targets_explain[:n]
    max_evals = opts["max_evals"] or (IMAGE_MAX_EVALS if ctx.kind == "image" else 500)
    res = shap_values(ctx.view, xs, bg, method=opts["method"], targets=targets,
                      max_evals=int(max_evals), seed=ctx.seed,
                      feature_names=ctx.feature_names if ctx.kind == "tabular" else None,
                      class_names=outputs)
    part["details"] = jsonable(res.details or {})
    if ctx.x.dtype.kind in "iu" and ctx.kind == "sequence":
        part["note"] = ("token ids have no gradient, so SHAP uses a model-agnostic explainer "
                        f"({res.method}): each token is masked by background samples' tokens; "
                        "one value per token")
    values = np.asarray(res.values)
    err = float(np.max(np.abs(np.asarray(res.additivity_error))))
    part.update({"method": res.method, "samples": int(n),
                 "sample_indices": ctx.explain_idx[:n].tolist(),
                 "background_size": int(len(bg)), "background_source": source,
                 "values_shape": list(values.shape), "additivity_error": err})
    if ctx.kind == "tabular":
        table = importance_table(values, outputs, ctx.feature_names or [])
        sec.tables["shap_importance"] = table
        part["importance"] = records(table)
    else:
        # mean |SHAP| per output: which classes the explained samples' evidence concerns
        per_out = np.abs(values).reshape(n, -1, values.shape[-1]).sum(axis=1).mean(axis=0)
        part["mean_abs_per_output"] = per_out.tolist()
    names = []
    for name, fig in (res.figures or {}).items():
        key = name if name.startswith("shap") else f"shap_{name}"
        names.append(key)
        sec.add_figure(key, fig, f"SHAP: {name.replace('_', ' ')}")
    part["figures"] = names
    approximate = res.method in SHAP_APPROXIMATE
    limit = SHAP_APPROXIMATE_TOLERANCE if approximate else SHAP_TOLERANCE
    part["additivity_tolerance"] = limit
    what = (f"SHAP ({res.method}, a sampling estimate)" if approximate
            else f"SHAP ({res.method})")
    if err > limit:
        sec.finding("warning", f"{what}: additivity error {err:.2g} is above {limit}: the "
                    "values do not sum to the model's outputs")
    else:
        sec.finding("info", f"{what}: the values sum to the model's outputs within {err:.2g} "
                    f"(tolerance {limit})")


def importance_table(values: np.ndarray, outputs: list[str],
                     feature_names: list[str]) -> pd.DataFrame:
    """Mean |SHAP| per feature and output, most important feature first."""
    imp = np.abs(values).mean(axis=0)  # (F, outputs)
    if imp.ndim == 1:
        imp = imp[:, None]
    cols = (outputs if imp.shape[1] == len(outputs)
            else [f"output_{i}" for i in range(imp.shape[1])])
    table = pd.DataFrame(imp, columns=[f"mean_abs_shap[{c}]" for c in cols])
    table.insert(0, "feature", feature_names)
    table["mean_abs_shap"] = imp.mean(axis=1)
    table = table.sort_values("mean_abs_shap", ascending=False, kind="stable")
    return table.reset_index(drop=True)
