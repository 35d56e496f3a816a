"""The audit as a gate: policies, criteria, the verdict, the executive summary, the command's
exit codes. Read back as a user reads them: report.json, the HTML, the exit status."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _gate_data import GATE_OPTIONS, blob_mlp, blobs

from keras_audit.audit.policy import load_policy, resolve
from keras_audit.audit.report import AuditInputError, run


@pytest.fixture(scope="module")
def blob_model():
    return blob_mlp()


@pytest.fixture(scope="module")
def blob_data():
    return blobs(160, seed=3)


def _audit(model, data, **kwargs):
    x, y = data
    return run(model, x, y, checks=("performance",), out_dir=None, options=GATE_OPTIONS,
               **kwargs)


def _row(report, name):
    rows = [c for c in report.content["criteria"] if c["criterion"] == name]
    assert len(rows) == 1, report.content["criteria"]
    return rows[0]


# -- policies ----------------------------------------------------------------------------------

def test_failing_fail_criterion_fails_and_warn_only_warns(blob_model, blob_data):
    x, y = blob_data
    acc = float(np.mean(blob_model.predict(x, verbose=0).argmax(1) == y))
    bound = round(acc + 0.005, 4)  # just out of reach: the first criterion must break
    strict = [{"name": "accuracy", "metric": "performance.accuracy", "min": bound,
               "severity": "fail"},
              {"name": "ci low", "metric": "performance.accuracy_ci95.0", "min": 0.5}]
    rep = _audit(blob_model, blob_data, policy={"criteria": strict})
    assert rep.verdict == "fail" and rep.content["verdict"] == "fail"
    row = _row(rep, "accuracy")
    assert row["status"] == "fail" and row["section"] == "performance"
    assert row["value"] == pytest.approx(acc, abs=1e-6) and row["threshold"] == bound
    ci = _row(rep, "ci low")
    assert ci["value"] == rep.content["performance"]["accuracy_ci95"][0]
    assert ci["status"] == "pass" and ci["severity"] == "fail"  # severity defaults to fail
    table = rep.criteria
    assert list(table.columns[:8]) == ["criterion", "metric", "value", "threshold",
                                       "comparison", "severity", "status", "section"]
    assert table.status.tolist() == ["fail", "pass"]
    assert [c["criterion"] for c in rep.failing_criteria()] == ["accuracy"]
    strict[0]["severity"] = "warn"
    rep = _audit(blob_model, blob_data, policy=strict)
    assert rep.verdict == "warn" and _row(rep, "accuracy")["status"] == "warn"


def test_missing_metric_is_missing_never_skipped(blob_model, blob_data):
    policy = [{"name": "robust", "metric": "robustness.worst.delta_accuracy", "max": 0.1,
               "severity": "warn"},
              {"name": "ok", "metric": "performance.accuracy", "min": 0.5}]
    rep = _audit(blob_model, blob_data, policy=policy)
    assert _row(rep, "robust")["status"] == "missing" and _row(rep, "robust")["value"] is None
    assert rep.verdict == "warn"
    policy[0]["severity"] = "fail"
    assert _audit(blob_model, blob_data, policy=policy).verdict == "fail"


def test_default_policy_is_the_fixed_thresholds_as_warnings(blob_model, blob_data):
    from keras_audit.audit.sections import data, performance

    rep = _audit(blob_model, blob_data)
    rows = {c["metric"]: c for c in rep.content["criteria"]}
    assert set(rows) == {"data.n_samples", "data.imbalance_ratio", "performance.ece"}
    assert {c["severity"] for c in rows.values()} == {"warn"}
    assert rows["performance.ece"]["threshold"] == performance.ECE_WARNING
    assert rows["data.n_samples"]["threshold"] == data.SMALL_DATA
    ece = rep.content["performance"]["ece"]
    assert rows["performance.ece"]["status"] == ("pass" if ece <= 0.05 else "warn")
    expected = "warn" if any(c["status"] != "pass" for c in rows.values()) else "pass"
    assert rep.verdict == expected and rep.content["provenance"]["policy"] == "default"


def test_policy_from_yaml_and_json_keys(blob_model, blob_data, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("criteria:\n  - {name: accuracy, metric: performance.accuracy, min: 0.5, "
                    "severity: fail}\n  - {name: task, metric: performance.task, "
                    "equals: classification}\n", encoding="utf-8")
    x, y = blob_data
    run(blob_model, x, y, checks=("performance",), out_dir=tmp_path / "out",
        options=GATE_OPTIONS, policy=path)
    content = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert content["verdict"] == "pass" and list(content)[:3] == ["schema_version", "verdict",
                                                                 "criteria"]
    assert [c["status"] for c in content["criteria"]] == ["pass", "pass"]
    csv = (tmp_path / "out" / "tables" / "criteria.csv").read_text(encoding="utf-8")
    assert csv.splitlines()[0].startswith("criterion,metric,value,threshold,comparison")


@pytest.mark.parametrize("policy, message", [
    ({"criteria": [{"metric": "performance.accuracy", "minimum": 0.9}]}, "unknown key"),
    ({"rules": []}, "unknown policy key"),
    ([{"metric": "performance.accuracy", "min": "high"}], "must be a finite number"),
    ([{"metric": "performance.accuracy", "min": 0.9, "max": 1.0}], "exactly one bound"),
    ([{"metric": "performance.accuracy", "min": 0.9, "severity": "error"}], "severity"),
    ([{"min": 0.9}], "needs 'metric'"),
    ([], "no criteria"),
    ("/nonexistent/policy.yaml", "policy file not found"),
])
def test_bad_policy_raises_before_any_work(tmp_path, policy, message):
    # the model is not even a model: the policy is refused before the model is looked at
    with pytest.raises(AuditInputError, match=message):
        run(object(), np.zeros((4, 4)), np.zeros(4), out_dir=tmp_path / "never", policy=policy)
    assert not (tmp_path / "never").exists()


def test_resolve_paths():
    content = {"a": {"b": [1, {"c": 2}]}}
    assert resolve(content, "a.b.0") == (True, 1)
    assert resolve(content, "a.b.1.c") == (True, 2)
    assert resolve(content, "a.b.2") == (False, None)
    assert resolve(content, "a.x") == (False, None)
    assert load_policy(None) is None


# -- the executive summary ---------------------------------------------------------------------

def _summary(html: str) -> str:
    m = re.search(r'<section class="sec summary" id="summary">(.*?)</section>', html, re.S)
    assert m, "no executive summary"
    return m.group(1)


def test_executive_summary_opens_the_report(blob_model, blob_data):
    x, y = blob_data
    acc = float(np.mean(blob_model.predict(x, verbose=0).argmax(1) == y))
    bound = round(acc + 0.005, 4)
    policy = [{"name": "accuracy", "metric": "performance.accuracy", "min": bound},
              {"name": "calibration", "metric": "performance.ece", "max": 0.5,
               "severity": "warn"},
              {"name": "robust", "metric": "stress_test.worst.delta_accuracy", "max": 0.1,
               "severity": "warn"}]
    html = _audit(blob_model, blob_data, policy=policy).to_html()
    # the summary comes before every numbered section
    assert html.index('id="summary"') < html.index('<section class="sec" id="provenance"')
    summary = _summary(html)
    assert re.search(r'class="verdict verdict-fail"[^>]*>Verdict: <strong>FAIL</strong>', summary)
    rows = re.findall(r'<tr class="status-(\w+)" data-status="\w+">(.*?)</tr>', summary, re.S)
    assert [s for s, _ in rows] == ["fail", "pass", "missing"]
    failed = rows[0][1]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", failed, re.S)
    assert cells[0] == "accuracy" and cells[2] == f"{acc:.4f}"
    assert cells[3] == f"≥&nbsp;{bound:.4f}"
    assert cells[5].startswith("fail")
    assert '<a href="#performance">' in cells[6]
    assert "Against the given policy. 3 criteria, 2 not met: accuracy, robust." in summary
    # the metric without a section links nowhere rather than to a missing anchor
    assert "<a href" not in re.findall(r"<td[^>]*>(.*?)</td>", rows[2][1], re.S)[6]


def test_findings_in_the_summary_link_to_their_sections(blob_model, blob_data):
    rep = _audit(blob_model, blob_data)  # no card given
    texts = [f["text"] for f in rep.findings]
    assert any(t.startswith("no model card was given") for t in texts)
    summary = _summary(rep.to_html())
    items = re.findall(r'<li class="(\w+)"><span class="sev">\w+</span>(.*?)</li>', summary, re.S)
    assert len(items) == len(rep.findings)
    for (severity, item), finding in zip(items, rep.findings, strict=True):
        assert severity == finding["severity"]
        assert f'<a href="#{finding["section"]}">' in item
    card = next(i for s, i in items if "no model card was given" in i)
    assert '<a href="#card">' in card
    x, y = blob_data
    partial = run(blob_model, x, y, checks=("performance",), out_dir=None, options=GATE_OPTIONS,
                  card={"intended_use": "tests"})
    assert "the model card does not state: limitations, risks" in [
        f["text"] for f in partial.findings]


# -- the model card ----------------------------------------------------------------------------

def test_model_card_front_matter_and_sections(blob_model, blob_data, tmp_path):
    import yaml

    rep = _audit(blob_model, blob_data, card={"licence": "Apache-2.0",
                                              "intended_use": "Sorting blobs | tests.",
                                              "limitations": ["synthetic"]},
                 policy=[{"name": "accuracy", "metric": "performance.accuracy", "min": 0.5}])
    text = rep.to_model_card(tmp_path / "README.md")
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == text
    assert text.startswith("---\n")
    front_text, body = text[4:].split("\n---\n", 1)
    front = yaml.safe_load(front_text)
    assert front["license"] == "apache-2.0" and front["library_name"] == "keras"
    result = front["model-index"][0]["results"][0]
    assert front["model-index"][0]["name"] == "blob_mlp"
    assert result["task"]["type"] == "tabular-classification"
    metrics = {m["type"]: m["value"] for m in result["metrics"]}
    assert metrics["accuracy"] == rep.content["performance"]["accuracy"]
    assert metrics["f1"] == rep.content["performance"]["macro_f1"]
    headings = re.findall(r"^## (.+)$", body, re.M)
    assert headings[:4] == ["Intended use", "Out-of-scope uses", "Limitations", "Risks"]
    assert {"Evaluation", "Performance per group", "Acceptance criteria"} <= set(headings)
    assert "Sorting blobs | tests." in body and "- synthetic" in body
    assert "Verdict: **pass**." in body
    assert re.search(r"^\| accuracy \| `performance.accuracy` \| [\d.]+ \| ≥ 0.5 \| fail \| "
                     r"pass \|$", body, re.M)


def test_summary_values_show_enough_digits_to_differ_from_their_bound():
    from keras_audit.audit.document import _against

    assert _against(0.05004, 0.05) == "0.05004"
    assert _against(0.0731, 0.05) == "0.0731"
    assert _against(0.05, 0.05) == "0.0500"
    assert _against(True, True) == "yes" and _against(None, 0.9) == "–"
