"""Streamed audits: a dataset or DataSource gives the report the same data as arrays gives."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_audit import audit
from keras_audit.audit._weights import weights_hash
from keras_audit.audit.catalog import AuditInputError
from keras_audit.audit.context import build_context
from keras_audit.audit.sections import DEFAULT_OPTIONS
from keras_audit.audit.streaming import build_stream_context

OPTIONS = {"performance": {"n_bootstrap": 20, "latency_repeats": 1},
           "pruning": {"sparsities": (0.0, 0.5, 0.8), "per_layer_sparsities": (0.0, 0.5),
                       "drift_samples": 6}}
CHECKS = ("performance", "pruning")


@pytest.fixture(scope="module")
def setup():
    """A tiny CNN fitted briefly on 150 random images with learnable labels, and group labels."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((150, 10, 10, 3)).astype(np.float32)
    y = (x[..., 0].mean((1, 2)) > 0.5).astype(np.int64) + (x[..., 1].mean((1, 2)) > 0.5)
    inp = keras.Input((10, 10, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    site = np.where(np.arange(150) % 3 == 0, "north", "south")
    return model, x, y, site


def _close(a: dict, b: dict, keys) -> None:
    for k in keys:
        assert a[k] == pytest.approx(b[k], abs=1e-6), k


def _metrics(report) -> dict:
    c = report.content
    perf = {k: c["performance"][k] for k in ("accuracy", "macro_f1", "weighted_f1", "ece",
                                             "roc_auc_macro", "n_samples", "accuracy_ci95")}
    prune = [(r["sparsity"], r["accuracy"], r["loss"], r.get("drift_spearman"))
             for r in c["pruning"]["global"] + c["pruning"]["per_layer"]]
    return {"performance": perf, "pruning": prune,
            "indices": c["data"]["explained_samples"]["indices"],
            "balance": c["data"]["class_balance"], "n": c["data"]["n_samples"]}


@pytest.fixture(scope="module")
def array_report(setup):
    model, x, y, _ = setup
    return audit.run(model, x, y, checks=CHECKS, out_dir=None, options=OPTIONS, samples=7)


def test_dataset_equals_arrays(setup, array_report):
    model, x, y, _ = setup
    before = weights_hash(model)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)  # 150 = 4 full batches + 22
    streamed = audit.run(model, ds, checks=CHECKS, out_dir=None, options=OPTIONS, samples=7)
    a, b = _metrics(array_report), _metrics(streamed)
    assert b["n"] == b["performance"]["n_samples"] == 150
    _close(a["performance"], b["performance"], ["accuracy", "macro_f1", "weighted_f1", "ece",
                                               "roc_auc_macro"])
    np.testing.assert_allclose(a["performance"]["accuracy_ci95"],
                               b["performance"]["accuracy_ci95"], atol=1e-6)
    assert len(a["pruning"]) == len(b["pruning"]) == 3 + 2 * 2  # global + 2 layers x 2
    np.testing.assert_allclose(np.array(a["pruning"], float), np.array(b["pruning"], float),
                               atol=1e-6)
    assert a["indices"] == b["indices"] and len(a["indices"]) == 7
    assert a["balance"] == b["balance"]
    assert weights_hash(model) == before


def test_drawn_samples_equal_the_array_draw(setup):
    """The explained rows and the SHAP/LIME background are the rows the array path picks."""
    model, x, y, _ = setup
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(40)
    kw = {"defaults": DEFAULT_OPTIONS, "seed": 3, "samples": 9, "checks": ("shap",)}
    arr = build_context(model, x, y, **kw)
    st = build_stream_context(model, ds, **kw)
    np.testing.assert_array_equal(st.explained_indices, arr.explain_idx)
    np.testing.assert_array_equal(st.x_explain, arr.x_explain)
    np.testing.assert_array_equal(st.targets_explain, arr.targets_explain)
    for size in (5, 16):
        (bg_a, src_a), (bg_s, src_s) = arr.background_set(size), st.background_set(size)
        assert bg_a.shape == (size, 10, 10, 3) and src_a == src_s
        np.testing.assert_array_equal(bg_a, bg_s)
    np.testing.assert_array_equal(st.stream.head, x[:16])
    assert len(st.x) < len(x) and st.n_samples == 150   # only the drawn rows are held


def test_groups_from_batches(setup):
    model, x, y, site = setup
    opts = {**OPTIONS, "groups": {"n_bootstrap": 10}}
    arr = audit.run(model, x, y, checks=("performance",), out_dir=None, options=opts,
                    groups={"site": site}, samples=4)
    ds = tf.data.Dataset.from_tensor_slices((x, y, {"site": site})).batch(50)
    st = audit.run(model, ds, checks=("performance",), out_dir=None, options=opts, samples=4)
    ga, gs = arr.content["groups"], st.content["groups"]
    assert gs["status"] == "ok" and gs["attributes"] == ["site"]
    assert gs["site"] == ga["site"]


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_shards_equal_arrays(setup, array_report, tmp_path, compressed):
    from keras_audit.audit import DataSource

    model, x, y, _ = setup
    save = np.savez_compressed if compressed else np.savez
    for i, lo in enumerate(range(0, 150, 60)):
        save(tmp_path / f"part-{i}.npz", x=x[lo:lo + 60], y=y[lo:lo + 60])
    src = DataSource.from_path(str(tmp_path / "part-*.npz"), batch_size=25)
    streamed = audit.run(model, src, checks=CHECKS, out_dir=None, options=OPTIONS, samples=7)
    a, b = _metrics(array_report), _metrics(streamed)
    _close(a["performance"], b["performance"], ["accuracy", "macro_f1", "ece"])
    np.testing.assert_allclose(np.array(a["pruning"], float), np.array(b["pruning"], float),
                               atol=1e-6)
    assert a["indices"] == b["indices"]


def test_bad_streamed_input(setup):
    model, x, y, _ = setup
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    with pytest.raises(AuditInputError, match="omit y"):
        audit.run(model, ds, y, out_dir=None)
    with pytest.raises(AuditInputError, match="batch it"):
        audit.run(model, tf.data.Dataset.from_tensor_slices((x, y)), out_dir=None)
    with pytest.raises(AuditInputError, match=r"\(x, y\) or \(x, y, groups\)"):
        audit.run(model, tf.data.Dataset.from_tensor_slices(x).batch(8), out_dir=None)
    with pytest.raises(AuditInputError, match="baseline"):
        audit.run(model, ds, baseline=model, out_dir=None)
    with pytest.raises(AuditInputError, match="y \\(the labels\\) is required"):
        audit.run(model, x, out_dir=None)
    with pytest.raises(AuditInputError, match="unknown engine"):
        audit.run(model, ds, engine="spark", out_dir=None)
