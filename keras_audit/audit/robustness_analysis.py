"""Robustness to corrupted inputs: accuracy, prediction flips, confidence and explanation
stability per corruption and severity.

Each corruption (``keras_audit.audit.corruptions``) is compiled together with the model's
forward pass at every requested severity into one ``tf.function(x, seed)``, so a sweep traces
once per corruption and costs about one forward pass per (corruption, severity) level.
Explanation stability is the Spearman rank correlation between the Grad-CAM map (saliency when
the model has no layer with spatial axes) of each explained sample and of its corrupted copy,
explaining the class predicted on the clean sample.

Streamed data (``robustness(..., stream=)``, what the audit uses for a ``tf.data.Dataset``
or a ``DataSource``) is measured on every sample: each corruption is one pass over the stream
(all its severities at once), re-chunked into the same ``batch_size`` rows as an array (so
the same per-chunk seeds and the same numbers), with memory bounded by one chunk and the
per-sample outputs; the explanation stability stays on the explained samples held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.audit._cache import ModelCache
from keras_audit.audit._labels import as_label_array, label_spec
from keras_audit.audit._scoring import OutputScorer
from keras_audit.audit.corruptions import (
    Corrupter,
    batch_seed,
    check_corruptions,
    check_range,
    check_severities,
    corrupter_for,
    infer_range,
)
from keras_audit.explain.forward import CompiledForward, check_batch, select_output
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: the compiled sweeps, forward passes and explainers of the last models swept: a repeated
#: ``robustness`` call on the same model and data scale traces nothing
_CACHE = ModelCache(4)

#: the columns of a ``robustness`` table, in order (``explanation_spearman`` with stability)
COLUMNS = ("corruption", "severity", "accuracy", "delta_accuracy", "flip_rate",
           "mean_confidence", "explanation_spearman", "loss", "delta_loss", "distance")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)


def _kind(x: np.ndarray) -> str:
    return "image" if x.ndim == 4 else "table"


def stability_explainer(model: keras.Model):
    """Grad-CAM when the model has a layer with spatial axes, else saliency: ``(name, fn)``."""
    from keras_audit.explain import GradCAM, Saliency

    try:
        return "gradcam", GradCAM(model)
    except ValueError:  # no layer with spatial axes: gradients to the input instead
        return "saliency", Saliency(model)


class _Sweep:
    """One compiled ``model(corrupt(x))`` per corruption and set of severities, run over ``x``
    in batches: each chunk is sent in once and corrupted at every severity inside one graph
    (one dispatch, one copy of the chunk and one draw of the noise per chunk instead of one per
    severity: 1.27x -> 1.07x 40 forward passes in ``benchmarks/bench_robustness.py``)."""

    def __init__(self, model: keras.Model, corrupter, batch_size: int,
                 forward: CompiledForward | None = None) -> None:
        self.model, self.corrupter, self.batch_size = model, corrupter, batch_size
        # the model's one traced pass, called from every corruption's graph: a cold sweep
        # traces the model once (or reuses the clean pass's trace) instead of once per
        # (corruption, severity)
        if forward is not None and forward.model is model and forward.dtypes == (tf.float32,):
            self._model_fn = forward.traced()
        else:  # corrupted inputs are float even where the model declares integers
            spec = tf.TensorSpec((None, *corrupter.sample_shape), tf.float32)
            self._model_fn = tf.function(
                lambda x: select_output(model(x, training=False), None, model),
                input_signature=[spec], autograph=False)
        self._fns: dict[tuple, object] = {}
        if corrupter.kind == "image":
            self._unit = tf.constant(corrupter.hi - corrupter.lo, tf.float32)
        else:  # table distances in units of each feature's std
            self._unit = tf.where(corrupter.std > 0, corrupter.std, 1.0)

    def _fn(self, name: str, levels: tuple[int, ...]):
        key = (name, levels)
        if key not in self._fns:
            corrupter, model_fn, unit = self.corrupter, self._model_fn, self._unit
            spec = [tf.TensorSpec((None, *corrupter.sample_shape), tf.float32),
                    tf.TensorSpec((2,), tf.int32)]

            # autograph=False here and in every compiled function of this package: the bodies
            # have no tensor-dependent Python control flow, and autograph's source
            # transformation was 40% of a cold sweep's tracing (as Keras 3 marks its own
            # step functions do_not_convert)
            @tf.function(input_signature=spec, autograph=False)
            def fn(x, seed):
                axes = list(range(1, len(x.shape)))
                outs, dists = [], []
                for level in levels:
                    xc = corrupter.ops(name, x, level, seed)
                    outs.append(model_fn(xc))
                    if unit.shape.rank == 0:  # images: one scale, divided out after the mean
                        dists.append(tf.sqrt(tf.reduce_mean(
                            tf.math.squared_difference(xc, x), axis=axes)) / unit)
                    else:
                        dists.append(tf.sqrt(tf.reduce_mean(tf.square((xc - x) / unit),
                                                            axis=axes)))
                return outs, dists

            self._fns[key] = fn
        return self._fns[key]

    def __call__(self, x: np.ndarray, name: str, levels: tuple[int, ...], seed: int):
        """Outputs and distances on ``x`` at each of ``levels``, chunked every ``batch_size``
        rows: ``[(outputs, distances), ...]`` in the order of ``levels``."""
        b = self.batch_size
        return self.run(((i, x[i:i + b]) for i in range(0, len(x), b)), name, levels, seed)

    def run(self, chunks, name: str, levels: tuple[int, ...], seed: int):
        """The same over ``(start, x_chunk)`` pairs (arrays or ``Stream.chunks``): chunk
        ``start`` draws its noise from ``batch_seed(seed, name, start)``, the same at every
        severity, so the same rows chunked the same way corrupt identically on both paths and
        as ``corrupt`` does."""
        fn = self._fn(name, tuple(levels))
        outs: list[list] = [[] for _ in levels]
        dists: list[list] = [[] for _ in levels]
        for start, xc in chunks:
            out, dist = fn(tf.constant(np.asarray(xc, np.float32)),
                           batch_seed(seed, name, start))
            for i in range(len(levels)):
                outs[i].append(out[i].numpy())
                dists[i].append(dist[i].numpy())
        return [(np.concatenate(o), np.concatenate(d)) for o, d in zip(outs, dists)]


def streamed_corrupter(stream, kind: str, sample_shape: tuple,
                       value_range: tuple[float, float] | None = None) -> Corrupter:
    """A ``Corrupter`` for every sample of ``stream``, from one read pass (no model).

    Images: ``value_range``, else the range ``infer_range`` gives for the streamed minimum and
    maximum (``(0, 255)`` for integer data). Tables and sequences: each feature's mean and
    standard deviation over every streamed sample (merged batch by batch in float64, Chan et
    al.'s parallel update), what ``corrupter_for`` computes on the concatenated arrays.
    (Hand-written: scikit-learn's ``StandardScaler.partial_fit`` skips NaN, which the array
    path's ``np.std`` does not.)

    Raises:
        ValueError: the data yields no samples, or NaN/infinite image values.
    """
    if kind == "image" and value_range is not None:
        return Corrupter(kind, sample_shape, check_range(value_range, None))
    n, dtype, extremes = 0, None, []
    mean = m2 = None
    for xb, _, _ in stream.batches():
        xb = np.asarray(xb)
        if not len(xb):
            continue
        dtype = dtype or xb.dtype
        if kind == "image":
            extremes += [np.min(xb), np.max(xb)]
            n += len(xb)
            continue
        xf = xb.astype(np.float64)
        nb, mb = len(xf), xf.mean(axis=0)
        m2b = np.square(xf - mb).sum(axis=0)
        if mean is None:
            mean, m2 = mb, m2b
        else:
            delta, total = mb - mean, n + nb
            mean = mean + delta * (nb / total)
            m2 = m2 + m2b + np.square(delta) * (n * nb / total)
        n += nb
    if not n:
        raise ValueError("the data yielded no samples")
    if kind == "image":  # infer_range refuses NaN and infinite extremes, as on arrays
        return Corrupter(kind, sample_shape, infer_range(np.asarray(extremes, dtype)))
    return Corrupter(kind, sample_shape, mean=mean, std=np.sqrt(m2 / n))


def robustness(model: keras.Model, x: tf.Tensor | ArrayLike, y: tf.Tensor | ArrayLike,
               corruptions: Sequence[str] | str | None = None,
               severities: Sequence[int] = (1, 2, 3, 4, 5), stability: bool = True,
               batch_size: int = 256, seed: int = 0, *,
               value_range: tuple[float, float] | None = None, stability_samples: int = 32,
               stability_index: ArrayLike | None = None,
               forward: CompiledForward | None = None, stream=None,
               clean_outputs: ArrayLike | None = None) -> pd.DataFrame:
    """Accuracy, flips, confidence and explanation stability under corrupted inputs.

    Args:
        model: a trained, built single-input Keras model (its weights are never changed).
        x: images ``(N, H, W, C)``, tables ``(N, F)`` or sequences (never modified). With
            ``stream``: only the samples the stability explains (e.g. the audit's drawn
            explained samples).
        y: labels: class ids, one-hot rows, ``{0, 1}`` for one sigmoid unit, or regression
            targets (then ``accuracy``, ``flip_rate`` and ``mean_confidence`` are NaN and the
            ``loss`` tells the story). With ``stream``: the labels of every streamed sample.
        corruptions: names from ``IMAGE_CORRUPTIONS`` (images: ``gaussian_noise``,
            ``shot_noise``, ``gaussian_blur``, ``brightness``, ``contrast``, ``jpeg``,
            ``pixelate``, ``occlusion``) or ``TABLE_CORRUPTIONS`` (``gaussian_noise`` in units
            of each feature's std, ``feature_dropout`` to the feature's mean); ``None``: all.
        severities: integers in ``0..5`` (0 = unchanged; ImageNet-C's levels 1..5).
        stability: also measure explanation stability (``explanation_spearman``).
        batch_size: the largest batch sent through the model at once.
        seed: seeds the corruptions' random draws and the explained samples.
        value_range: ``(lo, hi)`` of image values; ``None`` infers it (``[0, 1]``,
            ``[0, 255]``, ``[-1, 1]``, else the observed range).
        stability_samples: how many samples the stability uses (seeded choice; ignored with
            ``stream``, where every row of ``x`` is explained).
        stability_index: the indices of the samples to explain instead (the report passes its
            explained samples). With ``stream``: the indices into the streamed data of the
            rows of ``x`` (default: ``x`` holds the first ``len(x)`` samples).
        forward: a ``CompiledForward`` of this model to reuse for the clean outputs.
        stream: a ``streaming.Stream`` over data that need not fit in memory: every
            corruption is one pass over every streamed sample (at all severities), re-chunked
            into ``batch_size`` rows exactly as an array is (same chunks, same per-chunk
            seeds, so the table equals the one on the concatenated arrays); memory is one
            chunk plus the per-sample outputs. The value range (images) or the feature means
            and stds (tables) come from one more read pass over every sample.
        clean_outputs: with ``stream``, the model's outputs on every streamed sample when
            already known (the audit's streamed pass); ``None`` runs that pass.

    Returns:
        A DataFrame, one row per (corruption, severity), with ``COLUMNS``: ``accuracy`` and
        ``delta_accuracy`` (against the clean data), ``flip_rate`` (share of predictions that
        change), ``mean_confidence`` (mean top-class probability), ``explanation_spearman``
        (mean over the explained samples; only with ``stability``), ``loss`` and
        ``delta_loss`` (the compiled loss), and ``distance`` (RMS change of the input in units
        of the value range for images, of each feature's std for tables). ``table.attrs``
        holds ``clean_accuracy``, ``clean_loss``, ``loss_name``, ``task``, ``kind``,
        ``value_range``, ``explainer``, ``stability_samples``, ``seed``, ``n_samples`` (the
        samples every level was measured on) and ``streamed``.

    Raises:
        ValueError: before any work: an unknown corruption (the message lists the choices for
            the data's kind), a severity outside ``0..5``, a bad ``batch_size``, ``seed``,
            ``value_range`` or ``stability_samples``, ``x`` the model cannot take, labels
            that do not fit the model's output, or (with ``stream``) ``stability_index`` or
            ``clean_outputs`` that do not match ``x`` and ``y``.
    """
    batch_size = positive_int(batch_size, "batch_size")
    seed = _check_seed(seed)
    x = check_batch(model, x)
    kind = _kind(x)
    names = check_corruptions(corruptions, kind)
    levels = check_severities(severities)
    if kind == "image":
        check_range(value_range, x)
    stability_samples = positive_int(stability_samples, "stability_samples")
    x = x.astype(np.float32, copy=False)  # never written to
    y = as_label_array(y, len(x) if stream is None else len(y))
    if forward is None:
        forward = _CACHE.get(model, ("forward", batch_size),
                             lambda: CompiledForward(model, batch_size=batch_size))
    elif not isinstance(forward, CompiledForward) or forward.model is not model:
        raise ValueError("forward must be a CompiledForward built on this same model")
    spec = label_spec(y, forward(x[:1]).shape[1:])
    n = len(y)
    if stream is not None:
        idx = (np.arange(len(x)) if stability_index is None
               else np.asarray(stability_index, np.int64).reshape(-1))
        if len(idx) != len(x) or idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"with stream, stability_index must give the index in 0..{n - 1} "
                             f"of each of the {len(x)} rows of x; got {len(idx)} indices")
        if clean_outputs is not None:
            clean_outputs = np.asarray(clean_outputs)
            if len(clean_outputs) != n:
                raise ValueError(f"clean_outputs has {len(clean_outputs)} rows but y has {n}")
    elif stability_index is None:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.permutation(len(x))[:min(stability_samples, len(x))])
    else:
        idx = np.asarray(stability_index, np.int64).reshape(-1)
        if not len(idx) or idx.min() < 0 or idx.max() >= len(x):
            raise ValueError(f"stability_index must hold indices in 0..{len(x) - 1}")

    if stream is None:
        clean_raw = forward(x)
        corrupter = corrupter_for(x, kind, value_range)
        x_exp = x[idx]
    else:
        clean_raw = stream.outputs(forward) if clean_outputs is None else clean_outputs
        if len(clean_raw) != n:
            raise ValueError(f"the stream yielded {len(clean_raw)} samples but y has {n}")
        corrupter = streamed_corrupter(stream, kind, x.shape[1:], value_range)
        x_exp = x
    scorer = OutputScorer(model, spec, clean_raw)
    sweep = _CACHE.get(model, ("sweep", batch_size, forward.output, *corrupter.key()),
                       lambda: _Sweep(model, corrupter, batch_size, forward))
    corrupter = sweep.corrupter  # with its compiled corruptions of an earlier call
    explainer_name, maps_of = None, None
    if stability:
        explainer_name, explainer = _CACHE.get(model, ("stability",),
                                               lambda: stability_explainer(model))
        targets = (scorer.clean_pred[idx].astype(np.int64) if scorer.classifier
                   else np.zeros(len(idx), np.int64))
        clean_maps = explainer(x_exp, targets)

        def maps_of(name: str, level: int) -> float:
            from keras_audit.explain import spearman_per_sample

            xc = corrupter(x_exp, name, level, seed, batch_size)
            rho = spearman_per_sample(clean_maps, explainer(xc, targets))
            finite = rho[np.isfinite(rho)]
            return float(finite.mean()) if finite.size else math.nan

    clean = scorer.clean
    rows = []
    for name in names:
        if stream is None:
            passes = sweep(x, name, levels, seed)
        else:
            passes = sweep.run(stream.chunks(batch_size), name, levels, seed)
            if len(passes[0][0]) != n:
                raise ValueError(f"the stream yielded {len(passes[0][0])} samples in a "
                                 f"corruption pass but {n} before: it must give the same data "
                                 "on every pass")
        for level, (raw, dist) in zip(levels, passes):
            s = scorer.score(raw)
            row = {"corruption": name, "severity": level, "accuracy": s["accuracy"],
                   "delta_accuracy": s["accuracy"] - clean["accuracy"],
                   "flip_rate": s["flip_rate"], "mean_confidence": s["mean_confidence"]}
            if stability:
                row["explanation_spearman"] = 1.0 if level == 0 else maps_of(name, level)
            row.update(loss=s["loss"], delta_loss=s["loss"] - clean["loss"],
                       distance=float(np.mean(dist)))
            rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS
                                        if stability or c != "explanation_spearman"])
    table.attrs.update(clean_accuracy=clean["accuracy"], clean_loss=clean["loss"],
                       loss_name=scorer.loss_name, task=spec.task, kind=kind,
                       value_range=(corrupter.lo, corrupter.hi) if kind == "image" else None,
                       explainer=explainer_name, stability_samples=len(idx) if stability
                       else None, seed=seed, n_samples=n, streamed=stream is not None)
    return table


def worst_case(table: pd.DataFrame) -> dict:
    """The (corruption, severity) row with the largest accuracy drop (largest loss rise for
    regression), as a dict; ``{}`` for an empty table."""
    if table.empty:
        return {}
    regression = table["accuracy"].isna().all()
    i = table["delta_loss"].idxmax() if regression else table["delta_accuracy"].idxmin()
    row = table.loc[i]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def robustness_figures(table: pd.DataFrame) -> dict:
    """Figures of a ``robustness`` table.

    Returns:
        ``{"accuracy_vs_severity": Figure}`` (the loss for regression; one line per
        corruption, the clean value dashed) and ``"stability_vs_severity"`` when the table has
        ``explanation_spearman``.

    Raises:
        ValueError: an empty table or one without the ``robustness`` columns.
    """
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError("robustness_figures needs a non-empty DataFrame from robustness")
    missing = [c for c in ("corruption", "severity", "accuracy", "loss") if c not in table]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; give the result of robustness")
    metric = "accuracy" if table["accuracy"].notna().any() else "loss"
    clean = table.attrs.get(f"clean_{metric}")
    figs = {"accuracy_vs_severity": _curves(table, metric, metric, clean)}
    if "explanation_spearman" in table and table["explanation_spearman"].notna().any():
        name = {"gradcam": "Grad-CAM", "saliency": "saliency"}.get(
            table.attrs.get("explainer"), "explanation")
        figs["stability_vs_severity"] = _curves(table, "explanation_spearman",
                                                f"{name} Spearman vs clean", 1.0,
                                                ylim=(-0.2, 1.05))
    return figs


def _curves(table: pd.DataFrame, column: str, ylabel: str, clean, ylim=None):
    fig = new_figure((6.4, 3.8))
    ax = fig.add_subplot()
    for name, g in table.groupby("corruption", sort=False):
        g = g.sort_values("severity")
        levels, values = list(g["severity"]), list(g[column])
        if clean is not None and 0 not in levels:  # every curve starts at the clean value
            levels, values = [0, *levels], [clean, *values]
        ax.plot(levels, values, marker="o", ms=3, label=name)
    if clean is not None and np.isfinite(clean):
        ax.axhline(clean, ls="--", lw=1, color="0.4", label="clean")
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig
