"""Every ratio issue 4 asks of the post-training audit, in one command.

    .venv/bin/python benchmarks/bench_audit.py [--reps 3]

Runs, one after the other in fresh processes (so neither warms the other's caches):

- ``bench_audit_pruning.py``: the global pruning sweep (10 levels) against 10 compiled forward
  passes (target <= 1.1x) and against cloning + compiling per level (target >= 2x faster);
- ``bench_audit_explainers.py --kernel``: LIME image with 1000 samples against one
  ``model.predict`` of 1000 images (target <= 1.0x) and against lime's defaults (>= 15x
  faster); tabular SHAP through ``audit.shap_values`` against shap given ``model.predict``
  (>= 20x faster) and against a compiled forward pass over the same rows (<= 4x).

Each script measures its pairs alternately in one run and prints the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Run both audit benchmarks and exit non-zero if either fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement")
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    runs = [
        [str(HERE / "bench_audit_pruning.py"), "--reps", str(args.reps)],
        [str(HERE / "bench_audit_explainers.py"), "--reps", str(args.reps), "--kernel"],
    ]
    status = 0
    for cmd in runs:
        print(f"== {Path(cmd[0]).name}", flush=True)
        status |= subprocess.call([sys.executable, *cmd], env=env)
    sys.exit(status)


if __name__ == "__main__":
    main()
