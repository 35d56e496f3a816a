"""What the benchmarks share: the reference CNN (32x32x3 images, 10 classes), the compiled
forward+backward limit, and interleaved timing."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


def reference_cnn(compiled: bool = False) -> keras.Model:
    """The reference CNN (about 66k parameters): four 3x3 convolutions ``conv0``..``conv3``
    with max pooling after every second one, global average pooling ``gap`` and a softmax head
    ``probs``. Functional, so tf-keras-vis can run on it. Seeded: every call gives the same
    weights. ``compiled=True`` compiles it with Adam and sparse cross-entropy (accuracy)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = inp
    for i, f in enumerate((32, 32, 64, 64)):
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(h)
        if i % 2:
            h = keras.layers.MaxPooling2D(name=f"pool{i}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out)
    if compiled:
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def input_gradient_limit(model: keras.Model, x: np.ndarray) -> Callable[[], None]:
    """The physical limit of a gradient method: one compiled forward+backward pass of the summed
    scores to the input ``x``, as a no-argument job (traced on its first call)."""
    xt = tf.constant(x)

    @tf.function
    def limit_pass(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            s = tf.reduce_sum(model(v, training=False))
        return tape.gradient(s, v)

    return lambda: limit_pass(xt).numpy()


def interleaved_medians(jobs: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds per job: every job run once untimed (tracing excluded for everyone), then
    ``reps`` rounds that run each job in turn, so machine noise falls on all of them alike."""
    for fn in jobs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(reps):
        for k, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}
