"""Tiny models and data shared by the callback tests (the event-file reader is in ``_tb``)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _tb import read_events  # noqa: E402,F401  (re-exported for the callback tests)

from keras_audit.datasets import make_shapes  # noqa: E402

CLASS_NAMES = ["red", "green", "blue"]


def shapes(n: int = 240, size: int = 16, seed: int = 0):
    """(x_train, y_train, x_val, y_val): coloured squares, 3 classes, 3/4 for training."""
    x, y, _ = make_shapes(n=n, size=size, seed=seed)
    cut = 3 * n // 4
    return x[:cut], y[:cut], x[cut:], y[cut:]


def tiny_cnn(size: int = 16, seed: int = 0, nested: bool = False) -> keras.Model:
    """conv1 -> pool -> conv2 -> global max -> softmax(3); ``nested`` puts the convs in a
    sub-model named ``backbone``."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    if nested:
        b_in = keras.Input((size, size, 3))
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(b_in)
        h = keras.layers.MaxPooling2D(name="pool1")(h)
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(h)
        backbone = keras.Model(b_in, h, name="backbone")
        h = backbone(inp)
    else:
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
        h = keras.layers.MaxPooling2D(name="pool1")(h)
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalMaxPooling2D(name="gmp")(h)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="tiny_cnn")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]
