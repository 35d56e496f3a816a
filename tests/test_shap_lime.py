"""SHAP and LIME analyses: additivity, ground truth on planted signals, segmentation, batching,
clear errors."""

from __future__ import annotations

import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _shap_lime_data import (  # noqa: E402
    PLANTED,
    box_masks,
    breast_cancer,
    cnn,
    planted_rows,
    shapes32,
    trained_mlp,
)
from matplotlib.figure import Figure  # noqa: E402

from keras_audit.audit.lime_analysis import (  # noqa: E402
    LIME_KINDS,
    SEGMENTATIONS,
    lime_explanations,
    segment_image,
)
from keras_audit.audit.shap_analysis import SHAP_METHODS, SHAP_TOLERANCE, shap_values  # noqa: E402
from keras_audit.datasets import load_digits_images  # noqa: E402
from keras_audit.explain.forward import CompiledForward  # noqa: E402

# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer():
    """(model, x, names): a Sequential MLP trained on breast cancer (30 features)."""
    x, y, names = breast_cancer()
    model = trained_mlp(x, y, epochs=20)
    acc = float(np.mean(model.predict(x, verbose=0).argmax(1) == y))
    assert acc > 0.95, f"fixture MLP did not train (accuracy {acc:.2f})"
    return model, x, names


@pytest.fixture(scope="module")
def planted():
    """(model, x): an MLP whose data's label is decided by feature PLANTED alone."""
    x, y = planted_rows()
    model = trained_mlp(x, y, epochs=20)
    acc = float(np.mean(model.predict(x, verbose=0).argmax(1) == y))
    assert acc > 0.95, f"planted MLP did not train (accuracy {acc:.2f})"
    return model, x


@pytest.fixture(scope="module")
def shapes_model():
    """(model, x_test, y_test, boxes_test): a Sequential CNN on 32x32 coloured squares."""
    x, y, boxes = shapes32()
    model = cnn()
    model.fit(x[:500], y[:500], epochs=6, batch_size=32, verbose=0)
    acc = float(np.mean(model.predict(x[500:], verbose=0).argmax(1) == y[500:]))
    assert acc > 0.95, f"fixture CNN did not train (accuracy {acc:.2f})"
    return model, x[500:], y[500:], boxes[500:]


def _mass_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's absolute attribution that falls inside the object's box."""
    a = np.abs(maps)
    return (a * masks).reshape(len(a), -1).sum(1) / a.reshape(len(a), -1).sum(1)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- SHAP: tabular ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["permutation", "kernel"])
def test_tabular_shap_is_additive_within_shap_tolerance(cancer, method):
    model, x, names = cancer
    xs, bg = x[:12], x[100:200]
    res = shap_values(model, xs, bg, method=method, feature_names=names, max_evals=500)
    assert res.method == method
    assert res.values.shape == (12, 30, 2)
    assert res.base_values.shape == (12, 2)
    # recomputed here against model.predict, not taken on trust from the result
    recon = res.values.sum(axis=1) + res.base_values
    err = np.abs(recon - model.predict(xs, verbose=0)).max()
    assert err < SHAP_TOLERANCE, err
    assert res.additivity_error < SHAP_TOLERANCE
    assert res.additivity_error == pytest.approx(err, abs=1e-5)
    # base values are the background's mean output
    np.testing.assert_allclose(res.base_values[0], model.predict(bg, verbose=0).mean(0),
                               atol=1e-5)


def test_auto_picks_permutation_for_tabular_and_draws_shap_plots(cancer):
    import matplotlib.pyplot as plt

    model, x, names = cancer
    before = plt.get_fignums()
    res = shap_values(model, x[:10], x[100:150], feature_names=names)
    assert res.method == "permutation"
    assert res.feature_names == names
    assert set(res.figures) == {"beeswarm", "bar"}
    for fig in res.figures.values():
        assert isinstance(fig, Figure)
        assert _png(fig).startswith(b"\x89PNG")
    assert plt.get_fignums() == before, "shap's pyplot figures leaked"
    # the beeswarm's y labels are the most important features' names
    labels = [t.get_text() for t in res.figures["beeswarm"].axes[0].get_yticklabels()]
    top = names[int(np.abs(res.values[..., 1]).mean(0).argmax())]
    assert top in labels


def test_shap_matches_closed_form_on_a_linear_model():
    """For f(x) = w.x + b, the exact SHAP value of feature j is w_j (x_j - E[background_j])."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([w, np.array([0.3], np.float32)])
    x = rng.normal(size=(5, 6)).astype(np.float32)
    bg = rng.normal(size=(40, 6)).astype(np.float32)
    expected = w[:, 0] * (x - bg.mean(0))
    for method in ("permutation", "kernel", "deep"):
        res = shap_values(model, x, bg, method=method)
        assert res.values.shape == (5, 6, 1)
        np.testing.assert_allclose(res.values[..., 0], expected, atol=1e-4, err_msg=method)
    grad = shap_values(model, x, bg, method="gradient", max_evals=2000)
    # expected gradients samples background rows: exact in expectation only
    np.testing.assert_allclose(grad.values[..., 0], expected, atol=0.15)


def test_targets_select_one_output_per_sample(cancer):
    model, x, _ = cancer
    t = np.arange(8) % 2
    full = shap_values(model, x[:8], x[100:160], figures=False)
    one = shap_values(model, x[:8], x[100:160], targets=t, figures=False)
    assert one.values.shape == (8, 30, 1)
    assert one.output_indices[:, 0].tolist() == t.tolist()
    np.testing.assert_allclose(one.values[..., 0], full.values[np.arange(8), :, t], atol=1e-9)
    assert one.additivity_error < SHAP_TOLERANCE


def test_deep_explainer_on_mlp_is_additive(cancer):
    model, x, _ = cancer
    res = shap_values(model, x[:6], x[100:150], method="deep", figures=False)
    assert res.method == "deep"
    assert res.values.shape == (6, 30, 2)
    assert res.additivity_error < SHAP_TOLERANCE


# -- SHAP: images -------------------------------------------------------------------------------


def test_gradient_shap_on_images_shape_additivity_and_localisation(shapes_model):
    model, x, y, boxes = shapes_model
    xs = x[:4]
    res = shap_values(model, xs, x[20:60], max_evals=300)
    assert res.method == "gradient"
    assert res.values.shape == (4, 32, 32, 3, 3)
    assert res.base_values.shape == (4, 3)
    # GradientExplainer (expected gradients) is additive only approximately: report it
    print(f"GradientExplainer additivity error: {res.additivity_error:.2e}")
    assert 0 <= res.additivity_error < 0.1
    recon = res.values.reshape(4, -1, 3).sum(1) + res.base_values
    assert np.abs(recon - model.predict(xs, verbose=0)).max() == pytest.approx(
        res.additivity_error, abs=1e-5)
    # the attribution of the predicted class concentrates on the square (6% of the pixels)
    pred = model.predict(xs, verbose=0).argmax(1)
    maps = res.values[np.arange(4), ..., pred].sum(axis=-1)
    inside = _mass_inside(maps, box_masks(boxes[:4], 32))
    assert inside.mean() > 0.3, inside
    assert isinstance(res.figures["shap_maps"], Figure)


def test_partition_shap_with_blur_masker_is_additive_and_finds_the_object(shapes_model):
    model, x, y, boxes = shapes_model
    xs = x[:4]
    res = shap_values(model, xs, None, method="partition", targets=y[:4], max_evals=500)
    assert res.method == "partition"
    assert res.details["masker"] == "blur(8,8)"
    assert res.values.shape == (4, 32, 32, 3, 1)
    assert res.additivity_error < SHAP_TOLERANCE
    inside = _mass_inside(res.values[..., 0].sum(-1), box_masks(boxes[:4], 32))
    assert inside.mean() > 0.3, inside


def test_deep_explainer_failure_names_the_method_that_works(shapes_model):
    model, x, _, _ = shapes_model  # ends in GlobalMaxPooling2D: no DeepLIFT rule in shap
    with pytest.raises(ValueError, match="method='gradient'"):
        shap_values(model, x[:2], x[20:40], method="deep")
    # shap leaves TensorFlow's gradient recorder swapped on this failure; it must be restored
    res = shap_values(model, x[:2], x[20:40], method="gradient", max_evals=100, figures=False)
    assert np.isfinite(res.values).all()


# -- SHAP: validation ---------------------------------------------------------------------------


def test_shap_bad_arguments_raise_before_work(cancer):
    model, x, _ = cancer
    with pytest.raises(ValueError, match="choices") as exc:
        shap_values(model, x[:2], x[:10], method="tree")
    for m in SHAP_METHODS:
        assert m in str(exc.value)
    with pytest.raises(ValueError, match="background"):
        shap_values(model, x[:2], x[:10, :5])
    with pytest.raises(ValueError, match="needs background"):
        shap_values(model, x[:2], None)
    with pytest.raises(ValueError, match="shape"):
        shap_values(model, x[:2, :29], x[:10])
    with pytest.raises(ValueError, match="out of range"):
        shap_values(model, x[:2], x[:10], targets=5)
    with pytest.raises(ValueError, match="at least 2 \\* features \\+ 1 = 61"):
        shap_values(model, x[:2], x[:10], max_evals=40)
    with pytest.raises(ValueError, match="partition"):
        shap_values(model, x[:2], x[:10], method="partition")
    with pytest.raises(ValueError, match="feature_names"):
        shap_values(model, x[:2], x[:10], feature_names=["a", "b"])


# -- LIME: tabular ------------------------------------------------------------------------------


def test_lime_tabular_ranks_the_planted_feature_first(planted):
    model, x = planted
    names = [f"f{j}" for j in range(x.shape[1])]
    res = lime_explanations(model, x[:10], training_data=x[:500], feature_names=names,
                            num_samples=1000)
    assert res.kind == "tabular"
    assert res.weights.shape == (10, 8)
    top = np.abs(res.weights).argmax(axis=1)
    assert (top == PLANTED).all(), top
    assert np.all(np.isfinite(res.scores)) and res.scores.shape == (10,)
    np.testing.assert_array_equal(res.targets, model.predict(x[:10], verbose=0).argmax(1))
    # away from the class boundary, the planted feature's condition argues for the prediction
    # (near it, lime's quartile bin straddles both classes and may argue against)
    clear = np.abs(x[:10, PLANTED]) > 0.3
    assert clear.sum() >= 5 and np.all(res.weights[clear, PLANTED] > 0)
    first = res.table[res.table["rank"] == 1]
    assert (first["feature"] == f"f{PLANTED}").all()
    assert set(res.figures) == {"weights", "importance"}


def test_lime_tabular_needs_training_data(planted):
    model, x = planted
    with pytest.raises(ValueError, match="training_data"):
        lime_explanations(model, x[:2])
    with pytest.raises(ValueError, match="training_data must have shape"):
        lime_explanations(model, x[:2], training_data=x[:50, :4])


# -- LIME: images -------------------------------------------------------------------------------


def test_segmentation_gives_meaningful_superpixels_at_32px():
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    digits, _ = load_digits_images(32, 3)
    shapes, _, _ = shapes32(n=10)
    default = SegmentationAlgorithm("quickshift", kernel_size=4, max_dist=200, ratio=0.2,
                                    random_seed=0)
    for img in list(digits[:5]) + list(shapes[:5]):
        # lime's own default (quickshift kernel_size=4, max_dist=200) is what this replaces
        lime_default = len(np.unique(default(img.astype(np.float64))))
        assert lime_default < 10
        for method, least in (("auto", 10), ("slic", 10), ("quickshift", 2 * lime_default)):
            seg = segment_image(img, method)
            assert seg.shape == (32, 32)
            n = int(seg.max()) + 1
            assert n >= least, (method, n)
            assert set(np.unique(seg)) == set(range(n))  # consecutive labels, as lime needs


def test_lime_image_top_superpixel_finds_the_object(shapes_model):
    model, x, y, boxes = shapes_model
    n = 8
    res = lime_explanations(model, x[:n], num_samples=1000)
    assert res.kind == "image"
    assert res.segments.shape == (n, 32, 32)
    assert res.segments_per_image.min() >= 10
    assert res.maps.shape == (n, 32, 32)
    masks = box_masks(boxes[:n], 32)
    hits, chance = [], []
    for i in range(n):
        seg, w = res.segments[i], res.weights[i]
        assert w.shape == (int(seg.max()) + 1,)
        hits.append(masks[i][seg == int(np.argmax(w))].any())
        chance.append(np.mean([masks[i][seg == s].any() for s in range(len(w))]))
    # chance: a random superpixel touches the square ~5% of the time
    assert np.mean(hits) >= 0.75 and np.mean(hits) > 3 * np.mean(chance), (hits, chance)
    assert np.all(res.scores > 0.2), res.scores
    assert isinstance(res.figures["explanations"], Figure)
    assert res.segmentation.startswith("slic")


def test_lime_image_predictions_are_batched(shapes_model):
    model, x, _, _ = shapes_model
    sizes = []

    class Counting(CompiledForward):
        def __call__(self, batch):
            sizes.append(len(batch))
            return super().__call__(batch)

    lime_explanations(model, x[:1], num_samples=1000, figures=False, forward=Counting(model))
    lime_calls = sizes[1:]  # the first call predicts x itself
    assert sum(lime_calls) == 1000
    assert min(lime_calls[:-1]) >= 100 and len(lime_calls) <= 5, lime_calls


def test_lime_grayscale_images_round_trip():
    keras.utils.set_random_seed(0)
    model = cnn(input_shape=(32, 32, 1))
    x, _, _ = shapes32(n=3, channels=1)
    res = lime_explanations(model, x, num_samples=200, figures=True)
    assert res.maps.shape == (3, 32, 32)
    assert res.segments_per_image.min() >= 10
    assert isinstance(res.figures["explanations"], Figure)


def test_lime_bad_arguments_raise(shapes_model, planted):
    model, x, _, _ = shapes_model
    with pytest.raises(ValueError, match="choices") as exc:
        lime_explanations(model, x[:1], kind="text")
    for k in LIME_KINDS:
        assert k in str(exc.value)
    with pytest.raises(ValueError, match="choices") as exc:
        lime_explanations(model, x[:1], segmentation="felzenszwalb")
    for s in SEGMENTATIONS:
        assert s in str(exc.value)
    with pytest.raises(ValueError, match="out of range"):
        lime_explanations(model, x[:1], targets=3)
    with pytest.raises(ValueError, match="class_names"):
        lime_explanations(model, x[:1], class_names=["a"])
    with pytest.raises(ValueError, match="num_samples"):
        lime_explanations(model, x[:1], num_samples=0)
    other, _ = planted
    with pytest.raises(ValueError, match="same model"):
        lime_explanations(model, x[:1], forward=CompiledForward(other))
