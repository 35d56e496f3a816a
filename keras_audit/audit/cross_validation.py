"""K-fold cross-validation of a model-building function: how much a result depends on the split.

The folds come from scikit-learn (``StratifiedKFold`` for class labels, so every fold keeps
the class mix; ``KFold`` for regression targets), shuffled with the seed. Each fold builds a
fresh model with the user's ``build_model()``, fits it on the other folds and scores it on its
own. The confidence interval of each metric's mean uses Student's t over the folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_audit.audit._labels import label_spec, read_outputs
from keras_audit.audit.progress import progress_factory
from keras_audit.audit.result import AnalysisResult
from keras_audit.explain.forward import CompiledForward

if TYPE_CHECKING:
    import pandas as pd
    import tensorflow as tf
    from numpy.typing import ArrayLike

#: fit() arguments the folds provide, so a caller may not set them
_FOLD_ARGS = ("x", "y", "validation_data", "validation_split")
#: fit() settings when the caller gives none
DEFAULT_FIT = {"epochs": 10, "batch_size": 32, "verbose": 0}


@dataclass(repr=False)
class CVResult(AnalysisResult):
    """What ``cross_validate`` measured.

    Attributes:
        task: ``"classification"``, ``"binary"`` or ``"regression"``.
        folds: the number of folds.
        per_fold: one row per fold: ``fold``, ``n_train``, ``n_test`` and each metric
            (``accuracy``, ``macro_f1``, ``loss`` for classifiers, ``roc_auc`` for two
            classes; ``mae``, ``rmse``, ``r2``, ``loss`` for regression).
        mean, std: ``{metric: value}`` over the folds (``std`` with ``ddof=1``).
        ci: ``{metric: (low, high)}``, the ``confidence`` interval of the mean (Student's t
            with ``folds - 1`` degrees of freedom).
        histories: each fold's ``History.history`` (loss and metrics per epoch, ``val_*`` on
            the held-out fold).
        train_indices, test_indices: each fold's sample indices into ``x``; the test folds
            partition ``range(len(x))``.
        confidence: the CI's level.
    """

    task: str
    folds: int
    per_fold: pd.DataFrame
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    histories: list[dict[str, list[float]]] = field(default_factory=list)
    train_indices: list[np.ndarray] = field(default_factory=list)
    test_indices: list[np.ndarray] = field(default_factory=list)
    confidence: float = 0.95

    def summary(self) -> str:
        """One line per metric: ``accuracy: 0.9512 ± 0.0173 (95% CI 0.9297–0.9727, 5 folds)``."""
        level = f"{100 * self.confidence:g}%"
        return "\n".join(f"{m}: {self.mean[m]:.4f} ± {self.std[m]:.4f} ({level} CI "
                         f"{self.ci[m][0]:.4f}–{self.ci[m][1]:.4f}, {self.folds} folds)"
                         for m in self.mean)

    def __str__(self) -> str:
        """The ``summary``: what ``print(result)`` shows."""
        return self.summary()


#: the bookkeeping columns of ``CVResult.per_fold``; every other column is a metric
FOLD_COLUMNS = ("fold", "n_train", "n_test")


def metric_names(per_fold: pd.DataFrame) -> list[str]:
    """The metric columns of a ``per_fold`` table, in its order."""
    return [c for c in per_fold.columns if c not in FOLD_COLUMNS]


def summary_table(res: CVResult) -> pd.DataFrame:
    """One row per metric: ``metric``, ``mean``, ``std``, ``ci_low``, ``ci_high``."""
    import pandas as pd

    names = metric_names(res.per_fold)
    return pd.DataFrame({"metric": names, "mean": [res.mean[m] for m in names],
                         "std": [res.std[m] for m in names],
                         "ci_low": [res.ci[m][0] for m in names],
                         "ci_high": [res.ci[m][1] for m in names]})


def _class_ids(y: np.ndarray) -> np.ndarray | None:
    """Class ids when ``y`` holds classes (integer ids, {0, 1} or one-hot), else None."""
    flat = y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
    if flat.ndim == 1 and (flat.dtype.kind in "biu" or np.all(flat == np.round(flat))):
        return flat.astype(np.int64)
    if flat.ndim == 2 and set(np.unique(flat).tolist()) <= {0, 1} and np.all(flat.sum(1) == 1):
        return flat.argmax(axis=1).astype(np.int64)
    return None


def cross_validate(build_model: Callable[[], keras.Model], x: tf.Tensor | ArrayLike,
                   y: tf.Tensor | ArrayLike, folds: int = 5, fit_kwargs: dict | None = None,
                   seed: int = 0, *, task: str | None = None, confidence: float = 0.95,
                   progress: bool | Callable[..., Any] | None = None,
                   figures: bool = True) -> CVResult:
    """Fit and score a fresh model on each of ``folds`` folds.

    Args:
        build_model: a function with no arguments that returns a new, compiled Keras model
            (called once per fold; ``keras.utils.set_random_seed(seed + fold)`` runs first, so
            the folds are reproducible).
        x: the inputs (NumPy or a tensor).
        y: class ids ``(N,)``, one-hot ``(N, C)``, ``{0, 1}`` for one sigmoid unit, or
            regression targets. Class labels give stratified folds.
        folds: the number of folds (at least 2, at most the smallest class's size).
        fit_kwargs: extra ``model.fit`` arguments (default ``DEFAULT_FIT``: 10 epochs, batch
            32, silent); the held-out fold is passed as ``validation_data``.
        seed: seeds the shuffling of the folds and each fold's initialisation.
        task: force ``"classification"``, ``"binary"`` or ``"regression"``; ``None`` infers it.
        confidence: the level of the mean's confidence interval, in (0, 1).
        progress: ``None`` (silent), ``True`` (a tqdm bar on stderr) or a factory called as
            ``progress(desc=..., total=...)``: one step per fold.
        figures: draw the figures (``metrics_per_fold``, ``learning_curves``).

    Returns:
        A ``CVResult``; ``print(result)`` shows each metric's mean, std and CI.

    Raises:
        ValueError: before any fitting: ``build_model`` not callable or not returning a
            compiled ``keras.Model``, ``x``/``y`` lengths that differ, ``folds`` not an integer
            in ``2..`` the smallest class's size (or ``len(x)``), ``fit_kwargs`` not a dict or
            setting the fold's data (``x``, ``y``, ``validation_data``, ``validation_split``),
            ``confidence`` outside (0, 1), labels that do not fit the model's output.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    if not callable(build_model) or isinstance(build_model, keras.Model):  # a model is callable
        raise ValueError(f"build_model must be a function returning a compiled keras.Model; "
                         f"got {type(build_model).__name__}")
    xa = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    ya = np.asarray(y.numpy() if hasattr(y, "numpy") else y)
    if len(xa) != len(ya):
        raise ValueError(f"x and y must have the same length; got {len(xa)} and {len(ya)}")
    if fit_kwargs is not None and not isinstance(fit_kwargs, dict):
        raise ValueError(f"fit_kwargs must be a dict of model.fit arguments; got {fit_kwargs!r}")
    taken = [k for k in (fit_kwargs or {}) if k in _FOLD_ARGS]
    if taken:
        raise ValueError(f"fit_kwargs may not set {taken}: each fold provides its own data "
                         f"({list(_FOLD_ARGS)})")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    ids = None if task == "regression" else _class_ids(ya)
    if ids is not None and ids.min(initial=0) < 0:
        raise ValueError(f"class ids must be >= 0; got {int(ids.min())}")
    most = len(xa) if ids is None else int(np.bincount(ids)[np.unique(ids)].min())
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or \
            not 2 <= folds <= most:
        limit = "the smallest class's size" if ids is not None else "len(x)"
        raise ValueError(f"folds must be an integer in 2..{most} ({limit}); got {folds!r}")
    fit = {**DEFAULT_FIT, **(fit_kwargs or {})}
    splitter = (StratifiedKFold(int(folds), shuffle=True, random_state=seed) if ids is not None
                else KFold(int(folds), shuffle=True, random_state=seed))
    splits = list(splitter.split(xa, ids if ids is not None else None))

    bar = progress_factory(progress)(desc="cross-validation", total=int(folds))
    rows, histories, spec = [], [], None
    try:
        for fold, (tr, te) in enumerate(splits):
            keras.utils.set_random_seed(int(seed) + fold)
            model = build_model()
            if not isinstance(model, keras.Model) or not getattr(model, "compiled", False):
                raise ValueError("build_model() must return a compiled keras.Model (call "
                                 f"model.compile(...) in it); got {type(model).__name__}"
                                 f"{'' if not isinstance(model, keras.Model) else ' (not compiled)'}")
            forward = CompiledForward(model)
            if spec is None:  # the labels against the output, before the first fit
                spec = label_spec(ya, forward(xa[:1]).shape[1:], task)
            hist = model.fit(xa[tr], ya[tr], validation_data=(xa[te], ya[te]), **fit)
            histories.append({k: [float(v) for v in vals] for k, vals in hist.history.items()})
            rows.append({"fold": fold, "n_train": len(tr), "n_test": len(te),
                         **_scores(model, forward, xa[te], ya[te], spec)})
            bar.update(1)
            bar.set_postfix_str(", ".join(f"{k}={v:.3f}" for k, v in rows[-1].items()
                                          if k not in ("fold", "n_train", "n_test")))
    finally:
        bar.close()
    return _result(spec, rows, histories, splits, float(confidence), figures)


def _scores(model: keras.Model, forward: CompiledForward, x: np.ndarray, y: np.ndarray,
            spec) -> dict[str, float]:
    from sklearn import metrics as skm

    fold_spec = label_spec(y, forward(x[:1]).shape[1:], spec.task)
    out = read_outputs(forward(x), fold_spec)
    loss = model.evaluate(x, y, verbose=0, return_dict=True).get("loss", np.nan)
    if spec.task == "regression":
        t = fold_spec.y_true.reshape(len(x), -1)
        p = np.asarray(out.y_pred).reshape(len(x), -1)
        return {"mae": float(skm.mean_absolute_error(t, p)),
                "rmse": float(np.sqrt(skm.mean_squared_error(t, p))),
                "r2": float(skm.r2_score(t, p)), "loss": float(loss)}
    t, p = fold_spec.y_true, np.asarray(out.y_pred)
    scores = {"accuracy": float(skm.accuracy_score(t, p)),
              "macro_f1": float(skm.f1_score(t, p, average="macro",
                                             labels=np.arange(spec.n_classes),
                                             zero_division=0)),
              "loss": float(loss)}
    if spec.n_classes == 2 and len(np.unique(t)) == 2:
        scores["roc_auc"] = float(skm.roc_auc_score(t, out.probs[:, 1]))
    return scores


def _result(spec, rows, histories, splits, confidence, figures) -> CVResult:
    import pandas as pd
    from scipy import stats

    per_fold = pd.DataFrame(rows)
    k = len(rows)
    names = metric_names(per_fold)
    mean = {m: float(per_fold[m].mean()) for m in names}
    std = {m: float(per_fold[m].std(ddof=1)) for m in names}
    half = {m: float(stats.t.ppf(0.5 + confidence / 2, k - 1) * std[m] / np.sqrt(k))
            for m in names}
    ci = {m: (mean[m] - half[m], mean[m] + half[m]) for m in names}
    res = CVResult(task=spec.task, folds=k, per_fold=per_fold, mean=mean, std=std, ci=ci,
                   histories=histories, train_indices=[np.asarray(tr) for tr, _ in splits],
                   test_indices=[np.asarray(te) for _, te in splits], confidence=confidence)
    res.metrics = {"task": spec.task, "folds": k, "confidence": confidence,
                   **{f"{m}_mean": mean[m] for m in names},
                   **{f"{m}_std": std[m] for m in names},
                   **{f"{m}_ci": list(ci[m]) for m in names}}
    res.tables = {"per_fold": per_fold, "summary": summary_table(res)}
    res.metadata = {"splitter": "KFold" if spec.task == "regression" else "StratifiedKFold",
                    "shuffle": True}
    if figures:
        res.figures = _figures(res, names)
    return res


def _figures(res: CVResult, names: list[str]) -> dict:
    from matplotlib.ticker import MaxNLocator

    from keras_audit.render.figures import new_figure

    fig = new_figure((1.6 + 1.4 * len(names), 3.4))
    ax = fig.subplots()
    width = 0.8 / res.folds
    for f in range(res.folds):
        ax.bar(np.arange(len(names)) + (f - (res.folds - 1) / 2) * width,
               [res.per_fold[m].iloc[f] for m in names], width, label=f"fold {f}")
    ax.errorbar(np.arange(len(names)), [res.mean[m] for m in names],
                yerr=[[res.mean[m] - res.ci[m][0] for m in names],
                      [res.ci[m][1] - res.mean[m] for m in names]],
                fmt="o", color="black", capsize=4, label=f"mean, {100 * res.confidence:g}% CI")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names)
    ax.legend(fontsize=7)
    ax.set_title("Metrics per fold", fontsize=9)
    curves = new_figure((6.0, 3.4))
    ax2 = curves.subplots()
    for f, h in enumerate(res.histories):
        loss = h.get("loss", [])
        line = ax2.plot(range(1, len(loss) + 1), loss, marker="o", markersize=3,
                        label=f"fold {f} train")[0]
        if "val_loss" in h:
            ax2.plot(range(1, len(h["val_loss"]) + 1), h["val_loss"], "--", marker="o",
                     markersize=3, color=line.get_color(), label=f"fold {f} held out")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("loss")
    ax2.legend(fontsize=6, ncol=2)
    ax2.set_title("Learning curves per fold", fontsize=9)
    return {"metrics_per_fold": fig, "learning_curves": curves}
