"""audit.examples: nearest references in the penultimate embedding, prototypes, contrasts."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _shap_lime_data import breast_cancer, trained_mlp  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import pairwise_distances  # noqa: E402

from keras_audit import audit  # noqa: E402
from keras_audit.audit.example_analysis import embed, embedding_layer, medoid  # noqa: E402
from keras_audit.audit.examples_plots import embedding_figure  # noqa: E402
from keras_audit.audit.result import AnalysisResult  # noqa: E402


@pytest.fixture(scope="module")
def cancer():
    """(model, x_train, y_train, x_test, y_test): a small MLP on the breast-cancer rows."""
    x, y, _ = breast_cancer()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    tr, te = order[:400], order[400:460]
    model = trained_mlp(x[tr], y[tr], epochs=10)
    return model, x[tr], y[tr], x[te], y[te]


def test_planted_duplicate_is_every_samples_nearest_neighbour(cancer):
    model, xtr, ytr, xte, yte = cancer
    # the reference holds a copy of every test sample, shuffled in among the training rows
    ref = np.concatenate([xtr, xte])
    ref_y = np.concatenate([ytr, yte])
    perm = np.random.default_rng(1).permutation(len(ref))
    ref, ref_y = ref[perm], ref_y[perm]
    where = np.argsort(perm)[len(xtr):]  # position of test sample i's copy in ref
    res = audit.examples(model, xte, ref, reference_y=ref_y, k=4, y=yte)
    assert isinstance(res, AnalysisResult)
    assert res.indices.shape == res.distances.shape == res.labels.shape == (len(xte), 4)
    np.testing.assert_array_equal(res.indices[:, 0], where)
    np.testing.assert_allclose(res.distances[:, 0], 0.0, atol=1e-5)
    assert np.all(np.diff(res.distances, axis=1) >= 0)
    np.testing.assert_array_equal(res.labels, ref_y[res.indices])
    # distances are Euclidean in the embedding of the layer that feeds the head
    emb, _, path = embed(model, xte[:3])
    ref_emb, _, _ = embed(model, ref[res.indices[:3, 1]])
    np.testing.assert_allclose(res.distances[:3, 1], np.linalg.norm(emb - ref_emb, axis=1),
                               rtol=1e-4)
    assert res.layer == path == model.layers[0].name


def test_prototypes_are_class_medoids_and_misclassified_get_both_classes(cancer):
    model, xtr, ytr, xte, yte = cancer
    y_flip = yte.copy()
    y_flip[:5] = 1 - y_flip[:5]  # five planted mistakes at least
    res = audit.examples(model, xte, xtr, reference_y=ytr, k=3, y=y_flip,
                         class_names=["malignant", "benign"])
    ref_emb, _, _ = embed(model, xtr)
    for c, r in res.prototypes.items():
        members = np.flatnonzero(ytr == c)
        sums = pairwise_distances(ref_emb[members]).sum(axis=1)
        assert r == members[np.argmin(sums)]
    wrong = np.flatnonzero(res.predicted != y_flip)
    np.testing.assert_array_equal(res.misclassified, wrong)
    right_before = np.flatnonzero(res.predicted[:5] == yte[:5])
    assert len(right_before) >= 3 and set(right_before) <= set(wrong)  # the flipped ones
    assert res.nearest_predicted.shape == res.nearest_true.shape == (len(wrong), 3)
    np.testing.assert_array_equal(ytr[res.nearest_predicted], res.predicted[wrong][:, None]
                                  .repeat(3, 1))
    np.testing.assert_array_equal(ytr[res.nearest_true], y_flip[wrong][:, None].repeat(3, 1))
    emb, _, _ = embed(model, xte[wrong])
    for row in range(len(wrong)):  # the nearest of the true class, brute force
        members = np.flatnonzero(ytr == y_flip[wrong[row]])
        d = np.linalg.norm(ref_emb[members] - emb[row], axis=1)
        assert res.nearest_true[row, 0] == members[np.argmin(d)]
        np.testing.assert_allclose(res.distances_true[row, 0], d.min(), rtol=1e-4)
    assert res.metrics["n_misclassified"] == len(wrong)
    assert set(res.figures) == {"neighbours", "prototypes", "misclassified"}
    assert all(isinstance(f, Figure) for f in res.figures.values())
    assert len(res.tables["neighbours"]) == 3 * len(xte)


def test_images_and_embedding_figure(shapes_data, shapes_model):
    x, y, xt, yt, _ = shapes_data
    res = audit.examples(shapes_model, xt[:12], x[:100], k=2, y=yt[:12])
    assert res.layer == "gmp"  # the input of the Dense head
    assert res.embedding.shape == (12, 16)
    np.testing.assert_array_equal(res.reference_classes,
                                  shapes_model.predict(x[:100], verbose=0).argmax(1))
    assert res.metrics["reference_labels"] == "predicted"
    assert res.metrics["label_agreement"] >= 0.9
    fig = embedding_figure(res.embedding, yt[:12], res.predicted != yt[:12], seed=0)
    assert [a.get_title() for a in fig.axes[:2]] == ["PCA", "t-SNE (perplexity 4)"]


def test_medoid_and_layer_rules():
    pts = np.array([[0.0], [1.0], [2.0], [10.0]])
    assert medoid(pts) == 1
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    h = keras.layers.Dense(6, activation="relu", name="hidden")(inp)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    out = keras.layers.Dense(2, activation="softmax", name="head")(h)
    assert embedding_layer(keras.Model(inp, out)).path == "hidden"  # dropout skipped
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match="reads the input directly"):
        embedding_layer(flat)


def test_bad_input_is_refused_before_work(cancer):
    model, xtr, ytr, xte, _ = cancer
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.5"):
        audit.examples(model, xte, xtr[:5], k=6)
    with pytest.raises(ValueError, match="reference_y must hold one class id per sample"):
        audit.examples(model, xte, xtr, reference_y=ytr[:3])
    with pytest.raises(ValueError, match="reference has shape"):
        audit.examples(model, xte, xtr[:, :4])
    with pytest.raises(ValueError, match="unknown layer 'nope'; choices"):
        audit.examples(model, xte, xtr, layer="nope")
