"""Distribution shift between reference (training) data and the audit data.

Three views: a kernel two-sample test (MMD, Gretton et al. 2012) with a permutation p-value on
the model's penultimate-layer embeddings; a domain classifier (scikit-learn's logistic
regression, cross-validated) telling the two sets apart, as AUROC; per-feature
Kolmogorov-Smirnov tests for tables (SciPy). Out-of-distribution scores of both sets: the
maximum softmax probability (Hendrycks & Gimpel 2017) and the energy ``-logsumexp(logits)``
(Liu et al. 2020).

MMD is hand-written (a dozen lines of NumPy): alibi-detect, which has it, needs Keras 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.audit.result import AnalysisResult
from keras_audit.explain import GraphTap, list_layers, resolve_layer
from keras_audit.explain.forward import check_batch, select_output
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass(repr=False)
class ShiftResult(AnalysisResult):
    """What ``shift`` measured.

    Attributes:
        mmd: ``{"mmd2": biased MMD² estimate, "p_value": permutation p-value, "permutations",
            "bandwidth": the Gaussian kernel's width (median heuristic), "n_reference",
            "n_audit"}`` on the embeddings.
        auroc: cross-validated AUROC of a logistic regression telling audit from reference
            embeddings (0.5: indistinguishable; 1: fully separable).
        ks: per-feature KS statistics and p-values for tables (``feature``, ``statistic``,
            ``p_value``, sorted by statistic), else None.
        ood: per-sample OOD scores: ``set`` (``"reference"`` or ``"audit"``), ``max_softmax``,
            ``energy`` (None for regression models).
        ood_summary: per set, the mean of each score; and ``msp_auroc`` / ``energy_auroc``,
            how well each score alone separates audit from reference samples.
        layer: the layer whose outputs are the embeddings.
        figures: ``{name: matplotlib Figure}``.
    """

    mmd: dict[str, Any]
    auroc: float
    ks: pd.DataFrame | None
    ood: pd.DataFrame | None
    ood_summary: dict[str, Any]
    layer: str

    @property
    def p_value(self) -> float:
        """The MMD permutation test's p-value (``mmd["p_value"]``), as API.md names it."""
        return float(self.mmd["p_value"])

    def summary(self) -> dict[str, Any]:
        """JSON-ready content: mmd, auroc, layer, OOD means, and the top KS features."""
        ks = None
        if self.ks is not None:
            ks = {"max_statistic": float(self.ks["statistic"].max()),
                  "min_p_value": float(self.ks["p_value"].min()),
                  "top": self.ks.head(10).to_dict(orient="records")}
        return {"mmd": dict(self.mmd), "domain_classifier": {"auroc": self.auroc},
                "ks": ks, "ood": dict(self.ood_summary), "layer": self.layer}


def penultimate_layer(model: keras.Model) -> str:
    """The last layer before the head: walking back from the output, the first layer whose
    output shape differs from the model's output (skipping a separate Softmax or Dropout).

    Raises:
        ValueError: the model has no layer before its output.
    """
    infos = list_layers(model)
    if not infos:
        raise ValueError(f"model {model.name!r} has no readable layers")
    out_shape = infos[-1].output_shape
    for info in reversed(infos[:-1]):
        if info.output_shape != out_shape and not isinstance(info.layer, keras.Model):
            return info.path
    raise ValueError(f"model {model.name!r} has no layer before its output; give layer=")


class _Embedder:
    """One compiled pass: a layer's output (spatial axes averaged) and the logits."""

    def __init__(self, model: keras.Model, layer: str, batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size
        self.tap = GraphTap(model)
        self.path = layer
        self._fn = tf.function(self._run, autograph=False)

    def _run(self, x):
        out, captured = self.tap.run(x, capture=[self.path], linear=True)
        h = captured[self.path]
        if len(h.shape) > 2:  # feature maps: average the spatial (or time) axes
            h = tf.reduce_mean(h, axis=list(range(1, len(h.shape) - 1)))
        logits = select_output(out, None, self.model)
        return h, tf.reshape(logits, (tf.shape(logits)[0], -1))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._fn(tf.constant(x[i:i + self.batch_size]))
                 for i in range(0, len(x), self.batch_size)]
        return (np.concatenate([p[0].numpy() for p in parts]).astype(np.float64),
                np.concatenate([p[1].numpy() for p in parts]).astype(np.float64))


def mmd_test(a: np.ndarray, b: np.ndarray, permutations: int = 500,
             seed: int = 0) -> dict[str, Any]:
    """Gaussian-kernel MMD² between samples ``a`` and ``b`` with a permutation p-value.

    The bandwidth is the median pairwise distance of the pooled sample. The statistic is the
    biased (V-statistic) estimate; the p-value is ``(1 + #{perm >= observed}) / (1 + P)``.

    Returns:
        ``{"mmd2", "p_value", "permutations", "bandwidth", "n_reference", "n_audit"}``.
    """
    pooled = np.concatenate([a, b]).astype(np.float64)
    sq = np.sum(pooled ** 2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    upper = d2[np.triu_indices(len(pooled), k=1)]
    med = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel = np.exp(-d2 / med)  # exp(-d^2 / median(d^2)): the median heuristic
    n, m = len(a), len(b)
    rng = np.random.default_rng(seed)

    def stat(weights: np.ndarray) -> np.ndarray:  # rows of +1/n, -1/m weights
        return np.sum((weights @ kernel) * weights, axis=1)

    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = float(stat(base[None])[0])
    perms = np.stack([rng.permutation(base) for _ in range(permutations)])
    null = np.concatenate([stat(chunk) for chunk in np.array_split(perms, max(1, len(perms)
                                                                              // 64))])
    p = (1.0 + float(np.sum(null >= observed))) / (1.0 + permutations)
    return {"mmd2": observed, "p_value": p, "permutations": int(permutations),
            "bandwidth": math.sqrt(med), "n_reference": n, "n_audit": m}


def domain_auroc(a: np.ndarray, b: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated AUROC of a logistic regression telling ``b`` (1) from ``a`` (0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = np.concatenate([a, b])
    labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    k = max(2, min(folds, len(a), len(b)))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_predict(clf, feats, labels, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def ood_scores(logits: np.ndarray, task: str) -> dict[str, np.ndarray] | None:
    """Maximum softmax probability and energy per sample (None for regression)."""
    if task == "regression":
        return None
    z = logits if logits.shape[1] > 1 else np.concatenate([np.zeros_like(logits), logits], 1)
    top = z.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]
    msp = np.exp(top[:, 0] - lse)
    return {"max_softmax": msp, "energy": -lse}


def _task(logits: np.ndarray, model_out: np.ndarray) -> str:
    if logits.shape[1] == 1:
        lin, out = logits[:, 0], model_out.reshape(len(model_out), -1)[:, 0]
        return "binary" if np.allclose(1 / (1 + np.exp(-lin)), out, atol=1e-4) else "regression"
    return "classification"


def shift(model: keras.Model, reference: tf.Tensor | ArrayLike, x: tf.Tensor | ArrayLike,
          layer: str | None = None, seed: int = 0, *, permutations: int = 500,
          max_samples: int = 1000, batch_size: int = 256) -> ShiftResult:
    """Compare reference (training) data with the audit data through the model's eyes.

    Args:
        model: a built single-input Keras model.
        reference: the reference inputs (e.g. the training set); never modified.
        x: the audit inputs, the same shape per sample.
        layer: the layer whose outputs are the embeddings (path or name); ``None`` takes the
            penultimate layer (``penultimate_layer``). Feature maps are averaged over their
            spatial axes.
        seed: seeds the subsampling, the permutations and the classifier's folds.
        permutations: permutations of the MMD test.
        max_samples: at most this many samples of each set are used (seeded choice).
        batch_size: the largest batch sent through the model.

    Returns:
        A ``ShiftResult`` with its figures (``ood_histograms``; ``ks_features`` for tables).

    Raises:
        ValueError: before any work: ``reference`` or ``x`` the model cannot take, fewer than
            two samples in a set, an unknown ``layer`` (the message lists the choices), or a
            bad ``permutations``, ``max_samples``, ``batch_size`` or ``seed``.
    """
    ref = check_batch(model, reference, "reference")
    aud = check_batch(model, x, "x")
    if len(ref) < 2 or len(aud) < 2:
        raise ValueError(f"shift needs at least 2 samples per set; got {len(ref)} reference "
                         f"and {len(aud)} audit samples")
    permutations = positive_int(permutations, "permutations")
    max_samples = positive_int(max_samples, "max_samples")
    batch_size = positive_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    path = (penultimate_layer(model) if layer is None
            else resolve_layer(list_layers(model), layer).path)
    rng = np.random.default_rng(seed)
    ref_idx = np.sort(rng.permutation(len(ref))[:max_samples])
    aud_idx = np.sort(rng.permutation(len(aud))[:max_samples])
    ref_s = ref[ref_idx].astype(np.float32)
    aud_s = aud[aud_idx].astype(np.float32)

    embed = _Embedder(model, path, batch_size)
    e_ref, z_ref = embed(ref_s)
    e_aud, z_aud = embed(aud_s)
    mmd = mmd_test(e_ref, e_aud, permutations, seed)
    auroc = domain_auroc(e_ref, e_aud, seed)
    ks = _ks(ref_s, aud_s) if ref.ndim == 2 else None
    task = _task(z_ref[:8], np.asarray(model(ref_s[:8], training=False)))
    o_ref, o_aud = ood_scores(z_ref, task), ood_scores(z_aud, task)
    ood, summary = None, {}
    if o_ref is not None:
        from sklearn.metrics import roc_auc_score

        ood = pd.concat([pd.DataFrame({"set": "reference", **o_ref}),
                         pd.DataFrame({"set": "audit", **o_aud})], ignore_index=True)
        labels = np.r_[np.zeros(len(ref_s)), np.ones(len(aud_s))]
        summary = {
            "reference": {k: float(v.mean()) for k, v in o_ref.items()},
            "audit": {k: float(v.mean()) for k, v in o_aud.items()},
            # a low max-softmax / a high energy flags OOD: both oriented so 1 = separable
            "msp_auroc": float(roc_auc_score(labels, -ood["max_softmax"])),
            "energy_auroc": float(roc_auc_score(labels, ood["energy"])),
        }
    result = ShiftResult(mmd=mmd, auroc=auroc, ks=ks, ood=ood, ood_summary=summary, layer=path)
    result.figures = shift_figures(result)
    return result


def _ks(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    from scipy.stats import ks_2samp

    rows = []
    for j in range(a.shape[1]):
        r = ks_2samp(a[:, j], b[:, j])
        rows.append({"feature": j, "statistic": float(r.statistic), "p_value": float(r.pvalue)})
    return pd.DataFrame(rows).sort_values("statistic", ascending=False, ignore_index=True)


def shift_figures(result: ShiftResult, feature_names: list[str] | None = None) -> dict:
    """``ood_histograms`` (max softmax and energy of both sets) and, for tables,
    ``ks_features`` (the ten largest KS statistics)."""
    figs = {}
    if result.ood is not None:
        fig = new_figure((7.2, 3.0))
        for i, col in enumerate(("max_softmax", "energy")):
            ax = fig.add_subplot(1, 2, i + 1)
            values = result.ood[col].to_numpy()
            bins = np.histogram_bin_edges(values, bins=30)
            for name, colour in (("reference", "#1f5fa8"), ("audit", "#c0392b")):
                v = result.ood.loc[result.ood["set"] == name, col]
                ax.hist(v, bins=bins, alpha=0.55, density=True, color=colour, label=name)
            ax.set_xlabel("max softmax probability" if col == "max_softmax" else
                          "energy (−logsumexp of the logits)")
            ax.set_ylabel("density")
            ax.legend(fontsize=7)
        figs["ood_histograms"] = fig
    if result.ks is not None and len(result.ks):
        top = result.ks.head(10).iloc[::-1]
        names = [feature_names[int(f)] if feature_names else
                 f if isinstance(f, str) else f"x{int(f)}" for f in top["feature"]]
        fig = new_figure((5.6, 0.3 * len(top) + 1.2))
        ax = fig.add_subplot()
        ax.barh(names, top["statistic"], color="#1f5fa8")
        ax.set_xlabel("KS statistic (reference vs audit)")
        figs["ks_features"] = fig
    return figs
