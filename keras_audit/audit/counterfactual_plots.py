"""The counterfactual figure: images with their changed version and change map, or the
feature changes of a table's rows as a heatmap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    from keras_audit.audit.counterfactual_analysis import CounterfactualResult

#: samples shown at most
MAX_ROWS = 6


def _name(c: int, names: list[str] | None) -> str:
    return names[c] if names is not None and 0 <= c < len(names) else str(c)


def _first(res: CounterfactualResult, i: int) -> int:
    """The closest valid candidate of sample ``i`` (else the first)."""
    ok = np.flatnonzero(res.valid[i])
    return int(ok[np.argmin(res.distances[i, ok])]) if len(ok) else 0


def counterfactual_figure(res: CounterfactualResult, x: np.ndarray,
                          feature_names: list[str] | None = None,
                          class_names: list[str] | None = None) -> Any:
    """One row per sample (at most ``MAX_ROWS``): its closest valid counterfactual.

    Images: the input, the changed input and the change map. Tables: a heatmap of the change
    of each feature, in standard deviations of the reference, for the shown samples.
    """
    rows = min(len(x), MAX_ROWS)
    if res.change_maps is not None:
        from keras_audit import render

        fig = new_figure((4.6, 1.6 * rows + 0.4))
        axes = np.atleast_2d(fig.subplots(rows, 3, squeeze=False))
        for i in range(rows):
            j = _first(res, i)
            cf = np.nan_to_num(res.inputs[i, j])
            both = render.to_uint8_images(np.stack([x[i], cf]))
            axes[i, 0].imshow(both[0])
            axes[i, 0].set_title(f"#{i} {_name(int(res.original[i]), class_names)}", fontsize=7)
            axes[i, 1].imshow(both[1])
            tag = "valid" if res.valid[i, j] else "not valid"
            axes[i, 1].set_title(f"-> {_name(int(res.targets[i]), class_names)} ({tag})",
                                 fontsize=7)
            axes[i, 2].imshow(res.change_maps[i, j], cmap="magma")
            axes[i, 2].set_title(f"change, d={res.distances[i, j]:.3f}", fontsize=7)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle("Counterfactuals: input, changed input, change map", fontsize=9)
        return fig
    picks = [_first(res, i) for i in range(rows)]
    delta = np.stack([np.nan_to_num(res.inputs[i, j] - x[i]) for i, j in enumerate(picks)])
    sd = x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    scaled = delta / sd
    lim = float(np.abs(scaled).max()) or 1.0
    fig = new_figure((max(6.0, 0.22 * x.shape[1] + 2.0), 0.45 * rows + 2.0))
    ax = fig.subplots()
    im = ax.imshow(scaled, cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_yticks(range(rows))
    ax.set_yticklabels([f"#{i} {_name(int(res.original[i]), class_names)} -> "
                        f"{_name(int(res.targets[i]), class_names)}"
                        f"{'' if res.valid[i, picks[i]] else ' (not valid)'}"
                        for i in range(rows)], fontsize=7)
    if feature_names is not None:
        ax.set_xticks(range(len(feature_names)))
        ax.set_xticklabels(feature_names, rotation=90, fontsize=6)
    fig.colorbar(im, ax=ax, label="change (standard deviations)")
    ax.set_title("Counterfactual feature changes (closest valid candidate per sample)",
                 fontsize=9)
    return fig
