"""Scalars that explain themselves: the description of every explanation-quality scalar, the
check against the random baseline, and the Custom Scalars layout that draws each metric beside
its baseline in one chart.

Tags name the method: ``explanations/<picture tag>/<metric>``, e.g.
``explanations/gradcam/conv2/deletion_auc`` or ``explanations/saliency/vanilla/stability``, so
two callbacks in one ``log_dir`` (a ``gradcam`` and a ``gradcam++``) never write the same tag.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np

__all__ = ["METRIC_DESCRIPTIONS", "LayoutRegistry", "LAYOUTS", "baseline_warnings"]

#: metric -> the Markdown description TensorBoard shows beside its chart
METRIC_DESCRIPTIONS = {
    "deletion_auc": "Deletion AUC of **{base}**: the model's score for the explained class as "
                    "the pixels the map ranks highest are blanked first (RISE protocol). "
                    "**Lower is better**; it should stay below `random_deletion_auc`.",
    "random_deletion_auc": "Deletion AUC of a random pixel order: the baseline that "
                           "`deletion_auc` of **{base}** must beat (be lower than).",
    "insertion_auc": "Insertion AUC of **{base}**: the model's score as the pixels the map "
                     "ranks highest are restored first onto a blurred input. **Higher is "
                     "better**; it should stay above `random_insertion_auc`.",
    "random_insertion_auc": "Insertion AUC of a random pixel order: the baseline that "
                            "`insertion_auc` of **{base}** must beat (be higher than).",
    "stability": "Mean Spearman rank correlation of the **{base}** maps with the previous "
                 "logged epoch's, over the same samples (1: unchanged ranking, 0: unrelated). "
                 "Low while the model learns; a map that keeps jumping late in training is "
                 "not to be trusted.",
    "robustness": "Mean Spearman rank correlation of the **{base}** maps of the samples with "
                  "their maps under one fixed mild corruption (the same seeded Gaussian noise "
                  "every epoch; by default ImageNet-C's gaussian_noise at severity 1, std 0.08 "
                  "of the data range): 1 means the noise leaves the ranking unchanged, 0 "
                  "unrelated. A falling curve means the maps grow brittle on real-world inputs.",
    "worse_than_random": "How many of the two AUCs of **{base}** (deletion, insertion) are worse "
                         "than their random-order baseline at this epoch: 0 is what a faithful "
                         "map gives; see the `warnings` text.",
}


def baseline_warnings(scalars: dict[str, float], base: str) -> list[str]:
    """Sentences for each AUC of ``scalars`` that is worse than its random baseline.

    Args:
        scalars: metric -> value (``deletion_auc``, ``random_deletion_auc``, ...).
        base: the picture tag the maps are drawn under (named in the sentences).

    Returns:
        One sentence per failing AUC (empty when both beat their baseline, or are absent).
    """
    out = []
    d, rd = scalars.get("deletion_auc"), scalars.get("random_deletion_auc")
    if d is not None and rd is not None and np.isfinite(d) and d > rd:
        out.append(f"{base}: deletion AUC {d:.3f} is above its random baseline {rd:.3f}: "
                   "blanking the pixels the map ranks highest hurts the model less than "
                   "blanking random pixels, so the map does not point at what the model uses.")
    i, ri = scalars.get("insertion_auc"), scalars.get("random_insertion_auc")
    if i is not None and ri is not None and np.isfinite(i) and i < ri:
        out.append(f"{base}: insertion AUC {i:.3f} is below its random baseline {ri:.3f}: "
                   "restoring the pixels the map ranks highest helps the model less than "
                   "restoring random ones, so the map does not point at what the model uses.")
    return out


class LayoutRegistry:
    """The Custom Scalars charts each ``log_dir`` gets, gathered from every callback writing
    there in this process.

    TensorBoard's ``custom_scalars`` plugin reads one layout per run (the last one written), so
    every callback writes the union of the charts registered for its folder: two standalone
    callbacks sharing a ``log_dir`` both appear.
    """

    def __init__(self) -> None:
        self._charts: dict[str, dict[str, dict[str, list[str]]]] = {}
        self._lock = threading.Lock()

    def register(self, log_dir: str, category: str, title: str, tags: list[str]) -> None:
        """Add a chart of the scalars whose tags match ``tags`` (regular expressions)."""
        key = os.path.abspath(log_dir)
        with self._lock:
            self._charts.setdefault(key, {}).setdefault(category, {})[title] = list(tags)

    def register_pair(self, log_dir: str, base: str) -> None:
        """The charts of one explanation method drawn under ``base`` (``gradcam/conv2``): each
        AUC beside its random baseline, and the stability."""
        b = re.escape(f"explanations/{base}/")
        for title, pattern in (
            (f"{base}: deletion AUC vs random order (lower is better)",
             f"^{b}(random_)?deletion_auc$"),
            (f"{base}: insertion AUC vs random order (higher is better)",
             f"^{b}(random_)?insertion_auc$"),
            (f"{base}: stability (rank correlation with the previous logged epoch)",
             f"^{b}stability$"),
        ):
            self.register(log_dir, "explanation quality", title, [pattern])

    def register_robustness(self, log_dir: str, base: str) -> None:
        """The chart of the stability under corruption of the maps drawn under ``base``."""
        self.register(log_dir, "explanation quality",
                      f"{base}: robustness (rank correlation with the maps of noisy inputs)",
                      [f"^{re.escape(f'explanations/{base}/')}robustness$"])

    def layout(self, log_dir: str):
        """The ``tensorboard.plugins.custom_scalar.layout_pb2.Layout`` for ``log_dir``."""
        from tensorboard.plugins.custom_scalar import layout_pb2

        with self._lock:
            charts = {c: dict(v) for c, v in self._charts.get(os.path.abspath(log_dir),
                                                               {}).items()}
        return layout_pb2.Layout(category=[
            layout_pb2.Category(title=category, chart=[
                layout_pb2.Chart(title=title,
                                 multiline=layout_pb2.MultilineChartContent(tag=tags))
                for title, tags in sorted(items.items())])
            for category, items in sorted(charts.items())])


#: the process's registry (the callbacks of every fit() in this process)
LAYOUTS = LayoutRegistry()
