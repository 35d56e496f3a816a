"""DataSource: every --data form read in batches, and each bad form refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_audit.audit.sources import DataSource, _npz_member


def _collect(src: DataSource):
    xs, ys = zip(*src.batches())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Shards, an image folder, a CSV table and their bad variants, with the ground truth."""
    d = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    x = rng.random((50, 6, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    (d / "shards").mkdir()
    np.savez(d / "shards" / "part-0.npz", x=x[:20], y=y[:20])
    np.savez_compressed(d / "shards" / "part-1.npz", x=x[20:], y=y[20:])
    imgs = rng.integers(0, 256, (9, 5, 7, 3), dtype=np.uint8)
    for i, im in enumerate(imgs):
        folder = d / "images" / ("cat" if i < 4 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(folder / f"{i:02d}.png")
    (d / "empty" / "cat").mkdir(parents=True)
    (d / "empty" / "cat" / "notes.txt").write_text("no images here")
    (d / "mixed" / "a").mkdir(parents=True)
    Image.fromarray(imgs[0]).save(d / "mixed" / "a" / "0.png")
    Image.fromarray(imgs[1, :4, :4]).save(d / "mixed" / "a" / "1.png")
    (d / "mixed" / "b").mkdir()
    Image.fromarray(imgs[2]).save(d / "mixed" / "b" / "2.png")
    table = rng.random((30, 4)).astype(np.float32)
    labels = rng.integers(0, 2, 30)
    import pandas as pd

    pd.DataFrame({"f0": table[:, 0], "f1": table[:, 1], "f2": table[:, 2], "f3": table[:, 3],
                  "label": labels}).to_csv(d / "table.csv", index=False)
    return {"dir": d, "x": x, "y": y, "imgs": imgs, "table": table, "labels": labels}


def test_npz_shards_stream_in_order(data):
    src = DataSource.from_path(data["dir"] / "shards" / "*.npz", batch_size=16)
    assert (src.kind, src.n, src.input_shape) == ("npz", 50, (6, 6, 3))
    sizes = [len(b[0]) for b in src.batches()]
    assert sizes == [16, 16, 16, 2]  # batches cross the shard boundary
    x, y = _collect(src)
    np.testing.assert_array_equal(x, data["x"])
    np.testing.assert_array_equal(y, data["y"])
    # an uncompressed member is memory-mapped, a compressed one read
    assert isinstance(_npz_member(str(data["dir"] / "shards" / "part-0.npz"), "x"), np.memmap)
    assert not isinstance(_npz_member(str(data["dir"] / "shards" / "part-1.npz"), "x"),
                          np.memmap)


def test_image_folder(data):
    src = DataSource.from_path(data["dir"] / "images", batch_size=4)
    assert (src.n, src.input_shape, src.class_names) == (9, (5, 7, 3), ["cat", "dog"])
    x, y = _collect(src)
    np.testing.assert_array_equal(x, data["imgs"].astype(np.float32))
    np.testing.assert_array_equal(y, [0] * 4 + [1] * 5)
    resized = DataSource.from_path(data["dir"] / "images", image_size=(10, 14))
    assert resized.input_shape == (10, 14, 3)
    assert next(iter(resized.batches()))[0].shape == (9, 10, 14, 3)


def test_csv_table(data):
    src = DataSource.from_path(data["dir"] / "table.csv", target="label", batch_size=8)
    assert (src.n, src.input_shape, src.feature_names) == (30, (4,), ["f0", "f1", "f2", "f3"])
    x, y = _collect(src)
    np.testing.assert_allclose(x, data["table"], rtol=1e-6)
    np.testing.assert_array_equal(y, data["labels"])


def test_parquet_table(data, tmp_path):
    import pandas as pd

    try:
        import pyarrow  # noqa: F401
    except ImportError:  # without pyarrow the reader names the package it needs
        (tmp_path / "t.parquet").write_bytes(b"PAR1")
        with pytest.raises(ValueError, match="needs the pyarrow package"):
            DataSource.from_path(tmp_path / "t.parquet", target="label")
        return
    pd.DataFrame({"a": data["table"][:, 0], "label": data["labels"]}).to_parquet(
        tmp_path / "t.parquet")
    x, y = _collect(DataSource.from_path(tmp_path / "t.parquet", target="label"))
    np.testing.assert_allclose(x[:, 0], data["table"][:, 0])
    np.testing.assert_array_equal(y, data["labels"])


@pytest.mark.parametrize("rel, kwargs, fragment", [
    ("empty", {}, "has no images in class subfolders"),
    ("mixed", {}, "2 different sizes"),
    ("table.csv", {"target": "species"}, "has no column 'species'"),
    ("table.csv", {}, "give target="),
    ("nothing/*.npz", {}, "no file matches"),
    ("missing.npz", {}, "data not found"),
])
def test_bad_forms_raise_one_line(data, rel, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        DataSource.from_path(data["dir"] / rel, **kwargs)
    assert "\n" not in str(info.value)


# -- the command ---------------------------------------------------------------------------------

def _command(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keras_audit.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("model")
    for name, shape, n in (("img", (6, 6, 3), 3), ("pics", (5, 7, 3), 2), ("tab", (4,), 2),
                           ("six2", (6, 6, 3), 2)):
        inp = keras.Input(shape)
        h = keras.layers.Flatten()(inp) if len(shape) > 1 else inp
        out = keras.layers.Dense(n, activation="softmax", name="d")(h)
        keras.Model(inp, out).save(d / f"{name}.keras")
    return d


@pytest.mark.parametrize("rel, extra, fragment", [
    ("empty", [], "has no images in class subfolders"),
    ("mixed", [], "give image_size (--image-size HxW)"),
    ("table.csv", ["--target", "species"], "has no column 'species'"),
    ("table.csv", [], "give target= (--target)"),
    ("shards/none-*.npz", [], "no file matches"),
])
def test_command_refuses_bad_forms(data, model_file, tmp_path, rel, extra, fragment):
    res = _command("report", model_file / "img.keras", "--data", data["dir"] / rel,
                   "--out", tmp_path / "out", *extra)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-audit: error: --data: "), res.stderr
    assert fragment in lines[0]
    assert not (tmp_path / "out").exists()


def test_command_image_size_form(model_file, tmp_path):
    res = _command("report", model_file / "img.keras", "--data", tmp_path, "--out",
                   tmp_path / "o", "--image-size", "big")
    assert res.returncode == 2 and "expected HxW" in res.stderr


@pytest.mark.parametrize("model, rel, extra, n", [
    ("img", "shards/*.npz", [], 50),
    ("pics", "images", [], 9),
    ("six2", "mixed", ["--image-size", "6x6"], 3),
    ("tab", "table.csv", ["--target", "label"], 30),
])
def test_command_streams_each_form(data, model_file, tmp_path, capfd, model, rel, extra, n):
    from keras_audit import cli

    out = tmp_path / "out"
    code = cli.main(["report", str(model_file / f"{model}.keras"), "--data",
                     str(data["dir"] / rel), "--out", str(out), "--checks", "performance",
                     "--quiet", *extra])
    err = capfd.readouterr().err
    assert code in (0, 1), err
    report = json.loads((Path(out) / "report.json").read_text())
    assert report["performance"]["n_samples"] == n
    assert report["data"]["n_samples"] == n
    if rel == "images":
        assert [r["class"] for r in report["performance"]["tables"]["per_class"]] == [
            "cat", "dog"]
