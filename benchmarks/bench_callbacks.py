"""What AuditCallback costs fit(): epoch-time ratio against a plain fit(), and each technique's
own on_epoch_end work.

Reference workload (issue 3): a CNN on 32x32x3 images, 2048 training images, batch 64, 16
samples explained (AuditCallback defaults: Grad-CAM with its deletion/insertion AUCs and
stability, vanilla saliency, activation maps of every conv layer, filter weights, and the
evaluation over the 256 validation images: confusion matrix, per-class scores, PR curves,
mistakes with Grad-CAM, predictions table). Plain and
audited fits alternate on the same model, so drift and machine noise hit both. An epoch's time
runs from one on_epoch_begin to the next (so it includes every on_epoch_end); the last epoch of a
fit ends after on_train_end, when the callbacks' worker has drained. Epoch 0 of every fit is left
out (tracing). Process CPU time per epoch (all threads) is reported too: on a shared machine it
is far steadier than wall time, and it counts the background worker's drawing.

    .venv/bin/python benchmarks/bench_callbacks.py [--reps 5] [--epochs 4]

Targets: epoch-time ratio <= 1.05 and process-CPU ratio <= 1.05; each technique's
on_epoch_end <= 20 ms.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _reference import reference_cnn  # noqa: E402

from keras_audit.callbacks import AuditCallback  # noqa: E402
from keras_audit.datasets import load_digits_images  # noqa: E402


def data():
    """2048 training images (scikit-learn digits at 32x32x3, plus shifted copies) and 256
    validation images."""
    x, y = load_digits_images(32, 3)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    xv, yv = x[:256], y[:256]
    xt, yt = x[256:], y[256:]
    extra = 2048 - len(xt)
    shifted = np.roll(xt[:extra], shift=(2, -2), axis=(1, 2))
    return np.concatenate([xt, shifted]), np.concatenate([yt, yt[:extra]]), xv, yv


class EpochTimer(keras.callbacks.Callback):
    """Wall and process-CPU seconds per epoch, each from its on_epoch_begin to the next one (or
    to on_train_end). CPU time counts every thread of this process (training, the callbacks'
    worker), and is far less disturbed than wall time by other programs on a shared machine."""

    def on_train_begin(self, logs=None):
        self.starts, self.durations, self.cpu = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        now = (time.perf_counter(), time.process_time())
        if self.starts:
            self.durations.append(now[0] - self.starts[-1][0])
            self.cpu.append(now[1] - self.starts[-1][1])
        self.starts.append(now)

    def on_train_end(self, logs=None):
        self.durations.append(time.perf_counter() - self.starts[-1][0])
        self.cpu.append(time.process_time() - self.starts[-1][1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="plain/audited pairs")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per fit (the first is dropped)")
    args = ap.parse_args()
    x, y, xv, yv = data()
    model = reference_cnn(compiled=True)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # warm-up: trace the train step
    plain_epochs, audit_epochs, pair_ratios = [], [], []
    plain_cpu, audit_cpu = [], []
    own: dict[str, list[float]] = {}
    worker: dict[str, list[float]] = {}
    split: dict[str, list[float]] = {}
    traces = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for audited in (False, True) if rep % 2 == 0 else (True, False):
                timer = EpochTimer()
                callbacks = [timer]
                if audited:
                    audit = AuditCallback((xv, yv), os.path.join(tmp, f"run{rep}"))
                    callbacks = [audit, timer]  # the timer last: its on_train_end ends the drain
                model.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0,
                          callbacks=callbacks)
                epochs = timer.durations[1:]
                (audit_epochs if audited else plain_epochs).append(float(np.median(epochs)))
                (audit_cpu if audited else plain_cpu).append(float(np.median(timer.cpu[1:])))
                if audited:
                    for name, cb in audit.callbacks.items():
                        own.setdefault(name, []).extend(cb.epoch_end_seconds[1:])
                        worker.setdefault(name, []).extend(cb.write_seconds[1:])
                    cam = audit.callbacks["gradcam"]
                    shared = audit.session.predict_seconds[1:]  # gradcam logs first: it pays
                    split.setdefault("gradcam: AUC metrics", []).extend(cam.metric_seconds[1:])
                    split.setdefault("gradcam: shared prediction pass", []).extend(shared)
                    split.setdefault("gradcam: the CAM itself and the rest", []).extend(
                        np.subtract(np.subtract(cam.epoch_end_seconds[1:], cam.metric_seconds[1:]),
                                    shared))
                    traces = audit.trace_counts()
            pair_ratios.append(audit_epochs[-1] / plain_epochs[-1])
    plain, audited = float(np.median(plain_epochs)), float(np.median(audit_epochs))
    print(f"workload: CNN on 32x32x3, {len(x)} training images, batch 64, 16 samples; "
          f"{args.reps} alternating pairs of {args.epochs}-epoch fits, epoch 0 dropped")
    print(f"epoch time: plain {plain * 1e3:.0f} ms, with AuditCallback {audited * 1e3:.0f} ms")
    print(f"epoch-time ratio: {audited / plain:.3f} (median of pairs {np.median(pair_ratios):.3f}; "
          f"pairs {', '.join(f'{r:.3f}' for r in pair_ratios)})  target <= 1.05")
    cpu_p, cpu_a = float(np.median(plain_cpu)), float(np.median(audit_cpu))
    print(f"CPU time per epoch (all threads): plain {cpu_p * 1e3:.0f} ms, with AuditCallback "
          f"{cpu_a * 1e3:.0f} ms; ratio {cpu_a / cpu_p:.3f}  target <= 1.05")
    print(f"{'technique':12s} {'on_epoch_end ms':>16s} {'worker CPU ms':>14s}   (medians; target "
          "<= 20 ms on the training thread)")
    for name in own:
        print(f"{name:12s} {np.median(own[name]) * 1e3:16.1f} "
              f"{np.median(worker[name]) * 1e3:14.1f}")
    for name, values in split.items():
        print(f"  {name:38s} {np.median(values) * 1e3:6.1f}")
    total = sum(np.median(v) for v in own.values())
    print(f"{'all':12s} {total * 1e3:16.1f} "
          f"{sum(np.median(v) for v in worker.values()) * 1e3:14.1f}")
    print(f"trace counts after {args.epochs} epochs: {traces}")


if __name__ == "__main__":
    main()
