"""`make demo`: train a small CNN with explanations logged to TensorBoard, then audit it.

1. Trains a small CNN on scikit-learn's digits (8x8, upscaled to 32x32) with
   ``keras_audit.callbacks.AuditCallback``: Grad-CAM, saliency, activation maps and filters of a
   fixed set of validation digits, the evaluation (confusion matrix, per-class scores, PR
   curves, mistakes) and the embeddings (Projector) are logged to TensorBoard every epoch,
   under ``runs/``.
2. Saves the model (``runs/digits_cnn.keras``) and the held-out test digits
   (``runs/digits_test.npz``), plus a model card (``runs/digits_card.yaml``).
3. Audits the saved model through the command line, as a user would::

       keras-audit report runs/digits_cnn.keras --data runs/digits_test.npz \\
           --out runs/report --card runs/digits_card.yaml

4. Prints the TensorBoard command and the report's path.

Runs offline, in about two minutes on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# before TensorFlow loads: no cuInit error on a machine without a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence the C++ lines TensorFlow prints while it loads ("All log messages before
    absl::InitializeLog()", "Could not find cuda drivers"), which no setting turns off.

    Only file descriptor 2 is redirected, and only during the import; Python's own errors are
    printed after it is restored.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with quiet_native_stderr():
    import keras  # noqa: E402
    import tensorflow  # noqa: E402,F401  (loads its native libraries here, quietly)
import numpy as np  # noqa: E402

from keras_audit.callbacks import AuditCallback  # noqa: E402
from keras_audit.datasets import load_digits_images  # noqa: E402

RUNS = Path("runs")
LOG_DIR = RUNS / "digits_cnn"
MODEL = RUNS / "digits_cnn.keras"
DATA = RUNS / "digits_test.npz"
CARD = RUNS / "digits_card.yaml"
REPORT = RUNS / "report"
CLASS_NAMES = [str(d) for d in range(10)]

CARD_TEXT = """\
owners: [keras_audit demo]
version: "1.0"
licence: Apache-2.0
description: >-
  A three-layer CNN that reads handwritten digits (scikit-learn's 8x8 digits upscaled to
  32x32 pixels) and returns a probability per digit.
intended_use: >-
  A demonstration of keras_audit: training-time explanations in TensorBoard and a
  post-training compliance report. Not for reading real handwriting.
out_of_scope_uses:
  - Any decision about a person.
  - Digits scanned at another resolution or from another population of writers.
limitations:
  - 1797 digits from 43 writers (UCI optical recognition data set), 8x8 pixels.
  - The test set holds 300 digits, so per-class recalls rest on about 30 samples each.
risks: >-
  Digits that look alike (1 and 7, 3 and 8, 5 and 9) are the likely confusions; read the
  per-class recalls and the misclassified gallery.
"""


def build_cnn(input_shape=(32, 32, 3), n_classes: int = 10) -> keras.Model:
    """The demo's small digits CNN (Sequential, built with keras.Input, ends in softmax)."""
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


def digits_splits(seed: int = 0):
    """The digits, shuffled once (seeded) into train (1197), validation (300) and test (300)."""
    x, y = load_digits_images(32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1197], y[:1197]), (x[1197:1497], y[1197:1497]), (x[1497:], y[1497:])


def demo_callbacks(log_dir: str, validation: tuple[np.ndarray, np.ndarray]
                   ) -> list[keras.callbacks.Callback]:
    """The demo's callbacks: Keras's TensorBoard (losses) and the AuditCallback it logs with
    (``benchmarks/bench_event_size.py`` measures what this set writes per epoch)."""
    return [
        keras.callbacks.TensorBoard(log_dir),
        AuditCallback(validation, log_dir, class_names=CLASS_NAMES,
                      include=("gradcam", "saliency", "activations", "filters", "evaluation",
                               "embeddings"),
                      options={"gradcam": {"num_samples": 12}, "saliency": {"num_samples": 12},
                               # 8 channels and 8 mistakes keep the event files near
                               # 355 KB per epoch: 14.4 MB for 40 epochs (du -b, measured;
                               # 17.7 MB before photo-like pictures were JPEG)
                               "activations": {"max_channels": 8},
                               "evaluation": {"mistakes": 8},
                               "embeddings": {"layer": "gap", "num_samples": 300}}),
    ]


def keras_audit_command() -> list[str]:
    """The installed ``keras-audit`` script beside this Python, else ``python -m``."""
    script = Path(sys.executable).parent / "keras-audit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_audit.cli"]


def main() -> int:
    """Train with explanations logged, save, audit through the command, print where to look."""
    t0 = time.perf_counter()
    for path in (LOG_DIR, REPORT):  # this demo's own outputs only
        shutil.rmtree(path, ignore_errors=True)
    RUNS.mkdir(exist_ok=True)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = digits_splits()

    model = build_cnn()
    callbacks = demo_callbacks(str(LOG_DIR), (x_val, y_val))
    print(f"training on {len(x_train)} digits, logging explanations to {LOG_DIR}/ ...")
    model.fit(x_train, y_train, epochs=40, batch_size=64, validation_data=(x_val, y_val),
              callbacks=callbacks, verbose=2)
    t_train = time.perf_counter() - t0

    model.save(MODEL)
    np.savez(DATA, x=x_test, y=y_test, class_names=np.array(CLASS_NAMES))
    CARD.write_text(CARD_TEXT, encoding="utf-8")

    cmd = [*keras_audit_command(), "report", str(MODEL), "--data", str(DATA),
           "--out", str(REPORT), "--card", str(CARD)]
    print("\n$ keras-audit " + " ".join(cmd[-8:]))
    t1 = time.perf_counter()
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        print(f"keras-audit failed with exit status {done.returncode}", file=sys.stderr)
        return done.returncode
    t_audit = time.perf_counter() - t1

    print(f"\ntraining {t_train:.0f} s, audit {t_audit:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s")
    tensorboard = Path(sys.executable).parent / "tensorboard"
    print(f"TensorBoard:  {tensorboard if tensorboard.exists() else 'tensorboard'} --logdir "
          f"{RUNS} --samples_per_plugin images=0   (or: make tensorboard)")
    print(f"Report:       {(REPORT / 'report.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
