"""LRP's speed against the physical limit: one compiled forward+backward pass to the input.

LRP is one forward pass and one backward pass whose layer gradients are replaced by the rules,
so the epsilon rule should cost about the limit (target: at most 1.3x). The rules that split
positive and negative parts (gamma, alpha-beta, z-plus) and the composites run extra
forward passes with modified kernels, and are listed for comparison. Medians of interleaved
repetitions after a warm-up call (tracing excluded).

    .venv/bin/python benchmarks/bench_lrp.py [--reps 9] [--batch 128] [--all]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _reference import input_gradient_limit, interleaved_medians, reference_cnn  # noqa: E402

from keras_audit.explain import LRP, GradientInput  # noqa: E402

TARGET = 1.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--all", action="store_true", help="also time every rule and composite")
    args = ap.parse_args()
    model = reference_cnn(compiled=False)
    x = np.random.default_rng(0).random((args.batch, 32, 32, 3)).astype("float32")
    targets = np.arange(args.batch) % 10
    limit = input_gradient_limit(model, x)

    ours = {"lrp epsilon": LRP(model, rule="epsilon"),
            "gradient_input": GradientInput(model)}
    if args.all:
        for rule in ("zero", "gamma", "alpha_beta", "z_plus"):
            ours[f"lrp {rule}"] = LRP(model, rule=rule)
        for comp in ("epsilon_plus_flat", "epsilon_gamma_box"):
            ours[f"lrp {comp}"] = LRP(model, composite=comp)
    jobs = {"limit": limit}
    for name, exp in ours.items():
        jobs[name] = (lambda e: lambda: e(x, targets))(exp)
    med = interleaved_medians(jobs, args.reps)
    print(f"batch {args.batch} of 32x32x3, {args.reps} interleaved reps, medians; "
          f"limit = 1 compiled fwd+bwd = {med['limit'] * 1e3:.1f} ms")
    print(f"{'method':28s} {'ms':>8s} {'/ limit':>9s}")
    for name in ours:
        print(f"{name:28s} {med[name] * 1e3:8.1f} {med[name] / med['limit']:9.2f}")
    ratio = med["lrp epsilon"] / med["limit"]
    print(f"LRP (epsilon) / limit = {ratio:.2f} (target <= {TARGET}): "
          f"{'met' if ratio <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
