"""What a new user found wrong in the report (issue item 8), one test per fix."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_pruning_heatmap_sparsities_in_order():
    from keras_audit.audit.pruning import GLOBAL
    from keras_audit.audit.pruning_plots import pruning_figures

    rows = [{"scope": "global", "layer": GLOBAL, "sparsity": s, "accuracy": 1 - s / 2,
             "delta_accuracy": -s / 2} for s in (0.0, 0.5, 0.9)]
    rows += [{"scope": "layer", "layer": "conv", "sparsity": s, "accuracy": 1 - s,
              "delta_accuracy": -s} for s in (0.0, 0.25, 0.75)]
    figs = pruning_figures(pd.DataFrame(rows), dense_accuracy=1.0)
    ax = figs["delta_accuracy_heatmap"].axes[0]
    ticks = [float(t.get_text()) for t in ax.get_xticklabels()]
    assert ticks == [0.0, 0.25, 0.5, 0.75, 0.9]
    # the cell under 0.25 is the layer's value there, not a global level's
    values = ax.images[0].get_array()
    assert values[1, 1] == -0.25 and np.ma.is_masked(values[0, 1])


def test_value_is_not_shown_rounded_to_the_bound_it_breaks():
    from types import SimpleNamespace

    from keras_audit.audit.section import Section
    from keras_audit.audit.sections import performance

    sec = Section("performance")
    sec.content = {"accuracy": 0.9, "n_samples": 100, "ece": 0.05004}
    performance._findings(sec, SimpleNamespace(task="classification", tables={}))
    text = [f["text"] for f in sec.findings if "miscalibrated" in f["text"]]
    assert text == ["the model is miscalibrated: expected calibration error 0.05004 "
                    "(above 0.05)"]
    assert performance.beyond(0.05004, 0.05) == "0.05004"
    assert performance.beyond(0.0731, 0.05) == "0.073"


def test_results_have_short_reprs():
    from keras_audit.audit.document import Report
    from keras_audit.audit.shap_analysis import ShapResult

    big = np.zeros((8, 24, 24, 3), np.float32)
    res = ShapResult(values=big, base_values=np.zeros(8), additivity_error=1e-4,
                     method="gradient", outputs=np.zeros((8, 3)), output_indices=np.zeros(8))
    text = repr(res)
    assert len(text) < 400 and "array(8, 24, 24, 3) float32" in text and "0., 0." not in text
    rep = Report({"model": {"name": "m<1>"}, "verdict": "fail", "findings": [],
                  "criteria": [{"criterion": "acc", "metric": "performance.accuracy",
                                "value": 0.8, "threshold": 0.9, "comparison": "min",
                                "severity": "fail", "status": "fail", "section": None}]}, {})
    assert repr(rep) == "<Report m<1>: verdict fail, 1 criteria (1 not met), 0 findings>"
    html = rep._repr_html_()
    assert "m&lt;1&gt;" in html and "<b>fail</b>" in html and "≥ 0.900000" in html


def test_html_says_how_many_samples_each_analysis_used_and_step_0_is_a_reference(tmp_path):
    import re

    from _gate_data import blob_mlp, blobs

    from keras_audit.audit.report import run

    x, y = blobs(60, seed=7)
    rep = run(blob_mlp(), x, y, checks=("lime", "sanity"), samples=6, out_dir=None,
              options={"lime": {"num_samples": 50, "max_samples": 2},
                       "sanity": {"steps": 4}, "tabular": {"n_repeats": 1}})
    html = rep.to_html()
    prov = re.search(r'<section class="sec" id="provenance">(.*?)</section>', html, re.S)[1]
    used = re.search(r"<th>Samples used</th><td>(.*?)</td>", prov)[1]
    assert "performance, groups and pruning: all 60" in used
    assert "explained pool: 6" in used and "LIME: 2" in used and "SHAP" not in used
    assert "sanity and deletion/insertion: 6" in used
    steps = re.search(r'<table class="sanity-steps">(.*?)</table>', html, re.S)[1]
    for row in re.findall(r'<tr data-step="0">(.*?)</tr>', steps, re.S):
        assert "reference (nothing randomised)" in row and "passed" not in row
    verdicts = rep.content["quality"]["sanity"]["verdicts"]
    for m, v in verdicts.items():
        last = [r for r in re.findall(rf'<tr data-step="{v["layers_randomised"]}">(.*?)</tr>',
                                      steps, re.S) if "<td>" in r]
        assert any(("passed" if v["passed"] else "failed") in r for r in last), m


def test_per_class_recall_has_an_interval_and_warns_only_when_it_is_clear():
    from types import SimpleNamespace

    from _gate_data import blob_mlp, grouped_audit_set

    from keras_audit.audit.performance_analysis import performance
    from keras_audit.audit.section import Section
    from keras_audit.audit.sections import performance as section

    x, y, _ = grouped_audit_set(n_per_group=40, flip=0.3)
    res = performance(blob_mlp(), x, y, n_bootstrap=100, latency_repeats=1)
    table = res.tables["per_class"]
    assert (table.recall_ci_low <= table.recall).all() and (table.recall <= table.recall_ci_high).all()
    assert (table.recall_ci_high - table.recall_ci_low > 0).all()
    per_class = pd.DataFrame({"class": ["wide", "narrow"], "recall": [0.8, 0.8],
                              "support": [5, 400], "recall_ci_low": [0.4, 0.76],
                              "recall_ci_high": [1.0, 0.84]})
    sec = Section("performance")
    sec.content = {"accuracy": 0.95, "n_samples": 405, "ece": 0.01}
    section._findings(sec, SimpleNamespace(task="classification",
                                           tables={"per_class": per_class}))
    found = {f["text"].split(" is ")[0]: f for f in sec.findings if "recall" in f["text"]}
    assert found["recall of class wide"]["severity"] == "info"
    assert "95% CI 0.40–1.00 on 5 samples" in found["recall of class wide"]["text"]
    assert found["recall of class narrow"]["severity"] == "warning"
