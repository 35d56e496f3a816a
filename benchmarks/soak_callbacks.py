"""Soak test: AuditCallback over many epochs on tiny data; memory growth and retracing.

Trains a tiny CNN (16x16x3 coloured squares, 128 images, batch 32) for 200 epochs with
AuditCallback defaults (every epoch logged), reading the process's resident memory (VmRSS)
after every epoch. Growth is measured from epoch 10 (caches warm) to the end, after
on_train_end. The trace counts of every compiled computation are taken after the first logged
epoch and at the end: they must not move.

    .venv/bin/python benchmarks/soak_callbacks.py [--epochs 200]

Targets: RSS growth <= 50 MB; no retracing after the first logged epoch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_audit.callbacks import AuditCallback  # noqa: E402
from keras_audit.datasets import make_shapes  # noqa: E402


def rss_mb() -> float:
    """The process's resident set size, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def tiny_cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.MaxPooling2D(name="pool1")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalMaxPooling2D(name="gmp")(h)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


class Probe(keras.callbacks.Callback):
    """RSS after every epoch; the audit's trace counts after its first logged epoch."""

    def __init__(self, audit: AuditCallback) -> None:
        super().__init__()
        self.audit, self.rss, self.first_traces = audit, [], None

    def on_epoch_end(self, epoch, logs=None):
        self.rss.append(rss_mb())
        if self.first_traces is None:
            self.first_traces = self.audit.trace_counts()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=200)
    args = ap.parse_args()
    x, y, _ = make_shapes(n=192, size=16, seed=0)
    model = tiny_cnn()
    with tempfile.TemporaryDirectory() as log_dir:
        audit = AuditCallback((x[128:], y[128:]), log_dir)
        probe = Probe(audit)
        t0 = time.perf_counter()
        model.fit(x[:128], y[:128], batch_size=32, epochs=args.epochs, verbose=0,
                  callbacks=[audit, probe])
        seconds = time.perf_counter() - t0
        end_rss = rss_mb()
        size = sum(os.path.getsize(os.path.join(log_dir, f)) for f in os.listdir(log_dir))
    start = probe.rss[min(10, len(probe.rss) - 1)]
    last_traces = audit.trace_counts()
    logged = {name: len(cb.logged_epochs) for name, cb in audit.callbacks.items()}
    failures = sum(len(cb.failures) for cb in audit.callbacks.values())
    print(f"{args.epochs} epochs in {seconds:.1f} s ({seconds / args.epochs * 1e3:.0f} ms/epoch); "
          f"logged epochs per technique {logged}; logging failures {failures}; "
          f"event files {size / 1e6:.1f} MB")
    print(f"RSS: epoch 10 {start:.1f} MB, last epoch {probe.rss[-1]:.1f} MB, after "
          f"on_train_end {end_rss:.1f} MB; growth {end_rss - start:+.1f} MB  target <= 50 MB")
    slope = np.polyfit(np.arange(10, len(probe.rss)), probe.rss[10:], 1)[0] \
        if len(probe.rss) > 12 else float("nan")
    print(f"RSS trend from epoch 10: {slope * 100:+.2f} MB per 100 epochs")
    print(f"trace counts after the first logged epoch: {probe.first_traces}")
    print(f"trace counts at the end:                   {last_traces}")
    print("retraced after the first logged epoch: "
          f"{'NO' if probe.first_traces == last_traces else 'YES'}")


if __name__ == "__main__":
    main()
