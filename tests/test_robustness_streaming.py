"""Robustness on streamed data: every (corruption, severity) level is measured on every sample
of a ``tf.data.Dataset`` or a ``DataSource``, with the numbers the arrays give."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from _report_data import read_json

from keras_audit import audit
from keras_audit.audit._weights import weights_hash
from keras_audit.audit.robustness_analysis import robustness, streamed_corrupter
from keras_audit.audit.streaming import Stream

N = 80
# noise and occlusion draw from the per-chunk seeds; chunks of 24 cut across batches of 16
OPTIONS = {"robustness": {"corruptions": ("gaussian_noise", "occlusion", "contrast"),
                          "severities": (1, 3), "batch_size": 24}}
NUMBERS = ("accuracy", "delta_accuracy", "flip_rate", "mean_confidence",
           "explanation_spearman", "loss", "delta_loss", "distance")


def _run(model, data, out, y=None):
    before = weights_hash(model)
    audit.run(model, data, y, checks=("robustness",), out_dir=out, samples=6,
              options=OPTIONS)
    assert weights_hash(model) == before
    return read_json(out)["robustness"]


def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert [(r["corruption"], r["severity"]) for r in a] == \
        [(r["corruption"], r["severity"]) for r in b]
    assert len(a) == 6 and set(a[0]) == set(b[0])
    np.testing.assert_allclose([[r[k] for k in NUMBERS] for r in a],
                               [[r[k] for k in NUMBERS] for r in b], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def arrays(shapes_data):
    _, _, xt, yt, _ = shapes_data
    return xt[:N], yt[:N]


@pytest.fixture(scope="module")
def array_section(shapes_model, arrays, tmp_path_factory):
    x, y = arrays
    return _run(shapes_model, x, tmp_path_factory.mktemp("rob_arrays"), y)


def test_dataset_rows_equal_the_arrays(shapes_model, arrays, array_section, tmp_path):
    x, y = arrays
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    st = _run(shapes_model, ds, tmp_path)
    assert st["status"] == array_section["status"] == "ok"
    _same_rows(array_section["rows"], st["rows"])
    # every sample was corrupted, not the 6 drawn for the explanations
    assert st["n_samples"] == array_section["n_samples"] == N
    assert st["streamed"] is True and array_section["streamed"] is False
    assert st["stability_samples"] == array_section["stability_samples"] == 6
    assert st["clean_accuracy"] == pytest.approx(array_section["clean_accuracy"], abs=1e-6)
    assert st["value_range"] == array_section["value_range"] == [0.0, 1.0]
    assert f"every sample ({N}), streamed in chunks of 24" in st["measured_on"]
    assert "engine_note" not in st
    # the rows are not all alike: the noise and the occlusion did change predictions
    assert max(r["flip_rate"] for r in st["rows"]) > 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"({N}, streamed)" in html


def test_npz_source_rows_equal_the_arrays(shapes_model, arrays, array_section, tmp_path):
    from keras_audit.audit import DataSource

    x, y = arrays
    for i, lo in enumerate(range(0, N, 30)):  # shards of 30, 30, 20 read in batches of 16
        np.savez(tmp_path / f"part-{i}.npz", x=x[lo:lo + 30], y=y[lo:lo + 30])
    src = DataSource.from_path(str(tmp_path / "part-*.npz"), batch_size=16)
    st = _run(shapes_model, src, tmp_path / "out")
    _same_rows(array_section["rows"], st["rows"])
    assert st["n_samples"] == N and st["streamed"] is True


class _ElsewhereStream(Stream):
    """A real stream labelled as another engine's (the section reads only the label)."""

    engine = "ray"


def test_other_engines_say_where_the_corruptions_ran(shapes_model, arrays, array_section,
                                                     tmp_path):
    x, y = arrays
    data = _ElsewhereStream(tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    st = _run(shapes_model, data, tmp_path)
    assert "ran in this process" in st["engine_note"] and "Ray workers" in st["engine_note"]
    _same_rows(array_section["rows"], st["rows"])
    assert "ran in this process" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_stream_chunks_are_the_array_slices(arrays):
    x, y = arrays
    chunks = list(Stream(tf.data.Dataset.from_tensor_slices((x, y)).batch(16)).chunks(24))
    assert [s for s, _ in chunks] == [0, 24, 48, 72]
    for start, c in chunks:
        np.testing.assert_array_equal(c, x[start:start + 24])


def test_streamed_tables_use_every_samples_stats():
    rng = np.random.default_rng(3)
    # features on different scales: the noise is in each feature's std, from every sample
    x = (rng.normal(size=(90, 4)) * [1.0, 5.0, 0.1, 2.0] + [0, 3, -1, 0]).astype(np.float32)
    y = (x[:, 0] + 0.2 * x[:, 1] > 0.6).astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    kw = {"severities": (1, 3), "batch_size": 32, "seed": 5}
    explain = np.array([2, 40, 77])
    a = robustness(model, x, y, stability_index=explain, **kw)
    s = robustness(model, x[explain], y, stability_index=explain,
                   stream=Stream(tf.data.Dataset.from_tensor_slices((x, y)).batch(20)), **kw)
    cols = [c for c in a.columns if c != "corruption"]
    np.testing.assert_allclose(a[cols].to_numpy(float), s[cols].to_numpy(float), atol=1e-6)
    assert list(s.corruption) == list(a.corruption) == ["gaussian_noise"] * 2 + [
        "feature_dropout"] * 2
    assert s.attrs["n_samples"] == 90 and s.attrs["streamed"] and not a.attrs["streamed"]
    # the noise scale and the dropout value: every streamed sample's stds and means
    c = streamed_corrupter(Stream(tf.data.Dataset.from_tensor_slices((x, y)).batch(20)),
                           "table", (4,))
    np.testing.assert_allclose(c.std.numpy(), x.astype(np.float64).std(0), rtol=1e-6)
    np.testing.assert_allclose(c.mean.numpy(), x.astype(np.float64).mean(0), atol=1e-6)
    assert not np.allclose(c.std.numpy(), x[explain].std(0), rtol=0.05)


def test_streamed_input_that_does_not_match_is_refused(shapes_model, arrays):
    x, y = arrays
    stream = Stream(tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    with pytest.raises(ValueError, match="stability_index"):
        robustness(shapes_model, x[:3], y, stream=stream, stability_index=[0, 1])
    with pytest.raises(ValueError, match="stability_index"):
        robustness(shapes_model, x[:2], y, stream=stream, stability_index=[0, N])
    with pytest.raises(ValueError, match="clean_outputs"):
        robustness(shapes_model, x[:2], y, stream=stream, clean_outputs=np.zeros((5, 3)))
