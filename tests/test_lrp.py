"""Layer-wise relevance propagation against its known identities: LRP-0 = Gradient x Input on
ReLU networks, relevance conserved layer by layer, localisation on the shapes data, and its
error cases."""

import keras
import numpy as np
import pytest

from keras_audit.explain import LRP, GradientInput, registry
from keras_audit.explain.lrp import COMPOSITES, RULES


def pointing_game(maps, boxes):
    """Fraction of maps whose maximum falls inside the object's box."""
    n, _, w = maps.shape
    idx = maps.reshape(n, -1).argmax(1)
    r, c = idx // w, idx % w
    return float(np.mean((r >= boxes[:, 0]) & (r < boxes[:, 2])
                         & (c >= boxes[:, 1]) & (c < boxes[:, 3])))


def _dense_net():
    keras.utils.set_random_seed(1)
    inp = keras.Input((10,))
    h = keras.layers.Dense(16, activation="relu", use_bias=False)(inp)
    h = keras.layers.Dropout(0.3)(h)
    h = keras.layers.Dense(8, use_bias=False)(h)
    h = keras.layers.Activation("relu")(h)
    out = keras.layers.Dense(3, activation="softmax", use_bias=False)(h)
    return keras.Model(inp, out)


def _conv_net():
    keras.utils.set_random_seed(2)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu", use_bias=False),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(8, 3, use_bias=False),
        keras.layers.ReLU(),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(4, activation="softmax", use_bias=False),
    ])


def _branchy_net():
    """No biases; a BatchNormalization at its initial statistics (no shift) to fold; Add,
    Concatenate, both poolings and a 1-D input path."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((10, 10, 2))
    a = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(inp)
    a = keras.layers.BatchNormalization(name="bn1")(a)
    a = keras.layers.ReLU(name="r1")(a)
    b = keras.layers.Conv2D(4, 1, activation="relu", use_bias=False, name="c2")(inp)
    h = keras.layers.Add(name="add")([a, b])
    h = keras.layers.Concatenate(name="cat")([h, a])
    h = keras.layers.MaxPooling2D(name="mp")(h)
    h = keras.layers.Conv2D(6, 3, activation="relu", use_bias=False, name="c3")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(3, use_bias=False, name="logits")(h)
    return keras.Model(inp, out)


@pytest.mark.parametrize("build", [_dense_net, _conv_net], ids=["dense", "conv"])
def test_lrp_zero_equals_gradient_times_input(build):
    model = build()
    shape = model.inputs[0].shape[1:]
    x = np.random.default_rng(0).random((6, *shape)).astype("float32")
    lrp = LRP(model, rule="zero", normalize=False)
    ours = lrp(x, targets=[0, 1, 2, 0, 1, 2])
    ref = GradientInput(model, normalize=False)(x, targets=[0, 1, 2, 0, 1, 2])
    assert ours.shape == ((6, 10) if len(shape) == 1 else (6, 12, 12))
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(lrp.last_conservation, 1.0, atol=1e-5)
    lrp(x, targets=1)  # a second call of the same shape does not retrace
    assert lrp.trace_count == 1


def test_relevance_is_conserved_layer_by_layer():
    model = _branchy_net()
    x = np.random.default_rng(0).normal(size=(5, 10, 10, 2)).astype("float32")
    lrp = LRP(model, rule="epsilon", epsilon=1e-9, normalize=False, record_layers=True)
    maps = lrp(x)
    score = model.predict(x, verbose=0)[np.arange(5), lrp.last_targets]
    # the folded convolution is explained under the normalisation's path, c1 is not separate
    assert set(lrp.layer_rules) == {"bn1", "c2", "c3", "logits"}
    rel = lrp.last_layer_relevance
    assert list(rel) == ["bn1", "r1", "c2", "add", "cat", "mp", "c3", "gap", "logits"]
    for path in ("cat", "mp", "c3", "gap", "logits"):  # the chain after the branches
        np.testing.assert_allclose(rel[path], score, rtol=1e-4, err_msg=path)
    # the two branches: the ReLU passes what the folded layer gets; they split the score
    np.testing.assert_allclose(rel["r1"], rel["bn1"], rtol=1e-4)
    np.testing.assert_allclose(rel["bn1"] + rel["c2"], score, rtol=1e-4)
    assert np.all(np.abs(rel["c2"]) > 1e-3 * np.abs(score))
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), score, rtol=1e-4)
    np.testing.assert_allclose(lrp.last_conservation, 1.0, atol=1e-4)


@pytest.mark.parametrize("kw", [{"rule": r} for r in RULES if r != "alpha_beta"]
                         + [{"composite": c} for c in COMPOSITES], ids=str)
def test_every_rule_conserves_relevance_without_biases(kw):
    model = _conv_net()
    x = np.random.default_rng(1).random((4, 12, 12, 3)).astype("float32")
    lrp = LRP(model, normalize=False, **kw)
    maps = lrp(x)
    assert maps.shape == (4, 12, 12) and np.isfinite(maps).all() and np.abs(maps).max() > 0
    np.testing.assert_allclose(lrp.last_conservation, 1.0, atol=1e-3)


def test_composites_give_each_layer_its_rule():
    model = _conv_net()
    x = np.random.default_rng(1).random((3, 12, 12, 3)).astype("float32")
    x[:, 0, 0, :] = 0.0  # a black pixel
    flat = LRP(model, composite="epsilon_plus_flat", normalize=False)
    box = LRP(model, composite="epsilon_gamma_box", low=0.0, high=1.0, normalize=False)
    conv1, conv2, dense = (la.name for la in model.layers if la.weights)
    assert flat.layer_rules == {conv1: "flat", conv2: "z_plus", dense: "epsilon"}
    assert box.layer_rules == {conv1: "box", conv2: "gamma", dense: "epsilon"}
    # the flat rule spreads relevance over the receptive field, black pixels included;
    # the epsilon rule gives a zero input none
    assert np.abs(flat(x)[:, 0, 0]).min() > 0
    assert np.abs(LRP(model, normalize=False)(x)[:, 0, 0]).max() == 0
    # the box rule credits a black pixel through the range it could have taken
    assert np.abs(box(x)[:, 0, 0]).min() > 0


def test_alpha_beta_weights_positive_and_negative_parts():
    model = _dense_net()
    x = np.random.default_rng(2).normal(size=(4, 10)).astype("float32")
    ab = LRP(model, rule="alpha_beta", normalize=False)(x)
    a1 = LRP(model, rule="alpha_beta", alpha=1.0, beta=0.0, normalize=False)(x)
    zp = LRP(model, rule="z_plus", normalize=False)(x)
    np.testing.assert_allclose(a1, zp, rtol=1e-6, atol=1e-7)
    assert not np.allclose(ab, zp)
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        LRP(model, rule="alpha_beta", alpha=2.0, beta=0.5)


def test_lrp_points_at_the_object(shapes_model, shapes_data):
    _, _, xt, yt, boxes = shapes_data
    xt, yt, boxes = xt[:96], yt[:96], boxes[:96]
    maps = LRP(shapes_model, rule="epsilon")(xt, targets=yt)
    assert maps.shape == xt.shape[:3] and maps.dtype == np.float32
    assert np.all((maps >= 0) & (maps <= 1))
    hit = pointing_game(maps, boxes)
    reference = pointing_game(GradientInput(shapes_model)(xt, targets=yt), boxes)
    assert hit >= reference and hit >= 0.85, (hit, reference)


def test_unsupported_layers_name_themselves():
    inp = keras.Input((6, 4))
    h = keras.layers.LSTM(5, name="my_lstm")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    with pytest.raises(ValueError, match="'my_lstm' \\(LSTM\\).*Supported layers"):
        LRP(model)
    tanh = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh",
                                                                   name="squash"),
                             keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="'squash'.*'tanh'"):
        LRP(tanh)
    ln = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization(name="ln"),
                           keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="'ln' \\(LayerNormalization\\)"):
        LRP(ln)
    with pytest.raises(ValueError, match="unknown LRP rule 'w2'.*'epsilon'"):
        LRP(tanh, rule="w2")
    with pytest.raises(ValueError, match="unknown LRP composite"):
        LRP(tanh, composite="epsilon_plus")


def test_lrp_is_in_the_registry_and_the_sanity_check(shapes_data):
    from keras_audit.audit import sanity

    assert registry.get("lrp") is LRP and registry.family("lrp") == "relevance"
    assert registry.names("relevance") == ["lrp"]
    model = _conv_net()
    x = np.random.default_rng(4).random((6, 12, 12, 3)).astype("float32")
    table = sanity(model, x, methods=("lrp",), max_layers=2)
    assert list(table["method"].unique()) == ["lrp"] and len(table) == 3
    # maps follow the live weights: randomising the head changes them
    assert table.spearman.iloc[0] == 1.0 and table.spearman.iloc[-1] < 0.99
    assert np.isfinite(table.spearman).all()


def _biased_net(bn_after_relu=False):
    keras.utils.set_random_seed(5)
    init = keras.initializers.RandomNormal(stddev=0.3)
    layers = [keras.Input((10, 10, 3)),
              keras.layers.Conv2D(6, 3, activation="relu", bias_initializer=init)]
    if bn_after_relu:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.Conv2D(6, 3, activation="relu", bias_initializer=init),
               keras.layers.GlobalMaxPooling2D(),
               keras.layers.Dense(3, bias_initializer=init)]
    return keras.Sequential(layers)


@pytest.mark.parametrize("kw", [{"rule": r} for r in RULES[1:]]
                         + [{"composite": c} for c in COMPOSITES], ids=str)
def test_reading_the_relu_output_changes_nothing(kw):
    model = _biased_net()
    x = np.random.default_rng(5).random((4, 10, 10, 3)).astype("float32")
    fast = LRP(model, normalize=False, **kw)
    exact = LRP(model, normalize=False, **kw)
    assert fast._relu_shortcut
    exact._exact = True  # the rules on pre-activations and signed inputs, as defined
    ref = exact(x)
    np.testing.assert_allclose(fast(x), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    # a normalisation after the ReLU maps 0 elsewhere: the shortcut is off there
    assert not LRP(_biased_net(bn_after_relu=True))._relu_shortcut


def test_batch_normalization_is_folded_into_the_convolution():
    keras.utils.set_random_seed(6)
    rng = np.random.default_rng(6)
    conv = keras.layers.Conv2D(4, 3, name="conv")
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Sequential([keras.Input((8, 8, 2)), conv, bn, keras.layers.ReLU(),
                              keras.layers.Flatten(), keras.layers.Dense(2, name="out")])
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4) * 0.1,
                    rng.uniform(0.5, 2, 4)])
    gamma, beta, mean, var = bn.get_weights()
    scale = gamma / np.sqrt(var + bn.epsilon)
    kernel, bias = conv.get_weights()
    folded = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3),
                               keras.layers.ReLU(), keras.layers.Flatten(),
                               keras.layers.Dense(2)])
    folded.set_weights([kernel * scale, (bias - mean) * scale + beta,
                        *model.layers[-1].get_weights()])
    x = rng.random((3, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
    ours = LRP(model, normalize=False)
    assert set(ours.layer_rules) == {"bn", "out"}
    np.testing.assert_allclose(ours(x, 1), LRP(folded, normalize=False)(x, 1), rtol=1e-4,
                               atol=1e-6)


def test_saliency_callback_logs_lrp_maps(tmp_path):
    """``SaliencyCallback(method="lrp")``: the LRP maps of the fixed samples in TensorBoard,
    read back with its own reader, with the same pixels the engine's LRP gives."""
    from _callbacks_data import shapes, tiny_cnn
    from _tb import read_events

    from keras_audit.callbacks import SaliencyCallback

    x, y, xv, yv = shapes(n=60)
    model = tiny_cnn()
    cb = SaliencyCallback((xv, yv), str(tmp_path), method="lrp", num_samples=4)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    events = read_events(str(tmp_path))
    tags = [t for t in events["images"] if "lrp" in t]
    assert tags, list(events["images"])
    steps = [step for step, _, _ in events["images"][tags[0]]]
    assert steps == [0, 1]
    picture = events["images"][tags[0]][-1][1]
    assert picture.ndim == 3 and picture.shape[0] > 50 and picture.std() > 5
    assert cb.trace_counts().get(cb.tag, 0) <= 1  # one trace for both epochs
    maps = LRP(model)(cb.samples.x, cb.samples.y)
    assert maps.shape == cb.samples.x.shape[:3] and np.isfinite(maps).all()
