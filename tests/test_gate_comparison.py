"""Comparison with a baseline: a copy of the model with a pruned layer, on the same data."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from _gate_data import GATE_OPTIONS, blob_mlp, grouped_audit_set
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar

from keras_audit.audit._weights import weights_hash
from keras_audit.audit.report import AuditInputError, run


def pruned_copy(model: keras.Model, share: float = 0.85) -> keras.Model:
    """The model with the smallest ``share`` of its hidden kernel's weights set to zero."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layer = copy.get_layer("hidden")
    kernel, bias = layer.get_weights()
    cut = np.quantile(np.abs(kernel), share)
    layer.set_weights([np.where(np.abs(kernel) < cut, 0.0, kernel), bias])
    return copy


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    model = blob_mlp()
    baseline = pruned_copy(model)
    x, y, site = grouped_audit_set(n_per_group=100, flip=0.0)
    # noise makes the audit harder, so the pruned copy's mistakes show
    x = x + np.random.default_rng(5).normal(0, 0.8, x.shape).astype(np.float32)
    path = tmp_path_factory.mktemp("baseline") / "old.keras"
    baseline.save(path)
    before = weights_hash(baseline)
    rep = run(model, x, y, checks=("performance",), out_dir=None, options=GATE_OPTIONS,
              groups={"site": site}, baseline=path,
              policy=[{"name": "no regression", "metric": "comparison.delta.accuracy",
                       "min": 0.05, "severity": "fail"}])
    p_c = model.predict(x, verbose=0).argmax(1)
    p_b = baseline.predict(x, verbose=0).argmax(1)
    assert weights_hash(baseline) == before
    return rep, x, y, site, p_c, p_b


def test_delta_mcnemar_and_flips(compared):
    rep, _, y, _, p_c, p_b = compared
    c = rep.content["comparison"]
    assert c["status"] == "ok", c
    acc_c, acc_b = float(np.mean(p_c == y)), float(np.mean(p_b == y))
    assert (p_c != p_b).sum() > 0  # the pruned layer changed some predictions
    assert c["candidate"]["accuracy"] == pytest.approx(acc_c)
    assert c["baseline"]["accuracy"] == pytest.approx(acc_b)
    assert c["delta"]["accuracy"] == pytest.approx(acc_c - acc_b)
    lo, hi = c["delta_ci95"]["accuracy"]
    assert lo <= c["delta"]["accuracy"] <= hi
    b = int(np.sum((p_c == y) & (p_b != y)))
    cc = int(np.sum((p_c != y) & (p_b == y)))
    m = c["mcnemar"]
    assert (m["b_only_candidate_right"], m["c_only_baseline_right"]) == (b, cc)
    assert m["p_value"] == pytest.approx(binomtest(min(b, cc), b + cc, 0.5).pvalue)
    assert m["p_value"] == pytest.approx(
        mcnemar([[0, b], [cc, 0]], exact=True).pvalue)
    assert c["flips"]["count"] == int(np.sum(p_c != p_b))
    assert c["flips"]["indices"] == np.flatnonzero(p_c != p_b).tolist()
    crit = rep.content["criteria"][0]
    assert crit["value"] == pytest.approx(acc_c - acc_b) and crit["section"] == "comparison"
    assert acc_c - acc_b < 0.04  # far from the bound, either way
    assert crit["status"] == "fail" and rep.verdict == "fail"


def test_per_group_deltas(compared):
    rep, _, y, site, p_c, p_b = compared
    parts = {g["group"]: g for g in rep.content["comparison"]["groups"]["site"]}
    for s in ("a", "b"):
        k = site == s
        expected = float(np.mean(p_c[k] == y[k]) - np.mean(p_b[k] == y[k]))
        assert parts[s]["delta"]["accuracy"] == pytest.approx(expected)
        assert parts[s]["n"] == int(k.sum())


def test_comparison_in_the_html(compared):
    rep, *_ = compared
    html = rep.to_html()
    section = re.search(r'<section class="sec" id="comparison">(.*?)</section>', html,
                        re.S).group(1)
    m = rep.content["comparison"]["mcnemar"]
    assert f"{m['discordant']} discordant samples" in section
    assert "Per-group deltas" in section


def test_without_baseline_the_section_says_so():
    model = blob_mlp()
    x, y, _ = grouped_audit_set(n_per_group=20)
    rep = run(model, x, y, checks=("performance",), out_dir=None, options=GATE_OPTIONS)
    assert rep.content["comparison"]["status"] == "no baseline"
    assert "No baseline model was given" in rep.to_html()


@pytest.mark.parametrize("baseline, message", [
    ("/nonexistent/old.keras", "baseline model file not found"),
    ("model", "the audited model itself"),
    ("wrong", "cannot take x"),
])
def test_bad_baseline_raises_before_any_work(tmp_path, baseline, message):
    model = blob_mlp()
    if baseline == "model":
        baseline = model
    elif baseline == "wrong":
        baseline = keras.Sequential([keras.Input((7,)), keras.layers.Dense(3)])
    x, y, _ = grouped_audit_set(n_per_group=5)
    with pytest.raises(AuditInputError, match=message):
        run(model, x, y, out_dir=tmp_path / "never", baseline=baseline)
    assert not (tmp_path / "never").exists()
