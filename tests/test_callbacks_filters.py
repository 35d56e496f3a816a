"""FilterCallback's examples mode (the validation patches that most activate each filter) and
weights mode's choice of readable kernels, read back from the event files."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _tb import read_events  # noqa: E402

from keras_audit.callbacks import FilterCallback  # noqa: E402
from keras_audit.callbacks.filters import crop_patch, rank_examples, receptive_field  # noqa: E402
from keras_audit.explain import list_layers  # noqa: E402

S = 12


def _model(kernels=(3, 3)) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((S, S, 1))
    h = keras.layers.Conv2D(3, kernels[0], activation="relu", name="c1")(inp)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Conv2D(3, kernels[1], activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def spots():
    """Dim noise with one bright pixel per image, inside the border; brightness differs."""
    rng = np.random.default_rng(3)
    n = 10
    x = rng.uniform(0.0, 0.2, (n, S, S, 1)).astype(np.float32)
    where = rng.integers(1, S - 1, (n, 2))
    bright = rng.permutation(np.linspace(0.4, 1.0, n)).astype(np.float32)
    x[np.arange(n), where[:, 0], where[:, 1], 0] = bright
    return x, rng.integers(0, 2, n), where, bright


def _detector(model: keras.Model) -> None:
    """Filter 0 of c1 passes the pixel under its centre: a bright-pixel detector."""
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., 0] = 0.0
    kernel[1, 1, 0, 0] = 1.0
    bias[0] = 0.0
    model.get_layer("c1").set_weights([kernel, bias])


def test_the_top_example_of_a_bright_pixel_detector_is_the_brightest_spot(tmp_path, spots):
    x, y, where, bright = spots
    model = _model()
    _detector(model)
    cb = FilterCallback(str(tmp_path), mode="examples", validation_data=(x, y),
                        max_filters=3, num_examples=3, strict=True)
    model.fit(x, y, epochs=1, batch_size=5, verbose=0, callbacks=[cb])
    order, scores = cb.last_ranking["c1"]
    assert order.shape == scores.shape == (3, 3)
    truth = np.argsort(-bright)[:3]  # the three brightest spots, brightest first
    np.testing.assert_array_equal(cb.images.index[order[0]], truth)
    np.testing.assert_allclose(scores[0], bright[truth], rtol=1e-6)
    # the patch drawn for the top example is centred on the bright pixel
    size, jump, start = receptive_field(list_layers(model), "c1")
    assert (size, jump, start) == ((3, 3), (1, 1), (1.0, 1.0))
    acts = keras.Model(model.inputs, model.get_layer("c1").output)([cb.images.x]).numpy()
    _, _, pos = rank_examples(acts, [0], 1)
    i, (r, c) = order[0, 0], pos[0, 0]
    patch = crop_patch(cb.images.x[i], (start[0] + r * jump[0], start[1] + c * jump[1]), size)
    assert patch.shape == (3, 3, 1) and patch[1, 1, 0] == bright.max()
    events = read_events(str(tmp_path))
    assert {t: [s for s, *_ in r] for t, r in events["images"].items()} == {
        "filters/c1": [0], "filters/c2": [0]}
    assert cb.trace_counts() == {"examples": 1}


def test_receptive_field_composes_kernels_and_strides():
    infos = list_layers(_model())
    assert receptive_field(infos, "pool") == ((4, 4), (2, 2), (1.5, 1.5))
    assert receptive_field(infos, "c2") == ((8, 8), (2, 2), (3.5, 3.5))
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        receptive_field(infos, "nope")


def test_crop_patch_stays_inside_and_takes_the_whole_image_when_the_field_covers_it():
    img = np.arange(36, dtype=np.float32).reshape(6, 6, 1)
    np.testing.assert_array_equal(crop_patch(img, (0, 0), (3, 3)), img[:3, :3])
    np.testing.assert_array_equal(crop_patch(img, (5, 2), (3, 3)), img[3:, 1:4])
    np.testing.assert_array_equal(crop_patch(img, (2, 2), (8, 8)), img)


def test_examples_mode_without_validation_data_is_refused_on_construction():
    with pytest.raises(ValueError, match="mode='examples'.*needs validation_data"):
        FilterCallback("logs", mode="examples")
    with pytest.raises(ValueError, match="'examples'"):
        FilterCallback("logs", mode="nope")


@pytest.mark.parametrize("kernels, tags", [((3, 3), {"filters/c1"}),
                                           ((3, 5), {"filters/c1", "filters/c2"})])
def test_weights_mode_draws_the_first_conv_and_deeper_kernels_of_5x5_or_more(
        tmp_path, spots, kernels, tags):
    x, y, _, _ = spots
    model = _model(kernels)
    model.fit(x, y, epochs=1, batch_size=5, verbose=0,
              callbacks=[FilterCallback(str(tmp_path), strict=True)])
    assert set(read_events(str(tmp_path))["images"]) == tags


def test_a_named_3x3_layer_is_drawn_in_weights_mode(tmp_path, spots):
    x, y, _, _ = spots
    model = _model()
    model.fit(x, y, epochs=1, batch_size=5, verbose=0,
              callbacks=[FilterCallback(str(tmp_path), layers=["c2"], strict=True)])
    assert set(read_events(str(tmp_path))["images"]) == {"filters/c2"}
