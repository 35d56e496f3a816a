"""Bounded defaults on deep models: with ``layers=None`` the activation and filter callbacks draw
at most 4 convolution layers spread over the model, read back from the event files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
from _callbacks_data import read_events, shapes  # noqa: E402

from keras_audit.callbacks import ActivationMapsCallback, AuditCallback, FilterCallback  # noqa: E402
from keras_audit.callbacks.layers import spread  # noqa: E402

#: spread(8 convolutions, 4): positions round(linspace(0, 7, 4)) = 0, 2, 5, 7
SPREAD = ["c1", "c3", "c6", "c8"]


def _eight_convs() -> keras.Model:
    """Eight 3x3 convolutions c1..c8 (a pooling after every second), then a softmax head."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = inp
    for k in range(1, 9):
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"c{k}")(h)
        if k in (2, 4, 6):
            h = keras.layers.MaxPooling2D(name=f"pool{k}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    x, y, xv, yv = shapes(n=96)
    log_dir = str(tmp_path_factory.mktemp("eight"))
    model = _eight_convs()
    audit = AuditCallback((xv, yv), log_dir, num_samples=4, metrics=False)
    solo = str(tmp_path_factory.mktemp("solo"))
    alone = [ActivationMapsCallback((xv, yv), solo, num_samples=2, max_channels=2),
             FilterCallback(solo)]
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[audit, *alone])
    return read_events(log_dir), read_events(solo)


def test_audit_defaults_log_a_bounded_spread_set_of_layers(fitted):
    events, _ = fitted
    expected = {"gradcam/c8", "saliency/vanilla"}
    # filters (weights mode): the first conv only, the deeper 3x3 kernels say nothing
    expected |= {f"activations/{c}" for c in SPREAD} | {"filters/c1"}
    expected |= {"evaluation/confusion_matrix", "evaluation/mistakes"}
    assert set(events["images"]) == expected
    assert all([s for s, *_ in recs] == [0, 1] for recs in events["images"].values())


def test_standalone_callbacks_choose_the_same_layers(fitted):
    _, solo = fitted
    assert set(solo["images"]) == ({f"activations/{c}" for c in SPREAD}
                                   | {"filters/c1"})


def test_spread_keeps_the_ends_and_every_layer_of_small_models():
    assert spread(list("ab")) == ["a", "b"]
    assert spread(list("abcd")) == list("abcd")
    assert spread(list(range(120))) == [0, 40, 79, 119]
    assert spread(list(range(5)), 3) == [0, 2, 4]
    assert len(spread(list(range(1000)))) == 4
