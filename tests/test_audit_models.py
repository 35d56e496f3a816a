"""``audit.run`` with every check on every model kind people train (one test id per case).

Each case's report.json is read back: every part either ran (status ok, values checked against
ground truth computed here) or says skipped with the technique and the reason; never a crash
of the whole audit, never a part that failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import copy  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _audit_models import CASES, N, T, multi_output, sequential  # noqa: E402
from _report_data import FAST_OPTIONS, read_json  # noqa: E402

from keras_audit import audit  # noqa: E402
from keras_audit.audit.catalog import AuditInputError  # noqa: E402
from keras_audit.audit.context import build_context  # noqa: E402
from keras_audit.audit.sections import DEFAULT_OPTIONS  # noqa: E402

CHECKS = ("performance", "shap", "lime", "pruning", "sanity")
#: token-id SHAP is a Permutation explainer: 2 * T + 1 evaluations per sample suffice
TEXT_OPTIONS = {"shap": {"max_samples": 4, "max_evals": 4 * T + 1}}


def _options(kind: str) -> dict:
    opts = copy.deepcopy(FAST_OPTIONS)
    if kind == "sequence":
        opts["shap"].update(TEXT_OPTIONS["shap"])
    return opts


@pytest.fixture(scope="module", params=list(CASES))
def audited(request, tmp_path_factory):
    """(case name, Case, report.json content, the model's own predictions on x)."""
    name = request.param
    try:
        case = CASES[name]()
        out = tmp_path_factory.mktemp(name)
        audit.run(case.model, case.x, case.y, checks=CHECKS, out_dir=out, samples=4,
                  options=_options(case.kind), **case.run_kwargs)
        raw = case.model.predict(case.x, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the mixed-precision case sets it
    return name, case, read_json(out), raw


def _parts(content: dict) -> dict[str, dict]:
    ex, q = content["explanations"], content["quality"]
    parts = {"performance": content["performance"], "shap": ex["shap"], "lime": ex["lime"],
             "gallery": ex["gallery"], "sanity": q["sanity"],
             "faithfulness": q["faithfulness"], "pruning": content["pruning"]}
    for method, part in (ex["gallery"].get("methods") or {}).items():
        parts[f"gallery.{method}"] = part
    return parts


def test_every_part_ran_or_says_why(audited):
    name, case, c, _ = audited
    assert keras.mixed_precision.global_policy().name == "float32"
    for key, part in _parts(c).items():
        assert part["status"] in ("ok", "skipped"), (name, key, part)
        if part["status"] == "skipped":
            assert len(part["reason"]) > 30, (name, key, part)
    assert not [f for f in c["findings"] if f["severity"] == "error"], c["findings"]
    assert c["explanations"]["explained_input"] == (case.explained_input or
                                                   c["explanations"]["explained_input"])
    assert c["data"]["n_samples"] == N


def test_performance_matches_the_models_own_predictions(audited):
    name, case, c, raw = audited
    y = case.y["cls"] if isinstance(case.y, dict) else case.y
    probs = raw[0] if isinstance(raw, list) else raw
    expected = float(np.mean(np.argmax(probs, axis=1) == y))
    perf = c["performance"]
    assert perf["accuracy"] == pytest.approx(expected, abs=1e-6), name
    assert perf["accuracy"] >= 0.6, (name, perf["accuracy"])  # the tiny models learned
    # pruning evaluates the same model on the same inputs: its dense accuracy is the same
    assert c["pruning"]["dense_accuracy"] == pytest.approx(expected, abs=1e-6), name
    assert c["pruning"]["global"][0]["sparsity"] == 0.0
    assert c["pruning"]["per_layer"], name


def test_shap_values_are_additive_and_nonzero(audited):
    name, case, c, _ = audited
    shap = c["explanations"]["shap"]
    x0 = case.x["image"] if isinstance(case.x, dict) else (
        case.x[0] if isinstance(case.x, list) else case.x)
    assert shap["values_shape"] == [4, *x0.shape[1:], 1], name
    assert shap["additivity_error"] <= shap["additivity_tolerance"], name
    if case.kind == "image":
        assert shap["method"] == "gradient"
        # a cut gradient (the uint8 cast) would give all-zero values
        assert max(shap["mean_abs_per_output"]) > 1e-4, name
    else:
        assert shap["method"] == "permutation" and "token ids" in shap["note"]


def test_lime_and_gallery(audited):
    name, case, c, _ = audited
    ex = c["explanations"]
    if case.kind == "image":
        assert ex["lime"]["status"] == "ok" and 0 <= ex["lime"]["mean_score"] <= 1
        assert ex["gallery"]["methods"]["saliency"]["status"] == "ok"
        cam = ex["gallery"]["methods"]["gradcam"]
        if name == "subclassed":
            assert cam["status"] == "skipped" and "subclassed" in cam["reason"]
            assert "subclassed" in c["quality"]["gradcam"]["reason"]
            assert "subclassed" in c["pruning"]["drift_reason"]
        else:
            assert cam["status"] == "ok"
    else:
        assert ex["lime"]["status"] == "skipped" and "LIME" in ex["lime"]["reason"]
        assert ex["gallery"]["status"] == "skipped" and "sequence" in ex["gallery"]["reason"]


def test_quality_scores_every_method(audited):
    name, case, c, _ = audited
    q = c["quality"]
    verdicts = q["sanity"]["verdicts"]
    assert set(verdicts) == set(q["methods"]), name
    for v in verdicts.values():
        assert -1 <= v["final_spearman"] <= 1 and v["layers_randomised"] >= 1
    for row in q["faithfulness"]["rows"]:
        for key in ("deletion_auc", "insertion_auc", "random_deletion_auc"):
            assert 0 <= row[key] <= 1, (name, row)
    if case.kind == "sequence":
        assert "integrated_gradients" in q["methods"]


def test_case_specifics(audited):
    name, case, c, raw = audited
    if name == "multi_input":
        ex = c["explanations"]
        assert ex["held_fixed"] == {"vector": {"value": "mean over x", "shape": [3]}}
        assert set(c["model"]["input_shape"]) == {"image", "vector"}
        assert "single-input" in c["pruning"]["drift_reason"]
    elif name == "multi_output":
        outs = c["performance"]["outputs"]
        assert c["performance"]["output"] == "cls" and set(outs) == {"cls", "size"}
        assert outs["cls"]["accuracy"] == c["performance"]["accuracy"]
        mae = float(np.mean(np.abs(raw[1][:, 0] - case.y["size"][:, 0])))
        assert outs["size"]["task"] == "regression"
        assert outs["size"]["mae"] == pytest.approx(mae, rel=1e-4)
        assert c["pruning"]["loss"] == "sparse_categorical_crossentropy"  # the cls head's loss
    elif name == "sequential":
        assert c["model"]["class_names"] == ["left", "right"]  # given as a dict id -> name
    elif name == "uint8_input":
        assert c["data"]["x_dtype"] == "uint8"
    elif name == "dict_input":
        assert c["data"]["inputs"] == {"image": {"shape": [N, 16, 16, 3], "dtype": "float32"}}


# -- bad input: an AuditInputError before any work ------------------------------------------------

@pytest.fixture(scope="module")
def two_heads():
    return multi_output()


@pytest.mark.parametrize("y, output, words", [
    (lambda c: c.y["cls"], None, ["2 outputs", "dict keyed by output name"]),
    (lambda c: [c.y["cls"]], None, ["2 outputs", "list in that order"]),
    (lambda c: {"cls": c.y["cls"], "what": c.y["cls"]}, None, ["unknown output", "'what'"]),
    (lambda c: {"size": c.y["size"]}, None, ["no labels for the explained output 'cls'"]),
    (lambda c: c.y, "area", ["unknown output 'area'", "['cls', 'size']"]),
    (lambda c: c.y, 5, ["output index 5 is out of range"]),
])
def test_multi_output_bad_labels(two_heads, y, output, words):
    with pytest.raises(AuditInputError) as err:
        audit.run(two_heads.model, two_heads.x, y(two_heads), output=output, out_dir=None)
    for w in words:
        assert w in str(err.value)


def test_output_picks_the_regression_head(two_heads):
    ctx = build_context(two_heads.model, two_heads.x, [two_heads.y["cls"], two_heads.y["size"]],
                        defaults=DEFAULT_OPTIONS, output="size", checks=("performance",))
    assert ctx.spec.task == "regression" and ctx.output == 1 and ctx.output_name == "size"
    raw = two_heads.model.predict(two_heads.x, verbose=0)[1]
    np.testing.assert_allclose(ctx.outputs.y_pred, raw[:, 0], rtol=1e-5)
    # the explained view is the regression head of the same weights
    np.testing.assert_allclose(ctx.view.predict(two_heads.x, verbose=0), raw, rtol=1e-5)


def test_bad_inputs_are_named():
    case = CASES["multi_input"]()
    x, vec = case.x
    cases = [({"image": x}, ["missing: ['vector']"]),
             ([x], ["1 arrays", "2 input(s)"]),
             ([x, vec[:10]], ["different batch sizes"]),
             (x, ["2 inputs", "dict keyed by input name"])]
    for bad, words in cases:
        with pytest.raises(AuditInputError) as err:
            audit.run(case.model, bad, case.y, out_dir=None)
        for w in words:
            assert w in str(err.value), (words, str(err.value))


def test_command_takes_class_names_as_id_pairs(tmp_path):
    from keras_audit import cli

    assert cli.parse_class_names("0=cat, 1=dog") == {0: "cat", 1: "dog"}
    assert cli.parse_class_names("cat,dog") == ["cat", "dog"]
    with pytest.raises(cli.UsageError, match="mixes names"):
        cli.parse_class_names("0=cat,dog")
    case = sequential()
    case.model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=case.x, y=case.y)
    code = cli.main(["report", str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"),
                     "--out", str(tmp_path / "out"), "--checks", "performance", "--quiet",
                     "--class-names", "1=right,0=left"])
    assert code == 0
    assert read_json(tmp_path / "out")["model"]["class_names"] == ["left", "right"]
