"""The reference workload the benchmarks share: a CNN on 32x32x3 images, 10 classes."""

from __future__ import annotations

import keras


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
