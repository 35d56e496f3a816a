"""The explanation engine against ground truth (known object positions), a reference
implementation (tf-keras-vis), the completeness axiom, and its error cases."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_audit.explain import (
    Activations,
    GradCAM,
    GradCAMPlusPlus,
    GradientInput,
    IntegratedGradients,
    Saliency,
    ScoreCAM,
    SmoothGrad,
    list_layers,
)

ALL = [GradCAM, GradCAMPlusPlus, ScoreCAM, Saliency, SmoothGrad, IntegratedGradients,
       GradientInput]


def pointing_game(maps, boxes):
    """Fraction of maps whose maximum falls inside the object's box."""
    n, _, w = maps.shape
    idx = maps.reshape(n, -1).argmax(1)
    r, c = idx // w, idx % w
    return float(np.mean((r >= boxes[:, 0]) & (r < boxes[:, 2])
                         & (c >= boxes[:, 1]) & (c < boxes[:, 3])))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_maps_point_at_the_object(cls, shapes_model, shapes_data):
    _, _, xt, yt, boxes = shapes_data
    xt, yt, boxes = xt[:96], yt[:96], boxes[:96]
    maps = cls(shapes_model)(xt, targets=yt)
    assert maps.shape == xt.shape[:3] and maps.dtype == np.float32
    assert np.all((maps >= 0) & (maps <= 1))
    hit = pointing_game(maps, boxes)
    chance = pointing_game(np.random.default_rng(0).random(maps.shape), boxes)
    assert hit >= 0.85, f"{cls.__name__} pointed at the object in {hit:.0%} of images"
    assert hit > chance + 0.6


def _pearson(a, b):
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def test_agrees_with_tf_keras_vis(shapes_model, shapes_data):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency as VisSaliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    _, _, xt, yt, _ = shapes_data
    x, y = xt[:16], yt[:16]
    score = CategoricalScore(list(y))
    pairs = [
        (GradCAM(shapes_model, layer="conv2")(x, y),
         Gradcam(shapes_model, model_modifier=ReplaceToLinear())(score, x,
                                                                 penultimate_layer="conv2")),
        (GradCAMPlusPlus(shapes_model, layer="conv2")(x, y),
         GradcamPlusPlus(shapes_model, model_modifier=ReplaceToLinear())(
             score, x, penultimate_layer="conv2")),
        (Saliency(shapes_model)(x, y),
         VisSaliency(shapes_model, model_modifier=ReplaceToLinear())(score, x)),
    ]
    for ours, ref in pairs:
        r = _pearson(ours, np.asarray(ref))
        assert np.median(r) > 0.95 and r.min() > 0.8, r
    # the live model was not modified by either library
    assert shapes_model.layers[-1].activation.__name__ == "softmax"


def test_integrated_gradients_completeness(shapes_model, shapes_data):
    _, _, xt, yt, _ = shapes_data
    x, y = xt[:8], yt[:8]
    ig = IntegratedGradients(shapes_model, steps=256, normalize=False)
    attr = ig(x, targets=y)
    logits_model = keras.Model(shapes_model.inputs, shapes_model.get_layer("gmp").output)
    w, b = shapes_model.get_layer("probs").get_weights()

    def score(v):
        return (logits_model.predict(v, verbose=0) @ w + b)[np.arange(len(y)), y]

    expected = score(x) - score(np.zeros_like(x))
    total = attr.reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(total, expected, rtol=0.03, atol=1e-3)
    np.testing.assert_allclose(ig.last_convergence_delta, expected - total, atol=1e-3)
    assert np.any(attr < 0) or np.all(expected > 0)  # raw maps are signed, not abs


def test_targets_meaning(shapes_model, shapes_data):
    _, _, xt, yt, boxes = shapes_data
    x = xt[:12]
    cam = GradCAM(shapes_model)
    pred = shapes_model.predict(x, verbose=0).argmax(1)
    np.testing.assert_array_equal(cam(x), cam(x, targets=pred))
    np.testing.assert_array_equal(cam.last_targets, pred)
    one = cam(x, targets=1)
    np.testing.assert_array_equal(cam.last_targets, np.ones(12))
    np.testing.assert_allclose(one, cam(x, targets=np.ones(12, int)))
    # a map for a class the image is not shows less of the object than the true class's map
    wrong = (yt[:12] + 1) % 3
    inside = np.zeros(x.shape[:3], bool)
    for i, (r0, c0, r1, c1) in enumerate(boxes[:12]):
        inside[i, r0:r1, c0:c1] = True
    raw = GradCAM(shapes_model, normalize=False)
    right_mass = (raw(x, yt[:12]) * inside).sum((1, 2))
    wrong_mass = (raw(x, wrong) * inside).sum((1, 2))
    assert np.mean(right_mass > wrong_mass) >= 0.9


@pytest.fixture(scope="module")
def sigmoid_model():
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6)).astype("float32")
    y = (x[:, 0] - x[:, 1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=30, verbose=0)
    return model, x[:20]


def test_single_sigmoid_unit_target_zero_is_the_negation(sigmoid_model):
    model, x = sigmoid_model
    gi = GradientInput(model, normalize=False)
    pos, neg = gi(x, targets=1), gi(x, targets=0)
    assert pos.shape == (20, 6)
    np.testing.assert_allclose(neg, -pos, rtol=1e-6, atol=1e-7)
    assert gi.task == "binary" and gi.head == "sigmoid"
    # the decisive features carry the attribution, with the signs of the rule x0 - x1
    assert np.mean(np.argsort(-np.abs(pos), axis=1)[:, :2] <= 1) > 0.8
    ig = IntegratedGradients(model, steps=128, normalize=False)
    ig(x, targets=0)
    logit = keras.Model(model.inputs, model.layers[0].output)
    w, b = model.layers[1].get_weights()
    z = (logit.predict(x, verbose=0) @ w + b)[:, 0]
    z0 = (logit.predict(np.zeros_like(x), verbose=0) @ w + b)[:, 0]
    total = ig(x, targets=0).sum(1)
    np.testing.assert_allclose(total, -(z - z0), rtol=0.03, atol=1e-3)
    with pytest.raises(ValueError, match="0 .*or 1"):
        gi(x, targets=2)
    pred = (model.predict(x, verbose=0)[:, 0] > 0.5).astype(int)
    gi(x)
    np.testing.assert_array_equal(gi.last_targets, pred)


def test_model_kinds_and_input_kinds():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    img = rng.random((3, 12, 12, 1)).astype("float32")
    # Sequential built with keras.Input (model.output is undefined in Keras 3)
    seq = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3, name="c"),
                            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    # Sequential built by a first call
    seq2 = keras.Sequential([keras.layers.Conv2D(4, 3, name="c"), keras.layers.Flatten(),
                             keras.layers.Dense(3), keras.layers.Softmax()])
    seq2(img)
    for m in (seq, seq2):
        for cls in ALL:
            maps = cls(m)(img)
            assert maps.shape == (3, 12, 12) and np.isfinite(maps).all()
        assert GradCAM(m).layer_name == "c"
    # uint8 RGB images
    rgb = keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Rescaling(1 / 255),
                            keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(2)])
    u8 = rng.integers(0, 256, (4, 10, 10, 3)).astype(np.uint8)
    assert GradCAM(rgb)(u8).shape == (4, 10, 10)
    np.testing.assert_allclose(Saliency(rgb)(u8), Saliency(rgb)(u8.astype("float32")))
    # Sequences and Conv1D: CAM maps over time
    seqm = keras.Sequential([keras.Input((20, 3)), keras.layers.Conv1D(5, 3, name="c1d"),
                             keras.layers.GlobalAveragePooling1D(),
                             keras.layers.Dense(2, activation="softmax")])
    s = rng.random((4, 20, 3)).astype("float32")
    for cls in ALL:
        assert cls(seqm)(s).shape == (4, 20)
    # regression: one linear unit, target 0 only
    reg = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                            keras.layers.Dense(1)])
    tab = rng.random((6, 5)).astype("float32")
    sal = Saliency(reg)
    assert sal.task == "regression" and sal(tab).shape == (6, 5)
    with pytest.raises(ValueError, match="0 \\(the single regression output\\)"):
        sal(tab, targets=1)


def test_nested_backbone_layer_and_multi_output():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b_conv1")(inp)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="b_conv2")(h)
    backbone = keras.Model(inp, h, name="backbone")
    outer_in = keras.Input((16, 16, 3))
    f = keras.layers.GlobalAveragePooling2D()(backbone(outer_in))
    cls_out = keras.layers.Dense(3, activation="softmax", name="cls")(f)
    reg_out = keras.layers.Dense(1, name="size")(f)
    model = keras.Model(outer_in, [cls_out, reg_out])
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype("float32")
    # Grad-CAM on a layer inside the backbone: the "Graph disconnected" case
    for name in ("b_conv1", "backbone/b_conv1"):
        cam = GradCAM(model, layer=name, output="cls")
        assert cam.layer_name == "backbone/b_conv1"
        assert cam(x).shape == (4, 16, 16)
    assert GradCAM(model).layer_name == "backbone/b_conv2"
    by_index = GradCAM(model, output=0)(x)
    np.testing.assert_allclose(by_index, GradCAM(model, output="cls")(x))
    reg = Saliency(model, output="size")
    assert reg.task == "regression" and reg(x).shape == (4, 16, 16)
    acts = Activations(model)(x)
    assert set(acts) == {"backbone/b_conv1", "backbone/b_conv2", "__output__"}
    assert acts["backbone/b_conv2"].shape == (4, 16, 16, 6)
    paths = [i.path for i in list_layers(model)]
    assert "backbone/b_conv2" in paths and "cls" in paths


def test_no_retracing_and_fit_unchanged(shapes_data):
    from conftest import shapes_cnn

    x, y, xt, _, _ = shapes_data
    a, b = shapes_cnn(seed=5), shapes_cnn(seed=6)
    b.set_weights(a.get_weights())
    cams = {}

    class Explain(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "cam" not in cams:
                cams["cam"] = GradCAM(self.model)
                cams["sg"] = SmoothGrad(self.model, num_samples=4)
            cams["cam"](xt[:8])
            cams["sg"](xt[:8])

    keras.utils.set_random_seed(11)
    a.fit(x[:128], y[:128], epochs=3, batch_size=32, shuffle=False, verbose=0,
          callbacks=[Explain()])
    keras.utils.set_random_seed(11)
    b.fit(x[:128], y[:128], epochs=3, batch_size=32, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert cams["cam"].trace_count == 1 and cams["sg"].trace_count == 1
    cams["cam"](xt[:5])  # a new shape traces once more, then never again
    cams["cam"](xt[:5])
    assert cams["cam"].trace_count == 2
    assert a.layers[-1].activation.__name__ == "softmax"


class BatchSpy(keras.layers.Layer):
    """Records the largest batch that reaches it (at trace time)."""

    largest = 0

    def call(self, x):
        BatchSpy.largest = max(BatchSpy.largest, int(x.shape[0] or 0))
        return x


def test_memory_is_bounded_by_batch_size():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), BatchSpy(), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).random((32, 8, 8, 3)).astype("float32")
    for make in (lambda: IntegratedGradients(model, steps=64, batch_size=128),
                 lambda: SmoothGrad(model, num_samples=64, batch_size=128),
                 lambda: ScoreCAM(model, batch_size=64)):
        BatchSpy.largest = 0
        make()(x)
        assert 0 < BatchSpy.largest <= 128, BatchSpy.largest
    # small batches still go through in few, large chunks (not one copy at a time)
    BatchSpy.largest = 0
    IntegratedGradients(model, steps=64, batch_size=256)(x[:4])
    assert BatchSpy.largest == 256


def test_constant_and_nan_maps():
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, name="c"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    x = np.ones((2, 6, 6, 1), "float32")
    for cls in ALL:
        maps = cls(model)(x)
        assert np.all(maps == 0), cls.__name__
    # a diverged model: NaN maps stay NaN (never silently zero), so callers can report them
    weights = [np.ones_like(w) for w in model.get_weights()]
    weights[-2][0, 0] = np.nan
    model.set_weights(weights)
    for cls in (GradCAM, Saliency):
        assert np.isnan(cls(model)(x)).all()


def test_configuration_errors(shapes_model):
    x = np.zeros((2, 24, 24, 3), "float32")
    with pytest.raises(ValueError, match=r"unknown layer 'nope'.*conv1.*conv2"):
        GradCAM(shapes_model, layer="nope")
    with pytest.raises(ValueError, match=r"'probs' has no spatial output.*conv1"):
        GradCAM(shapes_model, layer="probs")
    with pytest.raises(ValueError, match=r"out of range; valid targets are 0..2"):
        Saliency(shapes_model)(x, targets=3)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        Saliency(shapes_model)(x, targets=[0, 1, 2])
    with pytest.raises(ValueError, match=r"takes batches of shape \(None, 24, 24, 3\).*\(2, 28"):
        Saliency(shapes_model)(np.zeros((2, 28, 28, 3)))
    with pytest.raises(ValueError, match="output index 2 is out of range"):
        Saliency(shapes_model, output=2)
    with pytest.raises(ValueError, match="batch_size"):
        Saliency(shapes_model, batch_size=0)
    with pytest.raises(ValueError, match="num_samples"):
        SmoothGrad(shapes_model, num_samples=0)
    with pytest.raises(ValueError, match="steps"):
        IntegratedGradients(shapes_model, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        IntegratedGradients(shapes_model, baseline=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no layer with spatial axes"):
        GradCAM(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="has not been built"):
        Saliency(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="unknown layer"):
        Activations(shapes_model, layers=["conv9"])
    assert tf.executing_eagerly()


def test_subclassed_model_is_explained_as_a_whole():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(3, 3, name="conv")
            self.flat = keras.layers.Flatten()
            self.dense = keras.layers.Dense(2, activation="softmax")

        def call(self, x):
            return self.dense(self.flat(self.conv(x)))

    net = Net()
    x = np.random.default_rng(0).random((3, 8, 8, 1)).astype("float32")
    net(x)
    sal = Saliency(net)
    assert sal(x).shape == (3, 8, 8)
    assert sal.head is None  # the softmax inside call() cannot be removed, and is not guessed
    with pytest.raises(ValueError, match="no layer with spatial axes"):
        GradCAM(net)


@pytest.mark.parametrize("case", ["channels_last", "axis_1", "no_scale_no_center",
                                  "mixed_float16"])
def test_graph_tap_batch_norm_equals_keras(case):
    """GraphTap runs an inference BatchNormalization as one scale and offset per channel (for
    tracing speed): its outputs and input gradients must be Keras's own, with trained-looking
    statistics, on any axis, without scale or centre, and under mixed precision."""
    from keras_audit.explain._graph import GraphTap

    policy = keras.config.dtype_policy()
    if case == "mixed_float16":
        keras.config.set_dtype_policy("mixed_float16")
    try:
        kw = {"axis": 1} if case == "axis_1" else {}
        if case == "no_scale_no_center":
            kw.update(scale=False, center=False)
        inp = keras.Input((6, 5, 4))
        h = keras.layers.Conv2D(4, 3, padding="same")(inp)
        h = keras.layers.BatchNormalization(**kw)(h)
        h = keras.layers.ReLU()(h)
        out = keras.layers.Dense(3, dtype="float32")(keras.layers.Flatten()(h))
        model = keras.Model(inp, out)
    finally:
        keras.config.set_dtype_policy(policy)
    bn = model.layers[2]
    rng = np.random.default_rng(0)
    n = bn.moving_mean.shape[0]
    bn.moving_mean.assign(rng.normal(0, 0.5, n))
    bn.moving_variance.assign(rng.uniform(0.2, 3.0, n))
    if bn.scale:
        bn.gamma.assign(rng.uniform(0.5, 2.0, n))
    if bn.center:
        bn.beta.assign(rng.normal(0, 0.5, n))
    x = tf.constant(rng.normal(size=(3, 6, 5, 4)).astype(np.float32))
    tap = GraphTap(model)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, cap = tap.run(x, capture=[bn.name], linear=False)
        theirs = model(x, training=False)
    tol = 1e-2 if case == "mixed_float16" else 1e-5
    assert cap[bn.name].dtype == bn.compute_dtype
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tape.gradient(ours, x).numpy(), tape.gradient(theirs, x).numpy(),
                               rtol=tol, atol=tol)
