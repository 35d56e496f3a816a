"""Performance audit: metrics checked against independent recomputations."""

import json
import math

import keras
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from keras_audit.audit.performance_analysis import PerformanceResult, performance


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    return x[:1200], d.target[:1200], x[1200:], d.target[1200:]


def mlp(n_in, n_out, activation, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(n_out, activation=activation)])


@pytest.fixture(scope="module")
def classifier(digits):
    """A digits MLP trained briefly, so it is good but not perfect (errors to count)."""
    x, y, _, _ = digits
    m = mlp(64, 10, "softmax")
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    m.fit(x, y, epochs=4, batch_size=32, verbose=0)
    return m


@pytest.fixture(scope="module")
def result(classifier, digits):
    _, _, xt, yt = digits
    return performance(classifier, xt, yt, class_names=[f"digit{i}" for i in range(10)])


def test_accuracy_matches_numpy_and_confusion_matrix(result, classifier, digits):
    _, _, xt, yt = digits
    pred = classifier.predict(xt, verbose=0).argmax(axis=1)
    acc = float(np.mean(pred == yt))
    assert 0.7 < acc < 1.0  # there are errors, so the checks below can fail
    assert isinstance(result, PerformanceResult) and result.task == "classification"
    assert result.metrics["accuracy"] == pytest.approx(acc, abs=1e-12)
    cm = result.tables["confusion_matrix"].to_numpy()
    assert cm.sum() == len(yt)
    assert np.trace(cm) == int(np.sum(pred == yt))
    expected = np.zeros((10, 10), int)
    np.add.at(expected, (yt, pred), 1)
    assert np.array_equal(cm, expected)
    assert list(result.tables["confusion_matrix"].index) == [f"digit{i}" for i in range(10)]


def test_per_class_and_averages(result, digits):
    _, _, _, yt = digits
    table = result.tables["per_class"]
    cm = result.tables["confusion_matrix"].to_numpy()
    recall = np.diag(cm) / cm.sum(axis=1)
    precision = np.diag(cm) / cm.sum(axis=0)
    assert np.allclose(table.recall, recall)
    assert np.allclose(table.precision, precision)
    f1 = 2 * precision * recall / (precision + recall)
    assert np.allclose(table.f1, f1)
    assert result.metrics["macro_f1"] == pytest.approx(f1.mean())
    weights = cm.sum(axis=1) / cm.sum()
    assert result.metrics["weighted_f1"] == pytest.approx(np.sum(f1 * weights))
    assert list(table.support) == list(np.bincount(yt, minlength=10))


def test_roc_auc_matches_sklearn_ovr(result, classifier, digits):
    _, _, xt, yt = digits
    probs = classifier.predict(xt, verbose=0)
    ref = skm.roc_auc_score(yt, probs, multi_class="ovr", average="macro")
    assert result.metrics["roc_auc_macro"] == pytest.approx(ref, abs=1e-6)
    assert "roc_curves" in result.figures


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded(result, classifier, digits):
    _, _, xt, yt = digits
    lo, hi = result.metrics["accuracy_ci95"]
    assert lo < result.metrics["accuracy"] < hi
    assert hi - lo < 0.15
    lo, hi = result.metrics["macro_f1_ci95"]
    assert lo < result.metrics["macro_f1"] < hi
    again = performance(classifier, xt, yt, seed=0, n_bootstrap=200)
    other = performance(classifier, xt, yt, seed=1, n_bootstrap=200)
    assert again.metrics["accuracy_ci95"] == result.metrics["accuracy_ci95"]
    assert again.metrics["macro_f1_ci95"] == result.metrics["macro_f1_ci95"]
    assert other.metrics["accuracy_ci95"] != result.metrics["accuracy_ci95"]


def test_calibration_ece_against_a_direct_loop(result, classifier, digits):
    _, _, xt, yt = digits
    probs = classifier.predict(xt, verbose=0).astype("float64")
    conf, correct = probs.max(1), probs.argmax(1) == yt
    ece = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert result.metrics["ece"] == pytest.approx(ece, abs=1e-6)
    calib = result.tables["calibration"]
    assert calib["count"].sum() == len(yt)
    bars = result.figures["reliability_diagram"].axes[0].patches
    assert len(bars) == 2 * int((calib["count"] > 0).sum())


def test_metrics_are_json_and_figures_render(result):
    from matplotlib.figure import Figure

    json.dumps(result.metrics)
    assert set(result.figures) >= {"confusion_matrix", "reliability_diagram"}
    for fig in result.figures.values():
        assert isinstance(fig, Figure)
        fig.canvas.draw()


def test_one_hot_labels_give_the_same_metrics(result, classifier, digits):
    _, _, xt, yt = digits
    onehot = performance(classifier, xt, np.eye(10)[yt])
    for k in ("accuracy", "macro_f1", "roc_auc_macro", "ece", "accuracy_ci95"):
        assert onehot.metrics[k] == result.metrics[k]


def test_classes_absent_from_y_are_handled(classifier, digits):
    _, _, xt, yt = digits
    keep = yt < 6
    res = performance(classifier, xt[keep], yt[keep], n_bootstrap=20)
    assert res.metrics["classes_absent_from_y"] == ["6", "7", "8", "9"]
    table = res.tables["per_class"]
    assert table.roc_auc[6:].isna().all() and table.roc_auc[:6].notna().all()
    assert res.metrics["roc_auc_macro"] == pytest.approx(table.roc_auc[:6].mean())
    assert list(table.support[6:]) == [0, 0, 0, 0]
    json.dumps(res.metrics)


def test_logit_outputs_are_softmaxed(digits):
    x, y, xt, yt = digits
    m = mlp(64, 10, None)
    m.compile(keras.optimizers.Adam(3e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=2, verbose=0)
    res = performance(m, xt, yt, n_bootstrap=0)
    logits = m.predict(xt, verbose=0)
    assert res.metrics["output_transform"] == "softmax"
    assert res.metrics["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == yt))
    assert 0 <= res.metrics["ece"] <= 1
    assert "accuracy_ci95" not in res.metrics


def test_single_sigmoid_unit_is_binary():
    d = load_breast_cancer()
    x = ((d.data - d.data.mean(0)) / d.data.std(0)).astype("float32")
    m = mlp(30, 1, "sigmoid")
    m.compile("adam", "binary_crossentropy")
    m.fit(x, d.target, epochs=3, verbose=0)
    res = performance(m, x, d.target, class_names=["malignant", "benign"], n_bootstrap=50)
    p = m.predict(x, verbose=0)[:, 0]
    assert res.task == "binary"
    assert res.metrics["accuracy"] == pytest.approx(np.mean((p > 0.5) == d.target))
    assert res.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(d.target, p), abs=1e-6)
    assert list(res.tables["per_class"]["class"]) == ["malignant", "benign"]
    assert res.tables["confusion_matrix"].to_numpy().sum() == len(x)


def test_regression_metrics_match_sklearn():
    d = load_diabetes()
    x = d.data.astype("float32")
    y = ((d.target - d.target.mean()) / d.target.std()).astype("float32")
    m = mlp(10, 1, None)
    m.compile("adam", "mse")
    m.fit(x, y, epochs=20, verbose=0)
    res = performance(m, x, y)
    pred = m.predict(x, verbose=0)[:, 0]
    assert res.task == "regression"
    assert res.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-5)
    assert res.metrics["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)),
                                                rel=1e-5)
    assert res.metrics["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-4, abs=1e-5)
    assert res.metrics["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-5)
    assert set(res.figures) == {"predicted_vs_true", "residuals"}
    json.dumps(res.metrics)


def test_cost_metrics(result, classifier):
    assert result.metrics["parameters"] == classifier.count_params()
    assert result.metrics["model_bytes"] == 4 * classifier.count_params()  # float32
    for b in (1, 64):
        ms = result.metrics[f"latency_ms_batch{b}"]
        assert 0 < ms < 1000 and math.isfinite(ms)
    # per sample, a batch of 64 costs far less than 64 single calls
    assert result.metrics["latency_ms_batch64"] < result.metrics["latency_ms_batch1"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(y="short"), "must match"),
    (dict(y="out_of_range"), "out of range"),
    (dict(y="onehot9"), "one-hot"),
    (dict(class_names=["a", "b"]), "class_names has 2 names"),
    (dict(task="ranking"), "unknown task"),
    (dict(n_bootstrap=-1), "n_bootstrap"),
    (dict(batch_size=0), "batch_size"),
    (dict(x="wrong_shape"), "shape"),
])
def test_bad_input_raises_value_error(classifier, digits, kwargs, match):
    _, _, xt, yt = digits
    kwargs = dict(kwargs)
    y = {"short": yt[:-1], "out_of_range": np.where(np.arange(len(yt)) == 3, 12, yt),
         "onehot9": np.eye(9)[yt % 9]}.get(kwargs.pop("y", None), yt)
    x = xt[:, :63] if kwargs.pop("x", None) else xt
    with pytest.raises(ValueError, match=match):
        performance(classifier, x, y, **kwargs)
