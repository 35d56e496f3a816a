"""AttentionMapsCallback and the attention engine: a transformer that must attend to one place.

The task: a [CLS] token, then tokens 0..3 with one marker token at a random position p; the
label is the token right after the marker (position p + 1). The first attention layer (inside a
custom layer) may only look at the previous token, so after it only position p + 1 knows both
its own token and that the marker precedes it. The last attention layer must therefore move
position p + 1 into [CLS], the only position the classifier reads: its [CLS] row has to peak on
p + 1. A model that learns the task can only do it that way; an untrained one does not.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _tb import images_and_scalars as read_events  # noqa: E402

from keras_audit.callbacks.attention import AttentionMapsCallback  # noqa: E402
from keras_audit.callbacks.base import ExplanationLoggingWarning  # noqa: E402
from keras_audit.explain.attention import (  # noqa: E402
    AttentionScores,
    attention_rollout,
    find_attention_layers,
    patch_grid,
    rollout_maps,
)

C, T = 4, 10                  # content tokens 0..3, sequence length after [CLS]
MARK, CLS = C, C + 1          # marker and [CLS] token ids
VOCAB = C + 2
TOKEN_NAMES = ["a", "b", "c", "d", "MARK", "CLS"]
LAST = "global_attention"
LOCAL = "local/local_attention"


def make_marked(n, seed):
    """Token sequences ``(n, T + 1)``, labels ``(n,)`` and the marker positions ``(n,)``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, C, (n, T + 1))
    x[:, 0] = CLS
    p = rng.integers(1, T, n)
    x[np.arange(n), p] = MARK
    return x.astype("int32"), x[np.arange(n), p + 1].astype("int64"), p


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position."""

    def __init__(self, length, dim, **kwargs):
        super().__init__(**kwargs)
        self.length, self.dim = length, dim

    def build(self, input_shape):
        self.table = self.add_weight(shape=(self.length, self.dim), initializer="random_normal")

    def call(self, x):
        return x + self.table[None]


class LocalSelfAttention(keras.layers.Layer):
    """A custom layer holding a MultiHeadAttention: each token sees itself and the one before."""

    def __init__(self, heads, key_dim, length, **kwargs):
        super().__init__(**kwargs)
        self.att = keras.layers.MultiHeadAttention(heads, key_dim, name="local_attention")
        j = np.arange(length)
        self.mask = ((j[:, None] == j[None, :])
                     | ((j[:, None] - 1 == j[None, :]) & (j[:, None] >= 2)))[None]

    def call(self, x):
        return x + self.att(x, x, attention_mask=self.mask)


def marked_transformer(seed=0):
    """Embedding + positions -> local attention -> global attention -> [CLS] -> classifier."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((T + 1,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 32, name="tokens")(inp)
    h = PositionEmbedding(T + 1, 32, name="positions")(h)
    h = LocalSelfAttention(2, 16, T + 1, name="local")(h)
    a = keras.layers.MultiHeadAttention(2, 16, name=LAST)(h, h)
    h = keras.layers.Add(name="residual")([h, a])
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h[:, 0, :])
    out = keras.layers.Dense(C, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="marked_transformer")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def peak_fraction(scores, p):
    """How often the [CLS] row, averaged over heads, peaks on the labelled position p + 1."""
    cls_row = scores.mean(axis=1)[:, 0, :]
    return float(np.mean(cls_row.argmax(axis=-1) == p + 1))


@pytest.fixture(scope="module")
def marked():
    x, y, p = make_marked(3000, 0)
    xv, yv, pv = make_marked(300, 1)
    return x, y, p, xv, yv, pv


@pytest.fixture(scope="module")
def trained(marked, tmp_path_factory):
    x, y, _, xv, yv, _ = marked
    model = marked_transformer()
    untrained = AttentionScores(model)(xv[:200])
    log_dir = str(tmp_path_factory.mktemp("attention") / "run")
    cb = AttentionMapsCallback((xv, yv), log_dir, num_samples=8, token_names=TOKEN_NAMES,
                               class_names=TOKEN_NAMES[:C])
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[cb])
    return model, cb, log_dir, untrained


def test_last_layer_attention_peaks_on_the_marked_position(trained, marked):
    model, cb, _, untrained = trained
    _, _, _, xv, yv, pv = marked
    assert model.evaluate(xv, yv, verbose=0)[1] > 0.95  # the task is learned
    # the callback's own numbers, for its fixed samples
    assert cb.layer_paths == [LOCAL, LAST]
    logged = cb.last_scores[LAST]
    assert logged.shape == (8, 2, T + 1, T + 1)
    np.testing.assert_allclose(logged.sum(axis=-1), 1.0, atol=1e-5)
    assert peak_fraction(logged, pv[cb.samples.index]) >= 0.75
    # the extractor on 200 samples, against the untrained model as a negative control
    trained_scores = AttentionScores(model, [LAST])(xv[:200])[LAST]
    assert peak_fraction(trained_scores, pv[:200]) >= 0.9
    assert peak_fraction(untrained[LAST], pv[:200]) < 0.35
    # the local layer obeys its mask: nothing beyond the previous token
    local = AttentionScores(model, "local_attention")(xv[:50])[LOCAL]
    j = np.arange(T + 1)
    allowed = (j[:, None] == j[None, :]) | ((j[:, None] - 1 == j[None, :]) & (j[:, None] >= 2))
    assert np.abs(local[..., ~allowed]).max() < 1e-6


def test_reading_attention_leaves_the_model_unchanged(trained, marked):
    model, _, _, _ = trained
    xv = marked[3][:64]
    before = model.predict(xv, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    reader = AttentionScores(model)
    out = reader(xv)
    np.testing.assert_allclose(out["__output__"], before, atol=1e-5)
    np.testing.assert_allclose(model.predict(xv, verbose=0), before, atol=0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert all("call" not in vars(layer) for _, layer in find_attention_layers(model))
    reader(xv + 0)
    assert reader.trace_count == 1  # the same shape never retraces


def test_event_files_hold_one_heatmap_grid_per_layer_and_epoch(trained):
    _, cb, log_dir, _ = trained
    images, _ = read_events(log_dir)
    assert set(images) == {f"attention/{LOCAL}", f"attention/{LAST}"}  # no rollout: sequences
    for events in images.values():
        assert [step for step, _ in events] == [0, 1, 2]
        pictures = [picture for _, picture in events]
        assert pictures[0].shape[0] > 100 and pictures[0].shape[1] > 100
        assert pictures[0].std() > 10  # not blank
        assert not np.array_equal(pictures[0], pictures[-1])  # changes as it trains
    assert cb.trace_counts() == {"attention": 1}


def test_configuration_errors_raise_before_the_first_batch(marked, tmp_path):
    x, y, _, xv, yv, _ = marked
    model = marked_transformer(seed=1)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"global_attention"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0,
                  callbacks=[AttentionMapsCallback((xv, yv), str(tmp_path), layers="nope")])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    cnn = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="conv"),
                            keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(2, activation="softmax", name="out")])
    cnn.compile("adam", "sparse_categorical_crossentropy")
    xi = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    yi = np.arange(16) % 2
    with pytest.raises(ValueError, match=r"no keras.layers.MultiHeadAttention.*conv"):
        cnn.fit(xi, yi, epochs=1, verbose=0,
                callbacks=[AttentionMapsCallback((xi, yi), str(tmp_path))])
    with pytest.raises(ValueError, match="token_names"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[
            AttentionMapsCallback((xv, yv), str(tmp_path), token_names=["a", "b"])])
    with pytest.raises(ValueError, match="layers"):
        AttentionMapsCallback((xv, yv), str(tmp_path), layers=[3])


def test_a_logging_failure_warns_once_or_raises_when_strict(marked, tmp_path):
    x, y, _, xv, yv, _ = marked
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the log folder should be")
    model = marked_transformer(seed=2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model.fit(x[:128], y[:128], epochs=2, verbose=0, callbacks=[
            AttentionMapsCallback((xv, yv), str(blocked))])
    ours = [w for w in seen if issubclass(w.category, ExplanationLoggingWarning)]
    assert len(ours) == 1
    with pytest.raises(Exception):  # noqa: B017 - whatever the file system raises
        model.fit(x[:128], y[:128], epochs=1, verbose=0, callbacks=[
            AttentionMapsCallback((xv, yv), str(blocked), strict=True)])


# -- image models: attention rollout -----------------------------------------------------------
def test_rollout_follows_the_attention_it_is_given():
    n, t = 2, 5
    eye = np.broadcast_to(np.eye(t), (n, 3, t, t))
    np.testing.assert_allclose(attention_rollout([eye, eye]), np.broadcast_to(np.eye(t), (n, t, t)))
    # every token attends only to token 3 in both layers: with the residual halves,
    # row 0 of the rollout is 0.25 on token 0 and 0.75 on token 3
    to3 = np.zeros((n, 1, t, t))
    to3[..., 3] = 1.0
    roll = attention_rollout([to3, to3])
    np.testing.assert_allclose(roll[:, 0], np.tile([0.25, 0, 0, 0.75, 0], (n, 1)), atol=1e-6)
    np.testing.assert_allclose(roll.sum(-1), 1.0, atol=1e-6)
    assert patch_grid((16, 16, 3), 16) == (4, 4, False)
    assert patch_grid((16, 16, 3), 17) == (4, 4, True)
    assert patch_grid((8, 16, 1), 8) == (2, 4, False)
    assert patch_grid((16, 16, 3), 15) is None
    # a class token at 0 attending to patch 5 of a 2x2 grid... of 4 patches: patch index 2
    cls = np.zeros((1, 1, 5, 5))
    cls[..., 3] = 1.0
    maps = rollout_maps([cls], (8, 8, 3))
    assert maps.shape == (1, 2, 2) and maps[0].argmax() == 2 and maps.max() == 1.0
    with pytest.raises(ValueError, match="tile"):
        rollout_maps([cls], (7, 7, 3))
    with pytest.raises(ValueError, match="square"):
        attention_rollout([np.zeros((1, 1, 3, 5))])


def tiny_vit(size=16, patch=4, dim=16, seed=0):
    """Patches -> class token -> two attention blocks (the second in a nested model) -> head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    p = keras.layers.Conv2D(dim, patch, strides=patch, name="patchify")(inp)
    p = keras.layers.Reshape(((size // patch) ** 2, dim))(p)
    p = keras.layers.Concatenate(axis=1, name="with_cls")(
        [keras.layers.Dense(dim, name="cls")(keras.ops.ones_like(p[:, :1, :1])), p])
    h = p + keras.layers.MultiHeadAttention(2, 8, name="block1")(p, p)
    inner_in = keras.Input(h.shape[1:])
    inner = keras.Model(inner_in, inner_in + keras.layers.MultiHeadAttention(
        2, 8, name="mha")(inner_in, inner_in), name="block2")
    h = inner(h)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(h[:, 0])
    model = keras.Model(inp, out, name="tiny_vit")
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_vit_logs_rollout_overlays_and_per_head_maps(tmp_path):
    from keras_audit.datasets import make_shapes

    x, y, _ = make_shapes(n=96, size=16, object_size=5, seed=3)
    model = tiny_vit()
    reader = AttentionScores(model)
    assert reader.layers == ["block1", "block2/mha"]
    assert reader.shapes["block1"] == (17, 17)
    np.testing.assert_allclose(reader(x[:8])["__output__"], model.predict(x[:8], verbose=0),
                               atol=1e-5)
    cb = AttentionMapsCallback((x, y), str(tmp_path), num_samples=3)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    assert cb.rollout
    images, _ = read_events(str(tmp_path))
    assert set(images) == {"attention/block1", "attention/block2/mha", "attention/rollout"}
    assert [step for step, _ in images["attention/rollout"]] == [0, 1]
    assert images["attention/rollout"][0][1].std() > 10
    # the logged rollout is the one computed from the logged weights
    scores = AttentionScores(model)(cb.samples.x)
    expect = rollout_maps([scores["block1"], scores["block2/mha"]], (16, 16, 3))
    assert expect.shape == (3, 4, 4)
    got = rollout_maps([cb.last_scores["block1"], cb.last_scores["block2/mha"]], (16, 16, 3))
    np.testing.assert_allclose(got, expect, atol=1e-5)


def test_audit_callback_bundles_attention_and_embeddings(marked, tmp_path):
    from keras_audit.callbacks import AuditCallback

    x, y, _, xv, yv, _ = marked
    model = marked_transformer(seed=4)
    audit = AuditCallback((xv, yv), str(tmp_path), include=("attention", "embeddings"),
                          options={"embeddings": {"num_samples": 60},
                                   "attention": {"token_names": TOKEN_NAMES}})
    model.fit(x[:512], y[:512], epochs=2, batch_size=64, verbose=0, callbacks=[audit])
    images, scalars = read_events(str(tmp_path))
    assert set(images) == {f"attention/{LOCAL}", f"attention/{LAST}", "embeddings/hidden"}
    assert all([step for step, _ in v] == [0, 1] for v in images.values())
    assert list(scalars) == ["embeddings/hidden/silhouette"]
    assert (tmp_path / "projector_config.pbtxt").exists()
    assert len((tmp_path / "metadata.tsv").read_text().splitlines()) == 61
    # the attention samples are the first of the bundle's class-balanced samples
    attention, embeddings = audit.callbacks["attention"], audit.callbacks["embeddings"]
    np.testing.assert_array_equal(attention.samples.index, embeddings.samples.index[:4])
    assert audit.trace_counts() == {"attention/attention": 1, "embeddings/embeddings": 1}
