"""SHAP values of a Keras model's outputs, with the additivity error measured and figures drawn.

shap does the estimation; this module chooses the explainer, hands it a compiled forward pass
(``CompiledForward``) instead of ``model.predict`` (FIELD_NOTES: 152x slower for
KernelExplainer), gives the gradient-based explainers a functional Keras graph of the model
(a Keras 3 ``Sequential`` may have no usable ``output``), checks the arguments before any work
and turns shap's known failures into a ``ValueError`` naming a method that works instead.
"""

from __future__ import annotations

import contextlib
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_audit._checks import positive_int
from keras_audit.audit._explain_common import (
    as_2d_outputs,
    check_choice,
    check_names,
    class_label,
    get_forward,
    pyplot_figure,
    resolve_targets,
)
from keras_audit.audit._repr import short_repr
from keras_audit.explain.forward import CompiledForward, check_batch, select_output
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike

#: the ``method`` argument's choices
SHAP_METHODS = ("auto", "gradient", "deep", "permutation", "kernel", "partition")
#: background rows kept for DeepExplainer, KernelExplainer and the Permutation masker (shap's
#: own advice: more rows cost time linearly and change the estimate little)
MAX_BACKGROUND = 100
#: shap's own tolerance for ``check_additivity``
SHAP_TOLERANCE = 1e-2

_MODEL_AGNOSTIC = ("permutation", "kernel", "partition")


@dataclass
class ShapResult:
    """SHAP values of ``model``'s outputs (as ``model.predict`` returns them) for ``x``.

    Attributes:
        values: ``x.shape + (K,)``: one attribution per input element and explained output.
            ``K`` is the number of model outputs (``targets=None``) or 1 (one target per
            sample).
        base_values: ``(N, K)``: the expected output the values start from (the mean output
            over the background; for ``partition``, the output on the fully blurred image).
        additivity_error: ``max |values summed over the input axes + base_values - outputs|``.
            Exact explainers (deep, permutation, kernel, partition) reach float precision;
            ``gradient`` (expected gradients) is a sampling estimate, so its error shrinks with
            ``max_evals``.
        method: the explainer used: one of ``gradient``, ``deep``, ``permutation``, ``kernel``,
            ``partition``.
        outputs: ``(N, K)``: the model outputs explained.
        output_indices: ``(N, K)`` int: which model output each column of ``values`` explains.
        feature_names: the tabular features' names (``None`` for images).
        figures: matplotlib Figures by name: ``shap_maps`` (images); ``beeswarm`` and ``bar``
            (tabular).
        details: what was run (explainer class, background size, masker, evaluations).
    """

    values: np.ndarray
    base_values: np.ndarray
    additivity_error: float
    method: str
    outputs: np.ndarray
    output_indices: np.ndarray
    feature_names: list[str] | None = None
    figures: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    __repr__ = short_repr  # shapes and sizes, not the arrays


def shap_values(model: keras.Model, x: tf.Tensor | ArrayLike,
                background: tf.Tensor | ArrayLike | None = None, method: str = "auto",
                targets: int | Sequence[int] | ArrayLike | None = None, max_evals: int = 500,
                seed: int = 0, batch_size: int = 256,
                feature_names: Sequence[str] | None = None,
                class_names: Sequence[str] | None = None, figures: bool = True,
                forward: CompiledForward | None = None) -> ShapResult:
    """Explain ``model``'s outputs on ``x`` with SHAP values and measure their additivity.

    Args:
        model: a built Keras model with one input (a multi-output model: its first output).
        x: the samples to explain, a batch the model accepts: images ``(N, H, W, C)``, tabular
            rows ``(N, F)`` or any other shape (model-agnostic methods see it flattened).
        background: reference samples (same shape as ``x`` without N) that stand for "feature
            absent"; a few dozen to 100 rows. Required except for ``partition``, which masks
            by blurring and ignores it.
        method: ``"auto"`` (``gradient`` for image models, ``permutation`` otherwise),
            ``"gradient"`` (shap.GradientExplainer, expected gradients), ``"deep"``
            (shap.DeepExplainer, DeepLIFT; not every op is supported), ``"permutation"``,
            ``"kernel"`` (model-agnostic), ``"partition"`` (images, model-agnostic: superpixel
            hierarchy with a blur masker).
        targets: ``None`` explains every output; an ``int`` one output for all samples;
            ``(N,)`` ints one output per sample (then ``K == 1``).
        max_evals: the evaluation budget per sample: ``max_evals`` of the Permutation and
            Partition explainers, ``nsamples`` of KernelExplainer and GradientExplainer;
            DeepExplainer ignores it. Permutation needs at least ``2 * features + 1``.
        seed: seeds shap's sampling (the global NumPy state is restored afterwards).
        batch_size: rows per model call.
        feature_names: tabular only: one name per feature.
        class_names: names of the outputs, for figure titles.
        figures: draw the figures (``False`` skips them).
        forward: a ``CompiledForward`` of this model to reuse (already traced); ``None``
            builds one with ``batch_size``.

    Returns:
        A ``ShapResult``.

    Raises:
        ValueError: an unknown ``method`` (the message lists the choices), ``x`` or
            ``background`` of the wrong shape, a missing background, a target out of range,
            bad ``max_evals``/``batch_size``/names, ``partition`` on non-image input, or an
            explainer that fails on this model (the message names the method that works).
    """
    check_choice(method, SHAP_METHODS, "SHAP method")
    max_evals = positive_int(max_evals, "max_evals")
    batch_size = positive_int(batch_size, "batch_size")
    seed = positive_int(seed, "seed", minimum=0)
    x = check_batch(model, x)
    image = x.ndim == 4 and x.shape[-1] in (1, 3, 4)
    if method == "auto":
        method = "gradient" if image else "permutation"
    if method == "partition" and not image:
        raise ValueError(f"method='partition' masks images (N, H, W, C with C in 1, 3, 4); x has "
                         f"shape {x.shape}: use 'permutation' or 'kernel' for this input")
    if method in ("gradient", "deep") and x.dtype.kind in "biu" and not image:
        raise ValueError(f"method={method!r} needs a differentiable input, but x has dtype "
                         f"{x.dtype} (token ids?): use 'permutation' or 'kernel'")
    n_features = int(np.prod(x.shape[1:]))
    if method == "permutation" and max_evals < 2 * n_features + 1:
        raise ValueError(f"max_evals={max_evals} is too low for the Permutation explainer: it "
                         f"needs at least 2 * features + 1 = {2 * n_features + 1} (or use "
                         "method='kernel')")
    if background is None:
        if method != "partition":
            raise ValueError(f"method={method!r} needs background samples (e.g. 50-100 "
                             "training rows); only 'partition' works without one")
    else:
        background = check_batch(model, background, "background")
    names = check_names(feature_names, x.shape[1], "feature_names") if x.ndim == 2 else None

    forward = get_forward(model, forward, batch_size)
    n_outputs = as_2d_outputs(forward(x[:1])).shape[1]
    class_names = check_names(class_names, n_outputs, "class_names")
    tgt = resolve_targets(targets, len(x), n_outputs)

    out = as_2d_outputs(forward(x))
    runner = {"gradient": _gradient, "deep": _deep, "permutation": _permutation,
              "kernel": _kernel, "partition": _partition}[method]
    values, base, details = runner(model, forward, x, background, tgt, max_evals, seed,
                                   batch_size)
    values = np.asarray(values, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    if base.ndim == 1:  # one expected value per output, shared by every sample
        base = np.tile(base[None], (len(x), 1))
    if tgt is not None and values.shape[-1] == n_outputs:  # explainers that explain everything
        values = np.take_along_axis(
            values, tgt.reshape((-1,) + (1,) * (values.ndim - 1)), axis=-1)
        base = np.take_along_axis(base, tgt[:, None], axis=1)
    k = values.shape[-1]
    index = (np.tile(np.arange(n_outputs), (len(x), 1)) if tgt is None else tgt[:, None])
    explained = np.take_along_axis(out, index, axis=1).astype(np.float64)
    error = float(np.max(np.abs(values.reshape(len(x), -1, k).sum(axis=1) + base - explained)))

    result = ShapResult(values=values, base_values=base, additivity_error=error, method=method,
                        outputs=explained, output_indices=index, feature_names=names,
                        details=details)
    if figures:
        if image:
            result.figures["shap_maps"] = _image_figure(x, result, class_names)
        elif x.ndim == 2:
            result.figures.update(_tabular_figures(x, result, class_names, out))
    return result


# -- explainers ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings shap's Keras path triggers on every call (it feeds a list to a
    single-input functional model) and shap's deprecation notices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*keras is no longer supported")
        warnings.filterwarnings("ignore", message="Your TensorFlow version is newer")
        yield


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (KernelExplainer and GradientExplainer draw from it) and
    restore the caller's state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _subsample(background: np.ndarray, seed: int) -> np.ndarray:
    if len(background) <= MAX_BACKGROUND:
        return background
    idx = np.random.default_rng(seed).choice(len(background), MAX_BACKGROUND, replace=False)
    return background[np.sort(idx)]


def _keras_graph(model: keras.Model, method: str) -> keras.Model:
    """A functional model ``Input -> model -> first output`` sharing the model's weights.

    shap's gradient explainers read ``model.inputs``/``model.output``; a Keras 3 Sequential
    built with ``keras.Input`` (and a multi-output model) does not give them usable.
    """
    from keras_audit.explain.forward import model_input_shape

    inp = keras.Input(model_input_shape(model), dtype="float32")
    try:
        out = select_output(model(inp), None, model)
    except Exception as exc:  # a subclassed model that cannot run symbolically
        raise ValueError(f"method={method!r} needs a Keras graph of the model, but the model "
                         f"could not be called on a symbolic keras.Input ({exc}); use "
                         "method='permutation' or 'partition' (model-agnostic)") from exc
    if len(out.shape) == 1:
        out = keras.layers.Reshape((1,))(out)
    return keras.Model(inp, out)


def _gradient(model, forward, x, background, tgt, max_evals, seed, batch_size):
    import shap

    net = _keras_graph(model, "gradient")
    # equal-sized batches: shap traces one tf.function per output, retraced per batch shape
    n_batches = -(-max_evals // batch_size)
    with _quiet(), _numpy_seed(seed):
        explainer = shap.GradientExplainer(net, background.astype(np.float32),
                                           batch_size=-(-max_evals // n_batches))
        xf = x.astype(np.float32)
        if tgt is None:
            values = explainer.shap_values(xf, nsamples=max_evals, rseed=seed)
        else:  # only the targets' gradients: K times less work than explaining every output
            values, _ = explainer.shap_values(xf, nsamples=max_evals, rseed=seed,
                                              ranked_outputs=tgt[:, None],
                                              output_rank_order="custom")
    values = np.asarray(values)
    if values.ndim == x.ndim:  # a single-output model without the trailing axis
        values = values[..., None]
    base = as_2d_outputs(forward(background)).mean(axis=0)
    if tgt is not None:
        base = base[tgt][:, None]
    return values, base, {"explainer": "shap.GradientExplainer", "nsamples": max_evals,
                          "background_size": len(background)}


def _deep(model, forward, x, background, tgt, max_evals, seed, batch_size):
    import shap
    from tensorflow.python.eager import execute as tf_execute

    bg = _subsample(background, seed).astype(np.float32)
    net = _keras_graph(model, "deep")
    # shap swaps TensorFlow's gradient recorder while it runs and does not put it back when the
    # model raises inside; left swapped, every later gradient in the process fails.
    recorder = tf_execute.record_gradient
    try:
        with _quiet():
            explainer = shap.DeepExplainer(net, bg)
            values = explainer.shap_values(x.astype(np.float32), check_additivity=True)
            base = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
    except Exception as exc:
        reason = str(exc).strip().splitlines()
        reason = next((r for r in reversed(reason) if r.strip()), type(exc).__name__)
        raise ValueError(
            "shap's DeepExplainer cannot explain this model (an op it has no DeepLIFT rule for, "
            f"e.g. max pooling over channels, or a non-additive result): {reason.strip()[:300]}. "
            "Use method='gradient' (GradientExplainer: any differentiable model) or "
            "method='partition' (model-agnostic, images) instead") from exc
    finally:
        tf_execute.record_gradient = recorder
    values = np.asarray(values)
    if values.ndim == x.ndim:
        values = values[..., None]
    return values, base, {"explainer": "shap.DeepExplainer", "background_size": len(bg)}


def _flat_fn(forward: CompiledForward, shape: tuple):
    def f(z):
        return as_2d_outputs(forward(np.asarray(z).reshape((-1, *shape))))
    return f


def _permutation(model, forward, x, background, tgt, max_evals, seed, batch_size):
    import shap

    n = len(x)
    flat_bg = background.reshape(len(background), -1).astype(np.float64)
    masker = shap.maskers.Independent(flat_bg, max_samples=MAX_BACKGROUND)
    with _quiet():
        explainer = shap.explainers.Permutation(_flat_fn(forward, x.shape[1:]), masker,
                                                seed=seed)
        exp = explainer(x.reshape(n, -1).astype(np.float64), max_evals=max_evals,
                        batch_size=batch_size, silent=True)
    values = np.asarray(exp.values).reshape(x.shape + (-1,))
    return values, np.asarray(exp.base_values).reshape(n, -1), {
        "explainer": "shap.explainers.Permutation", "max_evals": max_evals,
        "background_size": min(len(background), MAX_BACKGROUND)}


def _kernel(model, forward, x, background, tgt, max_evals, seed, batch_size):
    import shap

    n = len(x)
    bg = _subsample(background, seed).reshape(-1, int(np.prod(x.shape[1:]))).astype(np.float64)
    with _quiet(), _numpy_seed(seed):
        explainer = shap.KernelExplainer(_flat_fn(forward, x.shape[1:]), bg)
        # l1_reg=False: estimate every feature (shap's default keeps only 10 non-zero)
        values = explainer.shap_values(x.reshape(n, -1).astype(np.float64), nsamples=max_evals,
                                       l1_reg=False, silent=True)
    if isinstance(values, list):  # older shap: one array per output
        values = np.stack(values, axis=-1)
    values = np.asarray(values).reshape(x.shape + (-1,))
    base = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
    return values, base, {"explainer": "shap.KernelExplainer", "nsamples": max_evals,
                          "background_size": len(bg)}


def blur_masker_spec(height: int, width: int) -> str:
    """The blur shap's image masker uses: a box of a quarter of the image side (8 at 32 px).

    Blur, not shap's inpainting modes: those cast the image to uint8, wrong for float input.
    """
    k = max(2, min(height, width) // 4)
    return f"blur({k},{k})"


def _partition(model, forward, x, background, tgt, max_evals, seed, batch_size):
    import shap

    spec = blur_masker_spec(x.shape[1], x.shape[2])
    masker = shap.maskers.Image(spec, x.shape[1:])
    with _quiet():
        explainer = shap.explainers.Partition(_flat_fn(forward, x.shape[1:]), masker)
        exp = explainer(x.astype(np.float32), max_evals=max_evals, batch_size=batch_size,
                        silent=True)
    values = np.asarray(exp.values).reshape(x.shape + (-1,))
    return values, np.asarray(exp.base_values).reshape(len(x), -1), {
        "explainer": "shap.explainers.Partition", "masker": spec, "max_evals": max_evals}


# -- figures ------------------------------------------------------------------------------------

def _image_figure(x: np.ndarray, res: ShapResult, class_names, max_rows: int = 6,
                  max_cols: int = 8):
    """Rows: samples; columns: the input, then one SHAP map (summed over channels) per output.

    Red raises the output, blue lowers it; each row shares one symmetric colour scale.
    """
    from keras_audit import render

    rows = min(len(x), max_rows)
    k = min(res.values.shape[-1], max_cols)
    maps = res.values[:rows].sum(axis=3)  # (rows, H, W, K)
    images = render.to_uint8_images(x[:rows])
    fig = new_figure((1.6 * (k + 1), 1.7 * rows + 0.4))
    axes = np.atleast_2d(fig.subplots(rows, k + 1, squeeze=False))
    for i in range(rows):
        scale = float(np.percentile(np.abs(maps[i, ..., :k]), 99.9)) or 1.0
        axes[i, 0].imshow(images[i])
        axes[i, 0].set_title("input", fontsize=8)
        gray = images[i].mean(axis=-1)
        for j in range(k):
            ax = axes[i, j + 1]
            colored = render.colorize((maps[i, ..., j] / scale + 1.0) / 2.0, "bwr")
            ax.imshow(gray, cmap="gray", alpha=1.0)
            ax.imshow(colored, alpha=0.75)
            out = int(res.output_indices[i, j])
            ax.set_title(f"{class_label(out, class_names)}: {res.outputs[i, j]:.2f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    # wrapped to the figure's width: with one output column the figure is narrow
    title = f"SHAP ({res.method}): red raises the output, blue lowers it"
    fig.suptitle(textwrap.fill(title, width=max(20, int(11 * 1.6 * (k + 1)))), fontsize=9)
    return fig


def _tabular_figures(x: np.ndarray, res: ShapResult, class_names, out: np.ndarray) -> dict:
    """shap's beeswarm and bar plots of one output column per sample.

    One output: it. Two (a softmax over two classes): the second, the positive class. More: each
    sample's predicted class (or its target).
    """
    import shap

    k = res.values.shape[-1]
    n = len(x)
    if k == 1:
        col, label = np.zeros(n, np.int64), class_label(int(res.output_indices[0, 0]),
                                                          class_names)
        if len(np.unique(res.output_indices)) > 1:
            label = "each sample's target"
    elif k == 2:
        col, label = np.ones(n, np.int64), class_label(1, class_names)
    else:
        col, label = out.argmax(axis=1), "each sample's predicted class"
    vals = np.take_along_axis(res.values, col[:, None, None], axis=2)[..., 0]
    base = res.base_values[np.arange(n), col]
    names = res.feature_names or [f"feature {i}" for i in range(x.shape[1])]
    exp = shap.Explanation(values=vals, base_values=base, data=x.astype(np.float64),
                           feature_names=names)
    figs = {}
    with _quiet(), pyplot_figure((8, 5)) as fig:
        shap.plots.beeswarm(exp, max_display=12, show=False, ax=fig.gca(), plot_size=None)
        fig.gca().set_title(f"SHAP ({res.method}) for {label}", fontsize=10)
    figs["beeswarm"] = fig
    with _quiet(), pyplot_figure((8, 5)) as fig:
        shap.plots.bar(exp, max_display=12, show=False, ax=fig.gca())
        fig.gca().set_title(f"mean |SHAP| ({res.method}) for {label}", fontsize=10)
    figs["bar"] = fig
    return figs
