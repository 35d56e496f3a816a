"""The corruption sweep against 40 compiled forward passes, PGD-10 against 10 forward+backward
passes, on the reference CNN and N images (medians of interleaved repetitions).

- ``forward x40``: 40 passes of a traced ``CompiledForward`` over the N images (the floor of
  8 corruptions x 5 severities);
- ``robustness``: ``audit.robustness`` with ``stability=False`` (cold: the module's cache of
  compiled sweeps cleared first, so the call traces its 8 functions; repeat: a second call on
  the same model, which reuses them; warm: the compiled sweep alone), and with
  ``stability=True`` (32 samples, cold);
- ``fwd+bwd x10``: 10 passes of a compiled gradient of the scores with respect to the input;
- ``PGD-10``: ``audit.adversarial`` at 8/255 (cold: the module's cache of compiled attacks
  cleared first, so the call traces its attack; repeat: a second call on the same model, which
  reuses the compiled attack; warm: the attack alone, then the attacked forward pass).

    .venv/bin/python benchmarks/bench_robustness.py [--reps 3] [--n 1000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _reference import reference_cnn  # noqa: E402

from keras_audit.audit import adversarial_analysis, robustness_analysis  # noqa: E402
from keras_audit.audit.adversarial_analysis import _Setup, adversarial  # noqa: E402
from keras_audit.audit.corruptions import IMAGE_CORRUPTIONS, corrupter_for  # noqa: E402
from keras_audit.audit.robustness_analysis import _Sweep, robustness  # noqa: E402
from keras_audit.explain.forward import CompiledForward  # noqa: E402

SEVERITIES = (1, 2, 3, 4, 5)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=args.n)
    model = reference_cnn(compiled=True)
    forward = CompiledForward(model, batch_size=256)
    forward(x[:2])
    sweep = _Sweep(model, corrupter_for(x, "image"), 256, forward)
    setup = _Setup(model, x, y, 10, 256, None, 0, None, forward)

    @tf.function(input_signature=[tf.TensorSpec((None, 32, 32, 3), tf.float32)])
    def grad(xb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            total = tf.reduce_sum(model(xb, training=False))
        return tape.gradient(total, xb)

    def forward40():
        for _ in range(40):
            forward(x)

    def fwd_bwd10():
        for _ in range(10):
            for i in range(0, len(x), 256):
                grad(tf.constant(x[i:i + 256])).numpy()

    def sweep_warm():
        forward(x)  # the clean pass robustness() makes
        for name in IMAGE_CORRUPTIONS:
            sweep(x, name, SEVERITIES, 0)

    runs = {
        "forward x40": forward40,
        "robustness cold (stability=False)": lambda: (robustness_analysis._CACHE.clear(),
                                                      robustness(model, x, y,
                                                                 severities=SEVERITIES,
                                                                 stability=False,
                                                                 forward=forward)),
        "robustness repeat call (stability=False)": lambda: robustness(
            model, x, y, severities=SEVERITIES, stability=False, forward=forward),
        "robustness warm (stability=False)": sweep_warm,
        "robustness cold (stability=True, 32)": lambda: (robustness_analysis._CACHE.clear(),
                                                         robustness(model, x, y,
                                                                    severities=SEVERITIES,
                                                                    forward=forward)),
        "fwd+bwd x10": fwd_bwd10,
        "PGD-10 cold": lambda: (adversarial_analysis._CACHE.clear(),
                                adversarial(model, x, y, epsilons=(8 / 255,), steps=10,
                                            forward=forward)),
        "PGD-10 repeat call": lambda: adversarial(model, x, y, epsilons=(8 / 255,), steps=10,
                                                  forward=forward),
        "PGD-10 warm": lambda: forward(setup.run("pgd", 8 / 255)),
    }
    for fn in runs.values():  # trace everything once
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.reps):
        for k, fn in runs.items():
            times[k].append(timed(fn))
    med = {k: float(np.median(v)) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:40s} {v:7.2f} s")
    base, limit = med["forward x40"], med["fwd+bwd x10"]
    for k in ("robustness cold (stability=False)", "robustness repeat call (stability=False)",
              "robustness warm (stability=False)",
              "robustness cold (stability=True, 32)"):
        print(f"ratio {k:40s} / forward x40 = {med[k] / base:.2f}  (target <= 1.2)")
    for k in ("PGD-10 cold", "PGD-10 repeat call", "PGD-10 warm"):
        print(f"ratio {k:40s} / fwd+bwd x10 = {med[k] / limit:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
