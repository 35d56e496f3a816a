"""engine="ray": a local 2-CPU Ray cluster gives the local report, also when a worker process
is killed in the middle of a forward-pass task (Ray retries the task)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_audit import audit
from keras_audit.audit._weights import weights_hash

ray = pytest.importorskip("ray")  # the optional [ray] extra; the dev venv has it

OPTIONS = {"performance": {"n_bootstrap": 10, "latency_repeats": 1, "batch_size": 10},
           "pruning": {"sparsities": (0.0, 0.6), "per_layer": False, "drift": False}}
CHECKS = ("performance", "pruning")
TASK_TITLE = b"ray::_forward_batch"  # Ray titles a worker process by the task it runs


def _metrics(folder: Path) -> dict:
    c = json.loads((folder / "report.json").read_text())
    return {"perf": [c["performance"][k] for k in ("accuracy", "macro_f1", "ece",
                                                   "roc_auc_macro", "n_samples")],
            "prune": [[g["accuracy"], g["loss"]] for g in c["pruning"]["global"]],
            "idx": c["data"]["explained_samples"]["indices"]}


def _same(a: dict, b: dict) -> None:
    assert a["idx"] == b["idx"]
    assert a["perf"][-1] == b["perf"][-1] == 90
    assert np.allclose(a["perf"], b["perf"], atol=1e-6, rtol=0), (a, b)
    assert np.allclose(a["prune"], b["prune"], atol=1e-6, rtol=0), (a, b)


class _Killer(threading.Thread):
    """SIGKILLs the first worker process seen running a forward-pass task (Linux /proc)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and not self.killed:
            for proc in Path("/proc").iterdir():
                try:
                    if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(
                            TASK_TITLE):
                        os.kill(int(proc.name), signal.SIGKILL)
                        self.killed.append(int(proc.name))
                        return
                except OSError:  # the process ended while being read
                    continue
            time.sleep(0.005)


@pytest.mark.timeout(150)
def test_ray_cluster_gives_the_local_report_and_survives_a_killed_worker(tmp_path,
                                                                         monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((90, 8, 8, 3)).astype(np.float32)
    y = (x[..., 0].mean((1, 2)) > 0.5).astype(np.int64)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    before = weights_hash(model)
    audit.run(model, x, y, checks=CHECKS, out_dir=tmp_path / "local", options=OPTIONS,
              samples=5)
    local = _metrics(tmp_path / "local")
    path = tmp_path / "model.keras"
    model.save(path)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    killer = _Killer()
    try:
        # the first task on a fresh worker imports TensorFlow and loads the model: the kill
        # lands inside a running task, which Ray re-runs on a new worker
        killer.start()
        audit.run(model, x, y, checks=CHECKS, out_dir=tmp_path / "killed", options=OPTIONS,
                  samples=5, engine="ray")
        killer.stop.set()
        killer.join(5)
        assert len(killer.killed) == 1
        _same(local, _metrics(tmp_path / "killed"))
        # the model from its path, on the workers that are now warm
        audit.run(str(path), x, y, checks=CHECKS, out_dir=tmp_path / "ray", options=OPTIONS,
                  samples=5, engine="ray")
        _same(local, _metrics(tmp_path / "ray"))
        assert ray.is_initialized()  # a Ray the caller started is left running
    finally:
        killer.stop.set()
        ray.shutdown()
    assert weights_hash(model) == before


def test_ray_engine_refuses_bad_input_before_work(monkeypatch):
    x = np.zeros((4, 3), np.float32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match=r"unknown engine 'spark'; choices: \['local', 'ray'\]"):
        audit.run(model, x, np.zeros(4), out_dir=None, engine="spark")
    with pytest.raises(ValueError, match="strategy= and engine='ray' exclude each other"):
        audit.run(model, x, np.zeros(4), out_dir=None, engine="ray", strategy=object())
    with pytest.raises(ValueError, match="model file not found"):
        audit.run("/nonexistent/model.keras", x, np.zeros(4), out_dir=None, engine="ray")
    # without Ray installed: one ImportError that says what to install, before any work
    monkeypatch.setattr("keras_audit._extras._findable", lambda name: name != "ray")
    with pytest.raises(ImportError, match=r"pip install 'keras-audit\[ray\]'"):
        audit.run(model, x, np.zeros(4), out_dir=None, engine="ray")
    assert not ray.is_initialized()
