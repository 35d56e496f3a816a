"""audit.adversarial: FGSM and PGD on the pre-softmax scores, inside the epsilon-ball."""

import hashlib

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_audit.audit._weights import weights_hash
from keras_audit.audit.adversarial_analysis import (
    adversarial,
    adversarial_examples,
    adversarial_figure,
    epsilon_key,
)


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def digits():
    """A small digits CNN (images in [0, 1]) trained a few epochs, and 240 test images."""
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:1200], d.target[:1200], epochs=10, batch_size=32, verbose=0)
    return model, x[1200:1440], d.target[1200:1440]


@pytest.fixture(scope="module")
def table(digits):
    model, x, y = digits
    before = (digest(x), digest(y), weights_hash(model))
    t = adversarial(model, x, y, epsilons=(0, 2 / 255, 8 / 255, 32 / 255),
                    attack=("fgsm", "pgd"))
    assert (digest(x), digest(y), weights_hash(model)) == before
    return t


def test_layout_and_clean_row(table):
    assert list(table.columns[:4]) == ["attack", "epsilon", "accuracy", "delta_accuracy"]
    assert len(table) == 8 and set(table.attack) == {"fgsm", "pgd"}
    zero = table[table.epsilon == 0]
    assert (zero.accuracy == table.attrs["clean_accuracy"]).all()
    assert (zero.delta_accuracy == 0).all() and table.attrs["clean_accuracy"] > 0.9
    np.testing.assert_allclose(table.epsilon_abs, table.epsilon)  # range [0, 1]


def test_accuracy_falls_with_epsilon_and_pgd_is_at_least_fgsm(table):
    for _, g in table.groupby("attack"):
        acc = g.sort_values("epsilon").accuracy.to_numpy()
        assert np.all(np.diff(acc) <= 1e-9) and acc[-1] < acc[0] - 0.3
    at = table.set_index(["attack", "epsilon"]).accuracy
    for eps in (2 / 255, 8 / 255, 32 / 255):
        # never weaker than FGSM beyond noise (one sample of 240)
        assert at["pgd", eps] <= at["fgsm", eps] + 1 / 240 + 1e-9, eps
    assert at["pgd", 8 / 255] < at["fgsm", 0.0]


def test_examples_stay_in_the_ball_and_the_range(digits):
    model, x, y = digits
    eps = 8 / 255
    for attack in ("fgsm", "pgd"):
        adv = adversarial_examples(model, x[:64], y[:64], eps, attack=attack)
        assert adv.shape == x[:64].shape
        assert np.abs(adv - x[:64]).max() <= eps + 1e-6
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert np.abs(adv - x[:64]).max() > eps / 2  # it moved
    fgsm = adversarial_examples(model, x[:64], y[:64], eps, attack="fgsm")
    # FGSM moves every pixel by exactly eps unless clipped by the range or a zero gradient
    moved = np.abs(fgsm - x[:64])
    inside = (x[:64] > eps) & (x[:64] < 1 - eps)
    assert np.isclose(moved[inside], eps, atol=1e-6).mean() > 0.5
    a = adversarial_examples(model, x[:16], y[:16], eps, seed=1)
    np.testing.assert_array_equal(a, adversarial_examples(model, x[:16], y[:16], eps, seed=1))


def test_sigmoid_and_regression_models():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(300, 4)).astype(np.float32)
    yb = (x[:, 0] > x[:, 1]).astype(np.int64)
    keras.utils.set_random_seed(0)
    binary = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                               keras.layers.Dense(1, activation="sigmoid")])
    binary.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    binary.fit(x, yb, epochs=30, batch_size=32, verbose=0)
    t = adversarial(binary, x, yb, epsilons=(0, 0.1), attack="pgd")
    assert t.attrs["task"] == "binary" and t.accuracy.iloc[1] < t.accuracy.iloc[0] - 0.2
    yr = (x[:, 0] - x[:, 2]).astype(np.float32)
    reg = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                            keras.layers.Dense(1)])
    reg.compile("adam", "mse")
    reg.fit(x, yr, epochs=20, batch_size=32, verbose=0)
    t = adversarial(reg, x, yr, epsilons=(0, 0.05, 0.2), attack=["fgsm", "pgd"])
    assert t.accuracy.isna().all()
    for _, g in t.groupby("attack"):
        assert np.all(np.diff(g.sort_values("epsilon").loss) > 0)
    assert set(adversarial_figure(t).axes[0].get_ylabel().split()) == {"loss"}


def test_epsilon_keys_have_no_dots():
    assert [epsilon_key(e) for e in (0, 1 / 255, 8 / 255, 0.05)] == ["0/255", "1/255",
                                                                      "8/255", "0_05"]


def test_bad_input_raises_before_work(digits):
    model, x, y = digits
    with pytest.raises(ValueError, match="choices") as info:
        adversarial(model, x, y, attack="cw")
    assert "fgsm" in str(info.value) and "pgd" in str(info.value)
    with pytest.raises(ValueError, match="epsilon"):
        adversarial(model, x, y, epsilons=(0, 2.0))
    with pytest.raises(ValueError, match="steps"):
        adversarial(model, x, y, steps=0)
    with pytest.raises(ValueError, match="step_size"):
        adversarial(model, x, y, step_size=-1)
