"""The global pruning sweep against 10 compiled forward passes and against the naive way.

Three ways to do the same work (a 10-level global-magnitude sweep, 0.0..0.9, on N images), each
timed as the median of interleaved repetitions:

- ``forward x10``: 10 passes of a compiled forward function that is already traced (the floor);
- ``pruning_impact``: the audit's sweep (masked kernels assigned in place, one compiled forward
  pass, weights restored). "warm" reuses a traced ``CompiledForward`` (``forward=``); "cold"
  builds and traces its own inside the call;
- ``naive``: per level ``clone_model`` + ``set_weights`` (masked) + ``compile`` + ``evaluate``.

The naive sweep is checked to give the same accuracies, so the comparison is like for like.

    .venv/bin/python benchmarks/bench_audit_pruning.py [--reps 3] [--n 1000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _reference import reference_cnn  # noqa: E402

from keras_audit.audit._weights import weights_hash  # noqa: E402
from keras_audit.audit.pruning import prunable_kernels, pruning_impact  # noqa: E402
from keras_audit.explain.forward import CompiledForward  # noqa: E402

LEVELS = tuple(round(0.1 * i, 1) for i in range(10))


def naive_sweep(model: keras.Model, x, y, levels=LEVELS) -> list[float]:
    """Per level: clone, set the globally magnitude-pruned weights, compile, evaluate."""
    weights = model.get_weights()
    kernel_ids = {id(k.variable) for k in prunable_kernels(model)}
    is_kernel = [id(v) in kernel_ids for v in model.weights]
    flat = np.concatenate([np.abs(w).ravel() for w, k in zip(weights, is_kernel) if k])
    order = np.argsort(flat, kind="stable")
    accs = []
    for s in levels:
        keep = np.ones(flat.size, bool)
        keep[order[:int(np.floor(s * flat.size + 0.5))]] = False
        masked, off = [], 0
        for w, k in zip(weights, is_kernel):
            if k:
                masked.append(np.where(keep[off:off + w.size].reshape(w.shape), w, 0))
                off += w.size
            else:
                masked.append(w)
        clone = keras.models.clone_model(model)
        clone.set_weights(masked)
        clone.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        accs.append(clone.evaluate(x, y, batch_size=256, verbose=0)[1])
    return accs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((args.n, 32, 32, 3)).astype("float32")
    model = reference_cnn(compiled=True)
    y = model.predict(x, verbose=0).argmax(1)  # labels the dense model gets right
    y[: args.n // 4] = rng.integers(0, 10, args.n // 4)  # and some it may not
    before = weights_hash(model)
    fwd = CompiledForward(model, batch_size=256)
    fwd(x)  # trace once

    def forward10():
        for _ in range(10):
            fwd(x)

    runs = {
        "forward x10": forward10,
        "pruning_impact (warm)": lambda: pruning_impact(model, x, y, LEVELS, forward=fwd),
        "pruning_impact (cold)": lambda: pruning_impact(model, x, y, LEVELS),
        "naive clone+compile": lambda: naive_sweep(model, x, y),
    }
    # check first that the naive sweep computes what pruning_impact computes
    ours = pruning_impact(model, x, y, LEVELS, forward=fwd).accuracy.to_numpy()
    theirs = np.array(naive_sweep(model, x, y))
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.reps):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"global magnitude sweep, {len(LEVELS)} levels, {args.n} images of 32x32x3, "
          f"{model.count_params()} parameters, median of {args.reps} interleaved reps")
    for name, t in med.items():
        print(f"  {name:24s} {t * 1000:8.1f} ms")
    print(f"accuracy agreement with the naive sweep: max |diff| = "
          f"{np.abs(ours - theirs).max():.2e}")
    print(f"weights restored bit-exactly: {weights_hash(model) == before}")
    base = med["forward x10"]
    print(f"pruning_impact (warm) / forward x10  = {med['pruning_impact (warm)'] / base:.2f}x "
          "(target <= 1.1)")
    print(f"pruning_impact (cold) / forward x10  = {med['pruning_impact (cold)'] / base:.2f}x "
          "(includes tracing its forward pass)")
    print(f"naive / pruning_impact (warm)        = "
          f"{med['naive clone+compile'] / med['pruning_impact (warm)']:.2f}x faster (target >= 2)")
    print(f"naive / pruning_impact (cold)        = "
          f"{med['naive clone+compile'] / med['pruning_impact (cold)']:.2f}x faster")
    print(f"naive / forward x10                  = {med['naive clone+compile'] / base:.2f}x")


if __name__ == "__main__":
    main()
