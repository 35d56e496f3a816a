"""Figures of LIME results: superpixel weights per sample (images); per-sample weights and
mean importance (tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from keras_audit.audit._explain_common import class_label
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    from keras_audit.audit.lime_analysis import LimeResult


def image_figure(x: np.ndarray, res: LimeResult, class_names, max_rows: int = 6,
                  top: int = 5):
    """Per sample: the input; the superpixel weights (green for, red against the target) with
    the superpixel borders; the ``top`` superpixels with the most positive weight."""
    from skimage.segmentation import mark_boundaries

    from keras_audit import render

    rows = min(len(x), max_rows)
    images = render.to_uint8_images(x[:rows] if x.ndim == 4 else x[:rows, ..., None])
    # upscaled (nearest) so that one-pixel superpixel borders do not cover a small image
    k = render.upscale_factor(x.shape[1], x.shape[2], 96)

    def up(a):
        return np.repeat(np.repeat(a, k, axis=0), k, axis=1)

    fig = new_figure((5.4, 1.8 * rows + 0.4))
    axes = fig.subplots(rows, 3, squeeze=False)
    for i in range(rows):
        img = up(images[i]).astype(np.float64) / 255.0
        seg = up(res.segments[i])
        w = res.weights[i]
        scale = float(np.abs(w).max()) or 1.0
        axes[i, 0].imshow(img)
        axes[i, 0].set_title(f"{class_label(int(res.targets[i]), class_names)} "
                             f"p={res.probabilities[i]:.2f}", fontsize=8)
        colored = render.colorize((w[seg] / scale + 1.0) / 2.0, "RdYlGn") / 255.0
        axes[i, 1].imshow(mark_boundaries(colored, seg, color=(0.5, 0.5, 0.5)))
        axes[i, 1].set_title(f"weights (green: for), R²={res.scores[i]:.2f}", fontsize=8)
        best = [s for s in np.argsort(-w)[:top] if w[s] > 0.1 * scale]
        keep = np.isin(seg, best)[..., None]
        axes[i, 2].imshow(np.where(keep, img, 0.25 * img + 0.6))
        axes[i, 2].set_title(f"top {len(best)} superpixel(s)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"LIME ({res.segmentation})", fontsize=8)
    return fig


def tabular_figures(res: LimeResult, num_features: int, class_names,
                     max_panels: int = 4) -> dict:
    """``weights``: each explained sample's top conditions (up to ``max_panels`` samples);
    ``importance``: mean |weight| per feature over all samples."""
    panels = min(len(res.scores), max_panels)
    k = min(num_features, res.weights.shape[1])
    fig = new_figure((5.0 * min(panels, 2), (0.28 * k + 1.2) * -(-panels // 2)))
    axes = np.atleast_1d(fig.subplots(-(-panels // 2), min(panels, 2), squeeze=False)).ravel()
    table = res.table
    for i in range(panels):
        t = table[table["sample"] == i].iloc[::-1]
        labels = [c or f for c, f in zip(t["condition"], t["feature"])]
        axes[i].barh(labels, t["weight"],
                     color=["tab:green" if v > 0 else "tab:red" for v in t["weight"]])
        axes[i].set_title(f"sample {i}: {class_label(int(res.targets[i]), class_names)}, "
                          f"R²={res.scores[i]:.2f}", fontsize=8)
        axes[i].tick_params(axis="y", labelsize=7)
        axes[i].axvline(0, color="grey", lw=0.8)
    for ax in axes[panels:]:
        ax.set_visible(False)
    mean = np.abs(res.weights).mean(axis=0)
    order = np.argsort(-mean, kind="stable")[:15][::-1]
    imp = new_figure((6, 0.28 * len(order) + 1.2))
    ax = imp.add_subplot()
    ax.barh([res.feature_names[j] for j in order], mean[order], color="tab:blue")
    ax.set_xlabel(f"mean |LIME weight| over {len(res.scores)} samples")
    ax.tick_params(axis="y", labelsize=7)
    return {"weights": fig, "importance": imp}
