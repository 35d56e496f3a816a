"""What AuditCallback's defaults cost on a real backbone: DenseNet121 at 64x64 (weights=None).

A plain fit() and a fit() with ``AuditCallback((x_val, y_val), log_dir)`` (its defaults) run in
two fresh processes, one after the other, on the same data and the same initial weights:
scikit-learn's digits upsampled to 64x64x3 (``--train`` training images, 64 validation images),
batch 32. Each process times its epochs from ``on_train_begin`` (so the callbacks' set-up and
tracing count in epoch 1) to each ``on_epoch_end`` of the last callback (so every callback's
epoch-end work counts); the drain at ``on_train_end`` is reported apart. The audited run then
reads its event files back with TensorBoard's reader.

    .venv/bin/python benchmarks/bench_backbone.py [--epochs 4] [--train 256]

Done-when targets: at most 30 image tags per logged epoch, at most 1 MB of event data per
logged epoch, first epoch at most 1.15x the plain first epoch, later epochs (median of epochs
2-4) at most 1.05x plain.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGETS = {"tags": 30, "bytes": 1_000_000, "first": 1.15, "later": 1.05}


def _run(mode: str, epochs: int, n_train: int, log_dir: str) -> dict:
    """One fit() in this process; epoch times, and what the audit wrote when ``mode=audit``."""
    import keras
    import numpy as np

    from keras_audit.datasets import load_digits_images

    x, y = load_digits_images(64, 3)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[-64:], y[-64:]
    keras.utils.set_random_seed(0)
    model = keras.applications.DenseNet121(weights=None, input_shape=(64, 64, 3), classes=10)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")

    marks: list[float] = []

    class First(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            marks.append(time.perf_counter())

    class Last(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append(time.perf_counter())

        def on_train_end(self, logs=None):
            marks.append(time.perf_counter())

    callbacks: list = [First()]
    audit = None
    if mode == "audit":
        from keras_audit.callbacks import AuditCallback

        audit = AuditCallback((xv, yv), log_dir)
        callbacks.append(audit)
    callbacks.append(Last())
    model.fit(xt, yt, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    out = {"epochs": list(np.diff(marks[:epochs + 1])),
           "drain": marks[epochs + 1] - marks[epochs]}
    if audit is not None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(log_dir, size_guidance={"tensors": 0})
        acc.Reload()
        per_step: dict[int, int] = {}
        for tag in acc.Tags()["tensors"]:
            if acc.SummaryMetadata(tag).plugin_data.plugin_name != "images":
                continue
            for ev in acc.Tensors(tag):
                per_step[ev.step] = per_step.get(ev.step, 0) + 1
        size = sum(os.path.getsize(os.path.join(root, f))
                   for root, _, files in os.walk(log_dir) for f in files)
        out.update(tags_per_epoch=per_step, bytes=size, logged=len(per_step),
                   members={name: {"epoch_end_s": cb.epoch_end_seconds,
                                   "worker_cpu_s": cb.write_seconds}
                            for name, cb in audit.callbacks.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--_child", choices=("plain", "audit"), help=argparse.SUPPRESS)
    parser.add_argument("--_log_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(_run(args._child, args.epochs, args.train, args._log_dir)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("plain", "audit"):  # a fresh process each: neither inherits warm caches
            cmd = [sys.executable, __file__, "--epochs", str(args.epochs), "--train",
                   str(args.train), "--_child", mode, "--_log_dir", os.path.join(tmp, mode)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    plain, audit = results["plain"], results["audit"]
    tags = audit["tags_per_epoch"]
    per_epoch_bytes = audit["bytes"] / max(1, audit["logged"])
    first = audit["epochs"][0] / plain["epochs"][0]
    import numpy as np

    later = float(np.median(audit["epochs"][1:4])) / float(np.median(plain["epochs"][1:4]))
    print(f"DenseNet121 64x64x3 weights=None, {args.train} training images, batch 32, "
          f"{args.epochs} epochs; AuditCallback defaults")
    print(f"plain epochs (s):   {[round(t, 1) for t in plain['epochs']]}  "
          f"train-end {plain['drain']:.1f}")
    print(f"audited epochs (s): {[round(t, 1) for t in audit['epochs']]}  "
          f"train-end drain {audit['drain']:.1f}")
    for name, m in audit["members"].items():
        print(f"  {name:12s} epoch-end s {[round(t, 2) for t in m['epoch_end_s']]}  "
              f"worker cpu s {[round(t, 2) for t in m['worker_cpu_s']]}")
    print(f"image tags per logged epoch: {dict(sorted(tags.items()))} "
          f"(max {max(tags.values())}, target <= {TARGETS['tags']})")
    print(f"event data per logged epoch: {per_epoch_bytes / 1e6:.3f} MB "
          f"(target <= {TARGETS['bytes'] / 1e6:.0f} MB)")
    print(f"first epoch ratio: {first:.3f} (target <= {TARGETS['first']})")
    print(f"later epochs ratio (median of epochs 2-4): {later:.3f} (target <= {TARGETS['later']})")


if __name__ == "__main__":
    main()
