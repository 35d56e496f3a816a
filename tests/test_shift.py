"""audit.shift: MMD, domain classifier, KS and OOD scores between reference and audit data."""

import hashlib

import keras
import numpy as np
import pytest

from keras_audit.audit.corruptions import corrupt
from keras_audit.audit.shift_analysis import mmd_test, ood_scores, penultimate_layer, shift


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_two_halves_of_one_data_set_do_not_differ(shapes_model, shapes_data):
    x = shapes_data[0]
    a, b = x[:350], x[350:]
    before = digest(x)
    r = shift(shapes_model, a, b, seed=0)
    assert digest(x) == before
    assert r.layer == "gmp" == penultimate_layer(shapes_model)
    assert r.mmd["p_value"] > 0.05 and r.mmd["n_reference"] == 350
    assert abs(r.auroc - 0.5) < 0.1
    assert abs(r.ood_summary["msp_auroc"] - 0.5) < 0.1
    assert set(r.figures) == {"ood_histograms"} and r.ks is None


def test_clean_against_blurred_differs(shapes_model, shapes_data):
    x = shapes_data[0]
    blurred = corrupt(x[350:], "gaussian_blur", 2)
    r = shift(shapes_model, x[:350], blurred, seed=0)
    assert r.mmd["p_value"] < 0.01 and r.auroc > 0.9
    # blur lowers the confidence: the OOD scores see it too
    assert r.ood_summary["audit"]["max_softmax"] < r.ood_summary["reference"]["max_softmax"]
    assert r.ood_summary["energy_auroc"] > 0.7
    content = r.summary()
    assert content["mmd"]["p_value"] == r.mmd["p_value"]
    assert content["domain_classifier"]["auroc"] == r.auroc


def test_mmd_on_known_distributions():
    rng = np.random.default_rng(0)
    same = mmd_test(rng.normal(size=(100, 3)), rng.normal(size=(100, 3)), 200)
    moved = mmd_test(rng.normal(size=(100, 3)), rng.normal(0.8, 1, size=(100, 3)), 200)
    assert same["p_value"] > 0.05 and moved["p_value"] < 0.01
    assert moved["mmd2"] > 5 * same["mmd2"] > 0
    assert moved["p_value"] >= 1 / 201  # never 0: (1 + count) / (1 + permutations)


def test_ood_scores_match_their_definitions():
    z = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    s = ood_scores(z, "classification")
    np.testing.assert_allclose(s["max_softmax"], np.exp(z).max(1) / np.exp(z).sum(1))
    np.testing.assert_allclose(s["energy"], -np.log(np.exp(z).sum(1)))
    b = ood_scores(np.array([[0.0], [3.0]]), "binary")
    np.testing.assert_allclose(b["max_softmax"], [0.5, 1 / (1 + np.exp(-3))])
    assert ood_scores(z, "regression") is None


def test_tables_get_ks_per_feature():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 4)).astype(np.float32)
    aud = rng.normal(size=(300, 4)).astype(np.float32)
    aud[:, 2] += 1.0  # one feature shifted
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    r = shift(model, ref, aud, permutations=200)
    assert r.ks is not None and int(r.ks.feature.iloc[0]) == 2
    assert r.ks.p_value.iloc[0] < 1e-6 and (r.ks.p_value.iloc[1:] > 1e-3).all()
    assert r.ood is None and set(r.figures) == {"ks_features"}  # regression: no OOD scores
    assert r.summary()["ks"]["top"][0]["feature"] == 2


def test_bad_input(shapes_model, shapes_data):
    x = shapes_data[0]
    with pytest.raises(ValueError, match="reference"):
        shift(shapes_model, x[:10, :5], x[:10])
    with pytest.raises(ValueError, match="choices"):
        shift(shapes_model, x[:10], x[10:20], layer="nope")
    with pytest.raises(ValueError, match="at least 2"):
        shift(shapes_model, x[:1], x[10:20])
    with pytest.raises(ValueError, match="permutations"):
        shift(shapes_model, x[:10], x[10:20], permutations=0)
