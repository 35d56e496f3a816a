"""Small models and data for the SHAP, LIME and tabular tests (trained in seconds on CPU)."""

from __future__ import annotations

import keras
import numpy as np

from keras_audit.datasets import make_shapes

#: the feature that alone decides the label in ``planted_rows``
PLANTED = 3


def breast_cancer():
    """scikit-learn's breast cancer data standardised: ``(x float32 (569, 30), y, names)``."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    return x, data.target.astype(np.int64), [str(n) for n in data.feature_names]


def planted_rows(n: int = 800, features: int = 8, seed: int = 0):
    """Gaussian rows whose label is ``x[:, PLANTED] > 0`` and nothing else."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    return x, (x[:, PLANTED] > 0).astype(np.int64)


def mlp(n_features: int, n_out: int = 2, activation: str = "softmax", seed: int = 0):
    """A Sequential MLP (Keras 3 Sequential on purpose: shap needs a functional graph of it)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(n_out, activation=activation),
    ])
    loss = {"softmax": "sparse_categorical_crossentropy", "sigmoid": "binary_crossentropy"}
    model.compile("adam", loss.get(activation, "mse"), metrics=["accuracy"] if
                  activation in loss else None)
    return model


def trained_mlp(x, y, epochs: int = 20, **kwargs):
    """``mlp`` fitted on ``(x, y)``."""
    model = mlp(x.shape[1], **kwargs)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def shapes32(n: int = 600, channels: int = 3, seed: int = 0):
    """32x32 images of one 8x8 square (class = colour, or stripes for grayscale), with boxes."""
    return make_shapes(n=n, size=32, object_size=8, channels=channels,
                       n_classes=3, seed=seed)


def cnn(input_shape=(32, 32, 3), n_classes: int = 3, pool: str = "max", seed: int = 0):
    """A tiny Sequential CNN; ``pool="max"`` ends in GlobalMaxPooling (DeepExplainer has no
    rule for it), ``"avg"`` in GlobalAveragePooling."""
    keras.utils.set_random_seed(seed)
    gp = keras.layers.GlobalMaxPooling2D() if pool == "max" else \
        keras.layers.GlobalAveragePooling2D()
    model = keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        gp,
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def box_masks(boxes: np.ndarray, size: int) -> np.ndarray:
    """``(N, size, size)`` bool masks of the objects' boxes."""
    masks = np.zeros((len(boxes), size, size), bool)
    for i, (r0, c0, r1, c1) in enumerate(boxes):
        masks[i, r0:r1, c0:c1] = True
    return masks
