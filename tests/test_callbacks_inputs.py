"""Validation data given as a dict of inputs (``{"image": x}``), as NumPy and as tf.data, for a
model whose single input is named "image"; tags read back from the event files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from _callbacks_data import read_events, shapes  # noqa: E402

from keras_audit.callbacks import AuditCallback, GradCAMCallback, select_samples  # noqa: E402

TAGS = {"gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv",
        "evaluation/confusion_matrix", "evaluation/mistakes"}


def _image_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    h = keras.layers.GlobalMaxPooling2D(name="gmp")(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def data():
    return shapes(n=96)


@pytest.mark.parametrize("form", ["numpy", "dataset"])
def test_dict_inputs_are_explained_as_the_single_input(tmp_path, data, form):
    x, y, xv, yv = data
    if form == "numpy":
        validation = ({"image": xv}, yv)
    else:
        validation = tf.data.Dataset.from_tensor_slices(({"image": xv}, yv)).batch(8)
    model = _image_model()
    audit = AuditCallback(validation, str(tmp_path), num_samples=6, metrics=False)
    model.fit({"image": x}, y, epochs=2, batch_size=32, verbose=0, callbacks=[audit])
    events = read_events(str(tmp_path))
    assert set(events["images"]) == TAGS
    assert all([s for s, *_ in recs] == [0, 1] for recs in events["images"].values())
    samples = audit.callbacks["gradcam"].samples
    np.testing.assert_array_equal(samples.x, xv[samples.index])  # the "image" entry itself
    np.testing.assert_array_equal(samples.y, yv[samples.index])
    assert np.bincount(samples.y, minlength=3).tolist() == [2, 2, 2]


def test_the_dict_entry_named_like_the_input_is_taken_and_others_refused(data):
    _, _, xv, yv = data
    model = _image_model()
    chosen = select_samples(({"image": xv, "extra": xv[:, :4]}, yv), 6, model)
    np.testing.assert_array_equal(chosen.x, xv[chosen.index])
    with pytest.raises(ValueError, match=r"\['a', 'b'\].*'image'"):
        select_samples(({"a": xv, "b": xv}, yv), 6, model)


def test_a_dict_dataset_builds_an_unbuilt_sequential_model(tmp_path, data):
    x, y, xv, yv = data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.GlobalMaxPooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    ds = tf.data.Dataset.from_tensor_slices(({"image": xv}, yv)).batch(8)
    cb = GradCAMCallback(ds, str(tmp_path), num_samples=3, metrics=False)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[cb])
    assert set(read_events(str(tmp_path))["images"]) == {"gradcam/conv"}
