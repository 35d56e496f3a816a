"""audit.counterfactuals: DiCE on tables, the gradient search on images."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _shap_lime_data import breast_cancer, trained_mlp  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from keras_audit import audit  # noqa: E402
from keras_audit.audit.result import AnalysisResult  # noqa: E402


@pytest.fixture(scope="module")
def cancer():
    """(model, x_train, x_query, names): a small MLP on the breast-cancer rows."""
    x, y, names = breast_cancer()
    order = np.random.default_rng(0).permutation(len(x))
    model = trained_mlp(x[order[:450]], y[order[:450]], epochs=15)
    return model, x[order[:450]], x[order[450:462]], names


def _pred(model, x):
    return model.predict(x, verbose=0).argmax(axis=1)


def test_dice_on_breast_cancer_is_valid_and_sparse(cancer):
    model, xtr, xq, names = cancer
    res = audit.counterfactuals(model, xq, n=3, reference=xtr, feature_names=names)
    assert isinstance(res, AnalysisResult) and res.method == "dice-random"
    assert res.inputs.shape == (12, 3, 30) and res.valid.shape == (12, 3)
    # two classes: the runner-up is the other one
    np.testing.assert_array_equal(res.targets, 1 - _pred(model, xq))
    assert res.valid.mean() >= 0.9, res.valid
    found = ~np.isnan(res.inputs).any(axis=2)
    # valid is recomputed from the model: the changed input is classified as the target
    pred = np.full((12, 3), -1)
    pred[found] = _pred(model, res.inputs[found])
    np.testing.assert_array_equal(res.valid, pred == res.targets[:, None])
    n_changed = res.changed.sum(axis=2)[res.valid]
    assert n_changed.max() < 30 and res.metrics["mean_changed_features"] < 30
    np.testing.assert_array_equal(res.changed[found], np.abs(res.inputs - xq[:, None])[found]
                                  > 1e-6 * np.maximum(1, np.abs(xq[:, None]).repeat(3, 1)[found]))
    # a changed feature stays inside the reference's range (the query's own may not)
    lo, hi = np.broadcast_to(xtr.min(0), res.inputs.shape), np.broadcast_to(xtr.max(0),
                                                                            res.inputs.shape)
    moved = res.changed & found[..., None]
    assert moved.any()
    assert np.all(res.inputs[moved] >= lo[moved] - 1e-4)
    assert np.all(res.inputs[moved] <= hi[moved] + 1e-4)
    sd = xtr.std(0)
    np.testing.assert_allclose(res.distances[found],
                               (np.abs(res.inputs - xq[:, None]) / sd).sum(2)[found], rtol=1e-4)
    table = res.tables["counterfactuals"]
    assert len(table) == 36 and table["valid"].sum() == res.valid.sum()
    assert isinstance(res.figures["counterfactuals"], Figure)


def test_only_the_chosen_features_change(cancer):
    model, xtr, xq, names = cancer
    res = audit.counterfactuals(model, xq[:4], n=2, reference=xtr, feature_names=names,
                                features=["worst radius", "worst texture", "worst area",
                                          "worst concave points", "mean concavity"],
                                figures=False)
    allowed = {names.index(f) for f in ("worst radius", "worst texture", "worst area",
                                        "worst concave points", "mean concavity")}
    assert set(np.flatnonzero(res.changed.any(axis=(0, 1)))) <= allowed


def test_gradient_search_on_tables(cancer):
    model, xtr, xq, _ = cancer
    res = audit.counterfactuals(model, xq[:6], n=2, reference=xtr, method="gradient",
                                steps=150, figures=False)
    assert res.method == "gradient" and res.valid.mean() >= 0.9
    assert res.metrics["mean_changed_features"] < 30  # the small changes are undone
    ok = res.valid
    np.testing.assert_array_equal(_pred(model, res.inputs[ok]), np.repeat(res.targets, 2)
                                  .reshape(6, 2)[ok])


def test_images_reach_the_target_class(shapes_data, shapes_model):
    _, _, xt, yt, _ = shapes_data
    x = xt[:6]
    targets = (_pred(shapes_model, x) + 1) % 3
    res = audit.counterfactuals(shapes_model, x, targets=targets, n=2, steps=120)
    assert res.method == "gradient" and res.change_maps.shape == (6, 2, 24, 24)
    assert res.valid.all(), res.valid
    flat = res.inputs.reshape(12, 24, 24, 3)
    np.testing.assert_array_equal(_pred(shapes_model, flat), np.repeat(targets, 2))
    assert flat.min() >= 0.0 and flat.max() <= 1.0  # within the pixel range of the data
    np.testing.assert_allclose(res.change_maps, np.abs(res.inputs - x[:, None]).sum(-1),
                               atol=1e-6)
    assert np.all(res.distances < 0.2)  # a small change, not a new image


def test_bad_input_is_refused_before_work(cancer, shapes_data, shapes_model):
    model, xtr, xq, names = cancer
    with pytest.raises(ValueError, match="unknown method 'lbfgs'; choices"):
        audit.counterfactuals(model, xq, method="lbfgs")
    with pytest.raises(ValueError, match="targets equal the predicted class"):
        audit.counterfactuals(model, xq, targets=_pred(model, xq))
    with pytest.raises(ValueError, match=r"each in 0\.\.1"):
        audit.counterfactuals(model, xq, targets=5)
    with pytest.raises(ValueError, match="unknown feature 'height'; choices"):
        audit.counterfactuals(model, xq, features=["height"], feature_names=names)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        audit.counterfactuals(model, xq, n=0)
    with pytest.raises(ValueError, match="method='dice' works on tables only"):
        audit.counterfactuals(shapes_model, shapes_data[2][:2], method="dice")
