"""Shared data for the gate tests: a tiny, nearly perfect tabular classifier and a two-group
audit set where one group's labels are partly flipped (so that group is measurably worse)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

#: settings that keep a tabular audit to a couple of seconds
GATE_OPTIONS = {"performance": {"n_bootstrap": 200, "latency_repeats": 1}}


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 4 dimensions (float32 x, int64 labels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], np.float32)
    x = centres[y] + rng.normal(0, 0.6, (n, 4)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


def blob_mlp(seed: int = 0) -> keras.Model:
    """A small MLP trained on ``blobs`` to near-perfect accuracy."""
    x, y = blobs(600, seed=10)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(3, activation="softmax", name="probs")],
                             name="blob_mlp")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    return model


def grouped_audit_set(n_per_group: int = 150, flip: float = 0.3, seed: int = 1):
    """``(x, y, site)``: groups "a" and "b"; ``flip`` of group b's labels are shifted by one
    class, so the model is right on about ``1 - flip`` of group b."""
    x, y = blobs(2 * n_per_group, seed=seed)
    site = np.array(["a"] * n_per_group + ["b"] * n_per_group)
    rng = np.random.default_rng(seed + 1)
    b = np.flatnonzero(site == "b")
    flipped = rng.choice(b, int(round(flip * len(b))), replace=False)
    y = y.copy()
    y[flipped] = (y[flipped] + 1) % 3
    return x, y, site
