"""One table of tiny models, one per kind of model people train, shared by the explain tests.

Each ``Case`` builds its model once per session (``build_case``) and knows its batch and what
every explainer family must return on it: the maps' shapes, or the ``ValueError`` it must raise
(a regex naming the technique's reason). As captum's test config does, a new explainer or a
new model kind gets the whole battery by adding one row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

N = 4          # samples per batch
S = 16         # image side
T = 20         # tokens per text sample
VOCAB = 30


@dataclass(frozen=True)
class Case:
    """A model kind.

    Attributes:
        name: the test id.
        build: makes the model (tiny, random or briefly trained).
        batch: makes the batch the explainers are called on (array, list or dict).
        grad: the gradient methods' map shape per sample, or a list (one per input).
        cam: the CAM methods' map shape, or an error regex when they must refuse the model.
        scorecam: ScoreCAM's, when it differs from ``cam``.
        cam_layer: the default CAM layer's path, when the case checks it.
        zero_maps_ok: methods for which an all-zero map is a correct answer on this model.
        ig_steps: Integrated Gradients steps that reach completeness within 5% on this model.
    """

    name: str
    build: Callable[[], keras.Model]
    batch: Callable[[], object]
    grad: tuple | list | str
    cam: tuple | str
    scorecam: tuple | str | None = None
    cam_layer: str | None = None
    zero_maps_ok: tuple = ()
    ig_steps: int = 128


def _rng(seed=0):
    return np.random.default_rng(seed)


def _images(channels=3, seed=0):
    return _rng(seed).random((N, S, S, channels)).astype("float32")


def _conv_head(h, n=3, name="probs"):
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.layers.Dense(n, activation="softmax", name=name)(h)


def sequential():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((S, S, 3)), keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                                    name="conv"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])


def functional():
    keras.utils.set_random_seed(1)
    inp = keras.Input((S, S, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(h)
    return keras.Model(inp, _conv_head(h))


def nested():
    keras.utils.set_random_seed(2)
    inp = keras.Input((S, S, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b_conv1")(inp)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="b_conv2")(h)
    backbone = keras.Model(inp, h, name="backbone")
    outer = keras.Input((S, S, 3))
    return keras.Model(outer, _conv_head(backbone(outer)))


def multi_input():
    keras.utils.set_random_seed(3)
    img = keras.Input((S, S, 3), name="image")
    vec = keras.Input((5,), name="vec")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(img)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Concatenate()([h, keras.layers.Dense(4, activation="tanh")(vec)])
    return keras.Model([img, vec], keras.layers.Dense(3, activation="softmax")(h))


def multi_input_batch():
    return [_images(), _rng(1).normal(size=(N, 5)).astype("float32")]


def multi_output():
    keras.utils.set_random_seed(4)
    inp = keras.Input((S, S, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    f = keras.layers.GlobalAveragePooling2D()(h)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(f)
    size = keras.layers.Dense(1, name="size")(f)
    return keras.Model(inp, [cls, size])


def _text(seed, recurrent):
    """Token ids -> Embedding -> Conv1D or LSTM; trained so that token 7 means class 1."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((T,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(VOCAB, 8, mask_zero=recurrent, name="embedding")(inp)
    if recurrent:
        h = keras.layers.LSTM(8, return_sequences=True, name="lstm")(h)
        h = keras.layers.GlobalAveragePooling1D()(h)
    else:
        h = keras.layers.Conv1D(8, 3, activation="relu", name="conv1d")(h)  # length T - 2
        h = keras.layers.GlobalMaxPooling1D()(h)
    logits = keras.layers.Dense(2, name="logits")(h)
    model = keras.Model(inp, keras.layers.Activation("softmax", name="probs")(logits))
    x, y = text_data(400, seed)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4 if recurrent else 3, batch_size=32, verbose=0)
    return model


def text_data(n=N, seed=0):
    """Token ids in 1..VOCAB-1 without 7; class 1 samples get token 7 at 2 random places."""
    rng = _rng(seed + 10)
    x = rng.integers(1, VOCAB, (n, T)).astype("int32")
    x[x == 7] = 8
    y = np.arange(n) % 2
    for i in np.flatnonzero(y):
        x[i, rng.choice(T, 2, replace=False)] = 7
    return x, y


def dict_input():
    keras.utils.set_random_seed(5)
    inp = keras.Input((S, S, 3), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    return keras.Model({"image": inp}, _conv_head(h))


def uint8_input():
    keras.utils.set_random_seed(6)
    inp = keras.Input((S, S, 3), dtype="uint8")
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(h)
    return keras.Model(inp, _conv_head(h))


def mixed_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(7)
        inp = keras.Input((S, S, 3))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
        return keras.Model(inp, _conv_head(h))
    finally:
        keras.mixed_precision.set_global_policy(previous)


class _Net(keras.Model):
    def __init__(self):
        super().__init__(name="net")
        self.conv = keras.layers.Conv2D(3, 3, activation="relu", name="conv2d_3")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(2, activation="softmax")

    def call(self, x):
        return self.dense(self.pool(self.conv(x)))


def subclassed():
    keras.utils.set_random_seed(8)
    net = _Net()
    net(_images())
    return net


def grayscale():
    keras.utils.set_random_seed(9)
    inp = keras.Input((S, S))
    h = keras.layers.Reshape((S, S, 1))(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(h)
    return keras.Model(inp, _conv_head(h))


def grayscale_mlp():
    keras.utils.set_random_seed(10)
    return keras.Sequential([keras.Input((S, S)), keras.layers.Flatten(),
                             keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


def float_sequence():
    keras.utils.set_random_seed(11)
    inp = keras.Input((T, 3))
    h = keras.layers.Conv1D(5, 3, activation="relu", name="c1d")(inp)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))


def sigmoid():
    keras.utils.set_random_seed(12)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(1, activation="sigmoid")])


def regression():
    keras.utils.set_random_seed(13)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"),
                             keras.layers.Dense(1)])


NO_CAM = "no layer with spatial axes"
IMG = (S, S)

CASES = [
    Case("sequential", sequential, _images, IMG, IMG, cam_layer="conv"),
    Case("functional", functional, _images, IMG, IMG, cam_layer="conv2"),
    Case("nested_backbone", nested, _images, IMG, IMG, cam_layer="backbone/b_conv2"),
    Case("multi_input", multi_input, multi_input_batch, [IMG, (5,)], IMG, cam_layer="conv"),
    Case("multi_output", multi_output, _images, IMG, IMG, cam_layer="conv"),
    Case("tokens_conv1d", functools.partial(_text, 14, False), lambda: text_data()[0],
         (T,), (T,), cam_layer="conv1d"),
    # Score-CAM weights the LSTM's signed (tanh) outputs by positive probabilities, and its
    # ReLU can leave a whole map at zero: the method's property, not an engine failure. The
    # trained LSTM is sharp along the IG path: 128 steps leave 37% on one sample (the same
    # as a hand-written IG on the rebuilt head, see test_text_attributions), 2048 leave 4%.
    Case("tokens_lstm", functools.partial(_text, 15, True), lambda: text_data()[0],
         (T,), (T,), cam_layer="lstm", zero_maps_ok=("scorecam",), ig_steps=2048),
    Case("dict_input", dict_input, lambda: {"image": _images()}, IMG, IMG, cam_layer="conv"),
    Case("uint8_input", uint8_input,
         lambda: _rng(2).integers(0, 256, (N, S, S, 3)).astype(np.uint8), IMG, IMG,
         cam_layer="conv"),
    Case("mixed_precision", mixed_precision, _images, IMG, IMG, cam_layer="conv"),
    Case("subclassed", subclassed, _images, IMG, "subclassed.*cannot be read"),
    Case("grayscale_hw", grayscale, lambda: _images()[..., 0], IMG, IMG, cam_layer="conv"),
    Case("grayscale_mlp", grayscale_mlp, lambda: _images()[..., 0], IMG, NO_CAM),
    Case("float_sequence", float_sequence, lambda: _rng(3).normal(size=(N, T, 3)).astype(
        "float32"), (T,), (T,), cam_layer="c1d"),
    Case("sigmoid", sigmoid, lambda: _rng(4).normal(size=(N, 6)).astype("float32"), (6,),
         NO_CAM),
    Case("regression", regression, lambda: _rng(5).normal(size=(N, 5)).astype("float32"),
         (5,), NO_CAM),
]
BY_NAME = {c.name: c for c in CASES}


@functools.cache
def build_case(name: str):
    """``(model, batch)`` for a case, built once per session."""
    case = BY_NAME[name]
    return case.build(), case.batch()
