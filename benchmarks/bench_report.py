"""Wall time of a full audit (every check) of the demo CNN on 300 test digits. Target: <= 90 s.

Trains the demo's CNN exactly as ``examples/demo.py`` does (or loads ``--model``), then times
``audit.run`` with the default settings and every check, writing the report to a temporary
folder. The first run pays for tracing the compiled functions, as a user's one-off audit does;
``--reps`` more runs show the warm cost. The per-step times come from the report itself.

    .venv/bin/python benchmarks/bench_report.py [--model runs/digits_cnn.keras] [--reps 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from demo import CLASS_NAMES, build_cnn, digits_splits  # noqa: E402

from keras_audit.audit.report import CHECKS, run  # noqa: E402

TARGET_S = 90.0


def main() -> None:
    """Print the wall time of the first full audit and of ``--reps`` more."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="a saved demo CNN (default: train one as the demo does)")
    parser.add_argument("--reps", type=int, default=1, help="warm repetitions after the first")
    args = parser.parse_args()

    (x_train, y_train), _, (x_test, y_test) = digits_splits()
    if args.model is not None:
        model = keras.saving.load_model(args.model)
    else:
        model = build_cnn()
        model.fit(x_train, y_train, epochs=40, batch_size=64, verbose=0)
    print(f"model {model.name}: {model.count_params()} parameters; audit data {x_test.shape}; "
          f"checks {', '.join(CHECKS)}; {os.cpu_count()} CPU cores")

    times = []
    for rep in range(1 + args.reps):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            report = run(model, x_test, y_test, class_names=CLASS_NAMES, checks=CHECKS,
                         out_dir=out, seed=0)
            times.append(time.perf_counter() - t0)
        steps = report.content["environment"]["timings"]["steps_s"]
        label = "first (cold)" if rep == 0 else f"warm #{rep}"
        print(f"{label:>13}: {times[-1]:6.1f} s   accuracy "
              f"{report.content['performance']['accuracy']:.3f}   steps: "
              + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
    verdict = "OK" if times[0] <= TARGET_S else "OVER TARGET"
    warm = f", warm median {statistics.median(times[1:]):.1f} s" if len(times) > 1 else ""
    print(f"full audit of 300 samples: {times[0]:.1f} s (target <= {TARGET_S:.0f} s: "
          f"{verdict}){warm}")


if __name__ == "__main__":
    main()
