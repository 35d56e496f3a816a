"""The ``keras-audit`` command, read back as a user sees it: exit status, stderr, files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_audit import __version__  # noqa: E402
from keras_audit.audit._weights import weights_hash  # noqa: E402

EXE = Path(sys.executable).parent / "keras-audit"


def keras_audit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script (``python -m keras_audit.cli`` when it is missing)."""
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "keras_audit.cli"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=240)


@pytest.fixture(scope="module")
def files(shapes_model, shapes_data, tmp_path_factory):
    """A saved model, good and bad data archives, a card, a Lambda model."""
    d = tmp_path_factory.mktemp("cli")
    _, _, xt, yt, _ = shapes_data
    shapes_model.save(d / "model.keras")
    np.savez(d / "data.npz", x=xt[:40], y=yt[:40])
    np.savez(d / "named.npz", images=xt[:40], labels=yt[:40],
             class_names=np.array(["red", "green", "blue"]))
    np.savez(d / "object.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    np.savez(d / "short_y.npz", x=xt[:10], y=yt[:7])
    np.savez(d / "wrong_shape.npz", x=np.zeros((10, 8, 8, 3), np.float32), y=yt[:10])
    np.savez(d / "bad_labels.npz", x=xt[:10], y=np.full(10, 7))
    with open(d / "pickled.npy", "wb") as fh:
        pickle.dump({"x": xt[:3]}, fh)
    (d / "broken.keras").write_text("not a zip archive", encoding="utf-8")
    (d / "card.yaml").write_text("owners: [QA team]\nintended_use: Demo of the command.\n",
                                 encoding="utf-8")
    keras.utils.set_random_seed(0)
    lam = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Lambda(lambda t: t * 2.0),
                            keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(3, activation="softmax")], name="with_lambda")
    lam.save(d / "lambda.keras")
    return d


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("keras-audit: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_version_without_tensorflow():
    result = keras_audit("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"keras-audit {__version__}"
    probe = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom keras_audit import cli\n"
         "try:\n    cli.main(['--version'])\nexcept SystemExit as e:\n    code = e.code\n"
         "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)"],
        capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip().splitlines()[-1] == "0 False False"


def test_checks_match_the_report():
    from keras_audit import cli
    from keras_audit.audit.report import CHECKS

    assert cli.CHECKS == CHECKS


@pytest.mark.parametrize("args, fragments", [
    (["missing.keras", "--data", "data.npz"], ["model file not found", "missing.keras"]),
    (["model.keras", "--data", "missing.npz"], ["data file not found", "missing.npz"]),
    (["broken.keras", "--data", "data.npz"], ["not a Keras .keras archive"]),
    (["model.keras", "--data", "data.npz", "--card", "nope.yaml"], ["card file not found"]),
    (["model.keras", "--data", "data.npz", "--x-key", "images"],
     ["no array 'images'", "['x', 'y']"]),
    (["model.keras", "--data", "named.npz", "--x-key", "images"], ["no array 'y'"]),
    (["model.keras", "--data", "object.npz"], ["array 'x'", "pickled/object array"]),
    (["model.keras", "--data", "pickled.npy"], ["pickled data"]),
    (["model.keras", "--data", "short_y.npz"], ["y does not match x", "10", "7"]),
    (["model.keras", "--data", "data.npz", "--checks", "performance,gradcam"],
     ["unknown check", "gradcam", "performance,shap,lime,pruning,sanity"]),
    (["model.keras", "--data", "data.npz", "--samples", "0"], ["--samples"]),
])
def test_bad_input_without_tensorflow(files, tmp_path, args, fragments):
    result = keras_audit("report", *args, "--out", tmp_path / "out", cwd=files)
    _one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, fragments", [
    (["model.keras", "--data", "wrong_shape.npz"], ["(None, 24, 24, 3)", "(10, 8, 8, 3)"]),
    (["lambda.keras", "--data", "data.npz"], ["Lambda layer", "--unsafe"]),
])
def test_bad_input_after_loading_the_model(files, tmp_path, args, fragments):
    # a fresh process: TensorFlow's own start-up lines must not reach stderr either
    result = keras_audit("report", *args, "--out", tmp_path / "out", cwd=files)
    _one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, fragments", [
    (["model.keras", "--data", "bad_labels.npz"], ["out of range", "[7]"]),
    (["model.keras", "--data", "data.npz", "--class-names", "a,b"], ["2 names", "3 classes"]),
])
def test_labels_that_do_not_fit_the_model(files, tmp_path, monkeypatch, capfd, args,
                                          fragments):
    # in this process (TensorFlow is loaded already), through the same entry point
    from keras_audit import cli

    monkeypatch.chdir(files)
    code = cli.main(["report", *args, "--out", str(tmp_path / "out")])
    captured = capfd.readouterr()
    _one_line_error(subprocess.CompletedProcess([], code, captured.out, captured.err),
                    *fragments)
    assert not (tmp_path / "out").exists()


def test_report_command_end_to_end(files, shapes_model, shapes_data, tmp_path):
    out = tmp_path / "report"
    before = weights_hash(keras.saving.load_model(files / "model.keras"))
    result = keras_audit("report", "model.keras", "--data", "named.npz", "--x-key", "images",
                         "--y-key", "labels", "--out", out, "--samples", "6", "--seed", "3",
                         "--card", "card.yaml", cwd=files)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    assert "%|" in result.stderr and "pruning" in result.stderr  # progress bars with ETA
    content = json.loads((out / "report.json").read_text(encoding="utf-8"))
    _, _, xt, yt, _ = shapes_data
    expected = float(np.mean(shapes_model.predict(xt[:40], verbose=0).argmax(1) == yt[:40]))
    assert content["performance"]["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert content["model"]["class_names"] == ["red", "green", "blue"]  # from the archive
    assert content["card"] == {"owners": ["QA team"], "intended_use": "Demo of the command."}
    assert content["provenance"]["seed"] == 3 and content["provenance"]["samples"] == 6
    assert content["provenance"]["weights_sha256"] == before
    for key in ("performance", "explanations", "quality", "pruning"):
        assert content[key]["status"] == "ok", (key, content[key].get("error"))
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "tables" / "performance_per_class.csv").exists()


def test_quiet_and_unsafe(files, tmp_path):
    out = tmp_path / "lambda_report"
    result = keras_audit("report", "lambda.keras", "--data", "data.npz", "--out", out,
                         "--checks", "performance", "--unsafe", "--quiet", cwd=files)
    assert result.returncode == 0, result.stderr
    assert "%|" not in result.stderr
    assert result.stdout.strip() == f"report: {out / 'report.html'}"
    content = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert content["model"]["name"] == "with_lambda"
    assert content["provenance"]["checks"] == ["performance"]
    assert content["quality"]["status"] == "not requested"
