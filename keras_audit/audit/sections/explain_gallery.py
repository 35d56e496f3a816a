"""The explanations section's image gallery: Grad-CAM and saliency overlays per sample.

Correct samples are chosen class-balanced (seeded); misclassified ones most confident first,
the mistakes a reviewer should see.
"""

from __future__ import annotations

import numpy as np

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section
from keras_audit.explain import balanced_order

OPTIONS = {"gallery": {"per_group": 8, "methods": ("gradcam", "saliency")}}


def build_part(ctx: AuditContext, options: dict, sec: Section) -> None:
    """Fill ``sec.content["gallery"]`` and ``sec.galleries``."""
    part: dict = {}
    sec.content["gallery"] = part
    opts = dict(options["gallery"])
    if "lrp" in ctx.checks and "lrp" not in opts["methods"]:  # the "lrp" check adds its maps
        opts["methods"] = (*opts["methods"], "lrp")
    with sec.step("gallery", part, total=len(opts["methods"])) as bar:
        _gallery(ctx, opts, sec, part, bar)


def _groups(ctx: AuditContext, per: int) -> list[tuple[str, str, list[int]]]:
    if not ctx.classifier:
        return [("samples", "Samples", [int(i) for i in ctx.explain_idx[:per]])]
    y = ctx.spec.y_true
    right = np.flatnonzero(ctx.pred == y)
    wrong = np.flatnonzero(ctx.pred != y)
    correct = right[balanced_order(y[right], per, seed=ctx.seed + 2)]
    order = np.argsort(-ctx.confidence[wrong], kind="stable")
    incorrect = [int(i) for i in wrong[order][:per]]
    return [("correct", "Correctly classified", [int(i) for i in correct]),
            ("incorrect", "Misclassified", incorrect)]


def _gallery(ctx: AuditContext, opts: dict, sec: Section, part: dict, bar) -> None:
    from keras_audit.audit.sections.explanation_methods import build_explainer, method_title
    from keras_audit.render.colormaps import technique_colormap
    from keras_audit.render.figures import png_bytes
    from keras_audit.render.images import overlay, to_uint8_images

    groups = _groups(ctx, int(opts["per_group"]))
    idx = np.asarray([i for _, _, g in groups for i in g], np.int64)
    part["groups"] = {key: [int(i) for i in g] for key, _, g in groups}
    part["methods"] = {}
    if len(idx) == 0:
        part["status"] = "ok"
        return
    xs = ctx.x[idx].astype(np.float32, copy=False)
    targets = ctx.pred[idx].astype(np.int64) if ctx.classifier else None
    maps: dict[str, np.ndarray] = {}
    for method in opts["methods"]:
        try:
            explainer = build_explainer(method, ctx.view)
        except ValueError as exc:
            part["methods"][method] = {"status": "skipped", "reason": str(exc)}
            sec.finding("info", f"{method_title(method)} gallery skipped: {exc}")
            bar.update(1)
            continue
        maps[method] = explainer(xs, targets)
        part["methods"][method] = {"status": "ok", **explainer_config(method, explainer)}
        bar.update(1)
    images = to_uint8_images(xs)
    tiles = {i: {"input": png_bytes(images[k])} for k, i in enumerate(idx)}
    for method, m in maps.items():
        over = overlay(images, m, cmap=technique_colormap(method))  # as in TensorBoard
        for k, i in enumerate(idx):
            tiles[i][method] = png_bytes(over[k])
    part["samples"] = []
    for key, title, group in groups:
        items = []
        for i in group:
            info: dict = {"index": int(i), "group": key}
            if ctx.classifier:
                info.update(true=ctx.class_name(ctx.spec.y_true[i]),
                            predicted=ctx.class_name(ctx.pred[i]),
                            confidence=float(ctx.confidence[i]))
            part["samples"].append(info)
            items.append({**info, "images": [("input", tiles[i]["input"])] + [
                (method_title(m), tiles[i][m]) for m in maps]})
        sec.galleries.append({"key": key, "title": title, "items": items})
    part["status"] = "ok"


def explainer_config(method: str, explainer) -> dict:
    """The explainer's class, title and scalar settings (layer, steps, noise...)."""
    from keras_audit.audit.sections.explanation_methods import method_title

    cfg = {"class": type(explainer).__name__, "title": method_title(method)}
    for attr in ("layer_name", "normalize", "num_samples", "noise", "steps"):
        value = getattr(explainer, attr, None)
        if value is not None and isinstance(value, bool | int | float | str):
            cfg[attr.replace("layer_name", "layer")] = value
    return cfg
