"""What ``pip install keras-audit`` (no extras) promises, checked inside such an install.

Run by ``.ci/minimal_install`` with the fresh venv's Python, from outside the repository, so
only the installed package can be imported. Every check runs, each prints one PASS/FAIL line
with the reason, and the exit status is the number of failures (0: all passed).

    .ci/minimal_install            # builds the venv, then runs this file in it
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: what the [audit] extra adds; none of these may come with the plain install
AUDIT_ONLY = ("shap", "lime", "skimage", "pandas", "jinja2", "yaml", "tqdm", "numba",
              "fairlearn", "statsmodels")
#: the command a missing-extra error must give
INSTALL_AUDIT = "keras-audit[audit]"

results: list[tuple[str, bool, str]] = []


def check(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Record ``fn()`` as PASS (its return value is the detail) or FAIL (the exception)."""

    def wrap(fn: Callable[[], str]) -> Callable[[], str]:
        try:
            detail = fn()
            results.append((name, True, detail or ""))
        except Exception as exc:  # every failure is reported, none stops the others
            last = traceback.extract_tb(exc.__traceback__)[-1]
            results.append((name, False, f"{type(exc).__name__}: {exc} "
                                         f"({Path(last.filename).name}:{last.lineno})"))
        return fn

    return wrap


@check("the installed package is the one imported, with one version")
def _version() -> str:
    import keras_audit

    here = Path(keras_audit.__file__).resolve()
    assert "site-packages" in here.parts, f"keras_audit imported from {here}, not the venv"
    installed = metadata.version("keras-audit")
    assert installed == keras_audit.__version__, (
        f"metadata says {installed}, keras_audit.__version__ says {keras_audit.__version__}")
    return f"keras-audit {installed}"


@check("the audit-only packages are not installed")
def _no_audit_packages() -> str:
    import importlib

    present = []
    for name in AUDIT_ONLY:
        try:
            importlib.import_module(name)
            present.append(name)
        except ImportError:
            pass
    assert not present, f"installed without [audit]: {present}"
    return f"absent: {', '.join(AUDIT_ONLY)}"


@check("AuditCallback logs its default image tags, and the embeddings, during fit()")
def _callbacks() -> str:
    import keras
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from keras_audit.callbacks import AuditCallback
    from keras_audit.callbacks.audit_callback import DEFAULT_INCLUDE

    rng = np.random.default_rng(0)
    x = rng.random((32, 16, 16, 3), dtype=np.float32)
    y = np.arange(32) % 2
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(2, activation="softmax", name="head"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    with tempfile.TemporaryDirectory() as log_dir:
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, validation_data=(x[:8], y[:8]),
                  callbacks=[AuditCallback((x[:8], y[:8]), log_dir, num_samples=4, include=(
                      *DEFAULT_INCLUDE, "embeddings"), options={"embeddings": {"layer": "gap"}})])
        acc = EventAccumulator(log_dir, size_guidance={"tensors": 0})
        acc.Reload()
        images = {tag for tag in acc.Tags()["tensors"]
                  if acc.SummaryMetadata(tag).plugin_data.plugin_name == "images"}
        steps = {tag: [e.step for e in acc.Tensors(tag)] for tag in images}
    # the default include is gradcam, saliency (vanilla), activations, filters and evaluation;
    # the embeddings (scikit-learn's PCA) are added because scikit-learn is a base dependency
    expected = {"gradcam/conv", "saliency/vanilla", "activations/conv", "filters/conv",
                "evaluation/confusion_matrix", "evaluation/mistakes", "embeddings/gap"}
    assert images == expected, f"image tags {sorted(images)}, expected {sorted(expected)}"
    assert all(s == [0] for s in steps.values()), f"one record at epoch 0 expected: {steps}"
    return ", ".join(sorted(images))


@check("import shap raises ImportError")
def _shap_missing() -> str:
    try:
        import shap  # noqa: F401
    except ImportError as exc:
        return str(exc)
    raise AssertionError("shap is importable in a plain install")


@check(f"audit.shap_values raises ImportError naming {INSTALL_AUDIT}")
def _audit_missing() -> str:
    from keras_audit import audit  # light: its names load on first use

    try:
        audit.shap_values  # noqa: B018
    except ImportError as exc:
        assert INSTALL_AUDIT in str(exc), f"the ImportError does not name {INSTALL_AUDIT}: {exc!r}"
        return str(exc)
    raise AssertionError("audit.shap_values loaded without the [audit] extra")


@check(f"`keras-audit report` exits 2 with one line naming {INSTALL_AUDIT}")
def _command_missing() -> str:
    import keras
    import numpy as np

    exe = Path(sys.executable).with_name("keras-audit")
    with tempfile.TemporaryDirectory() as d:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.save(Path(d) / "m.keras")
        np.savez(Path(d) / "t.npz", x=np.zeros((4, 4), np.float32), y=np.arange(4) % 2)
        done = subprocess.run([str(exe), "report", "m.keras", "--data", "t.npz", "--out", "out"],
                              cwd=d, capture_output=True, text=True, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 2, f"exit status {done.returncode}, stderr: {err[-400:]!r}"
    assert INSTALL_AUDIT in err, f"stderr does not name {INSTALL_AUDIT}: {err[-400:]!r}"
    assert "Traceback" not in err, f"a traceback instead of one line: {err[-400:]!r}"
    return err.splitlines()[-1]


if __name__ == "__main__":
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}\n      {detail}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"minimal install: {len(results) - failed} passed, {failed} failed")
    sys.exit(failed)
