"""What users of tabular models expect: permutation importance and a global surrogate tree.

Both come from scikit-learn (``sklearn.inspection.permutation_importance``,
``DecisionTreeClassifier``/``DecisionTreeRegressor``, ``export_text``, ``plot_tree``). The Keras
model reaches sklearn through ``KerasEstimator``, a thin sklearn-compatible view of its compiled
forward pass (``CompiledForward``), so sklearn's many scoring calls never go through
``model.predict``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from keras_audit._checks import positive_int
from keras_audit.audit._explain_common import (
    as_2d_outputs,
    check_names,
)
from keras_audit.audit._labels import LabelSpec, as_label_array, label_spec, read_outputs
from keras_audit.audit.result import AnalysisResult
from keras_audit.explain import predicted_classes
from keras_audit.explain.forward import CompiledForward, check_batch
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike


class KerasEstimator(BaseEstimator):
    """A fitted sklearn estimator whose predictions are a Keras model's (base of the two below).

    Args:
        forward: the model's ``CompiledForward``.
        spec: the ``LabelSpec`` (task and classes) the outputs are read with.

    ``fit`` does nothing: the model is already trained.
    """

    def __init__(self, forward: CompiledForward, spec: LabelSpec) -> None:
        self.forward = forward
        self.spec = spec

    def fit(self, x: ArrayLike, y: ArrayLike | None = None) -> KerasEstimator:
        """No-op: the Keras model is trained already. Returns ``self``."""
        return self

    def __sklearn_is_fitted__(self) -> bool:
        """Always ``True``: the wrapped Keras model is already trained."""
        return True

    def _outputs(self, x):
        return read_outputs(self.forward(np.asarray(x, dtype=np.float32)), self.spec)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predicted class ids (classifiers) or values (regression)."""
        return self._outputs(x).y_pred


class KerasClassifier(ClassifierMixin, KerasEstimator):
    """``KerasEstimator`` for a classifier: ``predict``, ``predict_proba``, ``classes_``,
    accuracy as ``score``."""

    @property
    def classes_(self) -> np.ndarray:
        """Class ids ``0..C-1``."""
        return np.arange(self.spec.n_classes)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities ``(N, C)`` (``(N, 2)`` for one sigmoid unit)."""
        return self._outputs(x).probs


class KerasRegressor(RegressorMixin, KerasEstimator):
    """``KerasEstimator`` for a regression model: R² as ``score``."""


def keras_estimator(model: keras.Model, x: tf.Tensor | ArrayLike, y: tf.Tensor | ArrayLike,
                    batch_size: int = 256
                    ) -> tuple[KerasClassifier | KerasRegressor, np.ndarray]:
    """An sklearn-compatible view of ``model`` plus the labels as sklearn wants them.

    Returns:
        ``(estimator, y_true)``: a ``KerasClassifier`` or ``KerasRegressor`` and the labels as
        class ids (classifiers) or float targets.

    Raises:
        ValueError: ``x``/``y`` do not fit the model (see ``_labels.label_spec``).
    """
    x = check_batch(model, x)
    y = as_label_array(y, len(x))
    forward = CompiledForward(model, batch_size=batch_size)
    spec = label_spec(y, forward(x[:1]).shape[1:])
    cls = KerasRegressor if spec.task == "regression" else KerasClassifier
    return cls(forward, spec), spec.y_true


def permutation_importance(model: keras.Model, x: tf.Tensor | ArrayLike,
                           y: tf.Tensor | ArrayLike, feature_names: Sequence[str] | None = None,
                           n_repeats: int = 5, seed: int = 0,
                           scoring: str | Callable[..., float] | None = None,
                           batch_size: int = 256) -> pd.DataFrame:
    """How much the model's score drops when one feature's values are shuffled.

    Args:
        model: a trained Keras model taking rows ``(N, F)``.
        x: rows ``(N, F)``.
        y: labels: class ids ``(N,)`` or one-hot ``(N, C)`` for classifiers (one sigmoid unit:
            0/1), targets for regression.
        feature_names: one name per feature.
        n_repeats: shuffles per feature.
        seed: seeds the shuffles.
        scoring: an sklearn scorer name or callable; ``None`` is accuracy (classifiers) or R²
            (regression).
        batch_size: rows per model call.

    Returns:
        A DataFrame sorted by importance, one row per feature: ``feature``,
        ``importance_mean``, ``importance_std`` (over repeats) and ``importance_<k>`` per
        repeat. ``table.attrs`` holds ``baseline_score`` and ``scoring``.

    Raises:
        ValueError: ``x`` not 2-D, labels that do not fit the model's outputs, wrong name
            count, non-positive ``n_repeats``.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance
    from sklearn.metrics import check_scoring

    n_repeats = positive_int(n_repeats, "n_repeats")
    seed = positive_int(seed, "seed", minimum=0)
    x = _rows(model, x)
    names = check_names(feature_names, x.shape[1], "feature_names") or [
        f"feature {j}" for j in range(x.shape[1])]
    estimator, y_true = keras_estimator(model, x, y, batch_size)
    found = sk_permutation_importance(estimator, x, y_true, scoring=scoring, n_repeats=n_repeats,
                                      random_state=seed)
    table = pd.DataFrame({"feature": names, "importance_mean": found.importances_mean,
                          "importance_std": found.importances_std})
    for k in range(n_repeats):
        table[f"importance_{k}"] = found.importances[:, k]
    table = table.sort_values("importance_mean", ascending=False, kind="stable")
    table = table.reset_index(drop=True)
    scorer = check_scoring(estimator, scoring=scoring)
    table.attrs["baseline_score"] = float(scorer(estimator, x, y_true))
    table.attrs["scoring"] = (scoring if isinstance(scoring, str) else
                              getattr(scoring, "__name__", "custom") if scoring is not None else
                              "r2" if estimator.spec.task == "regression" else "accuracy")
    return table


@dataclass(repr=False)
class SurrogateResult(AnalysisResult):
    """A shallow decision tree fitted to mimic the model's predictions.

    Attributes:
        tree: the fitted sklearn ``DecisionTreeClassifier`` (or ``DecisionTreeRegressor`` for
            regression models).
        fidelity: agreement with the model's predictions on ``x``: the share of equal
            predicted classes (classifiers) or R² (regression).
        rules: the tree as text (``sklearn.tree.export_text``).
        task: ``"classification"``, ``"binary"`` or ``"regression"``.
        model_predictions: ``(N,)`` the model's predicted classes (or values).
        tree_predictions: ``(N,)`` the tree's.
        figure: the tree drawn with ``sklearn.tree.plot_tree``.
        figures: ``{"surrogate_tree": figure}``.
    """

    tree: object
    fidelity: float
    rules: str
    task: str
    model_predictions: np.ndarray
    tree_predictions: np.ndarray
    figure: object = None

    def __post_init__(self) -> None:
        self.metrics.setdefault("fidelity", float(self.fidelity))



def surrogate_tree(model: keras.Model, x: tf.Tensor | ArrayLike,
                   feature_names: Sequence[str] | None = None,
                   max_depth: int = 3, seed: int = 0, class_names: Sequence[str] | None = None,
                   batch_size: int = 256, figures: bool = True) -> SurrogateResult:
    """Fit a depth-limited decision tree to the model's predictions on ``x`` (a global surrogate).

    The model's outputs decide the task: several outputs -> classes by argmax; one output in
    [0, 1] -> a sigmoid classifier (threshold 0.5); one unbounded output -> regression.

    Args:
        model: a trained Keras model taking rows ``(N, F)``.
        x: rows ``(N, F)`` (no labels needed: the tree learns the model, not the data).
        feature_names: one name per feature.
        max_depth: the tree's depth (3 stays readable).
        seed: the tree's ``random_state``.
        class_names: one name per class, for the rules and the figure.
        batch_size: rows per model call.
        figures: draw the tree (``False`` skips it).

    Returns:
        A ``SurrogateResult``.

    Raises:
        ValueError: ``x`` not 2-D, wrong name counts, a non-positive ``max_depth``, or a model
            with more than one output per sample that is not a score vector.
    """
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, export_text

    max_depth = positive_int(max_depth, "max_depth")
    seed = positive_int(seed, "seed", minimum=0)
    x = _rows(model, x)
    names = check_names(feature_names, x.shape[1], "feature_names") or [
        f"feature {j}" for j in range(x.shape[1])]
    raw = as_2d_outputs(CompiledForward(model, batch_size=batch_size)(x))
    if raw.shape[1] > 1:
        task, y_model = "classification", predicted_classes(raw)
    elif np.all((raw >= 0) & (raw <= 1)):
        task, y_model = "binary", predicted_classes(raw)
    else:
        task, y_model = "regression", raw[:, 0].astype(np.float64)
    n_classes = raw.shape[1] if task == "classification" else 2
    class_names = check_names(class_names, n_classes, "class_names") if task != "regression" \
        else None
    if task == "regression":
        tree = DecisionTreeRegressor(max_depth=max_depth, random_state=seed).fit(x, y_model)
        y_tree = tree.predict(x)
        fidelity = float(tree.score(x, y_model))
    else:
        tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed).fit(x, y_model)
        y_tree = tree.predict(x)
        fidelity = float(np.mean(y_tree == y_model))
    shown = ([class_names[int(c)] for c in tree.classes_] if class_names is not None else
             [f"class {int(c)}" for c in tree.classes_]) if task != "regression" else None
    rules = export_text(tree, feature_names=names, class_names=shown)
    result = SurrogateResult(tree=tree, fidelity=fidelity, rules=rules, task=task,
                             model_predictions=y_model, tree_predictions=y_tree)
    if figures:
        result.figure = _tree_figure(tree, names, shown, fidelity, task)
        result.figures["surrogate_tree"] = result.figure
    return result


def _rows(model: keras.Model, x) -> np.ndarray:
    x = check_batch(model, x)
    if x.ndim != 2:
        raise ValueError(f"this analysis is for tabular models taking rows (N, F); x has shape "
                         f"{x.shape}")
    return x


def _tree_figure(tree, names, class_names, fidelity: float, task: str):
    from sklearn.tree import plot_tree

    depth = tree.get_depth()
    leaves = tree.get_n_leaves()
    fig = new_figure((max(6.0, 1.9 * leaves), 1.6 * (depth + 1) + 0.6))
    ax = fig.add_subplot()
    plot_tree(tree, feature_names=names, class_names=class_names, filled=True, rounded=True,
              impurity=False, ax=ax, fontsize=7)
    what = "agreement" if task != "regression" else "R²"
    ax.set_title(f"surrogate tree (depth {depth}): {what} with the model {fidelity:.3f}",
                 fontsize=9)
    return fig
