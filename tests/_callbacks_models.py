"""Tiny models, one per kind of model people train, and their data, for the callback tests.

Each ``Kind`` builds a compiled model and makes ``(x, y)`` for training and validation in the
forms Keras takes for that model (one array, a list or dict of inputs, a list or dict of
labels), and knows the exact image tags ``AuditCallback`` writes for it with its defaults (or
the ``ValueError`` it must raise before the first batch). Models are 16x16 images with a few
filters, or 12-token texts, so the whole table runs in about a minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

N = 48          # training and validation samples
S = 16          # image side
T = 12          # tokens per text sample
VOCAB = 20
VOCABULARY = [f"w{i}" for i in range(VOCAB)]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def images(n: int = N, channels: int = 3, seed: int = 0) -> np.ndarray:
    return rng(seed).random((n, S, S, channels)).astype("float32")


def labels(n: int = N, classes: int = 3) -> np.ndarray:
    return (np.arange(n) % classes).astype("int64")


def _head(h, n: int = 3, name: str = "probs"):
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.layers.Dense(n, activation="softmax", name=name)(h)


def _conv(h, filters: int = 4, name: str = "conv"):
    return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(h)


def _compile(model: keras.Model, loss="sparse_categorical_crossentropy") -> keras.Model:
    model.compile(keras.optimizers.Adam(0.01), loss)
    return model


def sequential():
    keras.utils.set_random_seed(0)
    return _compile(keras.Sequential([
        keras.Input((S, S, 3)), keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                                    name="conv"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")]))


def functional():
    keras.utils.set_random_seed(1)
    inp = keras.Input((S, S, 3))
    return _compile(keras.Model(inp, _head(_conv(_conv(inp, name="conv1"), 6, "conv2"))))


def nested():
    keras.utils.set_random_seed(2)
    inp = keras.Input((S, S, 3))
    backbone = keras.Model(inp, _conv(_conv(inp, name="b_conv1"), 6, "b_conv2"),
                           name="backbone")
    outer = keras.Input((S, S, 3))
    return _compile(keras.Model(outer, _head(backbone(outer))))


def multi_input():
    keras.utils.set_random_seed(3)
    img = keras.Input((S, S, 3), name="image")
    vec = keras.Input((5,), name="vec")
    h = keras.layers.GlobalAveragePooling2D()(_conv(img))
    h = keras.layers.Concatenate()([h, keras.layers.Dense(4, activation="tanh")(vec)])
    return _compile(keras.Model([img, vec], keras.layers.Dense(3, activation="softmax",
                                                               name="probs")(h)))


def multi_input_x(n: int = N, seed: int = 0) -> list[np.ndarray]:
    return [images(n, seed=seed), rng(seed + 1).normal(size=(n, 5)).astype("float32")]


def multi_output():
    keras.utils.set_random_seed(4)
    inp = keras.Input((S, S, 3))
    f = keras.layers.GlobalAveragePooling2D()(_conv(inp))
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(f)
    size = keras.layers.Dense(1, name="size")(f)
    model = keras.Model(inp, [cls, size])
    model.compile(keras.optimizers.Adam(0.01),
                  {"cls": "sparse_categorical_crossentropy", "size": "mse"})
    return model


def multi_output_y(n: int = N) -> dict[str, np.ndarray]:
    return {"cls": labels(n), "size": rng(7).random((n, 1)).astype("float32")}


def text(recurrent: bool):
    """Token ids -> Embedding -> Conv1D (valid: length T - 2) or LSTM -> 2 classes."""
    keras.utils.set_random_seed(14 + recurrent)
    inp = keras.Input((T,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(VOCAB, 8, mask_zero=recurrent, name="embedding")(inp)
    if recurrent:
        h = keras.layers.LSTM(6, return_sequences=True, name="lstm")(h)
        h = keras.layers.GlobalAveragePooling1D()(h)
    else:
        h = keras.layers.Conv1D(6, 3, activation="relu", name="conv1d")(h)
        h = keras.layers.GlobalMaxPooling1D()(h)
    return _compile(keras.Model(inp, keras.layers.Dense(2, activation="softmax",
                                                        name="probs")(h)))


def text_x(n: int = N, seed: int = 0, pad: bool = False) -> np.ndarray:
    """Token ids 1..VOCAB-1 (with ``pad``: the last 3 tokens of every other sample are 0)."""
    x = rng(seed + 10).integers(1, VOCAB, (n, T)).astype("int32")
    if pad:
        x[::2, -3:] = 0
    return x


def dict_input():
    keras.utils.set_random_seed(5)
    inp = keras.Input((S, S, 3), name="image")
    return _compile(keras.Model({"image": inp}, _head(_conv(inp))))


def uint8_input():
    keras.utils.set_random_seed(6)
    inp = keras.Input((S, S, 3), dtype="uint8", name="pixels")
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    return _compile(keras.Model(inp, _head(_conv(h))))


def uint8_x(n: int = N, seed: int = 0) -> np.ndarray:
    return rng(seed + 2).integers(0, 256, (n, S, S, 3)).astype(np.uint8)


def mixed_precision():
    """A model built under mixed_float16; the global policy is restored afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(7)
        inp = keras.Input((S, S, 3))
        h = keras.layers.GlobalAveragePooling2D()(_conv(inp))
        out = keras.layers.Dense(3, name="logits")(h)
        out = keras.layers.Activation("softmax", dtype="float32", name="probs")(out)
        return _compile(keras.Model(inp, out))
    finally:
        keras.mixed_precision.set_global_policy(previous)


class Net(keras.Model):
    """A subclassed CNN: its inner layers cannot be read (no functional graph)."""

    def __init__(self):
        super().__init__(name="net")
        self.conv = keras.layers.Conv2D(3, 3, activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.dense(self.pool(self.conv(x)))


def subclassed():
    keras.utils.set_random_seed(8)
    net = Net()
    net(images(2))
    return _compile(net)


def grayscale():
    keras.utils.set_random_seed(9)
    inp = keras.Input((S, S))
    h = keras.layers.Reshape((S, S, 1))(inp)
    return _compile(keras.Model(inp, _head(_conv(h))))


@dataclass(frozen=True)
class Kind:
    """A model kind for the callback table.

    Attributes:
        name: the test id.
        build: makes the compiled model (fresh each call: training changes it).
        x: makes ``n`` inputs in the form ``fit`` takes.
        y: makes ``n`` labels in the form ``fit`` takes.
        tags: the image tags ``AuditCallback`` writes with its defaults.
        skipped: the default techniques it leaves out on this model.
        options: extra ``AuditCallback`` options (``vocabulary=``, ...).
    """

    name: str
    build: Callable[[], keras.Model]
    x: Callable[[int], object]
    y: Callable[[int], object] = labels
    tags: frozenset = field(default_factory=frozenset)
    skipped: frozenset = field(default_factory=frozenset)
    options: dict = field(default_factory=dict)


def _tags(*tags):
    return frozenset(tags)


KINDS = [
    Kind("sequential", sequential, images,
         tags=_tags("gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv")),
    Kind("functional", functional, images,
         tags=_tags("gradcam/conv2", "saliency/vanilla", "activations/conv1",
                    "activations/conv2", "filters/conv1")),
    Kind("nested_backbone", nested, images,
         tags=_tags("gradcam/backbone/b_conv2", "saliency/vanilla",
                    "activations/backbone/b_conv1", "activations/backbone/b_conv2",
                    "filters/backbone/b_conv1")),
    Kind("multi_input", multi_input, multi_input_x,
         tags=_tags("gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv")),
    Kind("multi_output", multi_output, images, y=multi_output_y,
         tags=_tags("gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv")),
    Kind("tokens_conv1d", lambda: text(False), text_x, y=lambda n=N: labels(n, 2),
         tags=_tags("gradcam/conv1d", "saliency/vanilla"),
         skipped=frozenset({"activations", "filters"}), options={"vocabulary": VOCABULARY}),
    Kind("tokens_lstm", lambda: text(True), lambda n=N, seed=0: text_x(n, seed, pad=True),
         y=lambda n=N: labels(n, 2), tags=_tags("gradcam/lstm", "saliency/vanilla"),
         skipped=frozenset({"activations", "filters"}), options={"vocabulary": VOCABULARY}),
    Kind("dict_input", dict_input, lambda n=N, seed=0: {"image": images(n, seed=seed)},
         tags=_tags("gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv")),
    Kind("uint8_input", uint8_input, uint8_x,
         tags=_tags("gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv")),
    Kind("mixed_precision", mixed_precision, images,
         tags=_tags("gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv")),
    Kind("subclassed", subclassed, images, tags=_tags("saliency/vanilla"),
         skipped=frozenset({"gradcam", "activations", "filters"})),
    Kind("grayscale_hw", grayscale, lambda n=N, seed=0: images(n, seed=seed)[..., 0],
         tags=_tags("gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv")),
]
BY_NAME = {k.name: k for k in KINDS}
