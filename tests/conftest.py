"""Session-wide fixtures: small models trained once and shared by the tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

from keras_audit.datasets import make_shapes  # noqa: E402


def shapes_cnn(input_shape=(24, 24, 3), n_classes=3, seed=0):
    """A small functional CNN that ends in softmax."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.MaxPooling2D(name="pool1")(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalMaxPooling2D(name="gmp")(h)
    out = keras.layers.Dense(n_classes, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="shapes_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="session")
def shapes_data():
    """Coloured squares at known positions: (x_train, y_train, x_test, y_test, boxes_test)."""
    x, y, boxes = make_shapes(n=900, seed=1)
    return x[:700], y[:700], x[700:], y[700:], boxes[700:]


@pytest.fixture(scope="session")
def shapes_model(shapes_data):
    """The shapes CNN trained to high accuracy (shared; tests must not change its weights)."""
    x, y, xt, yt, _ = shapes_data
    model = shapes_cnn()
    model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    acc = model.evaluate(xt, yt, verbose=0)[1]
    assert acc > 0.95, f"fixture model did not train (accuracy {acc:.2f})"
    return model
