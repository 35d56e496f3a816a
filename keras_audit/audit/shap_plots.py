"""Figures of SHAP results: per-sample attribution maps (images); shap's beeswarm and bar
plots (tables)."""

from __future__ import annotations

import contextlib
import textwrap
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from keras_audit.audit._explain_common import class_label, pyplot_figure
from keras_audit.explain import predicted_classes
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    from keras_audit.audit.shap_analysis import ShapResult


@contextlib.contextmanager
def quiet_shap() -> Iterator[None]:
    """Silence the warnings shap's Keras path triggers on every call (it feeds a list to a
    single-input functional model) and shap's deprecation notices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*keras is no longer supported")
        warnings.filterwarnings("ignore", message="Your TensorFlow version is newer")
        yield


def image_figure(x: np.ndarray, res: ShapResult, class_names, max_rows: int = 6,
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


def tabular_figures(x: np.ndarray, res: ShapResult, class_names, out: np.ndarray) -> dict:
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
        col, label = predicted_classes(out), "each sample's predicted class"
    vals = np.take_along_axis(res.values, col[:, None, None], axis=2)[..., 0]
    base = res.base_values[np.arange(n), col]
    names = res.feature_names or [f"feature {i}" for i in range(x.shape[1])]
    exp = shap.Explanation(values=vals, base_values=base, data=x.astype(np.float64),
                           feature_names=names)
    figs = {}
    with quiet_shap(), pyplot_figure((8, 5)) as fig:
        shap.plots.beeswarm(exp, max_display=12, show=False, ax=fig.gca(), plot_size=None)
        fig.gca().set_title(f"SHAP ({res.method}) for {label}", fontsize=10)
    figs["beeswarm"] = fig
    with quiet_shap(), pyplot_figure((8, 5)) as fig:
        shap.plots.bar(exp, max_display=12, show=False, ax=fig.gca())
        fig.gca().set_title(f"mean |SHAP| ({res.method}) for {label}", fontsize=10)
    figs["bar"] = fig
    return figs
