"""`make demo`: train a small CNN on scikit-learn's digits (upscaled) and explain it.

Writes labelled PNG grids of every explanation method for a few validation images into
demo_output/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from keras_audit.datasets import load_digits_images  # noqa: E402
from keras_audit.explain import METHODS  # noqa: E402

OUT = Path("demo_output")


def build_cnn(input_shape=(32, 32, 3), n_classes=10) -> keras.Model:
    """A small digits CNN (Sequential, built with keras.Input)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(name="pool2"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(n_classes, activation="softmax", name="probs"),
    ], name="digits_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    """Train, explain 8 validation digits with every method, write PNG grids."""
    t0 = time.time()
    x, y = load_digits_images(32)
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]
    model = build_cnn()
    model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=2)
    print(f"validation accuracy: {model.evaluate(x_val, y_val, verbose=0)[1]:.3f}")
    OUT.mkdir(exist_ok=True)
    sample = x_val[:8]
    for name in ("gradcam", "gradcam++", "scorecam", "vanilla", "smoothgrad",
                 "integrated_gradients", "gradient_input"):
        maps = METHODS[name](model)(sample)
        tiles = [np.concatenate([s[..., 0], m], axis=1) for s, m in zip(sample, maps)]
        grid = (np.concatenate(tiles, axis=0) * 255).astype(np.uint8)
        img = Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3))
        ImageDraw.Draw(img).text((2, 2), name, fill=255)
        img.save(OUT / f"{name}.png")
    print(f"wrote {len(list(OUT.glob('*.png')))} grids to {OUT}/ in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
