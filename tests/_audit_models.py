"""Tiny models of every kind people train, with the data and labels ``audit.run`` takes.

Each builder returns a ``Case``: the model (trained for a few steps on data it can learn), the
audit inputs ``x`` and labels ``y`` in the format the case is about, and what the report
should say. Images are 16x16, about 64 samples, so one audit with every check takes seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

N = 64
SIDE = 16
T = 20        # tokens per text sample
VOCAB = 30


@dataclass
class Case:
    """One model kind: the model, its audit data, and what the report should say."""

    model: keras.Model
    x: object
    y: object
    explained_input: str | None = None
    kind: str = "image"
    outputs: list[str] = field(default_factory=list)
    run_kwargs: dict = field(default_factory=dict)


def images(seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Two classes a CNN learns in a few steps: a bright square on the left or on the right."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0, 0.2, (n, SIDE, SIDE, 3)).astype(np.float32)
    for i, c in enumerate(y):
        r = rng.integers(2, SIDE - 8)
        col = rng.integers(1, 4) if c == 0 else rng.integers(SIDE - 8, SIDE - 5)
        x[i, r:r + 5, col:col + 5, :] = 0.9
    return x, y.astype(np.int64)


def tokens(seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``(N, T)``: class 1 samples hold token 7 a few times, class 0 never."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(8, VOCAB, (n, T)).astype(np.int32)
    for i in np.flatnonzero(y):
        x[i, rng.choice(T, 4, replace=False)] = 7
    return x, y.astype(np.int64)


def _cnn_layers() -> list:
    return [keras.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="gap")]


def _fit(model: keras.Model, x, y, loss="sparse_categorical_crossentropy", epochs: int = 15):
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model


def sequential() -> Case:
    keras.utils.set_random_seed(0)
    x, y = images()
    model = keras.Sequential([keras.Input((SIDE, SIDE, 3)), *_cnn_layers(),
                              keras.layers.Dense(2, activation="softmax", name="head")])
    return Case(_fit(model, x, y), x, y, run_kwargs={"class_names": {1: "right", 0: "left"}})


def functional() -> Case:
    keras.utils.set_random_seed(0)
    x, y = images()
    inp = keras.Input((SIDE, SIDE, 3), name="image")
    h = inp
    for layer in _cnn_layers():
        h = layer(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(h))
    return Case(_fit(model, x, y), x, y, explained_input="image")


def nested() -> Case:
    keras.utils.set_random_seed(0)
    x, y = images()
    bin_ = keras.Input((SIDE, SIDE, 3))
    h = bin_
    for layer in _cnn_layers()[:2]:
        h = layer(h)
    backbone = keras.Model(bin_, h, name="backbone")
    inp = keras.Input((SIDE, SIDE, 3), name="image")
    h = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(inp))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(h))
    return Case(_fit(model, x, y), x, y, explained_input="image")


def multi_input() -> Case:
    """Image + vector; the label depends on the image only (the vector is a nuisance)."""
    keras.utils.set_random_seed(0)
    x, y = images()
    vec = np.random.default_rng(1).normal(size=(N, 3)).astype(np.float32)
    img_in = keras.Input((SIDE, SIDE, 3), name="image")
    vec_in = keras.Input((3,), name="vector")
    h = img_in
    for layer in _cnn_layers():
        h = layer(h)
    h = keras.layers.Concatenate(name="merge")([h, keras.layers.Dense(2, name="vec_dense")(vec_in)])
    model = keras.Model([img_in, vec_in], keras.layers.Dense(2, activation="softmax",
                                                             name="head")(h))
    return Case(_fit(model, [x, vec], y), [x, vec], y, explained_input="image")


def multi_output() -> Case:
    """A class head and a regression head (the square's row)."""
    keras.utils.set_random_seed(0)
    x, y = images()
    size = x[..., 0].mean(axis=(1, 2), keepdims=False)[:, None].astype(np.float32)
    inp = keras.Input((SIDE, SIDE, 3), name="image")
    h = inp
    for layer in _cnn_layers():
        h = layer(h)
    cls = keras.layers.Dense(2, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(1, name="size")(h)
    model = keras.Model(inp, [cls, reg])
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss={"cls": "sparse_categorical_crossentropy", "size": "mse"})
    model.fit(x, {"cls": y, "size": size}, epochs=15, batch_size=16, verbose=0)
    return Case(model, x, {"cls": y, "size": size}, explained_input="image",
                outputs=["cls", "size"])


def _text(recurrent: bool) -> Case:
    keras.utils.set_random_seed(0)
    x, y = tokens()
    inp = keras.Input((T,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(VOCAB, 8, name="embedding")(inp)
    if recurrent:
        h = keras.layers.LSTM(8, name="lstm")(h)
    else:
        h = keras.layers.Conv1D(8, 3, activation="relu", name="conv1d")(h)
        h = keras.layers.GlobalMaxPooling1D(name="gmp")(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(h))
    return Case(_fit(model, x, y, epochs=20), x, y, explained_input="tokens", kind="sequence")


def text_conv1d() -> Case:
    return _text(recurrent=False)


def text_lstm() -> Case:
    return _text(recurrent=True)


def dict_input() -> Case:
    case = functional()
    case.x = {"image": case.x}
    return case


def uint8_input() -> Case:
    keras.utils.set_random_seed(0)
    x, y = images()
    x8 = np.round(x * 255).astype(np.uint8)
    inp = keras.Input((SIDE, SIDE, 3), dtype="uint8", name="image")
    h = keras.layers.Rescaling(1 / 255, name="rescale")(inp)
    for layer in _cnn_layers():
        h = layer(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(h))
    return Case(_fit(model, x8, y), x8, y, explained_input="image")


def mixed_precision() -> Case:
    """Built and audited under ``mixed_float16``; the caller restores the policy."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    x, y = images()
    inp = keras.Input((SIDE, SIDE, 3), name="image")
    h = inp
    for layer in _cnn_layers():
        h = layer(h)
    out = keras.layers.Dense(2, activation="softmax", dtype="float32", name="head")(h)
    model = keras.Model(inp, out)
    return Case(_fit(model, x, y), x, y, explained_input="image")


class _Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__(name="subclassed")
        self.conv = keras.layers.Conv2D(4, 3, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(2, activation="softmax")

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


def subclassed() -> Case:
    keras.utils.set_random_seed(0)
    x, y = images()
    model = _Subclassed()
    model(x[:1])
    return Case(_fit(model, x, y), x, y, explained_input="input")


#: the table of cases, by test id
CASES: dict[str, Callable[[], Case]] = {
    "sequential": sequential, "functional": functional, "nested": nested,
    "multi_input": multi_input, "multi_output": multi_output, "text_conv1d": text_conv1d,
    "text_lstm": text_lstm, "dict_input": dict_input, "uint8_input": uint8_input,
    "mixed_precision": mixed_precision, "subclassed": subclassed,
}
