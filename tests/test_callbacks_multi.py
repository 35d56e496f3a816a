"""Models with several inputs (image + vector, two images) or several outputs (class head +
regression head): which input is explained and how the pictures say it, validation data as a
list, tuple, dict or tf.data of (dict, y), labels as Keras takes them, and output=."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from _callbacks_models import (  # noqa: E402
    images,
    labels,
    multi_input,
    multi_input_x,
    multi_output,
    multi_output_y,
)
from _tb import read_events  # noqa: E402

from keras_audit import render  # noqa: E402
from keras_audit.callbacks import (  # noqa: E402
    FilterCallback,
    GradCAMCallback,
    SaliencyCallback,
    select_samples,
)
from keras_audit.explain import GradCAM  # noqa: E402


def _fit(model, x, y, callbacks, epochs=1):
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=callbacks)


@pytest.fixture(scope="module")
def val():
    return multi_input_x(24, seed=1), labels(24)


@pytest.mark.parametrize("form", ["list", "tuple", "dict", "tf_data_dict", "tf_data_tuple"])
def test_every_form_of_several_inputs_gives_the_same_samples(val, form):
    (img, vec), y = val
    model = multi_input()
    data = {
        "list": ([img, vec], y),
        "tuple": ((img, vec), y),
        "dict": ({"vec": vec, "image": img}, y),
        "tf_data_dict": tf.data.Dataset.from_tensor_slices(({"image": img, "vec": vec}, y))
        .batch(5),
        "tf_data_tuple": tf.data.Dataset.from_tensor_slices(((img, vec), y)).batch(5),
    }[form]
    s = select_samples(data, 6, model)
    ref = select_samples(([img, vec], y), 6, model)
    np.testing.assert_array_equal(s.index, ref.index)
    np.testing.assert_array_equal(s.inputs[0], img[s.index])
    np.testing.assert_array_equal(s.inputs[1], vec[s.index])
    assert s.names == ("image", "vec")
    assert np.bincount(s.y, minlength=3).tolist() == [2, 2, 2]


def test_wrong_inputs_name_the_model_inputs(val):
    (img, vec), y = val
    model = multi_input()
    with pytest.raises(ValueError, match=r"2 inputs \['image', 'vec'\].*list/tuple.*dict"):
        select_samples((img, y), 4, model)
    with pytest.raises(ValueError, match=r"missing: \['vec'\]"):
        select_samples(({"image": img}, y), 4, model)


def test_the_image_input_is_explained_and_named(tmp_path, val):
    model = multi_input()
    cam = GradCAMCallback(val, str(tmp_path / "cam"), num_samples=4, strict=True)
    sal = SaliencyCallback(val, str(tmp_path / "sal"), num_samples=4, strict=True)
    _fit(model, multi_input_x(48), labels(48), [cam, sal])
    for cb, tag in ((cam, "gradcam/conv"), (sal, "saliency/vanilla")):
        events = read_events(str(tmp_path / ("cam" if cb is cam else "sal")))
        assert set(events["images"]) == {tag}
        assert [(v.input_name, v.kind) for v in cb.views] == [("image", "image")]
        (_, picture, _), = events["images"][tag]
        maps = cb.explainer(cb.samples.feed, cb.samples.y)
        maps = maps[0] if isinstance(maps, list) else maps  # saliency: one map per input
        assert maps.shape == (4, 16, 16)
        captions = cb.captions(model.predict(cb.samples.feed, verbose=0))
        expected = render.explanation_grid(cb.samples.inputs[0], maps, captions=captions,
                                           title="input: image", **cb.grid_options)
        np.testing.assert_array_equal(picture, expected)
    # no AUCs on several inputs (the engine's DeletionInsertion feeds one); nothing else
    assert set(read_events(str(tmp_path / "cam"))["scalars"]) == set()


def test_two_image_inputs_get_one_tag_each(tmp_path):
    keras.utils.set_random_seed(0)
    a, b = keras.Input((16, 16, 3), name="left"), keras.Input((16, 16, 3), name="right")
    h = keras.layers.Concatenate()([a, b])
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model([a, b], keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    x = {"left": images(24, seed=1), "right": images(24, seed=2)}
    cb = SaliencyCallback((x, labels(24)), str(tmp_path), num_samples=3, strict=True)
    _fit(model, x, labels(24), [cb])
    assert set(read_events(str(tmp_path))["images"]) == {"saliency/vanilla/left",
                                                         "saliency/vanilla/right"}


def test_techniques_that_cannot_take_several_inputs_say_why(tmp_path, val):
    model = multi_input()
    for cb, match in (
        (FilterCallback(str(tmp_path), mode="maximize"),
         r"mode='maximize'.*optimises one input image.*2 inputs"),
        (GradCAMCallback(val, str(tmp_path), metrics=True),
         r"metrics=True.*several inputs"),
    ):
        with pytest.raises(ValueError, match=match):
            _fit(model, multi_input_x(48), labels(48), [cb])
        assert int(model.optimizer.iterations.numpy()) == 0


# -- several outputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["dict", "list", "tf_data"])
def test_labels_as_keras_takes_them_balance_by_the_class_head(form):
    model = multi_output()
    x, y = images(24, seed=1), multi_output_y(24)
    data = {"dict": (x, y), "list": (x, [y["cls"], y["size"]]),
            "tf_data": tf.data.Dataset.from_tensor_slices((x, y)).batch(7)}[form]
    for output in (None, "cls", 0):
        s = select_samples(data, 6, model, output=output)
        np.testing.assert_array_equal(s.y, y["cls"][s.index])
        assert np.bincount(s.y).tolist() == [2, 2, 2]
    # the regression head's targets are not classes: no balance, no true class in captions
    assert select_samples(data, 6, model, output="size").y is None


def test_output_picks_what_is_explained_and_captioned(tmp_path):
    model = multi_output()
    x, y = images(24, seed=1), multi_output_y(24)
    cls = GradCAMCallback((x, y), str(tmp_path / "cls"), num_samples=4, output="cls")
    size = GradCAMCallback((x, y), str(tmp_path / "size"), num_samples=4, output=1)
    _fit(model, images(48), multi_output_y(48), [cls, size])
    for cb, out in ((cls, "cls"), (size, "size")):
        np.testing.assert_allclose(cb.explainer(cb.samples.x),
                                   GradCAM(model, output=out)(cb.samples.x), atol=1e-6)
        probs = model.predict(cb.samples.x, verbose=0)[0 if out == "cls" else 1]
        np.testing.assert_allclose(cb.predictions(0), probs, atol=1e-5)
    assert cls.explainer.task == "classification" and size.explainer.task == "regression"
    assert set(read_events(str(tmp_path / "cls"))["images"]) == {"gradcam/conv"}


@pytest.mark.parametrize("output, labels_, match", [
    ("nope", None, r"unknown output 'nope'.*\['cls', 'size'\]"),
    (2, None, r"out of range.*2 output"),
    (None, "bad_dict", r"keys \['a', 'b'\].*'cls'"),
    (None, "short_list", r"list of 3 arrays.*2 outputs"),
])
def test_bad_outputs_and_labels_raise_before_the_first_batch(tmp_path, output, labels_, match):
    model = multi_output()
    x, y = images(24, seed=1), multi_output_y(24)
    if labels_ == "bad_dict":
        y = {"a": y["cls"], "b": y["size"]}
    elif labels_ == "short_list":
        y = [y["cls"], y["size"], y["cls"]]
    cb = GradCAMCallback((x, y), str(tmp_path), num_samples=4, output=output)
    with pytest.raises(ValueError, match=match):
        _fit(model, images(48), multi_output_y(48), [cb])
    assert int(model.optimizer.iterations.numpy()) == 0
