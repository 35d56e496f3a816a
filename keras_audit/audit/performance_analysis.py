"""Performance of a trained model on labelled data: metrics, tables and figures.

Classification metrics come from scikit-learn (``precision_recall_fscore_support``,
``roc_auc_score``, ``confusion_matrix``). Calibration is the one hand-written part (see
``expected_calibration_error``). Predictions go through ``CompiledForward``, the batched
compiled forward pass, not ``model.predict``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
from sklearn import metrics as skm

from keras_audit.audit._labels import (
    TASKS,
    LabelSpec,
    as_label_array,
    class_names_for,
    label_spec,
    read_outputs,
)
from keras_audit.audit._views import batch_len, batch_take, model_batch
from keras_audit.audit.result import AnalysisResult
from keras_audit.explain.forward import CompiledForward
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike

#: equal-width confidence bins for the ECE and the reliability diagram
CALIBRATION_BINS = 15


@dataclass(repr=False)
class PerformanceResult(AnalysisResult):
    """What ``performance`` measured.

    Attributes:
        task: ``"classification"``, ``"binary"`` or ``"regression"``.
        metrics: plain numbers, strings and lists (JSON-serialisable), e.g. ``accuracy``,
            ``macro_f1``, ``weighted_f1``, ``accuracy_ci95``, ``macro_f1_ci95``,
            ``roc_auc_macro`` (one-vs-rest, over the classes present in y), ``roc_auc`` (two
            classes only), ``ece``, ``classes_absent_from_y`` (classification); ``mae``,
            ``rmse``, ``r2`` (regression); ``latency_ms_batch1``, ``latency_ms_batch64``,
            ``parameters``, ``model_bytes`` (all).
        tables: pandas DataFrames: ``per_class``, ``confusion_matrix``, ``calibration``
            (classification); ``per_output`` (regression); ``latency`` (all).
        figures: matplotlib Figures by name: ``confusion_matrix``, ``reliability_diagram``,
            ``roc_curves`` (classification); ``predicted_vs_true``, ``residuals``
            (regression).
    """

    task: str



def performance(model: keras.Model, x: tf.Tensor | ArrayLike, y: tf.Tensor | ArrayLike,
                class_names: Sequence[str] | None = None, batch_size: int = 256,
                n_bootstrap: int = 200, seed: int = 0, task: str | None = None,
                latency_repeats: int = 5, forward: CompiledForward | None = None
                ) -> PerformanceResult:
    """Measure how well ``model`` does on ``(x, y)``, how calibrated it is, and how fast it runs.

    Args:
        model: a trained, built Keras model (single input; a multi-output model is judged on
            its first output).
        x: the inputs.
        y: class ids ``(N,)`` or one-hot ``(N, C)`` for a softmax classifier; ``{0, 1}`` for a
            model with one sigmoid unit; float targets for regression.
        class_names: one name per class (default ``"0"``, ``"1"``, ...).
        batch_size: the largest batch of the forward pass.
        n_bootstrap: bootstrap resamples for the 95% confidence intervals of accuracy and
            macro-F1 (0 turns them off).
        seed: seeds the bootstrap (the result is deterministic for a given seed).
        task: force ``"classification"``, ``"binary"`` or ``"regression"``; ``None`` infers it
            from the output width and the labels.
        latency_repeats: timed repetitions per batch size (the median is reported).
        forward: a ``CompiledForward`` of this model to reuse; ``None`` builds one.

    Returns:
        A ``PerformanceResult``. Outputs that are not probabilities (logits) are turned into
        probabilities with a softmax (a sigmoid for one unit) for ROC-AUC and calibration;
        ``metrics["output_transform"]`` says which.

    Raises:
        ValueError: before any work: ``x`` the model cannot take, ``x``/``y`` lengths that
            differ, labels that do not fit the output (class ids out of range, one-hot of the
            wrong width), ``class_names`` of the wrong length, an unknown ``task``, or a
            non-positive ``batch_size``/``latency_repeats`` or negative ``n_bootstrap``.
    """
    for value, what, low in ((batch_size, "batch_size", 1), (n_bootstrap, "n_bootstrap", 0),
                             (latency_repeats, "latency_repeats", 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{what} must be an integer >= {low}; got {value!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choices: {list(TASKS)} or None (infer)")
    x = model_batch(model, x)  # one array, or one per input for a multi-input model
    y = as_label_array(y, batch_len(x))
    if forward is None:
        forward = CompiledForward(model, batch_size=batch_size)
    elif not isinstance(forward, CompiledForward) or forward.model is not model:
        raise ValueError("forward must be a CompiledForward built on this same model")
    spec = label_spec(y, forward(batch_take(x, slice(0, 1))).shape[1:], task)
    names = class_names_for(class_names, spec)
    return _measure(model, forward(x), spec, names, n_bootstrap, seed, forward, x,
                    latency_repeats)


def performance_of_outputs(model: keras.Model, raw: np.ndarray, y: ArrayLike,
                           forward: CompiledForward, latency_x: np.ndarray,
                           class_names: Sequence[str] | None = None, n_bootstrap: int = 200,
                           seed: int = 0, task: str | None = None, latency_repeats: int = 5
                           ) -> PerformanceResult:
    """``performance`` from the model's outputs on every sample, computed elsewhere (a
    streamed pass over data that does not fit in memory): the same metrics, tables and figures.

    Args:
        model: the model the outputs are of.
        raw: its outputs ``(N, ...)`` on the audited samples (what ``forward`` returns).
        y: their labels, as ``performance`` takes them.
        forward: the ``CompiledForward`` of ``model`` timed for the latency.
        latency_x: a few samples the latency is timed on.
        class_names, n_bootstrap, seed, task, latency_repeats: as in ``performance``.

    Returns:
        A ``PerformanceResult``, equal to ``performance`` on the same samples.

    Raises:
        ValueError: labels that do not fit the outputs, or the bad settings ``performance``
            refuses.
    """
    y = as_label_array(y, len(raw))
    spec = label_spec(y, np.asarray(raw).shape[1:], task)
    names = class_names_for(class_names, spec)
    return _measure(model, np.asarray(raw), spec, names, n_bootstrap, seed, forward,
                    latency_x, latency_repeats, n=len(raw))


def _measure(model, raw, spec: LabelSpec, names, n_bootstrap, seed, forward, x,
             latency_repeats, n: int | None = None) -> PerformanceResult:
    """The metrics of outputs ``raw`` against ``spec``, and the cost timed on ``x``."""
    out = read_outputs(raw, spec)
    result = PerformanceResult(task=spec.task)
    if spec.task == "regression":
        _regression(result, spec, out.y_pred)
    else:
        _classification(result, spec, out.probs, out.y_pred, names, n_bootstrap, seed)
        result.metrics["output_transform"] = out.transform
    result.metrics["n_samples"] = int(batch_len(x) if n is None else n)
    _cost(result, model, forward, x, latency_repeats)
    return result


# -- classification -----------------------------------------------------------------------------

def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray,
                               n_bins: int = CALIBRATION_BINS) -> tuple[float, pd.DataFrame]:
    """Top-label expected calibration error (Guo et al. 2017) over equal-width bins.

    Hand-written: scikit-learn has no ECE, and ``calibration_curve`` returns no bin counts (the
    ECE weights) and raises when every prediction is right. Each sample's confidence is its
    highest class probability; ECE = sum over bins of (bin share) x |accuracy - confidence|.

    Returns:
        ``(ece, table)`` where the table has one row per bin: ``bin_lower``, ``bin_upper``,
        ``count``, ``accuracy``, ``confidence`` (NaN for empty bins).
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bins are (lower, upper]; a confidence of exactly 0 falls in the first bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
    gaps = np.where(count > 0, np.abs(acc - mean_conf), 0.0)
    ece = float(np.sum(count / max(len(conf), 1) * gaps))
    table = pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:], "count": count,
                          "accuracy": acc, "confidence": mean_conf})
    return ece, table


def _classification(result: PerformanceResult, spec: LabelSpec, probs: np.ndarray,
                    y_pred: np.ndarray, names: list[str], n_bootstrap: int, seed: int) -> None:
    y_true = spec.y_true
    labels = np.arange(spec.n_classes)
    present = np.unique(y_true)
    m = result.metrics
    m["accuracy"] = float(skm.accuracy_score(y_true, y_pred))
    m["n_classes"] = int(spec.n_classes)
    m["classes_absent_from_y"] = [names[i] for i in labels if i not in set(present.tolist())]

    # per class over every class the model has; averages over the classes y contains, so an
    # absent class (support 0, F1 undefined) does not drag the macro average to zero
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                     zero_division=0)
    auc, curves = _roc(y_true, probs, labels)
    per_class = pd.DataFrame({"class": names, "precision": p, "recall": r, "f1": f,
                              "support": s.astype(int), "roc_auc": auc})
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=present,
                                                            average=avg, zero_division=0)
        m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"] = float(ap), float(ar), float(af)
    finite = np.isfinite(auc)
    if spec.n_classes == 2 and finite[1]:  # sigmoid unit or two-way softmax
        m["roc_auc"] = float(auc[1])
    if finite.any():
        m["roc_auc_macro"] = float(np.mean(auc[finite]))
        m["roc_auc_weighted"] = float(np.average(auc[finite], weights=s[finite]))
    else:
        m["roc_auc_macro"] = m["roc_auc_weighted"] = None
    result.tables["per_class"] = per_class

    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    result.tables["confusion_matrix"] = pd.DataFrame(
        cm, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))

    ece, calib = expected_calibration_error(probs, y_true)
    m["ece"] = ece
    m["ece_bins"] = CALIBRATION_BINS
    m["ece_method"] = "top-label, equal-width bins"
    m["mean_confidence"] = float(probs.max(axis=1).mean())
    result.tables["calibration"] = calib

    if n_bootstrap:
        acc_ci, f1_ci, recall_ci = _bootstrap(y_true, y_pred, present, n_bootstrap, seed,
                                              spec.n_classes)
        m["accuracy_ci95"], m["macro_f1_ci95"] = acc_ci, f1_ci
        per_class["recall_ci_low"], per_class["recall_ci_high"] = recall_ci
        m["bootstrap"] = {"resamples": int(n_bootstrap), "seed": int(seed),
                          "method": "percentile"}

    result.figures["confusion_matrix"] = _confusion_figure(cm, names)
    result.figures["reliability_diagram"] = _reliability_figure(calib, ece)
    if curves:
        result.figures["roc_curves"] = _roc_figure(curves, names, spec.task == "binary")


def _roc(y_true: np.ndarray, probs: np.ndarray, labels: np.ndarray):
    """One-vs-rest ROC-AUC per class; NaN for a class that y lacks (or that is all of y)."""
    auc = np.full(len(labels), np.nan)
    curves = {}
    for c in labels:
        positive = y_true == c
        if positive.all() or not positive.any():
            continue  # AUC is undefined without both positives and negatives
        auc[c] = skm.roc_auc_score(positive, probs[:, c])
        fpr, tpr, _ = skm.roc_curve(positive, probs[:, c])
        curves[int(c)] = (fpr, tpr)
    return auc, curves


def _bootstrap(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray, n: int,
               seed: int, n_classes: int | None = None
               ) -> tuple[list[float], list[float], tuple[np.ndarray, np.ndarray]]:
    """Percentile 95% intervals of accuracy, macro-F1 and each class's recall over ``n``
    resamples of the samples (a class missing from a resample is left out of its interval;
    NaN for a class y lacks)."""
    rng = np.random.default_rng(seed)
    correct = y_true == y_pred
    k = int(n_classes or (int(y_true.max()) + 1 if len(y_true) else 0))
    accs, f1s = np.empty(n), np.empty(n)
    recalls = np.full((n, k), np.nan)
    for b in range(n):  # one resample at a time: no (n, N) index matrix for large N
        i = rng.integers(0, len(y_true), size=len(y_true))
        accs[b] = correct[i].mean()
        f1s[b] = skm.f1_score(y_true[i], y_pred[i], labels=labels, average="macro",
                              zero_division=0)
        support = np.bincount(y_true[i], minlength=k)
        hits = np.bincount(y_true[i], weights=correct[i], minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls[b] = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    q = [2.5, 97.5]
    seen = np.isfinite(recalls).any(axis=0)
    low, high = np.full(k, np.nan), np.full(k, np.nan)
    if seen.any():
        low[seen], high[seen] = np.nanpercentile(recalls[:, seen], q, axis=0)
    return ([float(v) for v in np.percentile(accs, q)],
            [float(v) for v in np.percentile(f1s, q)], (low, high))


# -- regression ----------------------------------------------------------------------------------

def _regression(result: PerformanceResult, spec: LabelSpec, pred: np.ndarray) -> None:
    y = spec.y_true.reshape(pred.shape)
    m = result.metrics
    m["mae"] = float(skm.mean_absolute_error(y, pred))
    m["rmse"] = float(math.sqrt(skm.mean_squared_error(y, pred)))
    m["r2"] = float(skm.r2_score(y, pred)) if len(y) > 1 else None
    y2, p2 = y.reshape(len(y), -1), pred.reshape(len(pred), -1)
    result.tables["per_output"] = pd.DataFrame({
        "output": [f"output_{i}" for i in range(y2.shape[1])],
        "mae": skm.mean_absolute_error(y2, p2, multioutput="raw_values"),
        "rmse": np.sqrt(skm.mean_squared_error(y2, p2, multioutput="raw_values")),
        "r2": (skm.r2_score(y2, p2, multioutput="raw_values") if len(y) > 1
               else np.full(y2.shape[1], np.nan)),
    })
    result.figures["predicted_vs_true"] = _scatter_figure(y2, p2)
    result.figures["residuals"] = _residual_figure(y2, p2)


# -- cost ------------------------------------------------------------------------------------------

def _cost(result: PerformanceResult, model: keras.Model, forward: CompiledForward,
          x: np.ndarray, repeats: int) -> None:
    """Parameter count, size in bytes and median latency at batch 1 and 64."""
    m = result.metrics
    m["parameters"] = int(sum(int(np.prod(v.shape)) for v in model.weights))
    m["trainable_parameters"] = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    m["model_bytes"] = int(sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                               for v in model.weights))
    rows = []
    for batch in (1, 64):
        xb = batch_take(x, np.arange(batch) % batch_len(x))  # cycled when x is smaller
        forward(xb)  # warm-up (the function is already traced; this fills caches)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            forward(xb)
            times.append(time.perf_counter() - t0)
        ms = float(np.median(times)) * 1000.0 / batch
        m[f"latency_ms_batch{batch}"] = ms
        rows.append({"batch_size": batch, "ms_per_sample": ms,
                     "ms_per_batch": ms * batch, "repeats": repeats})
    result.tables["latency"] = pd.DataFrame(rows)


# -- figures ---------------------------------------------------------------------------------------

def _confusion_figure(cm: np.ndarray, names: list[str]):
    """Counts in each cell, coloured by the share of the true class (row-normalised)."""
    n = len(names)
    side = min(9.0, 2.5 + 0.45 * n)
    fig = new_figure((side + 1.0, side))
    ax = fig.add_subplot()
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7 if n > 12 else 9,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), names, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center",
                  fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix (N={int(cm.sum())})", fontsize=10)
    fig.colorbar(im, ax=ax, label="share of the true class", shrink=0.8)
    return fig


def _reliability_figure(calib: pd.DataFrame, ece: float):
    fig = new_figure((4.8, 4.8))
    ax = fig.add_subplot()
    width = float(calib.bin_upper.iloc[0] - calib.bin_lower.iloc[0])
    centers = (calib.bin_lower + calib.bin_upper) / 2
    filled = calib["count"] > 0
    ax.bar(centers[filled], calib.accuracy[filled], width=width, edgecolor="black",
           color="tab:blue", alpha=0.8, label="accuracy")
    ax.bar(centers[filled], (calib.confidence - calib.accuracy)[filled],
           bottom=calib.accuracy[filled], width=width, color="tab:red", alpha=0.3,
           hatch="//", edgecolor="tab:red", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram (ECE = {ece:.3f})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _roc_figure(curves: dict, names: list[str], binary: bool):
    fig = new_figure((4.8, 4.8))
    ax = fig.add_subplot()
    shown = {1: curves[1]} if binary and 1 in curves else curves
    for c, (fpr, tpr) in shown.items():
        ax.plot(fpr, tpr, lw=1.2, label=names[c])
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (one-vs-rest)" if not binary else "ROC", fontsize=10)
    if len(shown) <= 12:
        ax.legend(fontsize=7, loc="lower right")
    return fig


def _scatter_figure(y: np.ndarray, pred: np.ndarray):
    fig = new_figure((4.8, 4.8))
    ax = fig.add_subplot()
    for i in range(y.shape[1]):
        ax.scatter(y[:, i], pred[:, i], s=8, alpha=0.6, label=f"output_{i}")
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "--", color="grey")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title("predicted vs true", fontsize=10)
    if y.shape[1] > 1:
        ax.legend(fontsize=7)
    return fig


def _residual_figure(y: np.ndarray, pred: np.ndarray):
    fig = new_figure((5.2, 3.4))
    ax = fig.add_subplot()
    ax.hist((pred - y).ravel(), bins=30, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="grey", ls="--")
    ax.set_xlabel("residual (predicted − true)")
    ax.set_ylabel("samples")
    ax.set_title("residuals", fontsize=10)
    return fig
