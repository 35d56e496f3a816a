"""The compliance report: content against the model, escaping, self-containment, determinism."""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from _report_data import (  # noqa: E402
    FAST_OPTIONS,
    SCRIPT_NAME,
    decode_data_uri,
    img_sources,
    read_json,
    urls,
    without_clock,
)
from sklearn.metrics import confusion_matrix, recall_score  # noqa: E402

from keras_audit.audit._weights import weights_hash  # noqa: E402
from keras_audit.audit.report import (  # noqa: E402
    CHECKS,
    SECTIONS,
    TOP_LEVEL_KEYS,
    AuditInputError,
    Report,
    run,
)

NAMES = ["red", SCRIPT_NAME, "blue"]
CARD = {
    "owners": ["Audit team"],
    "version": "1.2.0",
    "licence": "Apache-2.0",
    "citation": "Doe et al. (2025)",
    "intended_use": "Sorting coloured squares & <b>testing</b> the report.",
    "limitations": ["synthetic data only", "24x24 images"],
    "risks": "None known.",
    "reviewed_by_legal": False,
}


@pytest.fixture(scope="module")
def image_audit(shapes_model, shapes_data, tmp_path_factory):
    """One audit of the shared shapes CNN (all checks, reduced settings), written to disk."""
    _, _, xt, yt, _ = shapes_data
    x, y = xt[:60], yt[:60]
    before = weights_hash(shapes_model)
    out = tmp_path_factory.mktemp("report_image")
    rep = run(shapes_model, x, y, class_names=NAMES, out_dir=out, samples=12, seed=0,
              card=CARD, options=FAST_OPTIONS)
    return SimpleNamespace(report=rep, out=out, x=x, y=y, model=shapes_model, before=before,
                           after=weights_hash(shapes_model),
                           html=(out / "report.html").read_text(encoding="utf-8"),
                           json=read_json(out))


def breast_cancer_mlp():
    """A small MLP with one sigmoid unit on scikit-learn's breast cancer data (standardised)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(8, activation="relu", name="hidden"),
                              keras.layers.Dense(1, activation="sigmoid", name="score")],
                             name="cancer_mlp")
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(x[:400], y[:400], epochs=15, batch_size=32, verbose=0)
    return model, x[400:480], y[400:480], list(data.feature_names), list(data.target_names)


@pytest.fixture(scope="module")
def tabular_audit(tmp_path_factory):
    model, x, y, features, classes = breast_cancer_mlp()
    out = tmp_path_factory.mktemp("report_tabular")
    before = weights_hash(model)
    rep = run(model, x, y, class_names=classes, feature_names=features, out_dir=out,
              samples=8, options=FAST_OPTIONS)
    return SimpleNamespace(report=rep, out=out, x=x, y=y, model=model, features=features,
                           before=before, after=weights_hash(model),
                           html=(out / "report.html").read_text(encoding="utf-8"),
                           json=read_json(out))


# -- files and layout ---------------------------------------------------------------------------

def test_files_and_top_level_keys(image_audit):
    a = image_audit
    assert isinstance(a.report, Report)
    assert list(a.json) == list(TOP_LEVEL_KEYS)
    assert a.json["schema_version"] == "1.0"
    # the file on disk is what the object returns
    assert a.report.to_dict() == a.json
    csvs = sorted(p.stem for p in (a.out / "tables").glob("*.csv"))
    assert csvs == sorted(a.report.tables)
    for name in ("performance_per_class", "performance_confusion_matrix", "pruning_global",
                 "pruning_per_layer", "pruning_summary", "quality_sanity",
                 "quality_faithfulness", "data_class_balance", "model_layers", "findings"):
        assert name in a.report.tables, name
    # every requested analysis ran
    for key in ("performance", "explanations", "quality", "pruning"):
        assert a.json[key]["status"] == "ok", (key, a.json[key].get("error"))
    e = a.json["explanations"]
    for key in ("gallery", "shap", "lime"):
        assert e[key]["status"] == "ok", (key, e[key].get("error"))
    assert not [f for f in a.json["findings"] if f["severity"] == "error"]


def test_every_section_heading_in_html(image_audit):
    for anchor, title in SECTIONS:
        assert f'id="{anchor}"' in image_audit.html
        assert f". {title}</h2>" in image_audit.html


# -- content against the model ------------------------------------------------------------------

def test_performance_matches_the_model(image_audit):
    a = image_audit
    pred = a.model.predict(a.x, verbose=0).argmax(axis=1)
    perf = a.json["performance"]
    assert isinstance(perf["accuracy"], float)
    assert perf["accuracy"] == pytest.approx(float(np.mean(pred == a.y)), abs=1e-6)
    lo, hi = perf["accuracy_ci95"]
    assert lo <= perf["accuracy"] <= hi
    cm = confusion_matrix(a.y, pred, labels=[0, 1, 2])
    table = pd.DataFrame(perf["tables"]["confusion_matrix"]).set_index("true")
    np.testing.assert_array_equal(table[NAMES].to_numpy(), cm)
    recall = recall_score(a.y, pred, labels=[0, 1, 2], average=None, zero_division=0)
    per_class = pd.read_csv(a.out / "tables" / "performance_per_class.csv")
    np.testing.assert_allclose(per_class["recall"], recall, atol=1e-9)
    assert list(per_class["class"]) == NAMES
    # the class balance counts the labels
    counts = [row["count"] for row in a.json["data"]["class_balance"]]
    assert counts == np.bincount(a.y, minlength=3).tolist()


def test_provenance_and_model_details(image_audit):
    a = image_audit
    prov = a.json["provenance"]
    assert prov["weights_sha256"] == a.before == prov["weights_sha256_after"]
    for key, arr in (("x_sha256", a.x), ("y_sha256", a.y)):
        arr = np.ascontiguousarray(arr)
        h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
        assert prov[key] == h.hexdigest()
    env = a.json["environment"]
    assert env["versions"]["keras"] == keras.__version__
    assert env["versions"]["numpy"] == np.__version__
    for lib in ("keras_audit", "tensorflow", "shap", "lime"):
        assert env["versions"][lib]
    assert prov["seed"] == 0 and prov["samples"] == 12
    assert env["hardware"]["cpu_count"] == os.cpu_count()
    assert set(env["timings"]["latency"]) == {"latency_ms_batch1", "latency_ms_batch64"}
    m = a.json["model"]
    assert m["name"] == a.model.name
    assert m["parameters"] == a.model.count_params()
    assert m["input_shape"] == [None, 24, 24, 3] and m["output_shape"] == [None, 3]
    assert [row["layer"] for row in m["layers"]] == [layer.name for layer in a.model.layers]
    assert m["owners"] == CARD["owners"] and m["licence"] == "Apache-2.0"
    assert a.json["card"] == CARD
    assert a.json["sign_off"] == {k: None for k in ("reviewer", "role", "date", "decision",
                                                    "findings", "signature")}


def test_weights_unchanged(image_audit, tabular_audit):
    assert image_audit.before == image_audit.after
    assert tabular_audit.before == tabular_audit.after


def test_pruning_and_quality_agree_with_their_tables(image_audit):
    a = image_audit
    pr = a.json["pruning"]
    acc = a.json["performance"]["accuracy"]
    assert pr["dense_accuracy"] == pytest.approx(acc, abs=1e-6)
    rows = {r["sparsity"]: r for r in pr["global"]}
    assert set(rows) == {0.0, 0.5, 0.9}
    assert rows[0.0]["accuracy"] == pytest.approx(acc, abs=1e-6)
    assert "drift_spearman" in rows[0.5]
    layers = {r["layer"] for r in pr["per_layer"]}
    assert layers == {"conv1", "conv2", "probs"}
    q = a.json["quality"]
    table = a.report.tables["quality_sanity"]
    for method, verdict in q["sanity"]["verdicts"].items():
        assert verdict["passed"] == bool(table[table.method == method]["passed"].iloc[0])
    assert set(q["sanity"]["verdicts"]) == {"gradcam", "saliency", "smoothgrad"}


def test_findings_follow_the_numbers(image_audit):
    a = image_audit
    texts = [f["text"] for f in a.json["findings"]]
    acc = a.json["performance"]["accuracy"]
    for row in a.json["performance"]["tables"]["per_class"]:
        flagged = any(t.startswith(f"recall of class {row['class']} is") for t in texts)
        assert flagged == (row["support"] > 0 and row["recall"] < acc - 0.05)
    for method, verdict in a.json["quality"]["sanity"]["verdicts"].items():
        word = "passed" if verdict["passed"] else "failed"
        title = {"gradcam": "Grad-CAM", "saliency": "Saliency", "smoothgrad": "SmoothGrad"}
        assert any(t.startswith(f"{title[method]} {word} the randomisation test") for t in texts)
    drops = [(r["sparsity"], -100 * r["delta_accuracy"]) for r in a.json["pruning"]["global"]]
    first = next(((s, d) for s, d in drops if d >= 5.0), None)
    pruning_texts = [t for t in texts if t.startswith("accuracy drops")]
    if first is None:
        assert not pruning_texts
    else:
        assert pruning_texts == [f"accuracy drops {first[1]:.0f} points at "
                                 f"{100 * first[0]:.0f}% global sparsity"]


def test_gallery_groups_are_right_and_wrong_predictions(image_audit):
    a = image_audit
    pred = a.model.predict(a.x, verbose=0).argmax(axis=1)
    groups = a.json["explanations"]["gallery"]["groups"]
    assert groups["correct"] and all(pred[i] == a.y[i] for i in groups["correct"])
    assert all(pred[i] != a.y[i] for i in groups["incorrect"])
    assert len(groups["incorrect"]) == min(4, int(np.sum(pred != a.y)))
    cfg = a.json["explanations"]["gallery"]["methods"]
    assert cfg["gradcam"]["layer"] == "conv2" and cfg["saliency"]["class"] == "Saliency"


# -- HTML safety --------------------------------------------------------------------------------

def test_names_and_card_are_escaped(image_audit):
    html = image_audit.html
    assert SCRIPT_NAME not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>testing</b>" not in html and "&lt;b&gt;testing&lt;/b&gt;" in html
    assert "<script" not in html.lower()
    # the JSON keeps the name as data
    assert SCRIPT_NAME in image_audit.json["model"]["class_names"]


def test_html_is_self_contained(image_audit):
    html = image_audit.html
    for attr, value in urls(html):
        assert value.startswith(("data:image/png;base64,", "#")), (attr, value[:60])
    assert "http://" not in html and "https://" not in html
    lowered = html.lower()
    for tag in ("<link", "<script", "<iframe", "@import", "url("):
        assert tag not in lowered, tag
    assert "@media print" in html
    sources = img_sources(html)
    gallery = sum(len(item["images"]) for g in image_audit.report.galleries
                  for item in g["items"])
    assert gallery > 0
    assert len(sources) == gallery + len(image_audit.report.figures)
    for uri in sources:
        pixels = decode_data_uri(uri)
        assert pixels.size > 0


# -- determinism ------------------------------------------------------------------------------

def test_same_inputs_give_the_same_json(image_audit, tmp_path):
    a = image_audit
    again = run(a.model, a.x, a.y, class_names=NAMES, out_dir=tmp_path, samples=12, seed=0,
                card=CARD, options=FAST_OPTIONS)
    assert without_clock(read_json(tmp_path)) == without_clock(a.json)
    assert again.content["provenance"]["report_id"] == a.json["provenance"]["report_id"]
    other = run(a.model, a.x, a.y, class_names=NAMES, out_dir=None, seed=1,
                checks=("performance",), options=FAST_OPTIONS)
    assert other.content["provenance"]["report_id"] != a.json["provenance"]["report_id"]


# -- tabular models ------------------------------------------------------------------------------

def test_tabular_report_adapts(tabular_audit):
    t = tabular_audit
    e = t.json["explanations"]
    assert "gallery" not in e
    for key in ("shap", "lime", "permutation_importance", "surrogate_tree"):
        assert e[key]["status"] == "ok", (key, e[key].get("error"))
    assert "Grad-CAM and saliency galleries" not in t.html
    assert t.json["model"]["task"] == "binary"
    prob = t.model.predict(t.x, verbose=0)[:, 0]
    assert t.json["performance"]["accuracy"] == pytest.approx(
        float(np.mean((prob > 0.5) == t.y)), abs=1e-6)
    imp = t.report.tables["permutation_importance"]
    assert set(imp["feature"]) == set(t.features)
    assert 0.0 <= e["surrogate_tree"]["fidelity"] <= 1.0
    assert e["shap"]["method"] in ("permutation", "kernel")
    assert e["shap"]["additivity_error"] < 1e-2
    shap_table = t.report.tables["shap_importance"]
    assert list(shap_table["mean_abs_shap"]) == sorted(shap_table["mean_abs_shap"], reverse=True)
    assert set(t.json["quality"]["sanity"]["verdicts"]) == {"saliency", "gradient_input",
                                                            "integrated_gradients"}
    assert "explanation_drift" not in " ".join(t.report.figures)


# -- only some checks, failures, bad input ------------------------------------------------------

def test_checks_subset_keeps_every_section(shapes_model, shapes_data, tmp_path):
    _, _, xt, yt, _ = shapes_data
    rep = run(shapes_model, xt[:40], yt[:40], checks=["performance"], out_dir=tmp_path,
              options=FAST_OPTIONS)
    for key in ("quality", "pruning", "explanations"):
        assert rep.content[key]["status"] == "not requested"
    assert rep.content["performance"]["status"] == "ok"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    for _, title in SECTIONS:
        assert f". {title}</h2>" in html
    assert "not among the requested checks" in html


def test_failing_analysis_is_recorded_not_fatal(shapes_model, shapes_data, tmp_path,
                                                monkeypatch):
    import keras_audit.audit.quality as quality

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure in the sanity test")

    monkeypatch.setattr(quality, "sanity", broken)
    _, _, xt, yt, _ = shapes_data
    before = weights_hash(shapes_model)
    with pytest.warns(RuntimeWarning, match="sanity failed"):
        rep = run(shapes_model, xt[:30], yt[:30], checks=("sanity",), out_dir=tmp_path,
                  samples=4, options=FAST_OPTIONS)
    q = rep.content["quality"]
    assert q["sanity"] == {"status": "failed",
                           "error": "RuntimeError: simulated failure in the sanity test"}
    assert q["faithfulness"]["status"] == "ok"
    assert any(f["severity"] == "error" and "simulated failure" in f["text"]
               for f in rep.findings)
    assert "simulated failure in the sanity test" in (tmp_path / "report.html").read_text()
    assert weights_hash(shapes_model) == before


@pytest.mark.parametrize("kwargs, message", [
    ({"checks": ("performance", "gradcam")}, "valid checks"),
    ({"checks": ()}, "valid checks"),
    ({"seed": -1}, "seed"),
    ({"samples": 0}, "samples"),
    ({"class_names": ["a", "b"]}, "class_names has 2 names"),
    ({"options": {"pruning": {"levels": 3}}}, "unknown option"),
    ({"card": "/nonexistent/card.yaml"}, "card file not found"),
    ({"card": ["not", "a", "mapping"]}, "card must be"),
])
def test_bad_arguments_raise_before_any_work(shapes_model, shapes_data, tmp_path, kwargs,
                                             message):
    _, _, xt, yt, _ = shapes_data
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message) as info:
        run(shapes_model, xt[:10], yt[:10], out_dir=out, **kwargs)
    assert isinstance(info.value, AuditInputError)
    assert not out.exists()
    if "checks" in kwargs:
        assert all(c in str(info.value) for c in CHECKS)


@pytest.mark.parametrize("x_slice, y_fn, message", [
    ((slice(0, 10), slice(None), slice(0, 12)), lambda y: y[:10], "takes batches"),
    ((slice(0, 10),), lambda y: y[:9], "must match"),
    ((slice(0, 10),), lambda y: y[:10] + 5, "out of range"),
])
def test_bad_data_raise(shapes_model, shapes_data, tmp_path, x_slice, y_fn, message):
    _, _, xt, yt, _ = shapes_data
    with pytest.raises(AuditInputError, match=message):
        run(shapes_model, xt[x_slice], y_fn(yt), out_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_card_from_yaml_file(shapes_model, shapes_data, tmp_path):
    card = tmp_path / "card.yaml"
    card.write_text("owners: [Jane]\nintended_use: |\n  Demo only.\nrisks:\n  - mislabels\n",
                    encoding="utf-8")
    _, _, xt, yt, _ = shapes_data
    rep = run(shapes_model, xt[:20], yt[:20], checks=("performance",), out_dir=None,
              card=card, options=FAST_OPTIONS)
    assert rep.content["card"] == {"owners": ["Jane"], "intended_use": "Demo only.\n",
                                   "risks": ["mislabels"]}
    html = rep.to_html()
    assert "mislabels" in html and "Demo only." in html
