"""Audits that do not fit in memory: peak RSS and the streamed pass's throughput.

1. Peak RSS of an audit (performance + pruning; with ``--robustness`` also the robustness
   sweep, gaussian_noise and occlusion at severity 3, every level streamed) over 2,000 and
   over 20,000 images of
   64x64x3 float32 read from ``.npz`` shards (1,000 images each, written by this script to a
   temporary folder), each audit in a fresh subprocess (``ru_maxrss``), with its wall time.
   The 20,000 images are 0.98 GB as one float32 array.
2. The streamed performance pass (``streaming.Stream.collect``: the model's outputs and labels
   of every sample) against ``model.predict`` over the same ``tf.data`` pipeline, as the
   median of interleaved repetitions.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 2000 20000] [--reps 5] [--robustness]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SHAPE = (64, 64, 3)
SHARD = 1000
CLASSES = 10

CHILD = """
import json, resource, sys, time
import keras
from keras_audit import audit
from keras_audit.audit import DataSource
model = keras.saving.load_model(sys.argv[1])
src = DataSource.from_path(sys.argv[2], batch_size=256)
checks = ("performance", "pruning") + (("robustness",) if sys.argv[3] == "1" else ())
t0 = time.perf_counter()
report = audit.run(model, src, checks=checks, out_dir=None,
                   options={"performance": {"n_bootstrap": 20, "latency_repeats": 2},
                            "pruning": {"sparsities": (0.0, 0.5, 0.9), "per_layer": False,
                                        "drift": False},
                            "robustness": {"corruptions": ("gaussian_noise", "occlusion"),
                                           "severities": (3,)}})
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"peak_mb": peak, "seconds": seconds,
                  "n": report.content["performance"]["n_samples"],
                  "accuracy": report.content["performance"]["accuracy"],
                  "robustness_n": report.content.get("robustness", {}).get("n_samples")}))
"""


def build_model():
    """A small CNN over 64x64x3 images (random weights: the audit's cost does not depend on
    what it learned)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input(SHAPE)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv1")(inp)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(CLASSES, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def write_shards(folder: Path, n: int) -> str:
    """``n`` random images as uncompressed ``.npz`` shards; returns their glob."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i, lo in enumerate(range(0, n, SHARD)):
        m = min(SHARD, n - lo)
        np.savez(folder / f"part-{i:04d}.npz", x=rng.random((m, *SHAPE), dtype=np.float32),
                 y=rng.integers(0, CLASSES, m))
    return str(folder / "part-*.npz")


def audit_rss(model_path: Path, pattern: str, robust: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-c", CHILD, str(model_path), pattern,
                          "1" if robust else "0"],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def throughput(model, pattern: str, reps: int) -> tuple[float, float, int]:
    """Images per second: the streamed pass and model.predict over the same tf.data pipeline."""
    import tensorflow as tf

    from keras_audit.audit import DataSource
    from keras_audit.audit.streaming import Stream
    from keras_audit.explain.forward import CompiledForward

    src = DataSource.from_path(pattern, batch_size=256)
    ds = src.dataset().prefetch(tf.data.AUTOTUNE)
    forward = CompiledForward(model, batch_size=256)
    stream = Stream(ds)
    raw, _, _ = stream.collect(forward)  # warm-up: traces once
    ref = model.predict(ds, verbose=0)
    np.testing.assert_allclose(raw, ref, atol=1e-5)  # the same work
    ours, theirs = [], []
    for rep in range(reps):  # interleaved, the order alternating so neither runs warmer
        for name in (("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours")):
            t0 = time.perf_counter()
            if name == "ours":
                stream.collect(forward)
            else:
                model.predict(ds, verbose=0)
            (ours if name == "ours" else theirs).append(time.perf_counter() - t0)
    n = src.n
    return n / float(np.median(ours)), n / float(np.median(theirs)), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--robustness", action="store_true",
                        help="add the streamed robustness sweep to the audits")
    args = parser.parse_args()
    what = "performance + pruning 0/0.5/0.9" + (
        " + robustness 2 corruptions x severity 3" if args.robustness else "")
    model = build_model()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        model_path = Path(tmp) / "model.keras"
        model.save(model_path)
        rows = []
        for n in args.sizes:
            pattern = write_shards(Path(tmp) / f"n{n}", n)
            r = audit_rss(model_path, pattern, args.robustness)
            array_mb = n * int(np.prod(SHAPE)) * 4 / 2**20
            rows.append((n, r, array_mb))
            if args.robustness:
                assert r["robustness_n"] == n, r  # every sample was corrupted
            print(f"audit ({what}) over {n:>6} images: peak RSS "
                  f"{r['peak_mb']:7.0f} MB (as one float32 array the images alone are "
                  f"{array_mb:6.0f} MB), {r['seconds']:6.1f} s", flush=True)
        if len(rows) > 1:
            (n0, r0, _), (n1, r1, _) = rows[0], rows[-1]
            print(f"{n1 // n0}x the images: {r1['seconds'] / r0['seconds']:.1f}x the time, "
                  f"{r1['peak_mb'] / r0['peak_mb']:.2f}x the peak RSS")
        ours, theirs, n = throughput(model, write_shards(Path(tmp) / "tp", args.sizes[0]),
                                     args.reps)
        print(f"streamed performance pass over {n} images: {ours:.0f} images/s; model.predict "
              f"on the same tf.data pipeline: {theirs:.0f} images/s; ratio {ours / theirs:.2f} "
              "(target >= 0.9)")


if __name__ == "__main__":
    main()
