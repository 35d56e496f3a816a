"""Tabular extras: permutation importance and the global surrogate tree."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _shap_lime_data import PLANTED, breast_cancer, planted_rows, trained_mlp  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from keras_audit.audit.tabular import (  # noqa: E402
    KerasClassifier,
    KerasRegressor,
    keras_estimator,
    permutation_importance,
    surrogate_tree,
)

NAMES = [f"f{j}" for j in range(8)]


@pytest.fixture(scope="module")
def planted():
    """(model, x, y): a softmax MLP on rows whose label is decided by feature PLANTED."""
    x, y = planted_rows()
    model = trained_mlp(x, y, epochs=20)
    return model, x, y


@pytest.fixture(scope="module")
def planted_sigmoid():
    x, y = planted_rows(seed=1)
    model = trained_mlp(x, y, epochs=20, n_out=1, activation="sigmoid")
    return model, x, y


def test_estimator_view_scores_like_keras(planted):
    model, x, y = planted
    est, y_true = keras_estimator(model, x, y)
    assert isinstance(est, KerasClassifier)
    np.testing.assert_array_equal(est.classes_, [0, 1])
    acc = model.evaluate(x, y, verbose=0)[1]
    assert est.score(x, y_true) == pytest.approx(acc, abs=1e-6)
    np.testing.assert_allclose(est.predict_proba(x[:5]), model.predict(x[:5], verbose=0),
                               atol=1e-6)


def test_permutation_importance_ranks_the_planted_feature_first(planted):
    model, x, y = planted
    table = permutation_importance(model, x, y, feature_names=NAMES, n_repeats=5, seed=0)
    assert list(table.columns[:3]) == ["feature", "importance_mean", "importance_std"]
    assert len(table) == 8 and set(table["feature"]) == set(NAMES)
    assert table["feature"].iloc[0] == f"f{PLANTED}"
    # shuffling the decisive feature makes the model guess (accuracy ~0.5 -> drop ~0.45)
    assert table["importance_mean"].iloc[0] > 0.3
    assert table["importance_mean"].iloc[1:].abs().max() < 0.05
    assert table.attrs["scoring"] == "accuracy"
    assert table.attrs["baseline_score"] > 0.95
    # deterministic for a fixed seed
    again = permutation_importance(model, x, y, feature_names=NAMES, n_repeats=5, seed=0)
    np.testing.assert_allclose(again["importance_mean"], table["importance_mean"])


def test_permutation_importance_with_a_scorer_and_one_hot_labels(planted):
    model, x, y = planted
    table = permutation_importance(model, x, np.eye(2)[y], scoring="roc_auc", n_repeats=3)
    assert table["feature"].iloc[0] == f"feature {PLANTED}"
    assert table.attrs["scoring"] == "roc_auc"


def test_sigmoid_model(planted_sigmoid):
    model, x, y = planted_sigmoid
    table = permutation_importance(model, x, y, n_repeats=3)
    assert table["feature"].iloc[0] == f"feature {PLANTED}"
    res = surrogate_tree(model, x)
    assert res.task == "binary"
    assert res.fidelity > 0.9


def test_regression_model():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (2.0 * x[:, 1] + 0.1 * x[:, 4]).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    est, _ = keras_estimator(model, x, y)
    assert isinstance(est, KerasRegressor)
    table = permutation_importance(model, x, y, n_repeats=3)
    assert table["feature"].iloc[0] == "feature 1"
    assert table.attrs["scoring"] == "r2"
    res = surrogate_tree(model, x, max_depth=4)
    assert res.task == "regression"
    assert res.fidelity > 0.8  # R² of the tree against the model's predictions


def test_surrogate_tree_is_faithful_to_a_simple_model(planted):
    model, x, y = planted
    res = surrogate_tree(model, x, feature_names=NAMES, max_depth=3,
                         class_names=["negative", "positive"])
    pred = model.predict(x, verbose=0).argmax(1)
    np.testing.assert_array_equal(res.model_predictions, pred)
    assert res.fidelity == pytest.approx(np.mean(res.tree.predict(x) == pred))
    assert res.fidelity > 0.95
    assert res.tree.get_depth() <= 3
    # the root split is on the planted feature, near 0
    root = res.tree.tree_
    assert root.feature[0] == PLANTED and abs(root.threshold[0]) < 0.3
    assert f"f{PLANTED} <=" in res.rules and "positive" in res.rules
    assert isinstance(res.figure, Figure) and res.figures["surrogate_tree"] is res.figure


def test_surrogate_fidelity_falls_on_a_model_a_shallow_tree_cannot_mimic():
    """A depth-1 tree cannot follow a model that uses 30 features; fidelity must say so."""
    x, y, names = breast_cancer()
    model = trained_mlp(x, y, epochs=10)
    deep = surrogate_tree(model, x, feature_names=names, max_depth=6, figures=False)
    stump = surrogate_tree(model, x, feature_names=names, max_depth=1, figures=False)
    assert stump.fidelity < deep.fidelity
    assert stump.figure is None


def test_bad_arguments_raise(planted):
    model, x, y = planted
    with pytest.raises(ValueError, match="samples"):
        permutation_importance(model, x, y[:-1])
    with pytest.raises(ValueError, match="feature_names"):
        permutation_importance(model, x, y, feature_names=["a"])
    with pytest.raises(ValueError, match="n_repeats"):
        permutation_importance(model, x, y, n_repeats=0)
    with pytest.raises(ValueError, match="max_depth"):
        surrogate_tree(model, x, max_depth=0)
    with pytest.raises(ValueError, match="class_names"):
        surrogate_tree(model, x, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="shape"):
        surrogate_tree(model, x[:, :3])
