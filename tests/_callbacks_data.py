"""Tiny models, data and an event-file reader shared by the callback tests."""

from __future__ import annotations

import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

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


def read_events(log_dir: str) -> dict:
    """Every summary under ``log_dir`` (one run), read by TensorBoard's own reader.

    Returns ``{"images": {tag: [(step, picture uint8 (H, W, 3), (w, h) declared)]},
    "scalars": {tag: [(step, value)]}}``. TF2 writes images and scalars as tensor summaries,
    which ``EventAccumulator`` lists under ``tensors``; the plugin name tells them apart.
    """
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    out: dict = {"images": {}, "scalars": {}}
    for tag in acc.Tags()["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        for ev in acc.Tensors(tag):
            value = tf.make_ndarray(ev.tensor_proto)
            if plugin == "images":
                assert len(value) == 3, f"{tag}: one image per record expected, got {len(value)}"
                picture = np.asarray(Image.open(io.BytesIO(value[2])).convert("RGB"))
                out["images"].setdefault(tag, []).append(
                    (ev.step, picture, (int(value[0]), int(value[1]))))
            elif plugin == "scalars":
                out["scalars"].setdefault(tag, []).append((ev.step, float(value)))
    for tag in acc.Tags()["images"]:  # legacy image records, should there be any
        out["images"].setdefault(tag, []).extend(
            (e.step, None, (e.width, e.height)) for e in acc.Images(tag))
    return out


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]
