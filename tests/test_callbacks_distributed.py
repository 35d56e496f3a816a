"""The callbacks under tf.distribute: only the chief writes, one image per tag and logged step.

Each case runs in fresh processes (``tests/_callbacks_workers.py``): logical devices must be set
before TensorFlow initialises, and MultiWorkerMirroredStrategy needs one process per worker.
Every process has a time limit, so a hang fails the test instead of stalling the suite.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _callbacks_data import read_events

WORKER = str(Path(__file__).with_name("_callbacks_workers.py"))
ROOT = str(Path(__file__).resolve().parents[1])
LOGGED = [0, 2]
TAGS = {"gradcam/conv2", "saliency/vanilla", "activations/conv1", "activations/conv2",
        "filters/conv1", "evaluation/confusion_matrix", "evaluation/mistakes"}
TIMEOUT = 150


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    return env


def _result(proc: subprocess.Popen, out: str, err: str) -> dict:
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


def _check_chief_run(log_dir: Path) -> None:
    events = read_events(str(log_dir))
    assert set(events["images"]) == TAGS
    for tag, records in events["images"].items():
        assert [step for step, _, _ in records] == LOGGED, tag  # exactly one per logged step
    cam = next(t for t in events["images"] if t.startswith("gradcam/"))
    assert [s for s, _ in events["scalars"][f"explanations/{cam}/deletion_auc"]] == LOGGED
    assert [s for s, _ in events["scalars"][f"explanations/{cam}/stability"]] == LOGGED[1:]


def test_mirrored_strategy_fit_on_two_logical_cpus(tmp_path):
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, WORKER, "mirrored", str(log_dir)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = _result(proc, out, err)
    assert result["replicas"] == 2 and result["chief"]
    assert all(v == LOGGED for v in result["logged"].values()), result["logged"]
    assert result["failures"] == []
    assert all(v == 1 for v in result["traces"].values()), result["traces"]
    _check_chief_run(log_dir)


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_custom_loop_only_the_chief_writes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, WORKER, "multiworker", str(tmp_path / f"worker{index}")],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT))
    except subprocess.TimeoutExpired:
        pytest.fail("a worker hung")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    chief, other = (_result(p, *o) for p, o in zip(procs, outputs))
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["chief"] and not other["chief"]
    assert all(v == LOGGED for v in chief["logged"].values()), chief["logged"]
    assert all(v == [] for v in other["logged"].values()), other["logged"]
    assert chief["failures"] == other["failures"] == []
    # the two workers trained one model together
    assert chief["losses"] == pytest.approx(other["losses"])
    assert chief["losses"][-1] < chief["losses"][0]
    _check_chief_run(tmp_path / "worker0")
    assert not (tmp_path / "worker1").exists()
