"""Figures of the example-based explanations and of the penultimate embedding.

Images are shown as thumbnails; table rows as heatmaps of their features scaled by the
reference's spread, so a sample and its neighbours can be compared column by column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    from keras_audit.audit.example_analysis import ExamplesResult

#: rows shown in the neighbour and misclassification figures
MAX_ROWS = 6
#: samples the t-SNE panel uses at most (its cost grows with N log N, with a large constant)
TSNE_MAX = 1000


def _name(c: int, names: list[str] | None) -> str:
    return names[c] if names is not None and 0 <= c < len(names) else str(c)


def _thumbs(x: np.ndarray) -> np.ndarray:
    from keras_audit import render

    return render.to_uint8_images(x)


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def examples_figures(res: ExamplesResult, x: np.ndarray, ref: np.ndarray,
                     y_true: np.ndarray | None, names: list[str] | None) -> dict[str, Any]:
    """``neighbours``, ``prototypes`` and (when some are misclassified) ``misclassified``."""
    image = x.ndim == 4
    figs = {"neighbours": (_neighbours_images if image else _neighbours_table)(res, x, ref,
                                                                                names)}
    figs["prototypes"] = (_prototypes_images if image else _prototypes_table)(res, ref, names)
    if y_true is not None and len(res.misclassified):
        figs["misclassified"] = _misclassified(res, x, ref, y_true, names, image)
    return figs


def _neighbours_images(res, x, ref, names):
    rows = min(len(x), MAX_ROWS)
    k = res.indices.shape[1]
    fig = new_figure((1.4 * (k + 1), 1.55 * rows + 0.3))
    axes = np.atleast_2d(fig.subplots(rows, k + 1, squeeze=False))
    q = _thumbs(x[:rows])
    for i in range(rows):
        axes[i, 0].imshow(q[i])
        axes[i, 0].set_title(f"#{i} pred {_name(int(res.predicted[i]), names)}", fontsize=7)
        nb = _thumbs(ref[res.indices[i]])
        for j in range(k):
            axes[i, j + 1].imshow(nb[j])
            axes[i, j + 1].set_title(f"{_name(int(res.labels[i, j]), names)} "
                                     f"d={res.distances[i, j]:.2f}", fontsize=7)
    for ax in axes.ravel():
        _off(ax)
    fig.suptitle("Nearest references in the penultimate embedding (class, distance)",
                 fontsize=9)
    return fig


def _scaled(rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
    mu, sd = ref.mean(axis=0), ref.std(axis=0)
    return (rows - mu) / np.where(sd > 0, sd, 1.0)


def _heat(ax, mat: np.ndarray, labels: list[str], title: str) -> Any:
    im = ax.imshow(mat, cmap="coolwarm", vmin=-3, vmax=3, aspect="auto")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("feature", fontsize=7)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title(title, fontsize=8)
    return im


def _neighbours_table(res, x, ref, names):
    rows = min(len(x), 4)
    fig = new_figure((7.0, 1.9 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)[:, 0])
    im = None
    for i in range(rows):
        mat = _scaled(np.vstack([x[i], ref[res.indices[i]]]), ref)
        labels = [f"#{i} (pred {_name(int(res.predicted[i]), names)})"] + [
            f"ref {r} ({_name(int(c), names)}, d={d:.2f})"
            for r, c, d in zip(res.indices[i], res.labels[i], res.distances[i])]
        im = _heat(axes[i], mat, labels, f"sample {i} and its nearest references")
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="standard deviations from the reference mean")
    return fig


def _prototypes_images(res, ref, names):
    classes = list(res.prototypes)
    fig = new_figure((1.5 * max(len(classes), 1), 1.8))
    axes = np.atleast_1d(fig.subplots(1, max(len(classes), 1), squeeze=False)[0])
    thumbs = _thumbs(ref[list(res.prototypes.values())])
    for ax, c, img in zip(axes, classes, thumbs):
        ax.imshow(img)
        ax.set_title(_name(c, names), fontsize=8)
        _off(ax)
    fig.suptitle("Class prototypes (medoid of each class's reference embeddings)", fontsize=9)
    return fig


def _prototypes_table(res, ref, names):
    classes = list(res.prototypes)
    fig = new_figure((7.0, 0.45 * len(classes) + 1.4))
    ax = fig.subplots()
    mat = _scaled(ref[list(res.prototypes.values())], ref)
    im = _heat(ax, mat, [f"{_name(c, names)} (ref {r})" for c, r in res.prototypes.items()],
               "Class prototypes (medoid of each class's reference embeddings)")
    fig.colorbar(im, ax=ax, label="standard deviations from the reference mean")
    return fig


def _misclassified(res, x, ref, y_true, names, image: bool):
    rows = min(len(res.misclassified), MAX_ROWS)
    width = min(res.nearest_true.shape[1], 3)
    if not image:
        fig = new_figure((7.0, 1.6 * rows + 0.4))
        axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)[:, 0])
        for r in range(rows):
            i = int(res.misclassified[r])
            picks = [j for j in (res.nearest_predicted[r, 0], res.nearest_true[r, 0]) if j >= 0]
            mat = _scaled(np.vstack([x[i], ref[picks]]), ref)
            labels = [f"#{i} true {_name(int(y_true[i]), names)}",
                      f"nearest {_name(int(res.predicted[i]), names)} (predicted)",
                      f"nearest {_name(int(y_true[i]), names)} (true)"][:len(mat)]
            _heat(axes[r], mat, labels, f"misclassified sample {i}")
        return fig
    fig = new_figure((1.4 * (1 + 2 * width), 1.6 * rows + 0.4))
    axes = np.atleast_2d(fig.subplots(rows, 1 + 2 * width, squeeze=False))
    for r in range(rows):
        i = int(res.misclassified[r])
        axes[r, 0].imshow(_thumbs(x[i:i + 1])[0])
        axes[r, 0].set_title(f"#{i} true {_name(int(y_true[i]), names)}\npred "
                             f"{_name(int(res.predicted[i]), names)}", fontsize=7)
        for block, (near, dist, tag) in enumerate(
                ((res.nearest_predicted, res.distances_predicted, "pred"),
                 (res.nearest_true, res.distances_true, "true"))):
            for j in range(width):
                ax = axes[r, 1 + block * width + j]
                if near[r, j] >= 0:
                    ax.imshow(_thumbs(ref[near[r, j]:near[r, j] + 1])[0])
                    ax.set_title(f"{tag} d={dist[r, j]:.2f}", fontsize=7)
    for ax in axes.ravel():
        _off(ax)
    fig.suptitle("Misclassified: nearest references of the predicted class, then of the true "
                 "class", fontsize=9)
    return fig


def embedding_figure(embedding: np.ndarray, classes: np.ndarray, wrong: np.ndarray | None = None,
                     names: list[str] | None = None, seed: int = 0, title: str = "") -> Any:
    """PCA and t-SNE (scikit-learn) of an embedding, coloured by class, misclassified marked.

    Args:
        embedding: ``(N, D)``.
        classes: ``(N,)`` class ids to colour by (the true classes when known).
        wrong: ``(N,)`` bool, the misclassified samples (drawn as black crosses).
        names: class names for the legend.
        seed: seeds t-SNE (and the subsample when ``N > TSNE_MAX``).
        title: the figure's title prefix (e.g. the layer).

    Returns:
        A matplotlib Figure with two panels. t-SNE needs at least 5 samples; with fewer the
        panel says so.
    """
    import matplotlib
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    emb = np.asarray(embedding, np.float64)
    classes = np.asarray(classes).astype(np.int64)
    wrong = np.zeros(len(emb), bool) if wrong is None else np.asarray(wrong, bool)
    fig = new_figure((10.0, 4.4))
    ax_pca, ax_tsne = fig.subplots(1, 2)
    comps = min(2, emb.shape[0], emb.shape[1])
    pts = np.zeros((len(emb), 2))
    if comps >= 1 and np.ptp(emb, axis=0).max() > 0:
        pca = PCA(n_components=comps, random_state=seed).fit(emb)
        pts[:, :comps] = pca.transform(emb)
        ratio = pca.explained_variance_ratio_
        ax_pca.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}%)", fontsize=8)
        if comps > 1:
            ax_pca.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}%)", fontsize=8)
    palette = matplotlib.colormaps["tab10" if classes.max(initial=0) < 10 else "tab20"]
    _scatter(ax_pca, pts, classes, wrong, palette, names)
    ax_pca.set_title("PCA", fontsize=9)
    pick = np.arange(len(emb))
    if len(emb) > TSNE_MAX:
        pick = np.sort(np.random.default_rng(seed).choice(len(emb), TSNE_MAX, replace=False))
    if len(pick) >= 5:
        perplexity = float(min(30.0, (len(pick) - 1) / 3.0))
        t = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        _scatter(ax_tsne, t.fit_transform(emb[pick]), classes[pick], wrong[pick], palette,
                 names)
        ax_tsne.set_title(f"t-SNE (perplexity {perplexity:.0f}"
                          f"{f', {len(pick)} of {len(emb)} samples' if len(pick) < len(emb) else ''})",
                          fontsize=9)
    else:
        ax_tsne.text(0.5, 0.5, "t-SNE needs at least 5 samples", ha="center", va="center")
    for ax in (ax_pca, ax_tsne):
        ax.tick_params(labelsize=7)
    handles, labels = ax_pca.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=7, frameon=False)
    fig.suptitle(f"{title}penultimate embedding coloured by class; × misclassified",
                 fontsize=9)
    return fig


def _scatter(ax, pts, classes, wrong, palette, names) -> None:
    for c in np.unique(classes):
        m = (classes == c) & ~wrong
        ax.scatter(pts[m, 0], pts[m, 1], s=12, color=palette(int(c) % palette.N),
                   label=_name(int(c), names), alpha=0.8)
    if wrong.any():
        ax.scatter(pts[wrong, 0], pts[wrong, 1], s=28, c="black", marker="x",
                   label="misclassified")
