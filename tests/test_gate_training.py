"""Training details from ``history=``: the curves, epochs, best epoch, optimizer and loss."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from _gate_data import GATE_OPTIONS, blobs

from keras_audit.audit.report import AuditInputError, run


@pytest.fixture(scope="module")
def trained():
    x, y = blobs(300, seed=2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")], name="tiny")
    model.compile(keras.optimizers.Adam(0.003), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[:200], y[:200], validation_data=(x[200:], y[200:]), epochs=6,
                        batch_size=32, verbose=0)
    return model, history, x[200:], y[200:]


def test_training_section_reads_the_history(trained):
    model, history, x, y = trained
    rep = run(model, x, y, checks=("performance",), out_dir=None, options=GATE_OPTIONS,
              history=history,
              policy=[{"name": "epochs", "metric": "training.epochs", "min": 5}])
    t = rep.content["training"]
    h = history.history
    assert t["status"] == "ok" and t["epochs"] == 6
    assert t["best_epoch"] == int(np.argmin(h["val_loss"])) + 1 and t["best_on"] == "val_loss"
    assert t["history"]["loss"] == pytest.approx(h["loss"], rel=1e-5)  # JSON keeps 6 digits
    assert t["final"]["val_accuracy"] == pytest.approx(h["val_accuracy"][-1], rel=1e-5)
    assert t["compiled"] == {"optimizer": "Adam", "learning_rate": pytest.approx(0.003),
                             "loss": "sparse_categorical_crossentropy"}
    assert rep.content["criteria"][0]["status"] == "pass"
    html = rep.to_html()
    section = re.search(r'<section class="sec" id="training">(.*?)</section>', html, re.S)[1]
    assert "<th>Epochs run</th><td>6</td>" in section
    assert f"<th>Best epoch</th><td>{t['best_epoch']} (by val loss)</td>" in section
    assert "data:image/png;base64," in section


def test_without_history_the_section_says_so_and_still_shows_compile_settings(trained):
    model, _, x, y = trained
    rep = run(model, x, y, checks=("performance",), out_dir=None, options=GATE_OPTIONS)
    t = rep.content["training"]
    assert t["status"] == "no history" and t["compiled"]["optimizer"] == "Adam"
    assert "No training history was given" in rep.to_html()


@pytest.mark.parametrize("history, message", [
    ({"loss": [1.0, 0.5], "val_loss": [1.0]}, "one value per epoch"),
    ({"loss": ["a"]}, "list of numbers"),
    ([1, 2], "keras History"),
])
def test_bad_history_raises_before_any_work(tmp_path, history, message):
    with pytest.raises(AuditInputError, match=message):
        run(object(), np.zeros((4, 4)), np.zeros(4), out_dir=tmp_path / "never",
            history=history)
