"""Performance per group: one group built to be worse must come out as the minimum, with an
interval that excludes the other group, and the spread must equal the hand computation."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from _gate_data import GATE_OPTIONS, blob_mlp, grouped_audit_set

from keras_audit import audit
from keras_audit.audit.groups import group_metrics
from keras_audit.audit.report import AuditInputError, run


@pytest.fixture(scope="module")
def grouped():
    model = blob_mlp()
    x, y, site = grouped_audit_set(n_per_group=150, flip=0.3)
    tiny = np.where(np.arange(len(x)) < 10, "z", "w")  # a group of 10: shown, not ranked
    rep = run(model, x, y, checks=("performance",), out_dir=None, options=GATE_OPTIONS,
              groups={"site": site, "tiny": tiny},
              policy=[{"name": "worst site", "metric": "groups.site.min.accuracy",
                       "min": 0.9, "severity": "fail"}])
    pred = model.predict(x, verbose=0).argmax(1)
    return model, x, y, site, tiny, pred, rep


def test_the_worse_group_is_the_minimum(grouped):
    _, _, y, site, _, pred, rep = grouped
    g = rep.content["groups"]["site"]
    acc = {s: float(np.mean(pred[site == s] == y[site == s])) for s in ("a", "b")}
    assert acc["a"] > 0.95 and 0.6 < acc["b"] < 0.8  # the flipped labels did their job
    rows = {r["group"]: r for r in g["groups"]}
    assert rows["a"]["accuracy"] == pytest.approx(acc["a"]) and rows["b"]["n"] == 150
    assert g["argmin"]["accuracy"] == "b" and g["min"]["accuracy"] == pytest.approx(acc["b"])
    assert rows["b"]["accuracy_ci95"][1] < acc["a"]  # b's interval excludes a's accuracy
    assert rows["b"]["accuracy_ci95"][0] <= acc["b"] <= rows["b"]["accuracy_ci95"][1]
    assert g["max_difference"]["accuracy"] == pytest.approx(abs(acc["a"] - acc["b"]))
    assert g["min_ratio"]["accuracy"] == pytest.approx(min(acc.values()) / max(acc.values()))
    recall0 = float(np.mean(pred[(site == "b") & (y == 0)] == 0))
    assert rows["b"]["recall_0"] == pytest.approx(recall0)
    # the policy reads the same numbers
    crit = rep.content["criteria"][0]
    assert crit["value"] == pytest.approx(acc["b"]) and crit["status"] == "fail"
    assert crit["section"] == "groups" and rep.verdict == "fail"
    assert any(f["section"] == "groups" and f["severity"] == "warning" and "group b" in f["text"]
               for f in rep.findings)


def test_small_groups_are_shown_not_ranked(grouped):
    _, _, y, _, tiny, pred, rep = grouped
    t = rep.content["groups"]["tiny"]
    assert {r["group"]: r["ranked"] for r in t["groups"]} == {"w": True, "z": False}
    assert t["unranked_groups"] == ["z"]
    w_acc = float(np.mean(pred[tiny == "w"] == y[tiny == "w"]))
    # one ranked group: min == max == its value, no difference
    assert t["min"]["accuracy"] == pytest.approx(w_acc) == t["max"]["accuracy"]
    assert t["max_difference"]["accuracy"] == 0


def test_group_table_in_the_html(grouped):
    *_, rep = grouped
    html = rep.to_html()
    section = re.search(r'<section class="sec" id="groups">(.*?)</section>', html, re.S).group(1)
    table = re.search(r'<table class="groups" data-attribute="site">(.*?)</table>', section,
                      re.S).group(1)
    heads = re.findall(r"<th>(.*?)</th>", table.split("</thead>")[0])
    col = heads.index("accuracy")
    min_row = re.search(r'<tr class="stat" data-statistic="min">(.*?)</tr>', table, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", min_row)
    # the first three headings (group, n, ranked) share one heading cell in this row
    assert cells[col - 3].endswith('<span class="at">(b)</span>')
    assert "data:image/png;base64," in section  # the per-group figure


def test_group_performance_is_the_same_as_the_report(grouped):
    model, x, y, site, _, _, rep = grouped
    df = audit.group_performance(model, x, y, pd.DataFrame({"site": site}),
                                 n_bootstrap=200, seed=0)
    rows = df[df.statistic == "value"].set_index("group")
    g = rep.content["groups"]["site"]
    for r in g["groups"]:
        assert rows.loc[r["group"], "accuracy"] == pytest.approx(r["accuracy"])
        assert rows.loc[r["group"], "accuracy_ci_low"] == pytest.approx(r["accuracy_ci95"][0])
    stat = df[df.statistic == "max_difference"].iloc[0]
    assert stat["accuracy"] == pytest.approx(g["max_difference"]["accuracy"])
    assert df[df.statistic == "min"].iloc[0]["group"] == "b"


def test_binary_rates_match_the_hand_computation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, y, 1 - y)
    probs = np.stack([1 - pred * 0.9, pred * 0.9 + 0.05], 1)
    g = np.array(["m", "f"] * 100)
    res = group_metrics("binary", y, pred, probs, {"sex": g}, ["no", "yes"], n_bootstrap=0)
    rows = res.table.set_index("group")
    for s in ("m", "f"):
        yt, yp = y[g == s], pred[g == s]
        assert rows.loc[s, "selection_rate"] == pytest.approx(np.mean(yp == 1))
        assert rows.loc[s, "tpr"] == pytest.approx(np.mean(yp[yt == 1] == 1))
        assert rows.loc[s, "fpr"] == pytest.approx(np.mean(yp[yt == 0] == 1))
        assert rows.loc[s, "recall_yes"] == pytest.approx(rows.loc[s, "tpr"])


def test_regression_groups():
    rng = np.random.default_rng(1)
    y = rng.normal(size=100)
    pred = y + np.where(np.arange(100) < 50, 0.1, 1.0) * rng.normal(size=100)
    g = np.where(np.arange(100) < 50, "good", "bad")
    res = group_metrics("regression", y, pred, None, {"k": g}, ["y"], n_bootstrap=20)
    rows = res.table.set_index("group")
    assert res.metrics == ["mae", "r2"]
    assert rows.loc["bad", "mae"] == pytest.approx(np.mean(np.abs(y - pred)[50:]))
    assert res.content["k"]["argmax"]["mae"] == "bad"


def test_without_groups_the_section_says_so(grouped):
    model, x, y, *_ = grouped
    rep = run(model, x[:40], y[:40], checks=("performance",), out_dir=None,
              options=GATE_OPTIONS)
    assert rep.content["groups"]["status"] == "no groups"
    html = rep.to_html()
    section = re.search(r'<section class="sec" id="groups">(.*?)</section>', html, re.S).group(1)
    assert "No groups were given" in section


@pytest.mark.parametrize("groups, message", [
    ({"site": np.array(["a"] * 5)}, "one label per sample"),
    ({"status": np.array(["a"] * 8)}, "attribute names"),
    ({"site": np.array([1.0, np.nan] * 4)}, "missing labels"),
    ([1, 2], "must be a non-empty dict"),
])
def test_bad_groups_raise_before_any_work(grouped, tmp_path, groups, message):
    model, x, y, *_ = grouped
    with pytest.raises(AuditInputError, match=message):
        run(model, x[:8], y[:8], out_dir=tmp_path / "never", groups=groups)
    assert not (tmp_path / "never").exists()
