"""Explanation quality: the model-parameter randomisation test and deletion/insertion AUCs.

Hand-written here because Quantus, the usual library for these metrics, pins Keras 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd

from keras_audit._checks import positive_int
from keras_audit.audit._weights import preserved_weights
from keras_audit.explain import (
    deletion_insertion,
    predicted_classes,
    registry,
    spearman_per_sample,
)
from keras_audit.explain.forward import CompiledForward, check_batch
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    import tensorflow as tf
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

#: |Spearman| at full randomisation below which a method passes the sanity test. Adebayo et
#: al. (2018) call a method insensitive when its maps stay similar after the model's weights
#: are randomised; 0.5 is half of a perfect rank agreement.
SANITY_THRESHOLD = 0.5


def _check_methods(methods: Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    bad = [m for m in methods if m not in registry.names()]
    if bad or not methods:
        raise ValueError(f"unknown method(s) {bad or methods}; choices: {sorted(registry.names())}")
    return methods


def _explainer(model: keras.Model, method: str, seed: int):
    cls = registry.get(method)
    if method == "smoothgrad":
        return cls(model, num_samples=16, seed=seed)
    if method == "integrated_gradients":
        return cls(model, steps=32)
    return cls(model)


def _weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers that own weights, leaves of nested models included, from the output down."""
    out: list[keras.layers.Layer] = []

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
            elif layer.weights:
                out.append(layer)

    walk(model)
    return out[::-1]


def sanity(model: keras.Model, x: tf.Tensor | ArrayLike,
           targets: int | Sequence[int] | ArrayLike | None = None,
           methods: Sequence[str] = ("gradcam", "saliency"), seed: int = 0,
           threshold: float = SANITY_THRESHOLD, max_layers: int | None = None) -> pd.DataFrame:
    """The cascading model-parameter randomisation test (Adebayo et al. 2018).

    Step 0 explains the trained model; step k re-draws the kernels of the top k weighted layers
    (normal noise with each kernel's own standard deviation; biases and normalisation
    statistics kept) and explains again. A method that explains the model, not the input,
    gives maps that stop resembling the trained model's.

    Args:
        model: the trained model. Its weights are restored exactly afterwards, also on error.
        x: the samples to explain.
        targets: classes to explain; ``None`` = the trained model's predictions (kept fixed
            through the randomisation).
        methods: method names from ``keras_audit.explain.registry``.
        seed: seeds the random weights.
        threshold: a method passes when the mean |Spearman| at the last step is below it.
        max_layers: randomise at most this many layers (``None`` = all).

    Returns:
        A DataFrame with rows ``method, step, layer, spearman`` (mean over samples), plus
        ``spearman_std`` and ``passed`` (the method's verdict, repeated on its rows).

    Raises:
        ValueError: an unknown method, or ``x`` the model cannot take.
    """
    methods = _check_methods(methods)
    x = check_batch(model, x).astype(np.float32, copy=False)
    layers = _weighted_layers(model)
    if max_layers is not None:
        layers = layers[:max(1, int(max_layers))]
    if not layers:
        raise ValueError(f"model {model.name!r} has no weights to randomise")
    explainers = {m: _explainer(model, m, seed) for m in methods}
    if targets is None:
        targets = predicted_classes(CompiledForward(model)(x))
    rng = np.random.default_rng(seed)
    rows = []
    with preserved_weights(model):
        reference = {m: e(x, targets) for m, e in explainers.items()}
        for m in methods:
            rows.append((m, 0, "<none>", 1.0, 0.0))
        for step, layer in enumerate(layers, start=1):
            for w in layer.weights:
                if "kernel" in w.path or "embeddings" in w.path:
                    v = np.asarray(w.numpy())
                    w.assign(rng.normal(0.0, float(v.std()) or 0.05, v.shape).astype(v.dtype))
            for m, e in explainers.items():
                rho = spearman_per_sample(reference[m], e(x, targets))
                rows.append((m, step, layer.name, float(np.nanmean(rho)) if np.isfinite(
                    rho).any() else 0.0, float(np.nanstd(rho)) if np.isfinite(rho).any()
                    else 0.0))
    table = pd.DataFrame(rows, columns=["method", "step", "layer", "spearman", "spearman_std"])
    last = table[table.step == table.step.max()].set_index("method")["spearman"]
    table["passed"] = table["method"].map(lambda m: bool(abs(last[m]) < threshold))
    table.attrs["threshold"] = threshold
    return table


def faithfulness(model: keras.Model, x: tf.Tensor | ArrayLike,
                 targets: int | Sequence[int] | ArrayLike | None = None,
                 methods: Sequence[str] = ("gradcam", "saliency"), steps: int = 20,
                 seed: int = 0) -> pd.DataFrame:
    """Deletion and insertion AUC (RISE protocol) per method, against a random pixel order.

    Lower deletion AUC and higher insertion AUC than the random order mean the map ranks the
    pixels that matter to the model first.

    Args:
        model: the trained model.
        x: images (or sequences / tables) to explain.
        targets: classes whose probability is tracked; ``None`` = the predicted class.
        methods: method names from ``keras_audit.explain.registry``.
        steps: points on each curve after the first.
        seed: seeds the random order.

    Returns:
        A DataFrame with one row per method: ``method, deletion_auc, insertion_auc,
        random_deletion_auc, random_insertion_auc`` (means over samples) and ``n``.

    Raises:
        ValueError: an unknown method, ``steps`` < 1, or ``x`` the model cannot take.
    """
    methods = _check_methods(methods)
    positive_int(steps, "steps")
    x = check_batch(model, x).astype(np.float32, copy=False)
    forward = CompiledForward(model)
    rows = []
    for m in methods:
        maps = _explainer(model, m, seed)(x, targets)
        aucs = deletion_insertion(model, x, maps, targets, steps=steps, seed=seed,
                                  forward=forward)
        rows.append({"method": m, **{k: float(np.mean(v)) for k, v in aucs.items()},
                     "n": len(x)})
    cols = ["method", "deletion_auc", "insertion_auc", "random_deletion_auc",
            "random_insertion_auc", "n"]
    return pd.DataFrame(rows)[cols]


def sanity_figure(table: pd.DataFrame) -> Figure:
    """Spearman correlation against the number of randomised layers, one line per method."""
    fig = new_figure((6, 3.6))
    ax = fig.add_subplot()
    for m, g in table.groupby("method", sort=False):
        ax.plot(g["step"], g["spearman"], marker="o", label=f"{m} ({'pass' if g.passed.iloc[0] else 'FAIL'})")
    thr = table.attrs.get("threshold", SANITY_THRESHOLD)
    ax.axhline(thr, color="grey", ls="--", lw=1, label=f"threshold {thr}")
    steps = table.drop_duplicates("step").sort_values("step")
    ax.set_xticks(steps["step"], steps["layer"], rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("layers randomised (cascading from the top)")
    ax.set_ylabel("Spearman vs trained model")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=7)
    return fig


def faithfulness_figure(table: pd.DataFrame) -> Figure:
    """Bars of deletion/insertion AUC per method beside the random-order baseline."""
    fig = new_figure((6, 3.2))
    axes = fig.subplots(1, 2)
    idx = np.arange(len(table))
    for ax, kind, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
        ax.bar(idx - 0.2, table[f"{kind}_auc"], 0.4, label="explanation order")
        ax.bar(idx + 0.2, table[f"random_{kind}_auc"], 0.4, label="random order")
        ax.set_xticks(idx, table["method"], fontsize=8)
        ax.set_title(f"{kind} AUC ({better} is better)", fontsize=9)
    axes[0].legend(fontsize=7)
    return fig
