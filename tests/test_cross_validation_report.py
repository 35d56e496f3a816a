"""The cross-validation section: ``run(..., cross_validation=audit.cross_validate(...))``
read back from report.json, report.html and tables/*.csv."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from _report_data import FAST_OPTIONS, decode_data_uri, img_sources, read_json  # noqa: E402
from _shap_lime_data import breast_cancer, mlp, trained_mlp  # noqa: E402
from scipy import stats  # noqa: E402

from keras_audit import audit  # noqa: E402
from keras_audit.audit import sections  # noqa: E402
from keras_audit.audit.catalog import AuditInputError  # noqa: E402
from keras_audit.audit.context import build_context  # noqa: E402
from keras_audit.audit.cross_validation import CVResult  # noqa: E402
from keras_audit.audit.sections import cross_validation as cv_section  # noqa: E402

POLICY = [{"name": "cross-validated accuracy", "metric": "cross_validation.mean.accuracy",
           "min": 0.5},
          {"name": "split dependence", "metric": "cross_validation.std.accuracy", "max": 0.5,
           "severity": "warn"}]


def _section_html(html: str) -> str:
    return re.search(r'<section class="sec" id="cross_validation">(.*?)</section>', html,
                     re.S)[1]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    x, y, names = breast_cancer()
    cv = audit.cross_validate(lambda: mlp(30, n_out=2), x, y, folds=3,
                              fit_kwargs={"epochs": 2}, seed=0)
    model = trained_mlp(x[:400], y[:400], epochs=5)
    out = tmp_path_factory.mktemp("cv_report")
    rep = audit.run(model, x[400:520], y[400:520], feature_names=names,
                    checks=("performance",), out_dir=out, options=FAST_OPTIONS,
                    policy=POLICY, cross_validation=cv)
    return cv, rep, out, model, x[400:520], y[400:520], names


def test_report_json_holds_the_folds_and_their_mean(audited):
    cv, rep, out, *_ = audited
    j = read_json(out)
    assert list(j).index("cross_validation") == list(j).index("performance") + 1
    c = j["cross_validation"]
    assert c["status"] == "ok" and c["task"] == "classification" and c["folds"] == 3
    assert c["splitter"] == "StratifiedKFold" and c["confidence"] == 0.95
    assert c["metrics"] == ["accuracy", "macro_f1", "loss", "roc_auc"]
    assert c["n_samples"] == 569
    assert [r["fold"] for r in c["per_fold"]] == [0, 1, 2]
    for m in c["metrics"]:
        folds = cv.per_fold[m].to_numpy()
        assert [r[m] for r in c["per_fold"]] == pytest.approx(folds, rel=1e-5)  # 6 digits
        assert c["mean"][m] == pytest.approx(folds.mean(), rel=1e-5)
        assert c["std"][m] == pytest.approx(folds.std(ddof=1), rel=1e-5)
        half = stats.t.ppf(0.975, 2) * folds.std(ddof=1) / np.sqrt(3)
        assert c["ci"][m] == pytest.approx([folds.mean() - half, folds.mean() + half],
                                           rel=1e-5, abs=1e-6)
    assert [r["n_test"] for r in c["per_fold"]] == [len(t) for t in cv.test_indices]
    assert c["figures"] == ["metrics_per_fold", "learning_curves"]
    # one finding on the split, its severity from the spread of accuracy across the folds
    found = [f for f in j["findings"] if f["section"] == "cross_validation"]
    spread = cv.std["accuracy"] > cv_section.SPLIT_STD_WARNING
    assert [f["severity"] for f in found] == ["warning" if spread else "info"]
    assert f"{cv.mean['accuracy']:.3f} ± {cv.std['accuracy']:.3f}" in found[0]["text"]


def test_a_policy_bounds_the_cross_validated_metrics(audited):
    cv, rep, out, *_ = audited
    j = read_json(out)
    rows = {r["metric"]: r for r in j["criteria"]}
    mean = rows["cross_validation.mean.accuracy"]
    assert mean["value"] == j["cross_validation"]["mean"]["accuracy"]
    assert mean["value"] == pytest.approx(cv.per_fold["accuracy"].mean(), rel=1e-5)
    assert mean["status"] == ("pass" if mean["value"] >= 0.5 else "fail")
    assert mean["section"] == "cross_validation"
    std = rows["cross_validation.std.accuracy"]
    assert std["status"] == ("pass" if std["value"] <= 0.5 else "warn")
    assert rep.criteria.set_index("metric").loc["cross_validation.mean.accuracy",
                                                "status"] == mean["status"]
    html = (out / "report.html").read_text(encoding="utf-8")
    number = [k for k, _ in sections.SECTIONS].index("cross_validation") + 1
    assert f'<a href="#cross_validation">{number}. Cross-validation</a>' in html


def test_html_shows_the_section_its_tables_and_figures(audited):
    cv, rep, out, *_ = audited
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.index('id="performance"') < html.index('id="cross_validation"') < \
        html.index('id="groups"')
    sec = _section_html(html)
    assert "Cross-validation</h2>" in sec
    assert "<th>Splitter</th><td>StratifiedKFold, shuffled</td>" in sec
    assert (f"<td>accuracy</td><td>{cv.mean['accuracy']:.4f}</td>"
            f"<td>{cv.std['accuracy']:.4f}</td>") in sec
    images = img_sources(sec)
    assert len(images) == 2
    for uri in images:
        img = decode_data_uri(uri)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0  # something is drawn
    assert 'alt="Metrics per fold, with the mean and its 95% confidence interval"' in sec
    assert 'alt="Learning curves per fold (train and held-out loss)"' in sec


def test_csv_tables_hold_the_folds_and_the_summary(audited):
    cv, rep, out, *_ = audited
    per_fold = pd.read_csv(out / "tables" / "cross_validation_per_fold.csv")
    assert list(per_fold.columns) == list(cv.per_fold.columns)
    assert len(per_fold) == 3
    np.testing.assert_allclose(per_fold.to_numpy(float), cv.per_fold.to_numpy(float),
                               rtol=1e-12)
    summary = pd.read_csv(out / "tables" / "cross_validation_summary.csv")
    assert list(summary["metric"]) == ["accuracy", "macro_f1", "loss", "roc_auc"]
    np.testing.assert_allclose(summary["mean"], cv.per_fold[list(summary["metric"])].mean(),
                               rtol=1e-12)


def test_without_cross_validation_the_section_says_how(audited):
    cv, rep, _, model, x, y, names = audited
    plain = audit.run(model, x, y, feature_names=names, checks=("performance",),
                      out_dir=None, options=FAST_OPTIONS)
    c = plain.content["cross_validation"]
    assert c["status"] == "not requested"
    assert "run(..., cross_validation=audit.cross_validate(build_model, x, y))" in c["note"]
    assert "cross_validation_per_fold" not in plain.tables
    sec = _section_html(plain.to_html())
    assert "No cross-validation was given" in sec and "<img" not in sec
    # the folds change the report, so its id
    assert plain.content["provenance"]["report_id"] != rep.content["provenance"]["report_id"]


def test_streamed_data_carry_the_section_too(audited):
    import tensorflow as tf

    cv, rep, _, model, x, y, _ = audited
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    streamed = audit.run(model, data, checks=("performance",), out_dir=None,
                         options=FAST_OPTIONS, cross_validation=cv)
    assert streamed.content["cross_validation"] == rep.content["cross_validation"]
    assert set(streamed.tables["cross_validation_per_fold"]["fold"]) == {0, 1, 2}


@pytest.mark.parametrize("bad", [{"accuracy": 0.9}, "cv.json"])
def test_a_wrong_type_is_refused_before_any_work(tmp_path, bad):
    with pytest.raises(AuditInputError, match=r"cross_validation must be a CVResult .*got "
                       + type(bad).__name__):
        audit.run("no-such-model.keras", np.zeros((4, 4)), np.zeros(4),
                  out_dir=tmp_path / "never", cross_validation=bad)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("task, metric, values, expected", [
    ("classification", "accuracy", [0.70, 0.90, 0.95], "warning"),   # std 0.13
    ("classification", "accuracy", [0.93, 0.94, 0.95], "info"),      # std 0.01
    ("regression", "r2", [0.2, 0.6, 0.8], "warning"),                # std 0.31
    ("regression", "r2", [0.80, 0.82, 0.84], "info"),                # std 0.02
])
def test_the_finding_reads_the_spread_of_the_headline_metric(audited, task, metric, values,
                                                              expected):
    *_, model, x, y, names = audited
    per_fold = pd.DataFrame({"fold": [0, 1, 2], "n_train": [80, 80, 80],
                             "n_test": [40, 40, 40], metric: values})
    a = np.asarray(values)
    half = stats.t.ppf(0.975, 2) * a.std(ddof=1) / np.sqrt(3)
    cv = CVResult(task=task, folds=3, per_fold=per_fold, mean={metric: a.mean()},
                  std={metric: a.std(ddof=1)}, ci={metric: (a.mean() - half, a.mean() + half)},
                  histories=[{"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}] * 3)
    ctx = build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS, checks=("performance",),
                        samples=4, options=FAST_OPTIONS)
    sec = cv_section.build(dataclasses.replace(ctx, cross_validation=cv), ctx.options)
    assert sec.content["status"] == "ok"
    # drawn by the section: this result came without figures
    assert set(sec.figures) == {"cross_validation.metrics_per_fold",
                                "cross_validation.learning_curves"}
    [finding] = sec.findings
    assert finding["severity"] == expected
    assert ("depends on the split" in finding["text"]) == (expected == "warning")
    assert finding["text"].startswith("R²" if metric == "r2" else "accuracy")
