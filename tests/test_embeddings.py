"""EmbeddingCallback: the projector files, the real TensorBoard server, scatter and silhouette.

A small CNN learns scikit-learn's 8x8 digits; the callback logs the input of its classifier
head for 200 fixed validation samples on epochs 0, 2, 4 and 5.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import math  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from _tb import http_get, tensorboard_server  # noqa: E402
from _tb import images_and_scalars as read_events  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402
from tensorboard.plugins.projector import ProjectorConfig  # noqa: E402

from keras_audit.callbacks.base import ExplanationLoggingWarning  # noqa: E402
from keras_audit.callbacks.embeddings import (  # noqa: E402
    EmbeddingCallback,
    default_embedding_layer,
)

N = 200
EPOCHS = 6
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LOGGED = [0, 2, 4, 5]


def digits():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    return x[:1300], d.target[:1300], x[1300:], d.target[1300:]


def digits_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inp)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(16, activation="relu", name="features")(h)
    h = keras.layers.Dropout(0.2, name="drop")(h)
    out = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="digits_cnn")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def features_of(model, x):
    """The 'features' layer's output, computed independently of the callback."""
    return keras.Model(model.input, model.get_layer("features").output)(x).numpy()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    x, y, xv, yv = digits()
    model = digits_cnn()
    log_dir = str(tmp_path_factory.mktemp("embeddings") / "run")
    cb = EmbeddingCallback((xv, yv), log_dir, num_samples=N, freq=2, class_names=NAMES)
    model.fit(x, y, epochs=EPOCHS, batch_size=64, verbose=0, callbacks=[cb])
    return model, cb, log_dir


def test_default_layer_is_the_input_to_the_classifier_head(run):
    model, cb, _ = run
    assert cb.layer_path == "features"  # the dropout before the head is skipped
    assert default_embedding_layer(model).path == "features"
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="h1"),
                            keras.layers.Dense(3, name="h2"), keras.layers.Dense(2, name="o")])
    assert default_embedding_layer(seq).path == "h2"
    with pytest.raises(ValueError, match="no Dense"):
        default_embedding_layer(keras.Sequential([keras.Input((4, 4, 1)),
                                                  keras.layers.Conv2D(2, 3, name="c")]))
    # nested models: a backbone feeding the head, and a head inside a nested model
    bi = keras.Input((8, 8, 1))
    backbone = keras.Model(bi, keras.layers.GlobalAveragePooling2D(name="gap")(
        keras.layers.Conv2D(4, 3, name="c")(bi)), name="backbone")
    inp = keras.Input((8, 8, 1))
    outer = keras.Model(inp, keras.layers.Dense(3, name="head")(
        keras.layers.Dropout(0.1)(backbone(inp))))
    assert default_embedding_layer(outer).path == "backbone"
    hi = keras.Input((4,))
    head = keras.Model(hi, keras.layers.Dense(2, name="cls")(hi), name="headnet")
    assert default_embedding_layer(keras.Model(inp, head(backbone(inp)))).path == "backbone/gap"


def test_projector_files_hold_the_embedding_labels_and_sprite(run):
    model, cb, log_dir = run
    d = Path(log_dir)
    config = text_format.Parse((d / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert len(config.embeddings) == 1
    emb = config.embeddings[0]
    assert emb.tensor_name == cb.tensor_name
    assert list(emb.tensor_shape) == [N, 16]
    assert emb.metadata_path == "metadata.tsv"
    assert emb.sprite.image_path == "sprite.png"
    assert list(emb.sprite.single_image_dim) == [8, 8]

    # the checkpoint holds the final epoch's embedding of the fixed samples
    ckpt = tf.train.latest_checkpoint(log_dir)
    assert ckpt is not None and ckpt.endswith(f"embeddings-{EPOCHS - 1}")
    assert not list(d.glob("embeddings-0.*"))  # older epochs are removed
    tensor = tf.train.load_checkpoint(ckpt).get_tensor(emb.tensor_name)
    np.testing.assert_allclose(tensor, features_of(model, cb.samples.x), atol=1e-5)

    # metadata: header + one row per sample, true and predicted names
    rows = (d / "metadata.tsv").read_text().splitlines()
    assert len(rows) == N + 1 and rows[0] == "label\tpredicted"
    true, pred = zip(*(r.split("\t") for r in rows[1:]))
    assert list(true) == [NAMES[k] for k in cb.samples.y]
    predicted = model.predict(cb.samples.x, verbose=0).argmax(1)
    assert list(pred) == [NAMES[k] for k in predicted]
    assert len(set(cb.samples.y[:10].tolist())) == 10  # class-balanced

    # the sprite: a square grid of 8x8 thumbnails, row-major, each one the sample itself
    sprite = tf.io.decode_png((d / "sprite.png").read_bytes()).numpy()
    cols = math.ceil(math.sqrt(N))
    assert sprite.shape == (math.ceil(N / cols) * 8, cols * 8, 3)
    for k in (0, 57, N - 1):
        r, c = divmod(k, cols)
        tile = sprite[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8, 0].astype(float)
        assert np.corrcoef(tile.ravel(), cb.samples.x[k, ..., 0].ravel())[0, 1] > 0.99


def test_scatter_and_silhouette_events(run):
    model, cb, log_dir = run
    images, scalars = read_events(log_dir)
    assert list(images) == ["embeddings/features"]
    assert [step for step, _ in images["embeddings/features"]] == LOGGED
    pictures = [picture for _, picture in images["embeddings/features"]]
    assert pictures[0].shape[0] >= 200 and pictures[0].std() > 10
    assert not np.array_equal(pictures[0], pictures[-1])

    assert list(scalars) == ["embeddings/features/silhouette"]
    values = scalars["embeddings/features/silhouette"]
    assert sorted(values) == LOGGED
    assert values == pytest.approx(cb.silhouettes)
    # the last value is scikit-learn's silhouette of the final features by true class
    expect = silhouette_score(features_of(model, cb.samples.x), cb.samples.y)
    assert values[EPOCHS - 1] == pytest.approx(expect, abs=1e-4)
    # and it rises as training separates the classes
    assert values[EPOCHS - 1] > values[0] + 0.05
    assert values[EPOCHS - 1] > 0.2


def test_tensorboard_server_serves_the_projector_run(run):
    _, cb, log_dir = run

    def ready(root: str) -> bool:
        return bool(json.loads(http_get(f"{root}/data/plugin/projector/runs")))

    with tensorboard_server(log_dir, ready, timeout=45) as root:
        base = f"{root}/data/plugin/projector"
        runs = json.loads(http_get(f"{base}/runs"))
        assert runs == ["."]
        info = json.loads(http_get(f"{base}/info?run=."))
        served = {e["tensorName"]: e for e in info["embeddings"]}
        assert set(served) == {cb.tensor_name}
        emb = served[cb.tensor_name]
        assert [int(v) for v in emb["tensorShape"]] == [N, 16]
        assert emb["metadataPath"] == "metadata.tsv"
        assert [int(v) for v in emb["sprite"]["singleImageDim"]] == [8, 8]
        name = urllib.parse.quote(cb.tensor_name)
        tensor = np.frombuffer(http_get(f"{base}/tensor?run=.&name={name}"), np.float32)
        np.testing.assert_allclose(tensor.reshape(N, 16), cb.last_embedding, atol=1e-6)
        metadata = http_get(f"{base}/metadata?run=.&name={name}").decode().splitlines()
        assert len(metadata) == N + 1 and metadata[0] == "label\tpredicted"
        assert http_get(f"{base}/sprite_image?run=.&name={name}")[:8] == b"\x89PNG\r\n\x1a\n"
        tags = json.loads(http_get(f"{root}/data/plugin/images/tags"))
        assert "embeddings/features" in tags["."]


def test_without_labels_metadata_has_one_column_and_no_header(tmp_path):
    x, y, xv, _ = digits()
    model = digits_cnn(seed=1)
    cb = EmbeddingCallback(xv, str(tmp_path), layer="flat", num_samples=50)
    model.fit(x[:256], y[:256], epochs=1, verbose=0, callbacks=[cb])
    rows = (tmp_path / "metadata.tsv").read_text().splitlines()
    predicted = model.predict(cb.samples.x, verbose=0).argmax(1)
    assert rows == [str(k) for k in predicted]
    assert cb.last_embedding.shape == (50, 8 * 8 * 8)


def test_configuration_errors_raise_before_the_first_batch(tmp_path):
    x, y, xv, yv = digits()
    model = digits_cnn(seed=2)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"unknown layer 'nope'.*features"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0,
                  callbacks=[EmbeddingCallback((xv, yv), str(tmp_path), layer="nope")])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    no_head = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(10, 8, name="c"),
                                keras.layers.Flatten(name="f")])
    no_head.compile("adam", "mse")
    with pytest.raises(ValueError, match="no Dense"):
        no_head.fit(x[:32], np.zeros((32, 10)), epochs=1, verbose=0,
                    callbacks=[EmbeddingCallback(xv, str(tmp_path))])
    with pytest.raises(ValueError, match="layer"):
        EmbeddingCallback((xv, yv), str(tmp_path), layer=3)
    with pytest.raises(ValueError, match="class_names"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[
            EmbeddingCallback((xv, yv), str(tmp_path), class_names=["a", "b"])])


def test_a_logging_failure_warns_once_or_raises_when_strict(tmp_path):
    x, y, xv, yv = digits()
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the log folder should be")
    model = digits_cnn(seed=3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        history = model.fit(x[:256], y[:256], epochs=2, verbose=0, callbacks=[
            EmbeddingCallback((xv, yv), str(blocked), num_samples=20)])
    assert len(history.history["loss"]) == 2  # training went on
    assert len([w for w in seen if issubclass(w.category, ExplanationLoggingWarning)]) == 1
    with pytest.raises(Exception):  # noqa: B017 - whatever the file system raises
        model.fit(x[:256], y[:256], epochs=1, verbose=0, callbacks=[
            EmbeddingCallback((xv, yv), str(blocked), num_samples=20, strict=True)])
