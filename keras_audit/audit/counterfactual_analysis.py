"""Counterfactual explanations: small changes to an input that make the model predict another
class.

Tables go through DiCE (``dice-ml``), model-agnostic: its ``random`` method changes few features
at a time, and it is given the compiled forward pass as the classifier (a ``predict_proba`` over
``CompiledForward``), never ``model.predict``. DiCE's own TensorFlow backend is written for
``tf.keras`` 2 (sessions, ``tf.keras`` optimizers), so it is not used on Keras 3 models.

Images (and tables with ``method="gradient"``) use a gradient search in the spirit of Wachter et
al. (2017), hand-written because no maintained library does it for Keras 3: minimise a margin
loss towards the target class on the pre-softmax logits (as Carlini and Wagner do) plus an L1
distance penalty, and, for images, a total-variation penalty on the change so it is a smooth
region rather than noise; the inputs stay within the reference's value range. The closest valid
iterate of each run is kept; on tables, its smallest changes are then undone as far as it stays
valid (fewer changed features).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_audit.audit.result import AnalysisResult
from keras_audit.explain import GraphTap, predicted_classes
from keras_audit.explain.forward import CompiledForward, check_batch, select_output

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike

#: the search methods; ``None`` picks DiCE for tables and the gradient search for images
METHODS = ("dice", "gradient")
#: a counterfactual feature counts as changed when it moves by more than this many stds
CHANGED_TOL = 1e-6


@dataclass(repr=False)
class CounterfactualResult(AnalysisResult):
    """What ``counterfactuals`` found, ``n`` candidates per sample.

    Attributes:
        method: ``"dice-random"`` or ``"gradient"``.
        inputs: ``(N, n, *input_shape)`` the changed inputs (NaN where none was found).
        original: ``(N,)`` the model's class for each sample.
        targets: ``(N,)`` the class each sample was pushed towards.
        predicted: ``(N, n)`` the model's class for each changed input (-1 where none).
        valid: ``(N, n)`` bool, the model predicts the target for that changed input.
        distances: ``(N, n)`` L1 distance to the original in units of each feature's standard
            deviation over the reference (tables) or the mean absolute pixel change (images);
            NaN where none was found.
        changed: ``(N, n, F)`` bool, the features that changed (tables), else None.
        change_maps: ``(N, n, H, W)`` absolute change summed over channels (images), else None.
        metrics: ``validity`` (the share of valid candidates), ``samples_with_valid`` (the
            share of samples with at least one), ``mean_changed_features`` (tables, over valid
            candidates), ``n_features``, ``mean_distance``.
        tables: ``counterfactuals`` (one row per candidate; tables list the changed features).
        figures: ``counterfactuals``.
    """

    method: str
    inputs: np.ndarray
    original: np.ndarray
    targets: np.ndarray
    predicted: np.ndarray
    valid: np.ndarray
    distances: np.ndarray
    changed: np.ndarray | None = None
    change_maps: np.ndarray | None = None


class _Scores:
    """The model's class scores as a classifier: probabilities and pre-activation logits."""

    def __init__(self, model: keras.Model, x: np.ndarray) -> None:
        self.model = model
        self.forward = CompiledForward(model)
        probe = self.forward(x[: min(len(x), 64)]).reshape(min(len(x), 64), -1)
        self.n_out = probe.shape[1]
        if self.n_out == 1 and not (probe.min() >= 0 and probe.max() <= 1):
            raise ValueError("counterfactuals explain classifiers: the model has one output "
                             "that is not a probability (a regression model?); choices: a "
                             "softmax (N, C) or a single sigmoid unit")
        self.n_classes = max(self.n_out, 2)
        self.tap = GraphTap(model)

    def proba(self, x: np.ndarray) -> np.ndarray:
        out = self.forward(np.asarray(x, np.float32)).reshape(len(x), -1)
        return np.hstack([1.0 - out, out]) if self.n_out == 1 else out

    def classes(self, x: np.ndarray) -> np.ndarray:
        out = self.forward(np.asarray(x, np.float32)).reshape(len(x), -1)
        return predicted_classes(out)

    def logits(self, x):
        import tensorflow as tf

        out, _ = self.tap.run(x, linear=True)
        z = tf.reshape(tf.cast(select_output(out, None, self.model), tf.float32),
                       (-1, self.n_out))
        return tf.concat([-z / 2, z / 2], axis=1) if self.n_out == 1 else z


def counterfactuals(model: keras.Model, x: tf.Tensor | ArrayLike,
                    targets: ArrayLike | int | None = None, n: int = 3,
                    features: Sequence[int | str] | None = None, *,
                    reference: tf.Tensor | ArrayLike | None = None,
                    feature_names: Sequence[str] | None = None, method: str | None = None,
                    steps: int = 300, distance_weight: float = 0.05,
                    smoothness_weight: float = 0.5, seed: int = 0,
                    figures: bool = True) -> CounterfactualResult:
    """``n`` changed versions of each sample that the model classifies as the target class.

    Args:
        model: a built Keras classifier (softmax ``(N, C)`` or one sigmoid unit).
        x: the samples: tables ``(N, F)`` or images ``(N, H, W, C)``.
        targets: the class to reach per sample (an int for all, or ``(N,)``); ``None`` takes
            each sample's runner-up class.
        n: candidates per sample.
        features: the features (tables: indices or names) allowed to change; ``None`` lets all
            change.
        reference: data whose value range bounds the search (and, for DiCE, describes the
            features); default ``x``.
        feature_names: column names of a table (default ``x0``, ``x1``, ...).
        method: ``"dice"`` (tables only; needs ``keras-audit[counterfactuals]``) or
            ``"gradient"``; ``None`` picks DiCE for tables when it is installed, else the
            gradient search, and the gradient search for images.
        steps: optimisation steps of the gradient search.
        distance_weight: weight of the L1 distance penalty (gradient search).
        smoothness_weight: weight of the total-variation penalty on the change (images).
        seed: seeds DiCE and the gradient search's starting points.
        figures: draw the figure.

    Returns:
        A ``CounterfactualResult``.

    Raises:
        ValueError: before any work: ``x`` the model cannot take, data that is neither a table
            nor images, an unknown ``method`` or ``"dice"`` for images, targets out of range
            or equal to the sample's own class, unknown ``features``, ``n`` or ``steps`` not a
            positive integer, or a model that is not a classifier.
    """
    xa = check_batch(model, x).astype(np.float32, copy=False)
    if xa.ndim not in (2, 4):
        raise ValueError(f"counterfactuals take tables (N, F) or images (N, H, W, C); x has "
                         f"shape {xa.shape}")
    image = xa.ndim == 4
    if method is None:  # DiCE for tables when its extra is installed
        method = "gradient" if image or not _has_dice() else "dice"
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choices: {list(METHODS)} or None")
    if method == "dice" and image:
        raise ValueError("method='dice' works on tables only; images use method='gradient'")
    if method == "dice":
        from keras_audit._extras import check_installed

        check_installed("counterfactuals", "dice_ml", feature="counterfactuals(method='dice')")
    for value, what in ((n, "n"), (steps, "steps")):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{what} must be a positive integer; got {value!r}")
    ref = xa if reference is None else check_batch(model, reference, "reference").astype(
        np.float32, copy=False)
    names = _feature_names(feature_names, xa) if not image else None
    vary = _features(features, names, xa) if not image else None
    scores = _Scores(model, xa)
    original = scores.classes(xa)
    goal = _targets(targets, scores.proba(xa), original, scores.n_classes)

    if method == "dice":
        cands = _dice(scores, xa, ref, goal, int(n), names, vary, seed)
        kind = "dice-random"
    else:
        cands = _gradient(scores, xa, ref, goal, int(n), vary, int(steps),
                          float(distance_weight), float(smoothness_weight) if image else 0.0,
                          seed)
        kind = "gradient"
    res = _result(kind, scores, xa, ref, cands, original, goal, image)
    res.tables = _tables(res, names)
    res.metadata = {"method": kind, "n": int(n), "steps": int(steps) if kind == "gradient"
                    else None, "distance_weight": distance_weight if kind == "gradient"
                    else None, "features_varied": None if vary is None else
                    [names[i] for i in vary] if names else list(vary), "seed": seed}
    if figures:
        from keras_audit.audit.counterfactual_plots import counterfactual_figure

        res.figures = {"counterfactuals": counterfactual_figure(res, xa, names)}
    return res


def _feature_names(feature_names, x: np.ndarray) -> list[str]:
    if feature_names is None:
        return [f"x{i}" for i in range(x.shape[1])]
    names = [str(f) for f in feature_names]
    if len(names) != x.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names but x has {x.shape[1]} "
                         "features")
    return names


def _features(features, names: list[str] | None, x: np.ndarray) -> np.ndarray | None:
    if features is None:
        return None
    if x.ndim != 2:
        raise ValueError("features applies to tables (N, F) only")
    picked = []
    for f in [features] if isinstance(features, str | int) else list(features):
        if isinstance(f, str) and names is not None and f in names:
            picked.append(names.index(f))
        elif isinstance(f, int | np.integer) and not isinstance(f, bool) and \
                0 <= f < x.shape[1]:
            picked.append(int(f))
        else:
            raise ValueError(f"unknown feature {f!r}; choices: indices 0..{x.shape[1] - 1} or "
                             f"names {names}")
    if not picked:
        raise ValueError("features is empty; give at least one feature to vary, or None")
    return np.array(sorted(set(picked)))


def _targets(targets, proba: np.ndarray, original: np.ndarray, n_classes: int) -> np.ndarray:
    if targets is None:  # the runner-up: the most likely class other than the predicted one
        p = proba.copy()
        p[np.arange(len(p)), original] = -np.inf
        return p.argmax(axis=1).astype(np.int64)
    t = np.asarray(targets)
    t = np.full(len(original), int(t)) if t.ndim == 0 else t
    if t.shape != original.shape or t.dtype.kind not in "iu" or t.min() < 0 or \
            t.max() >= n_classes:
        raise ValueError(f"targets must be None, one class id or one per sample ({len(original)}"
                         f"), each in 0..{n_classes - 1}; got {targets!r}")
    same = np.flatnonzero(t == original)
    if len(same):
        raise ValueError(f"targets equal the predicted class for samples {same[:10].tolist()}; "
                         "a counterfactual must reach another class (None picks the runner-up)")
    return t.astype(np.int64)


def _has_dice() -> bool:
    """Whether DiCE (``keras-audit[counterfactuals]``) is installed (found, not imported)."""
    from keras_audit._extras import check_installed

    try:
        check_installed("counterfactuals", "dice_ml", feature="counterfactuals")
    except ImportError:
        return False
    return True


def _dice(scores: _Scores, x, ref, goal, n, names, vary, seed) -> np.ndarray:
    """DiCE's model-agnostic random search, one query per sample; NaN where none is found."""
    import dice_ml  # the counterfactuals extra, checked before any work
    import pandas as pd

    class _Classifier:  # what DiCE's sklearn backend calls: the compiled forward pass
        def predict_proba(self, frame):
            return scores.proba(np.asarray(frame, np.float32))

        def predict(self, frame):
            return self.predict_proba(frame).argmax(axis=1)

    outcome = "__class__"
    # float64 columns: DiCE writes float64 values into the frame, which pandas refuses for
    # float32 columns
    data = pd.DataFrame(ref.astype(np.float64), columns=names)
    data[outcome] = scores.proba(ref).argmax(axis=1)
    d = dice_ml.Data(dataframe=data, continuous_features=list(names), outcome_name=outcome)
    m = dice_ml.Model(model=_Classifier(), backend="sklearn")
    explainer = dice_ml.Dice(d, m, method="random")
    to_vary = "all" if vary is None else [names[i] for i in vary]
    out = np.full((len(x), n, x.shape[1]), np.nan, np.float32)
    for i in range(len(x)):
        query = pd.DataFrame(x[i:i + 1].astype(np.float64), columns=names)
        # DiCE draws a tqdm bar and warnings of its own per query
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                found = explainer.generate_counterfactuals(
                    query, total_CFs=n, desired_class=int(goal[i]), features_to_vary=to_vary,
                    random_seed=seed + i, verbose=False)
            except Exception as exc:  # DiCE raises when it finds none ("No counterfactuals")
                if "counterfactual" not in str(exc).lower():
                    raise
                continue
        frame = found.cf_examples_list[0].final_cfs_df
        if frame is not None and len(frame):
            got = frame[names].to_numpy(np.float32)[:n]
            out[i, :len(got)] = got
    return out


def _gradient(scores: _Scores, x, ref, goal, n, vary, steps, dist_w, tv_w, seed) -> np.ndarray:
    """The closest valid iterate of ``n`` gradient searches per sample (NaN if never valid)."""
    import tensorflow as tf

    image = x.ndim == 4
    lo = ref.min(axis=0) if not image else np.full(x.shape[1:], ref.min(), np.float32)
    hi = ref.max(axis=0) if not image else np.full(x.shape[1:], ref.max(), np.float32)
    scale = ref.std(axis=0) if not image else np.full(x.shape[1:], ref.std(), np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    mask = np.ones(x.shape[1:], np.float32)
    if vary is not None:
        mask = np.zeros(x.shape[1:], np.float32)
        mask[vary] = 1.0
    reps = np.repeat(x, n, axis=0)
    tgt = np.repeat(goal, n).astype(np.int32)
    rng = np.random.default_rng(seed)
    # each of the n runs per sample starts from its own small random change (diversity)
    start = (rng.normal(0, 0.05, reps.shape) * scale * mask).astype(np.float32)
    start[::n] = 0.0
    x0 = tf.constant(reps)
    delta = tf.Variable(start)
    consts = [tf.constant(v) for v in (lo, hi, scale, mask)]
    opt = keras.optimizers.Adam(learning_rate=0.05)
    opt.build([delta])  # its slots exist before tracing: a tf.function creates no variables
    step = _search_step(scores, x0, delta, tf.constant(tgt), consts, dist_w, tv_w, opt)
    best = np.full(reps.shape, np.nan, np.float32)
    best_d = np.full(len(reps), np.inf)
    for _ in range(steps):
        cand, ok, dist = (t.numpy() for t in step())
        better = ok & (dist < best_d)
        best[better], best_d[better] = cand[better], dist[better]
    if not image:
        best = _sparsify(scores, reps, best, tgt, scale)
    return best.reshape(len(x), n, *x.shape[1:])


def _sparsify(scores: _Scores, x0: np.ndarray, best: np.ndarray, tgt: np.ndarray,
              scale: np.ndarray) -> np.ndarray:
    """Undo the smallest changes of each found candidate as far as it stays valid.

    An L1 penalty under Adam leaves many features with small non-zero changes. For ``r`` from
    all features down to none, the ``r`` smallest changes (in stds) are undone; each candidate
    keeps the largest ``r`` at which the model still predicts the target. One batched forward
    pass per ``r`` (DiCE's post-hoc sparsity step does the like for its candidates).
    """
    out = best.copy()
    todo = ~np.isnan(best).any(axis=1)
    rank = np.argsort(np.argsort(np.abs(np.nan_to_num(best) - x0) / scale, axis=1), axis=1)
    for r in range(best.shape[1] - 1, -1, -1):
        if not todo.any():
            break
        trial = np.where(rank < r, x0, best)
        ok = todo & (scores.classes(np.nan_to_num(trial)) == tgt)
        out[ok] = trial[ok]
        todo &= ~ok
    return out


def _search_step(scores, x0, delta, tgt, consts, dist_w, tv_w, opt):
    import tensorflow as tf

    lo, hi, scale, mask = consts
    n_cls = scores.n_classes
    axes = list(range(1, len(x0.shape)))

    def candidate():
        return tf.clip_by_value(x0 + delta * mask, lo, hi)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            cand = candidate()
            z = scores.logits(cand)
            onehot = tf.one_hot(tgt, n_cls)
            z_t = tf.reduce_sum(z * onehot, axis=1)
            z_other = tf.reduce_max(z - 1e9 * onehot, axis=1)
            margin = tf.nn.relu(z_other - z_t + 0.1)  # zero once the target leads by 0.1
            change = (cand - x0) / scale
            dist = tf.reduce_mean(tf.abs(change), axis=axes)
            loss = margin + dist_w * dist
            if tv_w > 0:  # total variation of the change: smooth regions, not noise
                loss += tv_w * tf.reduce_mean(tf.image.total_variation(change)) / float(
                    np.prod(x0.shape[1:3]))
            total = tf.reduce_sum(loss)
        opt.apply_gradients([(tape.gradient(total, delta), delta)])
        ok = tf.argmax(z, axis=1, output_type=tf.int32) == tgt
        return cand, ok, dist

    return step


def _result(kind, scores: _Scores, x, ref, cands, original, goal, image) -> CounterfactualResult:
    n_s, n = cands.shape[:2]
    found = ~np.isnan(cands.reshape(n_s, n, -1)).any(axis=2)
    flat = np.nan_to_num(cands.reshape(n_s * n, *x.shape[1:]))
    pred = scores.classes(flat).reshape(n_s, n)
    pred = np.where(found, pred, -1)
    valid = found & (pred == goal[:, None])
    change = cands - x[:, None]
    if image:
        dist = np.abs(change).reshape(n_s, n, -1).mean(axis=2)
        maps = np.abs(change).sum(axis=-1)
        changed = None
    else:
        sd = ref.std(axis=0)
        dist = (np.abs(change) / np.where(sd > 0, sd, 1.0)).sum(axis=2)
        changed = np.abs(change) > CHANGED_TOL * np.maximum(1.0, np.abs(x[:, None]))
        maps = None
    dist = np.where(found, dist, np.nan)
    res = CounterfactualResult(method=kind, inputs=cands, original=original, targets=goal,
                               predicted=pred, valid=valid, distances=dist, changed=changed,
                               change_maps=maps)
    res.metrics = {"method": kind, "n_samples": int(n_s), "n": int(n),
                   "validity": float(valid.mean()),
                   "samples_with_valid": float(valid.any(axis=1).mean()),
                   "mean_distance": float(np.nanmean(np.where(valid, dist, np.nan)))
                   if valid.any() else None}
    if changed is not None:
        res.metrics["n_features"] = int(x.shape[1])
        res.metrics["mean_changed_features"] = (float(changed.sum(axis=2)[valid].mean())
                                                if valid.any() else None)
    return res


def _tables(res: CounterfactualResult, names: list[str] | None) -> dict:
    import pandas as pd

    rows = []
    for i in range(res.valid.shape[0]):
        for j in range(res.valid.shape[1]):
            row = {"sample": i, "candidate": j, "original": int(res.original[i]),
                   "target": int(res.targets[i]), "predicted": int(res.predicted[i, j]),
                   "valid": bool(res.valid[i, j]), "distance": float(res.distances[i, j])}
            if res.changed is not None and names is not None:
                cols = np.flatnonzero(res.changed[i, j])
                row["n_changed"] = int(len(cols)) if res.predicted[i, j] >= 0 else None
                row["changed_features"] = ", ".join(names[c] for c in cols)
            rows.append(row)
    return {"counterfactuals": pd.DataFrame(rows)}
