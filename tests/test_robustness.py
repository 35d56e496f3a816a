"""audit.robustness: accuracy, flips, confidence and explanation stability under corruption."""

import hashlib
import math

import keras
import numpy as np
import pytest

from keras_audit.audit._weights import weights_hash
from keras_audit.audit.corruptions import IMAGE_CORRUPTIONS, corrupt
from keras_audit.audit.robustness_analysis import (
    COLUMNS,
    robustness,
    robustness_figures,
    worst_case,
)


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def sweep(shapes_model, shapes_data):
    _, _, xt, yt, _ = shapes_data
    x, y = xt[:120], yt[:120]
    before = (digest(x), digest(y), weights_hash(shapes_model))
    table = robustness(shapes_model, x, y, severities=(0, 1, 3, 5), stability_samples=12)
    assert (digest(x), digest(y), weights_hash(shapes_model)) == before
    return table


def test_table_layout(sweep):
    assert list(sweep.columns) == list(COLUMNS)
    assert list(sweep.corruption.unique()) == list(IMAGE_CORRUPTIONS)
    assert len(sweep) == len(IMAGE_CORRUPTIONS) * 4
    assert sweep.attrs["explainer"] == "gradcam" and sweep.attrs["stability_samples"] == 12
    assert sweep.attrs["value_range"] == (0.0, 1.0)
    assert np.isfinite(sweep[["accuracy", "loss", "flip_rate", "mean_confidence",
                              "explanation_spearman", "distance"]].to_numpy()).all()


def test_severity_zero_is_the_clean_model(sweep):
    zero = sweep[sweep.severity == 0]
    assert (zero.delta_accuracy == 0).all() and (zero.flip_rate == 0).all()
    assert (zero.explanation_spearman == 1).all() and (zero.distance == 0).all()
    np.testing.assert_allclose(zero.loss, sweep.attrs["clean_loss"], rtol=1e-5)
    assert sweep.attrs["clean_accuracy"] > 0.95


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "occlusion"])
def test_each_level_is_corrupt_then_predict(sweep, shapes_model, shapes_data, name):
    """The sweep corrupts every severity inside one graph: each row must still be what
    corrupting with ``corrupt`` (same seed, same chunks) and predicting gives."""
    _, _, xt, yt, _ = shapes_data
    x, y = xt[:120], np.asarray(yt[:120])
    labels = y.argmax(1) if y.ndim == 2 else y
    for level in (1, 3, 5):
        xc = corrupt(x, name, level, seed=0)
        acc = float(np.mean(shapes_model.predict(xc, verbose=0).argmax(1) == labels))
        dist = float(np.mean(np.sqrt(np.mean(np.square(xc - x), axis=(1, 2, 3)))))
        row = sweep[(sweep.corruption == name) & (sweep.severity == level)].iloc[0]
        assert row.accuracy == pytest.approx(acc, abs=1e-9), (level, row.accuracy, acc)
        assert row.distance == pytest.approx(dist, rel=1e-4), (level, row.distance, dist)


@pytest.mark.parametrize("name", ["gaussian_noise", "gaussian_blur", "contrast"])
def test_harm_grows_with_severity(sweep, name):
    g = sweep[sweep.corruption == name].sort_values("severity")
    assert np.all(np.diff(g.distance) > 0)
    assert np.all(np.diff(g.loss) > 0)              # the loss rises at every level
    assert np.all(np.diff(g.mean_confidence) < 0)   # and the confidence falls
    assert g.explanation_spearman.iloc[-1] < g.explanation_spearman.iloc[1] < 1.0


def test_accuracy_and_flips_are_consistent(sweep):
    # with a perfect clean model every flip is an error: accuracy = clean - flips
    if sweep.attrs["clean_accuracy"] == 1.0:
        np.testing.assert_allclose(sweep.delta_accuracy, -sweep.flip_rate, atol=1e-9)
    worst = worst_case(sweep)
    assert worst["delta_accuracy"] == sweep.delta_accuracy.min()


def test_occlusion_hurts_most_when_large(sweep):
    g = sweep[sweep.corruption == "occlusion"].sort_values("severity")
    assert g.delta_accuracy.iloc[-1] < -0.05  # a square over 36% of the image hides the object


def test_figures(sweep):
    figs = robustness_figures(sweep)
    assert set(figs) == {"accuracy_vs_severity", "stability_vs_severity"}
    ax = figs["accuracy_vs_severity"].axes[0]
    assert len(ax.get_lines()) == len(IMAGE_CORRUPTIONS) + 1  # one per corruption + clean


def test_without_stability_and_seeded(shapes_model, shapes_data):
    _, _, xt, yt, _ = shapes_data
    a = robustness(shapes_model, xt[:40], yt[:40], corruptions=["shot_noise"],
                   severities=(2,), stability=False, seed=3)
    b = robustness(shapes_model, xt[:40], yt[:40], corruptions="shot_noise",
                   severities=[2], stability=False, seed=3)
    assert "explanation_spearman" not in a.columns
    assert a.equals(b)


def test_bad_input_raises_before_work(shapes_model, shapes_data):
    _, _, xt, yt, _ = shapes_data
    with pytest.raises(ValueError, match="choices") as info:
        robustness(shapes_model, xt[:8], yt[:8], corruptions=["gaussian_noise", "fog"])
    assert "'fog'" in str(info.value) and all(n in str(info.value) for n in IMAGE_CORRUPTIONS)
    with pytest.raises(ValueError, match="feature_dropout"):
        robustness(shapes_model, xt[:8], yt[:8], corruptions="feature_dropout")
    with pytest.raises(ValueError, match="0..5"):
        robustness(shapes_model, xt[:8], yt[:8], severities=(1, 9))
    with pytest.raises(ValueError, match="batch_size"):
        robustness(shapes_model, xt[:8], yt[:8], batch_size=0)
    with pytest.raises(ValueError, match="shape"):
        robustness(shapes_model, xt[:8, :10], yt[:8])


@pytest.fixture(scope="module")
def table_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def test_tabular_classifier(table_data):
    x, y = table_data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    before = weights_hash(model)
    t = robustness(model, x, y, severities=(1, 3, 5), stability_samples=16)
    assert weights_hash(model) == before
    assert list(t.corruption.unique()) == ["gaussian_noise", "feature_dropout"]
    assert t.attrs["explainer"] == "saliency" and t.attrs["value_range"] is None
    for _, g in t.groupby("corruption"):
        g = g.sort_values("severity")
        assert np.all(np.diff(g.distance) > 0)
        assert g.accuracy.iloc[-1] < g.accuracy.iloc[0]
    noise = t[t.corruption == "gaussian_noise"].sort_values("severity")
    # noise of 0.1, 0.5 and 1 feature std: RMS change in std units equals that
    np.testing.assert_allclose(noise.distance, [0.1, 0.5, 1.0], rtol=0.1)


def test_regression_reports_the_loss(table_data):
    x, _ = table_data
    target = (x[:, 0] - x[:, 2]).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, target, epochs=30, batch_size=32, verbose=0)
    t = robustness(model, x, target, severities=(1, 5), stability=False)
    assert t.accuracy.isna().all() and t.flip_rate.isna().all()
    assert (t.delta_loss > 0).all() and t.attrs["task"] == "regression"
    worst = worst_case(t)
    assert worst["delta_loss"] == t.delta_loss.max() and math.isnan(worst["accuracy"])
    assert set(robustness_figures(t)) == {"accuracy_vs_severity"}
