"""Each report section builder alone, on a small context: every section x every task.

The builders take the frozen ``AuditContext`` and return a ``Section``; these tests build one
context per task (classification, binary, regression) on a tiny tabular model and check what each
section computes against values recomputed here, without running a whole audit.
"""

from __future__ import annotations

import keras  # noqa: E402
import numpy as np
import pytest
from _report_data import FAST_OPTIONS  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine  # noqa: E402
from sklearn.metrics import accuracy_score, mean_absolute_error  # noqa: E402

from keras_audit.audit import sections  # noqa: E402
from keras_audit.audit._weights import weights_hash  # noqa: E402
from keras_audit.audit.catalog import AuditInputError  # noqa: E402
from keras_audit.audit.context import AuditContext, build_context  # noqa: E402
from keras_audit.audit.section import Section  # noqa: E402

TASKS = ("classification", "binary", "regression")
N = 60


def _tabular(task: str):
    if task == "classification":
        x, y = load_wine(return_X_y=True)
        units, act, loss = 3, "softmax", "sparse_categorical_crossentropy"
    elif task == "binary":
        x, y = load_breast_cancer(return_X_y=True)
        units, act, loss = 1, "sigmoid", "binary_crossentropy"
    else:
        x, y = load_diabetes(return_X_y=True)
        y = (y - y.mean()) / y.std()
        units, act, loss = 1, None, "mse"
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(x))[:N]
    x, y = x[pick][:, :8], y[pick].astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(units, activation=act)])
    model.compile("adam", loss)
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    return model, x, y


@pytest.fixture(scope="module", params=TASKS)
def ctx(request) -> AuditContext:
    model, x, y = _tabular(request.param)
    return build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS,
                         checks=("performance", "shap", "lime", "pruning", "sanity"),
                         samples=4, options=FAST_OPTIONS)


def _build(module, ctx: AuditContext) -> Section:
    before = weights_hash(ctx.model)
    sec = module.build(ctx, ctx.options)
    assert weights_hash(ctx.model) == before, f"{module.KEY} changed the weights"
    assert sec.key == module.KEY
    assert all(f["severity"] in ("error", "warning", "info") for f in sec.findings)
    assert not [f for f in sec.findings if f["severity"] == "error"], sec.findings
    return sec


def test_the_table_is_the_report_order():
    assert [m.KEY for m in sections.TABLE] == [k for k, _ in sections.SECTIONS]
    assert [k for k, _ in sections.SECTIONS] == [
        "provenance", "model", "training", "card", "data", "performance", "cross_validation",
        "groups", "comparison", "explanations", "quality", "pruning", "robustness",
        "adversarial", "shift", "examples", "counterfactuals", "sign_off"]
    # every option group comes from exactly one section module
    groups = [g for m in sections.TABLE for g in m.OPTIONS]
    assert len(groups) == len(set(groups)) == len(sections.DEFAULT_OPTIONS)


def test_context_is_frozen(ctx):
    with pytest.raises(AttributeError):
        ctx.seed = 3  # type: ignore[misc]


def test_provenance(ctx):
    c = _build(sections.provenance, ctx).content
    assert c["report_id"].startswith("KA-") and len(c["report_id"]) == 19
    assert c["weights_sha256"] == weights_hash(ctx.model)
    assert c["samples"] == 4 and c["seed"] == 0
    # the id names the content: the same context gives the same id
    assert _build(sections.provenance, ctx).content["report_id"] == c["report_id"]


def test_model_details(ctx):
    c = _build(sections.model_details, ctx).content
    assert c["task"] == ctx.spec.task
    assert c["input_shape"] == [None, 8]
    assert c["parameters"] == int(ctx.model.count_params())
    assert c["n_classes"] == (None if ctx.spec.task == "regression" else ctx.spec.n_classes)


def test_data(ctx):
    sec = _build(sections.data, ctx)
    c = sec.content
    assert c["n_samples"] == N and c["kind"] == "tabular"
    assert c["explained_samples"]["count"] == 4
    if ctx.classifier:
        assert sum(r["count"] for r in c["class_balance"]) == N
    # 60 samples: the small-data warning
    assert any("only 60 samples" in f["text"] for f in sec.findings)


def test_performance(ctx):
    sec = _build(sections.performance, ctx)
    c = sec.content
    assert c["status"] == "ok" and c["n_samples"] == N
    if ctx.classifier:
        assert c["accuracy"] == pytest.approx(accuracy_score(ctx.spec.y_true, ctx.pred))
    else:
        assert c["mae"] == pytest.approx(mean_absolute_error(ctx.y, ctx.pred.ravel()),
                                         rel=1e-5)
    assert sec.latency and all(k.startswith("latency_") for k in sec.latency)
    assert not any(k.startswith("latency_") for k in c)


def test_explanations(ctx):
    sec = _build(sections.explanations, ctx)
    c = sec.content
    assert c["status"] == "ok"
    assert len(c["permutation_importance"]["importance"]) == 8
    assert 0.0 <= c["surrogate_tree"]["fidelity"] <= 1.0 or ctx.spec.task == "regression"
    shap = c["shap"]
    assert shap["status"] == "ok", shap
    assert shap["additivity_error"] <= shap["additivity_tolerance"]
    assert c["lime"]["status"] == "ok" and c["lime"]["samples"] == 2
    assert {r["index"] for r in c["lime"]["explanations"]} <= set(ctx.explain_idx.tolist())


def test_quality(ctx):
    sec = _build(sections.quality, ctx)
    c = sec.content
    assert c["methods"] == ["saliency", "gradient_input", "integrated_gradients"]
    assert set(c["sanity"]["verdicts"]) == set(c["methods"])
    assert len(c["faithfulness"]["rows"]) == 3


def test_pruning(ctx):
    sec = _build(sections.pruning, ctx)
    c = sec.content
    assert c["status"] == "ok"
    assert [r["sparsity"] for r in c["global"]] == [0.0, 0.5, 0.9]
    if ctx.classifier:
        assert c["global"][0]["delta_accuracy"] == 0.0
        assert c["global"][0]["accuracy"] == pytest.approx(
            accuracy_score(ctx.spec.y_true, ctx.pred))


def test_sign_off_and_card(ctx):
    assert set(_build(sections.sign_off, ctx).content.values()) == {None}
    assert _build(sections.card, ctx).content == {}


@pytest.mark.parametrize("task", ["binary"])
def test_not_requested_and_failed_steps(task, monkeypatch):
    model, x, y = _tabular(task)
    ctx = build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS,
                        checks=("performance",), options=FAST_OPTIONS)
    for module in (sections.explanations, sections.quality, sections.pruning):
        assert module.build(ctx, ctx.options).content["status"] == "not requested"

    from keras_audit.audit import performance_analysis

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(performance_analysis, "performance", broken)
    with pytest.warns(RuntimeWarning, match="performance failed"):
        sec = sections.performance.build(ctx, ctx.options)
    assert sec.content == {"status": "failed", "error": "RuntimeError: disk on fire"}
    assert sec.findings == [{"severity": "error", "section": "performance",
                             "text": "performance could not run: RuntimeError: disk on fire"}]


def test_bad_options_are_refused_before_work():
    model, x, y = _tabular("binary")
    with pytest.raises(AuditInputError, match="unknown option"):
        build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS,
                      checks=("performance",), options={"pruning": {"sparsity": 0.5}})
    with pytest.raises(AuditInputError, match="class_names as a dict must have the keys 0..1"):
        build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS,
                      checks=("performance",), class_names={1: "a", 2: "b"})
    ctx = build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS,
                        checks=("performance",), class_names={1: "malignant", 0: "benign"})
    assert ctx.names == ["benign", "malignant"]


def test_the_lrp_check_adds_lrp_to_the_quality_checks():
    model, x, y = _tabular("classification")
    ctx = build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS,
                        checks=("sanity", "lrp"), samples=4, options=FAST_OPTIONS)
    c = _build(sections.quality, ctx).content
    assert c["methods"][-1] == "lrp"
    assert "lrp" in c["sanity"]["verdicts"]
    assert [r["method"] for r in c["faithfulness"]["rows"]][-1] == "lrp"
    # without the check, LRP is not run
    plain = build_context(model, x, y, defaults=sections.DEFAULT_OPTIONS, checks=("sanity",),
                          samples=4, options=FAST_OPTIONS)
    assert "lrp" not in _build(sections.quality, plain).content["methods"]
