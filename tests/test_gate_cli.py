"""``keras-audit report --policy``: exit 1 on a failing verdict, 0 on pass or warn, 2 on a bad
policy before the model is loaded; ``--help`` documents the exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _gate_data import blob_mlp, blobs


def keras_audit(*args, cwd):
    return subprocess.run([sys.executable, "-m", "keras_audit.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=240)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gate_cli")
    model = blob_mlp()
    model.save(d / "model.keras")
    from test_gate_comparison import pruned_copy

    pruned_copy(model).save(d / "old.keras")
    x, y = blobs(120, seed=4)
    site = np.where(np.arange(len(x)) % 2 == 0, "north", "south")
    np.savez(d / "data.npz", x=x, y=y, site=site, short=site[:5])
    acc = float(np.mean(model.predict(x, verbose=0).argmax(1) == y))
    bound = round(acc + 0.005, 4)  # just out of reach
    for severity in ("fail", "warn"):
        (d / f"{severity}.yaml").write_text(
            "criteria:\n"
            f"  - {{name: accuracy, metric: performance.accuracy, min: {bound}, "
            f"severity: {severity}}}\n"
            "  - {name: samples, metric: data.n_samples, min: 10}\n", encoding="utf-8")
    (d / "history.json").write_text(json.dumps({"loss": [0.9, 0.5, 0.4],
                                                "val_loss": [1.0, 0.6, 0.7]}), encoding="utf-8")
    (d / "bad_history.json").write_text(json.dumps({"loss": [0.9], "val_loss": []}),
                                        encoding="utf-8")
    (d / "unknown.yaml").write_text("criteria:\n  - {metric: performance.accuracy, "
                                    "minimum: 0.9}\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("severity, code", [("fail", 1), ("warn", 0)])
def test_exit_status_follows_the_verdict(files, tmp_path, severity, code):
    out = tmp_path / "out"
    result = keras_audit("report", "model.keras", "--data", "data.npz", "--out", out,
                         "--checks", "performance", "--policy", f"{severity}.yaml",
                         "--model-card", cwd=files)
    assert result.returncode == code, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"report: {out / 'report.html'}"
    assert lines[-2] == f"verdict: {severity}; criteria not met: accuracy ({severity})"
    content = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert content["verdict"] == severity
    assert [c["status"] for c in content["criteria"]] == [severity, "pass"]
    import yaml

    readme = (out / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(readme.split("---\n")[1])
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert metrics[0] == {"type": "accuracy", "name": "Accuracy",
                          "value": content["performance"]["accuracy"]}
    assert f"Verdict: **{severity}**." in readme


def test_unknown_policy_key_exits_2_before_the_model_is_loaded(files, tmp_path):
    # in a fresh interpreter: the policy is refused before TensorFlow or Keras is imported
    probe = ("import sys\nfrom keras_audit import cli\n"
             f"code = cli.main(['report', 'model.keras', '--data', 'data.npz', '--out', "
             f"{str(tmp_path / 'out')!r}, '--policy', 'unknown.yaml'])\n"
             "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=files, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "2 False False", result.stderr
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keras-audit: error: unknown key(s) ['minimum']")
    assert not (tmp_path / "out").exists()


def test_groups_key_reads_groups_from_the_archive(files, tmp_path):
    out = tmp_path / "out"
    result = keras_audit("report", "model.keras", "--data", "data.npz", "--out", out,
                         "--checks", "performance", "--groups-key", "site", "--quiet",
                         "--history", "history.json", cwd=files)
    assert result.returncode == 0, result.stderr
    content = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rows = {r["group"]: r["n"] for r in content["groups"]["site"]["groups"]}
    assert rows == {"north": 60, "south": 60}
    assert content["training"]["epochs"] == 3 and content["training"]["best_epoch"] == 2


@pytest.mark.parametrize("args, fragment", [
    (["--groups-key", "nope"], "no array 'nope'"),
    (["--groups-key", "short"], "one label per sample"),
    (["--history", "bad_history.json"], "one value per epoch"),
])
def test_bad_groups_key_or_history_exits_2(files, tmp_path, args, fragment):
    result = keras_audit("report", "model.keras", "--data", "data.npz", "--out",
                         tmp_path / "out", *args, cwd=files)
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_baseline_is_compared(files, tmp_path):
    out = tmp_path / "out"
    result = keras_audit("report", "model.keras", "--data", "data.npz", "--out", out,
                         "--checks", "performance", "--baseline", "old.keras", "--quiet",
                         cwd=files)
    assert result.returncode == 0, result.stderr
    content = json.loads((out / "report.json").read_text(encoding="utf-8"))
    import keras

    archive = np.load(files / "data.npz")
    p_c = keras.saving.load_model(files / "model.keras").predict(archive["x"], verbose=0)
    p_b = keras.saving.load_model(files / "old.keras").predict(archive["x"], verbose=0)
    flips = int(np.sum(p_c.argmax(1) != p_b.argmax(1)))
    assert content["comparison"]["flips"]["count"] == flips
    missing = keras_audit("report", "model.keras", "--data", "data.npz", "--out",
                          tmp_path / "never", "--baseline", "gone.keras", cwd=files)
    assert missing.returncode == 2 and "baseline model file not found" in missing.stderr
    assert not (tmp_path / "never").exists()


def test_help_documents_the_exit_codes(files):
    result = keras_audit("report", "--help", cwd=files)
    assert result.returncode == 0
    text = result.stdout
    assert "exit status:" in text and "--policy" in text
    for line in ("0  the report was written and the verdict is pass or warn",
                 "1  the report was written and the verdict is fail",
                 "2  bad input"):
        assert line in text, line
    assert text.count("keras-audit report model.keras") == 2  # two examples
