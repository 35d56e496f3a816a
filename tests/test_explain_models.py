"""Every explainer on every kind of model people train (the case table in ``_models``).

Each (explainer, model kind) pair is its own test: it either works (the shape rule, float32,
finite, in [0, 1], not all zero, compiled once) or raises a ValueError that names the technique
and the reason. Then the properties that need more than a shape: completeness of Integrated
Gradients, token attributions on trained text models, the default CAM layer on residual models.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from _models import CASES, T, build_case, text_data

from keras_audit.explain import (
    METHODS,
    GradCAM,
    GradCAMPlusPlus,
    GradientInput,
    IntegratedGradients,
    Saliency,
    ScoreCAM,
    SmoothGrad,
    balanced_order,
    predicted_classes,
    registry,
)

EXPLAINERS = {
    "gradcam": (GradCAM, {}),
    "gradcam++": (GradCAMPlusPlus, {}),
    "scorecam": (ScoreCAM, {}),
    "saliency": (Saliency, {}),
    "smoothgrad": (SmoothGrad, {"num_samples": 4}),
    "integrated_gradients": (IntegratedGradients, {"steps": 8}),
    "gradient_input": (GradientInput, {}),
}
CAMS = {"gradcam", "gradcam++", "scorecam"}


def _expected(case, method):
    if method == "scorecam" and case.scorecam is not None:
        return case.scorecam
    return case.cam if method in CAMS else case.grad


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_explainer_on_model_kind(method, case):
    model, x = build_case(case.name)
    cls, options = EXPLAINERS[method]
    want = _expected(case, method)
    if isinstance(want, str):
        with pytest.raises(ValueError, match=want) as err:
            cls(model, **options)
        assert cls.__name__ in str(err.value)  # the message names the technique
        return
    explainer = cls(model, **options)
    maps = explainer(x)
    explainer(x)
    assert explainer.trace_count == 1
    shapes = want if isinstance(want, list) else [want]
    got = maps if isinstance(maps, list) else [maps]
    assert isinstance(maps, list) == isinstance(want, list)
    for m, shape in zip(got, shapes, strict=True):
        assert m.shape == (len(explainer.last_targets), *shape) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
        if method not in case.zero_maps_ok:
            assert (m.reshape(len(m), -1).max(1) > 0).all(), "a map is all zero"
        else:
            assert m.max() > 0
    if method in CAMS and case.cam_layer is not None:
        assert explainer.layer_name == case.cam_layer


@pytest.mark.parametrize("case", [c for c in CASES if not isinstance(c.grad, str)],
                         ids=lambda c: c.name)
def test_integrated_gradients_completeness(case):
    model, x = build_case(case.name)
    ig = IntegratedGradients(model, steps=case.ig_steps, normalize=False, batch_size=2048)
    maps = ig(x)
    total = sum(m.reshape(len(m), -1).sum(1) for m in (maps if isinstance(maps, list)
                                                       else [maps]))
    expected = total + ig.last_convergence_delta  # score(x) - score(baseline)
    np.testing.assert_allclose(total, expected, rtol=0.05, atol=2e-3 * max(
        1.0, float(np.abs(expected).max())))
    assert np.abs(expected).max() > 1e-3  # the check is not trivially passing


@pytest.mark.parametrize("name", ["tokens_conv1d", "tokens_lstm"])
def test_text_attributions(name):
    model, _ = build_case(name)
    x, y = text_data(16, seed=3)
    logits = keras.Model(model.inputs, model.get_layer("logits").output)
    assert (model.predict(x, verbose=0).argmax(1) == y).mean() >= 0.9, "model did not train"
    ig = IntegratedGradients(model, steps=128, normalize=False)
    attr = ig(x, targets=1)
    assert attr.shape == (16, T) and ig.points[0].name == "embedding"
    if name == "tokens_conv1d":  # completeness against the model's own logits
        score = logits.predict(x, verbose=0)[:, 1] - logits.predict(
            np.zeros_like(x), verbose=0)[:, 1]
        assert np.abs(score).max() > 0.5
        np.testing.assert_allclose(attr.sum(1), score, rtol=0.05, atol=0.05)
    else:  # the same integral written by hand on the head rebuilt from the embedding's output
        e_in = keras.Input((T, 8))
        pool = next(la for la in model.layers if "pooling" in la.name)
        h = pool(model.get_layer("lstm")(e_in))
        head = keras.Model(e_in, model.get_layer("logits")(h))
        emb = model.get_layer("embedding")
        e, b = emb(x).numpy(), emb(np.zeros_like(x)).numpy()
        alphas = (np.arange(128) + 0.5) / 128
        total = np.zeros_like(e)
        for a in alphas:
            p = tf.convert_to_tensor(b + a * (e - b))
            with tf.GradientTape() as tape:
                tape.watch(p)
                s = tf.reduce_sum(head(p)[:, 1])
            total += tape.gradient(s, p).numpy()
        manual = ((e - b) * total / 128).sum(-1)
        np.testing.assert_allclose(attr, manual, atol=1e-4 * np.abs(manual).max())
    # the keyword (token 7) carries the largest attribution in the class-1 samples
    ones = np.flatnonzero(y == 1)
    top = attr[ones].argmax(1)
    assert np.mean(x[ones, top] == 7) >= 0.8
    # On the LSTM only IG is held to the keyword: gradient magnitude is sensitivity, not
    # contribution, and the recurrent state spreads Grad-CAM past it. On the max-pooled
    # Conv1D, Saliency and Grad-CAM find it too.
    for cls in (Saliency, GradCAM) if name == "tokens_conv1d" else ():
        m = cls(model)(x, targets=1)
        assert m.shape == (16, T)
        assert np.mean(x[ones, m[ones].argmax(1)] == 7) >= 0.7, cls.__name__


def test_grad_cam_on_conv1d_is_resized_to_the_input():
    model, x = build_case("tokens_conv1d")
    cam = GradCAM(model, layer="conv1d")
    assert cam.layer_info.output_shape[1] == T - 2
    assert cam(x).shape == (len(x), T) and cam.input_name == "tokens"


def test_layer_argument_for_gradient_methods():
    model, x = build_case("functional")
    sal = Saliency(model, layer="conv1")
    assert sal(x).shape == (len(x), 16, 16)
    ig = IntegratedGradients(model, layer="conv2", steps=64, normalize=False)
    attr = ig(x)
    np.testing.assert_allclose(attr.sum((1, 2)), attr.sum((1, 2)) + ig.last_convergence_delta,
                               rtol=0.05, atol=1e-3)
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        Saliency(model, layer="nope")
    net, _ = build_case("subclassed")
    with pytest.raises(ValueError, match="Saliency.*subclassed.*cannot be read"):
        Saliency(net, layer="conv2d_3")
    with pytest.raises(ValueError, match="GradCAM.*subclassed.*Saliency, SmoothGrad"):
        GradCAM(net, layer="conv2d_3")


def test_several_inputs():
    model, (img, vec) = build_case("multi_input")
    as_list = Saliency(model)([img, vec])
    as_dict = Saliency(model)({"vec": vec, "image": img})
    for a, b in zip(as_list, as_dict):
        np.testing.assert_array_equal(a, b)
    cam = GradCAM(model)
    assert cam.input_name == "image" and cam(
        {"image": img, "vec": vec}).shape == img.shape[:3]
    ig = IntegratedGradients(model, steps=64, normalize=False, baseline={"vec": np.ones(5)})
    ig([img, vec])
    assert np.abs(ig.last_convergence_delta).max() < 0.05
    with pytest.raises(ValueError, match=r"inputs are \['image', 'vec'\].*missing: \['vec'\]"):
        Saliency(model)({"image": img})
    with pytest.raises(ValueError, match="2 inputs"):
        Saliency(model)(img)
    with pytest.raises(ValueError, match="baseline names unknown inputs"):
        IntegratedGradients(model, baseline={"text": 0})


def test_several_outputs():
    model, x = build_case("multi_output")
    by_default = GradCAM(model)(x)
    np.testing.assert_array_equal(by_default, GradCAM(model, output="cls")(x))
    reg = Saliency(model, output="size")
    assert reg.task == "regression" and reg(x).shape == (len(x), 16, 16)
    with pytest.raises(ValueError, match=r"unknown output 'nope'.*\['cls', 'size'\]"):
        Saliency(model, output="nope")


def test_uint8_maps_equal_the_float_maps():
    model, x = build_case("uint8_input")
    for cls in (Saliency, IntegratedGradients, GradCAM):
        np.testing.assert_allclose(cls(model)(x), cls(model)(x.astype("float32")), atol=1e-6)


def test_mixed_precision_policy_is_restored():
    model, x = build_case("mixed_precision")
    assert model.get_layer("conv").compute_dtype == "float16"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert GradCAM(model).head == "softmax"


def _residual(names: bool):
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="c1" if names else None)(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="c2" if names else None)(a)
    h = keras.layers.Add()([a, b])  # generated name add / add_N: unstable
    h = a + h                       # a bare op, also generated
    return keras.Model(inp, _head(h)), b


def _head(h):
    return keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h))


def test_default_cam_layer_has_a_stable_name():
    model, _ = _residual(names=True)
    cam = GradCAM(model)
    assert cam.layer_name == "c2"
    unnamed, conv = _residual(names=False)
    assert GradCAM(unnamed).layer_name == conv._keras_history.operation.name  # not an add
    mobile = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=3)
    cam = GradCAM(mobile)
    assert cam.layer_name == "out_relu"
    assert cam(np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")).shape == (
        2, 64, 64)


def test_registry_is_the_one_table():
    assert registry.get("gradcam") is GradCAM and registry.get("vanilla") is Saliency
    assert registry.title("gradcam++") == "Grad-CAM++"
    assert registry.title("integrated_gradients") == "Integrated Gradients"
    assert registry.names("cam") == ["gradcam", "gradcam++", "scorecam"]
    assert registry.names("gradient") == ["vanilla", "saliency", "smoothgrad",
                                          "integrated_gradients", "gradient_input"]
    assert METHODS == {n: registry.get(n) for n in registry.names()}
    with pytest.raises(ValueError, match=re.escape("unknown explanation method 'lime'")):
        registry.get("lime")
    with pytest.raises(ValueError, match="family"):
        registry.names("perturbation")


def test_predicted_classes_and_balanced_order():
    np.testing.assert_array_equal(predicted_classes([[0.1, 0.9], [0.8, 0.2]]), [1, 0])
    np.testing.assert_array_equal(predicted_classes([[0.7], [0.2]]), [1, 0])
    np.testing.assert_array_equal(predicted_classes([-1.0, 2.0], threshold=0.0), [0, 1])
    y = np.array([0] * 10 + [1] * 3 + [2] * 6)
    order = balanced_order(y, 9, seed=4)
    assert sorted(np.bincount(y[order])) == [3, 3, 3] and len(set(order)) == 9
    np.testing.assert_array_equal(order, balanced_order(y, 9, seed=4))
    np.testing.assert_array_equal(balanced_order(np.eye(3)[y], 9, seed=4), order)
    full = balanced_order(y, seed=4)
    assert sorted(full) == list(range(len(y))) and list(full[:9]) == list(order)
    np.testing.assert_array_equal(balanced_order(19, 5, seed=1),
                                  np.random.default_rng(1).permutation(19)[:5])
    # the callbacks' copy gives the same order, so they can switch to this one
    from keras_audit.callbacks.base import balanced_order as callbacks_order
    np.testing.assert_array_equal(callbacks_order(y, len(y), 4), full)


@pytest.mark.parametrize("name", ["multi_input", "dict_input", "tokens_conv1d", "uint8_input"])
def test_forward_and_activations_take_every_input_form(name):
    from keras_audit.explain import Activations, CompiledForward

    model, x = build_case(name)
    ref = model.predict(x, verbose=0)
    np.testing.assert_allclose(CompiledForward(model)(x), ref, rtol=1e-5, atol=1e-6)
    layer = "conv1d" if name == "tokens_conv1d" else "conv"
    out = Activations(model, [layer])(x)
    np.testing.assert_allclose(out["__output__"], ref, rtol=1e-5, atol=1e-6)
    assert out[layer].shape[0] == len(ref)
