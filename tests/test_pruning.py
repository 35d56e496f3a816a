"""Pruning impact: the numbers, the masks seen by the forward pass, and exact weight restoration."""

import math

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from keras_audit.audit import pruning
from keras_audit.audit._weights import preserved_weights, weights_hash
from keras_audit.audit.pruning import (
    prunable_kernels,
    pruning_impact,
    pruning_summary,
)
from keras_audit.audit.pruning_plots import pruning_figures
from keras_audit.explain.forward import CompiledForward

PATHS = ["backbone/conv_a", "backbone/conv_b", "head"]


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    return x[:1200], d.target[:1200], x[1200:], d.target[1200:]


@pytest.fixture(scope="module")
def model(digits):
    """A digits CNN whose convolutions sit in a nested Sequential backbone."""
    x, y, xt, yt = digits
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv_b"),
    ], name="backbone")
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten(name="flat")(backbone(inp))
    out = keras.layers.Dense(10, activation="softmax", name="head")(h)
    m = keras.Model(inp, out, name="digits_cnn")
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(x, y, epochs=12, batch_size=32, verbose=0)
    acc = m.evaluate(xt, yt, verbose=0)[1]
    assert acc > 0.9, f"fixture model did not train (accuracy {acc:.2f})"
    return m


def kernels_now(model):
    return {k.layer_path: np.array(k.variable.numpy()) for k in prunable_kernels(model)}


class Probe(CompiledForward):
    """A forward pass that records the prunable kernels as they are at every call."""

    def __init__(self, model, **kw):
        super().__init__(model, **kw)
        self.seen = []

    def __call__(self, x):
        self.seen.append(kernels_now(self.model))
        return super().__call__(x)


class Failing(CompiledForward):
    """A forward pass that raises ``exc`` at call number ``at`` and records the hash then."""

    def __init__(self, model, exc, at=4, **kw):
        super().__init__(model, **kw)
        self.exc, self.at, self.calls, self.hash_at_failure = exc, at, 0, None

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.at:
            self.hash_at_failure = weights_hash(self.model)
            raise self.exc
        return super().__call__(x)


# -- numbers ------------------------------------------------------------------------------------

def test_prunable_kernels_walk_nested_models(model):
    ks = prunable_kernels(model)
    assert [k.layer_path for k in ks] == PATHS
    assert all(k.variable.name == "kernel" for k in ks)  # no bias, no other weight


def test_sparsity_zero_reproduces_model_evaluate(model, digits):
    _, _, xt, yt = digits
    loss, acc = model.evaluate(xt, yt, verbose=0, batch_size=64)
    table = pruning_impact(model, xt, yt, sparsities=(0.0,))
    assert list(table.columns[:6]) == ["scope", "layer", "sparsity", "accuracy", "loss",
                                       "delta_accuracy"]
    row = table.iloc[0]
    assert (row.scope, row.layer, row.sparsity) == ("global", "<global>", 0.0)
    assert row.accuracy == pytest.approx(acc, abs=1e-6)
    assert row.loss == pytest.approx(loss, rel=1e-4)
    assert row.delta_accuracy == 0.0
    assert table.attrs["loss_name"] == "sparse_categorical_crossentropy"


def test_one_hot_labels_on_a_sparse_loss_model_give_the_same_rows(model, digits):
    _, _, xt, yt = digits
    ids = pruning_impact(model, xt, yt, sparsities=(0.0, 0.5))
    one_hot = pruning_impact(model, xt, keras.utils.to_categorical(yt, 10),
                             sparsities=(0.0, 0.5))
    pd.testing.assert_frame_equal(ids[["accuracy", "loss"]], one_hot[["accuracy", "loss"]])


def test_accuracy_falls_at_high_sparsity_and_weights_are_restored(model, digits):
    _, _, xt, yt = digits
    before = weights_hash(model)
    table = pruning_impact(model, xt, yt)  # the default 10 levels, global magnitude
    assert weights_hash(model) == before
    assert list(table.sparsity) == pytest.approx([i / 10 for i in range(10)])
    dense = table.attrs["dense_accuracy"]
    assert table.accuracy.iloc[0] == dense
    assert table.accuracy.iloc[1] > dense - 0.05  # 10% of the smallest weights barely matter
    assert table.accuracy.iloc[-1] < dense - 0.3  # 90% of them do
    assert table.loss.iloc[-1] > table.loss.iloc[0]
    assert np.allclose(table.delta_accuracy, table.accuracy - dense)
    n = sum(k.size for k in prunable_kernels(model))
    assert (table.n_weights == n).all()
    assert np.allclose(table.achieved_sparsity, np.round(table.sparsity * n) / n)


def test_magnitude_beats_random_at_the_same_sparsity(model, digits):
    _, _, xt, yt = digits
    mag = pruning_impact(model, xt, yt, sparsities=(0.3,), method="magnitude")
    rnd = pruning_impact(model, xt, yt, sparsities=(0.3,), method="random", seed=0)
    assert mag.accuracy.iloc[0] > rnd.accuracy.iloc[0] + 0.1


# -- the masks the forward pass sees ----------------------------------------------------------------

def test_global_half_sparsity_zeroes_half_the_kernels_with_one_threshold(model, digits):
    _, _, xt, yt = digits
    original = kernels_now(model)
    probe = Probe(model)
    pruning_impact(model, xt, yt, sparsities=(0.0, 0.5), forward=probe)
    during = probe.seen[-1]  # the call that evaluated sparsity 0.5
    total = sum(a.size for a in during.values())
    zeros = sum(int((a == 0).sum()) for a in during.values())
    assert zeros == round(0.5 * total)
    pruned = np.concatenate([np.abs(original[p][during[p] == 0]) for p in PATHS])
    kept = np.concatenate([np.abs(original[p][during[p] != 0]) for p in PATHS])
    assert pruned.max() <= kept.min()  # one magnitude threshold across every layer
    for p in PATHS:  # surviving weights are untouched
        assert np.array_equal(during[p][during[p] != 0], original[p][during[p] != 0])
    shares = [float((during[p] == 0).mean()) for p in PATHS]
    assert max(shares) - min(shares) > 0.05  # global, not 50% in each layer
    assert all(np.array_equal(a, original[p]) for p, a in kernels_now(model).items())


def test_per_layer_prunes_one_layer_with_the_others_intact(model, digits):
    _, _, xt, yt = digits
    original = kernels_now(model)
    probe = Probe(model)
    table = pruning_impact(model, xt, yt, sparsities=(0.0, 0.6), scope="per_layer",
                           forward=probe)
    assert list(table.layer) == [p for p in PATHS for _ in range(2)]
    assert (table.scope == "per_layer").all()
    # calls: shape probe, dense, then one per layer at 0.6 (sparsity 0 reuses the dense pass)
    assert len(probe.seen) == 2 + len(PATHS)
    for path, seen in zip(PATHS, probe.seen[2:]):
        for p in PATHS:
            if p == path:
                assert (seen[p] == 0).mean() == pytest.approx(round(0.6 * seen[p].size)
                                                              / seen[p].size)
            else:
                assert np.array_equal(seen[p], original[p])
    zero_rows = table[table.sparsity == 0.0]
    assert (zero_rows.delta_accuracy == 0).all()


def test_filter_l1_zeroes_whole_filters_with_the_smallest_l1(model, digits):
    _, _, xt, yt = digits
    original = kernels_now(model)
    probe = Probe(model)
    pruning_impact(model, xt, yt, sparsities=(0.5,), scope="per_layer", method="filter_l1",
                   layers=["conv_b"], forward=probe)
    seen = probe.seen[-1]["backbone/conv_b"]
    orig = original["backbone/conv_b"]  # (3, 3, 8, 8): the last axis indexes filters
    dead = np.all(seen == 0, axis=(0, 1, 2))
    alive = np.all(seen == orig, axis=(0, 1, 2))
    assert np.all(dead | alive)  # each filter is either removed whole or untouched
    assert dead.sum() == 4
    l1 = np.abs(orig).sum(axis=(0, 1, 2))
    assert set(np.flatnonzero(dead)) == set(np.argsort(l1)[:4])


def test_random_is_seeded(model, digits):
    _, _, xt, yt = digits
    a = pruning_impact(model, xt, yt, sparsities=(0.2, 0.4), method="random", seed=3)
    b = pruning_impact(model, xt, yt, sparsities=(0.2, 0.4), method="random", seed=3)
    c = pruning_impact(model, xt, yt, sparsities=(0.2, 0.4), method="random", seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.loss, c.loss)


# -- restoration --------------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [RuntimeError("forward failed"), KeyboardInterrupt()])
def test_weights_restored_after_failure_or_interrupt_midway(model, digits, exc):
    _, _, xt, yt = digits
    before = weights_hash(model)
    failing = Failing(model, exc, at=4)  # call 4 = the second pruned level
    with pytest.raises(type(exc)):
        pruning_impact(model, xt, yt, sparsities=(0.0, 0.3, 0.6, 0.9), forward=failing)
    assert failing.hash_at_failure is not None and failing.hash_at_failure != before
    assert weights_hash(model) == before


def test_weights_restored_when_the_default_forward_raises(model, digits, monkeypatch):
    _, _, xt, yt = digits
    before = weights_hash(model)

    class Interrupted(Failing):
        def __init__(self, model, **kw):
            super().__init__(model, KeyboardInterrupt(), at=3, **kw)

    monkeypatch.setattr(pruning, "CompiledForward", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        pruning_impact(model, xt, yt, scope="per_layer", sparsities=(0.5, 0.9))
    assert weights_hash(model) == before


def test_preserved_weights_and_hash(model):
    before = weights_hash(model)
    var = prunable_kernels(model)[0].variable
    with pytest.raises(ValueError, match="boom"), preserved_weights(model) as snap:
        w = snap.original(var).copy()
        w.flat[0] = np.nextafter(w.flat[0], np.inf)  # one ulp
        var.assign(w)
        assert weights_hash(model) != before  # the hash sees a one-bit change
        raise ValueError("boom")
    assert weights_hash(model) == before


BAD = [
    (dict(y="short"), "must match"),
    (dict(sparsities=(0.0, 1.0)), r"outside \[0, 1\)"),
    (dict(sparsities=(-0.1,)), r"outside \[0, 1\)"),
    (dict(sparsities=(float("nan"),)), r"outside \[0, 1\)"),
    (dict(sparsities=()), "empty"),
    (dict(layers=["nope"]), r"backbone/conv_a.*backbone/conv_b.*head"),
    (dict(scope="layerwise"), r"'global', 'per_layer'"),
    (dict(method="l2"), r"'magnitude', 'random', 'filter_l1'"),
    (dict(batch_size=0), "batch_size"),
    (dict(y="out_of_range"), "out of range"),
]


@pytest.mark.parametrize("kwargs,match", BAD)
def test_bad_arguments_raise_before_any_weight_is_touched(model, digits, monkeypatch,
                                                         kwargs, match):
    _, _, xt, yt = digits
    kwargs = dict(kwargs)
    if kwargs.get("y") == "short":
        kwargs["y"] = yt[:-1]
    elif kwargs.get("y") == "out_of_range":
        kwargs["y"] = np.where(np.arange(len(yt)) == 5, 10, yt)
    kwargs.setdefault("y", yt)
    entered = []

    def spy(m, **kw):
        entered.append(True)
        return preserved_weights(m, **kw)

    monkeypatch.setattr(pruning, "preserved_weights", spy)
    before = weights_hash(model)
    with pytest.raises(ValueError, match=match):
        pruning_impact(model, xt, **kwargs)
    assert not entered  # the weight-editing block was never reached
    assert weights_hash(model) == before


# -- other models and losses ----------------------------------------------------------------------

def test_uncompiled_sigmoid_model_gets_binary_crossentropy(digits):
    x, y, _, _ = digits
    xb, yb = x[:300].reshape(300, -1), (y[:300] >= 5).astype("int64")
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
    table = pruning_impact(m, xb, yb, sparsities=(0.0,))
    p = m.predict(xb, verbose=0)[:, 0].astype("float64")
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    bce = -np.mean(yb * np.log(pc) + (1 - yb) * np.log(1 - pc))
    assert table.loss.iloc[0] == pytest.approx(bce, rel=1e-4)
    assert table.accuracy.iloc[0] == pytest.approx(np.mean((p > 0.5) == yb))
    assert table.attrs["task"] == "binary"
    assert "default" in table.attrs["loss_name"]


# -- drift, summary and figures ---------------------------------------------------------------------

def test_drift_falls_with_sparsity(model, digits):
    _, _, xt, yt = digits
    before = weights_hash(model)
    table = pruning_impact(model, xt[:200], yt[:200], sparsities=(0.0, 0.1, 0.9), drift=True,
                           drift_samples=8)
    assert weights_hash(model) == before
    rho = table.drift_spearman.to_numpy()
    assert rho[0] == 1.0
    assert 0.8 < rho[1] <= 1.0
    assert rho[2] < rho[1]


def test_drift_on_a_model_without_spatial_layers_raises_before_pruning(digits, monkeypatch):
    x, y, _, _ = digits
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    before = weights_hash(m)
    with pytest.raises(ValueError, match="Grad-CAM"):
        pruning_impact(m, x[:50].reshape(50, -1), y[:50], drift=True)
    assert weights_hash(m) == before


def test_pruning_summary_counts_nonzeros(model):
    table = pruning_summary(model)
    assert list(table.layer) == PATHS
    sizes = [k.size for k in prunable_kernels(model)]
    assert list(table.parameters) == sizes
    assert (table.sparsity == 0).all()
    var = prunable_kernels(model)[2].variable  # head: (288, 10): 6x6x8 flattened
    with preserved_weights(model) as snap:
        w = snap.original(var).copy()
        w[:50] = 0
        var.assign(w)
        inside = pruning_summary(model)
    assert inside.nonzeros.iloc[2] == sizes[2] - 500
    assert inside.sparsity.iloc[2] == pytest.approx(500 / sizes[2])
    assert inside.attrs["sparsity"] == pytest.approx(500 / sum(sizes))
    assert inside["shape"].iloc[2] == (288, 10)


def test_pruning_figures(model, digits):
    from matplotlib.figure import Figure

    _, _, xt, yt = digits
    glob = pruning_impact(model, xt, yt, sparsities=(0.0, 0.5, 0.8))
    per = pruning_impact(model, xt, yt, sparsities=(0.0, 0.5, 0.8), scope="per_layer")
    table = pd.concat([glob, per], ignore_index=True)
    table.attrs = dict(glob.attrs)
    figs = pruning_figures(table)
    assert set(figs) == {"accuracy_vs_sparsity", "delta_accuracy_heatmap"}
    assert all(isinstance(f, Figure) for f in figs.values())
    curves = figs["accuracy_vs_sparsity"].axes[0].lines
    assert len(curves) == 1 + len(PATHS) + 1  # global, each layer, the dense reference
    assert np.allclose(curves[0].get_ydata(), glob.accuracy)
    image = figs["delta_accuracy_heatmap"].axes[0].images[0].get_array()
    expected = table.pivot_table(index="layer", columns="sparsity", values="delta_accuracy",
                                 sort=False).loc[["<global>", *PATHS]].to_numpy()
    assert np.allclose(image, expected)
    figs["delta_accuracy_heatmap"].canvas.draw()  # renders without pyplot
    with pytest.raises(ValueError, match="columns|column"):
        pruning_figures(pd.DataFrame({"a": [1]}))


def test_regression_model_reports_nan_accuracy_and_mse(digits):
    x, _, _, _ = digits
    xr = x[:200].reshape(200, -1)
    yr = xr.mean(axis=1)
    keras.utils.set_random_seed(2)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(4, activation="relu"),
                          keras.layers.Dense(1)])
    table = pruning_impact(m, xr, yr, sparsities=(0.0, 0.5))
    assert math.isnan(table.accuracy.iloc[0])
    pred = m.predict(xr, verbose=0)[:, 0]
    assert table.loss.iloc[0] == pytest.approx(np.mean((pred - yr) ** 2), rel=1e-4)
    figures = pruning_figures(table)  # no accuracy: the figures show the loss
    heat = figures["delta_accuracy_heatmap"].axes[0]
    assert heat.get_title() == "Δ loss against the dense model"
    assert figures["accuracy_vs_sparsity"].axes[0].get_ylabel() == "loss"
    assert len(figures["accuracy_vs_sparsity"].axes[0].lines) == 1
