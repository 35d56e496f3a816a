"""LIME and SHAP through the audit, against the same libraries driven by ``model.predict``.

Printed side by side (medians of interleaved repetitions; the slow ``model.predict`` runs are
repeated ``--slow-reps`` times):

LIME, one 32x32x3 image, 1000 perturbed samples, the reference CNN of bench_explain.py:

- ``lime_explanations``: the audit (SLIC superpixels, perturbed images built per batch of 256,
  predictions through a compiled forward pass). "warm" reuses a traced ``CompiledForward``
  (``forward=``); "cold" builds and traces its own inside the call;
- ``model.predict x1000``: one ``model.predict`` of 1000 images (target: audit <= 1.0x);
- ``lime defaults``: ``LimeImageExplainer().explain_instance(image, model.predict)`` with lime's
  defaults (``batch_size=10``, quickshift, ``top_labels=5``) (target: audit >= 15x faster).

Tabular SHAP, an MLP on breast cancer (30 features), 20 rows, max_evals 500, ``--background``
rows (default 50, the audit report's default):

- ``shap_values``: the audit (method ``auto`` = shap's Permutation explainer, compiled forward);
- ``shap + model.predict``: the same shap explainer given ``model.predict`` (shap's default
  batch of 10 masks per call) (target: audit >= 20x faster); with ``--kernel`` also
  ``KernelExplainer(model.predict)``;
- ``forward, same rows``: the compiled forward pass over as many rows as shap evaluated (counted),
  in the same batches of 256 (target: audit <= 4x).

    .venv/bin/python benchmarks/bench_audit_explainers.py [--reps 5] [--slow-reps 1] [--kernel]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _reference import reference_cnn  # noqa: E402

from keras_audit.audit.lime_analysis import lime_explanations  # noqa: E402
from keras_audit.audit.shap_analysis import shap_values  # noqa: E402
from keras_audit.explain.forward import CompiledForward  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from _shap_lime_data import breast_cancer, trained_mlp  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(funcs: dict, reps: int) -> dict:
    """Median seconds per function, the functions run in turn ``reps`` times."""
    times = {k: [] for k in funcs}
    for _ in range(reps):
        for k, f in funcs.items():
            times[k].append(timed(f))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_lime(reps: int, slow_reps: int) -> None:
    from lime import lime_image

    model = reference_cnn(compiled=False)
    rng = np.random.default_rng(0)
    x = rng.random((1000, 32, 32, 3), dtype=np.float32)
    image = x[0]
    forward = CompiledForward(model)
    forward(x[:2])
    model.predict(x[:64], verbose=0)  # builds and caches Keras's predict function

    def audit_warm():
        lime_explanations(model, image[None], num_samples=1000, figures=False, forward=forward)

    def audit_cold():
        lime_explanations(model, image[None], num_samples=1000, figures=False)

    def predict():
        model.predict(x, verbose=0)

    def lime_defaults():
        explainer = lime_image.LimeImageExplainer(random_state=0)
        with open(os.devnull, "w") as devnull:  # lime's progress bar
            err, sys.stderr = sys.stderr, devnull
            try:
                explainer.explain_instance(image.astype(np.float64),
                                           lambda z: model.predict(z, verbose=0),
                                           num_samples=1000)
            finally:
                sys.stderr = err

    audit_warm()
    fast = interleaved({"audit_warm": audit_warm, "audit_cold": audit_cold, "predict": predict},
                       reps)
    slow = interleaved({"lime_defaults": lime_defaults}, slow_reps)
    t = {**fast, **slow}
    print("LIME image (32x32x3, 1000 samples, reference CNN)")
    print(f"  lime_explanations (warm forward)   {t['audit_warm'] * 1e3:9.1f} ms")
    print(f"  lime_explanations (cold)           {t['audit_cold'] * 1e3:9.1f} ms")
    print(f"  model.predict x1000                {t['predict'] * 1e3:9.1f} ms")
    print(f"  lime defaults (model.predict, 10)  {t['lime_defaults'] * 1e3:9.1f} ms")
    print(f"  audit / predict x1000: warm {t['audit_warm'] / t['predict']:.2f}x, cold "
          f"{t['audit_cold'] / t['predict']:.2f}x   (target <= 1.0x)")
    print(f"  lime defaults / audit: warm {t['lime_defaults'] / t['audit_warm']:.1f}x, cold "
          f"{t['lime_defaults'] / t['audit_cold']:.1f}x faster   (target >= 15x)")


def bench_shap(reps: int, slow_reps: int, kernel: bool, n_background: int) -> None:
    import shap

    x, y, _ = breast_cancer()
    model = trained_mlp(x, y, epochs=5)
    rows, bg = x[:20], x[100:100 + n_background]
    forward = CompiledForward(model)
    forward(x[:2])
    model.predict(x[:64], verbose=0)

    class Counting(CompiledForward):
        rows = 0

        def __call__(self, batch):
            Counting.rows += len(batch)
            return super().__call__(batch)

    # count the rows shap makes the model evaluate (this also JIT-compiles shap's numba code)
    shap_values(model, rows, bg, max_evals=500, figures=False, forward=Counting(model))
    n_rows = Counting.rows - len(rows) - 1  # less the audit's own two passes over x
    big = np.resize(bg, (n_rows, bg.shape[1]))

    def audit():
        shap_values(model, rows, bg, max_evals=500, figures=False, forward=forward)

    def forward_same_rows():
        forward(big)

    def shap_predict():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.explainers.Permutation(lambda z: model.predict(z, verbose=0),
                                                    shap.maskers.Independent(bg, 100), seed=0)
            explainer(rows, max_evals=500, silent=True)

    def kernel_predict():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.KernelExplainer(lambda z: model.predict(z, verbose=0), bg)
            explainer.shap_values(rows, nsamples=500, silent=True)

    fast = interleaved({"audit": audit, "forward": forward_same_rows}, reps)
    slow_funcs = {"shap_predict": shap_predict}
    if kernel:
        slow_funcs["kernel_predict"] = kernel_predict
    slow = interleaved(slow_funcs, slow_reps)
    t = {**fast, **slow}
    print(f"Tabular SHAP (30 features, 20 rows, max_evals 500, {len(bg)} background rows)")
    print(f"  shap_values (Permutation, compiled)  {t['audit'] * 1e3:9.1f} ms")
    print(f"  forward over the same {n_rows} rows {t['forward'] * 1e3:9.1f} ms")
    print(f"  shap Permutation + model.predict     {t['shap_predict'] * 1e3:9.1f} ms")
    if kernel:
        print(f"  shap KernelExplainer + model.predict {t['kernel_predict'] * 1e3:9.1f} ms")
    print(f"  shap + model.predict / audit: {t['shap_predict'] / t['audit']:.1f}x faster"
          "   (target >= 20x)")
    if kernel:
        print(f"  KernelExplainer + model.predict / audit: "
              f"{t['kernel_predict'] / t['audit']:.1f}x faster")
    print(f"  audit / forward over the same rows: {t['audit'] / t['forward']:.2f}x"
          "   (target <= 4x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--slow-reps", type=int, default=1)
    ap.add_argument("--background", type=int, default=50,
                    help="background rows for SHAP (the audit report's default is 50)")
    ap.add_argument("--kernel", action="store_true",
                    help="also time KernelExplainer given model.predict (slow)")
    args = ap.parse_args()
    bench_lime(args.reps, args.slow_reps)
    bench_shap(args.reps, args.slow_reps, args.kernel, args.background)


if __name__ == "__main__":
    main()
