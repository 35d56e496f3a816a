"""Section 2, model details: architecture, parameters, input and output format, owners."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.serialize import records

KEY = "model"
TITLE = "Model details"
OPTIONS: dict[str, dict] = {}

_FORMATS = {
    "classification": "{n} class scores per sample",
    "binary": "one score per sample (positive-class probability)",
    "regression": "{n} regression output(s) per sample",
}
_TRANSFORMS = {
    "none": " (probabilities)",
    "softmax": " (logits; softmax applied by the audit)",
    "sigmoid": " (logit; sigmoid applied by the audit)",
    "renormalised": " (non-negative scores, renormalised by the audit)",
}


def build(ctx: AuditContext, options: dict) -> Section:
    """The layer table and the model's description (from the card)."""
    sec = new_section(KEY, ctx)
    m = ctx.model
    layers = layer_table(m)
    sec.tables["model_layers"] = layers
    params = int(sum(int(np.prod(v.shape)) for v in m.weights))
    trainable = int(sum(int(np.prod(v.shape)) for v in m.trainable_weights))
    fmt = _FORMATS[ctx.spec.task].format(n=ctx.spec.n_classes)
    if ctx.classifier:
        fmt += _TRANSFORMS[ctx.outputs.transform]
    card = ctx.card
    sec.content = {
        "name": m.name,
        "class": type(m).__name__,
        "parameters": params,
        "trainable_parameters": trainable,
        "non_trainable_parameters": params - trainable,
        "size_bytes": int(sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                              for v in m.weights)),
        "n_layers": len(layers),
        "input_shape": ([None, *ctx.forward.input_shape] if not ctx.multi_input
                        else {s.name: [None, *s.shape] for s in ctx.input_specs}),
        "input_dtype": str(ctx.x.dtype),
        "inputs": [{"name": s.name, "shape": [None, *s.shape], "dtype": s.dtype}
                   for s in ctx.input_specs],
        "outputs": [h.name for h in ctx.heads],
        "explained_output": ctx.output_name,
        "output_shape": [None, *np.asarray(ctx.outputs.raw).shape[1:]],
        "output_activation": last_activation(m),
        "output_format": fmt,
        "task": ctx.spec.task,
        "n_classes": int(ctx.spec.n_classes) if ctx.classifier else None,
        "class_names": ctx.names if ctx.classifier else None,
        "feature_names": ctx.feature_names,
        "layers": records(layers),
        "owners": card.get("owners"),
        "version": card.get("version"),
        "licence": card.get("licence", card.get("license")),
        "citation": card.get("citation"),
        "description": card.get("description"),
    }
    return sec


def layer_table(model: keras.Model) -> pd.DataFrame:
    """One row per layer (nested models' layers included): path, type, output shape, params."""
    from keras_audit.explain import list_layers

    try:
        shapes = {i.path: i.output_shape for i in list_layers(model)}
    except Exception:  # a subclassed model without a readable graph: shapes stay unknown
        shapes = {}
    rows = []

    def walk(container, prefix: str) -> None:
        for layer in getattr(container, "layers", []):
            path = prefix + layer.name
            shape = shapes.get(path)
            rows.append({"layer": path, "type": type(layer).__name__,
                         "output_shape": "" if shape is None else str(tuple(shape)),
                         "parameters": int(sum(int(np.prod(w.shape)) for w in layer.weights)),
                         "activation": activation_name(layer)})
            if isinstance(layer, keras.Model):
                walk(layer, path + "/")

    walk(model, "")
    return pd.DataFrame(rows, columns=["layer", "type", "output_shape", "parameters",
                                       "activation"])


def activation_name(layer: keras.layers.Layer) -> str:
    """The name of a layer's activation function, or ``""``."""
    act = getattr(layer, "activation", None)
    if act is None:
        return ""
    return getattr(act, "__name__", None) or type(act).__name__


def last_activation(model: keras.Model) -> str:
    """The activation of the model's last layer (descending into nested models)."""
    layer = model
    while isinstance(layer, keras.Model) and getattr(layer, "layers", None):
        layer = layer.layers[-1]
    return activation_name(layer) or type(layer).__name__
