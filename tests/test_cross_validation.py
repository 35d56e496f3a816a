"""audit.cross_validate: stratified folds, one fresh model per fold, mean, std and CI."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _shap_lime_data import breast_cancer, mlp  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

from keras_audit import audit  # noqa: E402


def tiny():
    """A compiled 8-unit MLP on the 30 breast-cancer features."""
    return mlp(30, n_out=2)


@pytest.fixture(scope="module")
def cv():
    x, y, _ = breast_cancer()
    seen = []

    def bar(desc, total):  # a progress factory that records the steps
        class Bar:
            n = 0

            def update(self, k=1):
                self.n += k
                seen.append(self.n)

            def set_postfix_str(self, s="", refresh=True):
                pass

            def close(self):
                seen.append("closed")
        return Bar()

    res = audit.cross_validate(tiny, x, y, folds=5, fit_kwargs={"epochs": 3}, seed=0,
                               progress=bar)
    return res, x, y, seen


def test_mean_is_the_mean_of_the_folds_and_printed(cv):
    res, x, y, seen = cv
    acc = res.per_fold["accuracy"].to_numpy()
    assert len(acc) == 5 and np.all((acc > 0.8) & (acc <= 1.0))
    assert res.mean["accuracy"] == pytest.approx(acc.mean(), abs=1e-12)
    assert res.std["accuracy"] == pytest.approx(acc.std(ddof=1), abs=1e-12)
    half = stats.t.ppf(0.975, 4) * acc.std(ddof=1) / np.sqrt(5)
    assert res.ci["accuracy"] == pytest.approx((acc.mean() - half, acc.mean() + half))
    line = [s for s in str(res).splitlines() if s.startswith("accuracy:")][0]
    assert float(line.split()[1]) == pytest.approx(acc.mean(), abs=5e-5)
    assert seen == [1, 2, 3, 4, 5, "closed"]
    assert [len(h["loss"]) for h in res.histories] == [3] * 5
    assert all("val_loss" in h for h in res.histories)
    assert set(res.figures) == {"metrics_per_fold", "learning_curves"}
    assert all(isinstance(f, Figure) for f in res.figures.values())


def test_folds_partition_the_data_and_are_stratified(cv):
    res, x, y, _ = cv
    tests = np.concatenate(res.test_indices)
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(x)))  # each sample once
    for tr, te in zip(res.train_indices, res.test_indices):
        assert not set(tr) & set(te)
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(len(x)))
        assert abs(y[te].mean() - y.mean()) < 0.02  # the class mix kept per fold
    np.testing.assert_array_equal(res.per_fold["n_test"], [len(t) for t in res.test_indices])


def test_regression_uses_kfold_and_its_metrics():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1).astype(np.float32) + 0.01

    def build():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        m.compile("adam", "mse")
        return m

    res = audit.cross_validate(build, x, y, folds=3, fit_kwargs={"epochs": 2}, figures=False)
    assert res.task == "regression" and res.metadata["splitter"] == "KFold"
    assert set(res.mean) == {"mae", "rmse", "r2", "loss"}
    assert res.mean["rmse"] == pytest.approx(res.per_fold["rmse"].mean())


def test_bad_input_is_refused_before_work():
    x, y, _ = breast_cancer()
    calls = []

    def counted():
        calls.append(1)
        return tiny()

    with pytest.raises(ValueError, match=r"folds must be an integer in 2\.\.212"):
        audit.cross_validate(counted, x, y, folds=1)
    with pytest.raises(ValueError, match="fit_kwargs may not set"):
        audit.cross_validate(counted, x, y, fit_kwargs={"validation_split": 0.2})
    with pytest.raises(ValueError, match="same length"):
        audit.cross_validate(counted, x, y[:10])
    with pytest.raises(ValueError, match="build_model must be a function"):
        audit.cross_validate(tiny(), x, y)
    assert not calls

    def uncompiled():
        return keras.Sequential([keras.Input((30,)), keras.layers.Dense(2)])

    with pytest.raises(ValueError, match="compiled keras.Model"):
        audit.cross_validate(uncompiled, x, y, folds=2)
