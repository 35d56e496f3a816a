"""The report's "examples" and "counterfactuals" sections: alone on a context, and in a run."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _report_data import FAST_OPTIONS, decode_data_uri, img_sources, read_json  # noqa: E402
from _shap_lime_data import breast_cancer, trained_mlp  # noqa: E402

from keras_audit.audit import sections  # noqa: E402
from keras_audit.audit._weights import weights_hash  # noqa: E402
from keras_audit.audit.catalog import DEFAULT_CHECKS, AuditInputError  # noqa: E402
from keras_audit.audit.context import build_context  # noqa: E402
from keras_audit.audit.example_analysis import embed  # noqa: E402
from keras_audit.audit.report import run  # noqa: E402

CHECKS = ("examples", "counterfactuals")
OPTIONS = {**FAST_OPTIONS, "counterfactuals": {"max_samples": 4, "n": 2}}


@pytest.fixture(scope="module")
def tabular():
    x, y, names = breast_cancer()
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:400], order[400:460]
    model = trained_mlp(x[tr], y[tr], epochs=10)
    return model, x[tr], y[tr], x[te], y[te], names


@pytest.fixture(scope="module")
def ctx(tabular):
    model, xtr, ytr, xte, yte, names = tabular
    # the first test rows are copied into the reference: planted duplicates
    ref = np.concatenate([xtr, xte[:2]])
    ref_y = np.concatenate([ytr, yte[:2]])
    return build_context(model, xte, yte, defaults=sections.DEFAULT_OPTIONS, checks=CHECKS,
                         samples=6, feature_names=names, class_names=["malignant", "benign"],
                         reference=ref, reference_y=ref_y, options=OPTIONS)


def test_examples_section(ctx):
    before = weights_hash(ctx.model)
    sec = sections.examples.build(ctx, ctx.options)
    assert weights_hash(ctx.model) == before
    c = sec.content
    assert c["status"] == "ok", c
    wrong = np.flatnonzero(ctx.pred != ctx.spec.y_true)
    expected = np.concatenate([ctx.explain_idx, np.setdiff1d(wrong, ctx.explain_idx)[:8]])
    assert c["n_samples"] == len(expected) and c["n_reference"] == 402
    assert c["layer"] == ctx.model.layers[0].name and c["k"] == 5
    # the planted duplicates (x[0], x[1] are in the reference) are found when explained
    assert set(c["duplicates"]) == {0, 1} & set(expected.tolist())
    nb = sec.tables["examples_neighbours"]
    assert set(nb["sample"]) == set(expected.tolist())
    assert set(nb["reference_class"]) <= {"malignant", "benign"}
    assert c["n_misclassified"] == len(np.intersect1d(wrong, expected))
    assert set(c["prototypes"]) == {"malignant", "benign"}
    assert set(sec.figures) >= {"examples.neighbours", "examples.prototypes",
                                "examples.embedding"}
    assert any("nearest reference" in f["text"] for f in sec.findings)
    if c["duplicates"]:
        assert any("duplicate" in f["text"] and f["severity"] == "warning"
                   for f in sec.findings)


def test_counterfactuals_section(ctx):
    sec = sections.counterfactuals.build(ctx, ctx.options)
    c = sec.content
    assert c["status"] == "ok", c
    assert c["method"] == "dice-random" and c["samples"] == ctx.explain_idx[:4].tolist()
    table = sec.tables["counterfactuals"]
    assert len(table) == 8 and c["validity"] == pytest.approx(table["valid"].mean())
    assert c["validity"] >= 0.75
    assert 0 < c["mean_changed_features"] < 30
    per = sec.tables["counterfactuals_per_sample"]
    assert per["valid"].tolist() == table.groupby("sample", sort=False)["valid"].sum().tolist()
    assert "counterfactuals.counterfactuals" in sec.figures


def test_not_requested_and_refused_without_reference(tabular):
    model, xtr, ytr, xte, yte, _ = tabular
    ctx = build_context(model, xte, yte, defaults=sections.DEFAULT_OPTIONS,
                        checks=DEFAULT_CHECKS, options=OPTIONS)
    assert "examples" not in DEFAULT_CHECKS and "counterfactuals" not in DEFAULT_CHECKS
    for module in (sections.examples, sections.counterfactuals):
        assert module.build(ctx, ctx.options).content == {"status": "not requested"}
    with pytest.raises(AuditInputError, match="'examples' check needs reference data"):
        build_context(model, xte, yte, defaults=sections.DEFAULT_OPTIONS, checks=CHECKS)
    with pytest.raises(AuditInputError, match="reference has shape"):
        build_context(model, xte, yte, defaults=sections.DEFAULT_OPTIONS, checks=CHECKS,
                      reference=xtr[:, :5])


def test_image_report_shows_both_sections(shapes_model, shapes_data, tmp_path):
    x, y, xt, yt, _ = shapes_data
    rep = run(shapes_model, xt[:40], yt[:40], checks=("performance", *CHECKS),
              out_dir=tmp_path, samples=4, reference=x[:150], reference_y=y[:150],
              options={**OPTIONS, "counterfactuals": {"max_samples": 3, "n": 1, "steps": 120}})
    js = read_json(tmp_path)
    assert js["examples"]["status"] == "ok" and js["counterfactuals"]["status"] == "ok"
    assert js["examples"]["layer"] == "gmp"
    assert js["counterfactuals"]["method"] == "gradient"
    assert js["counterfactuals"]["validity"] == 1.0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    for anchor in CHECKS:
        assert f'id="{anchor}"' in html
    # the embedding figure is a real image in the page
    assert "examples.embedding" in rep.figures
    imgs = [decode_data_uri(u) for u in img_sources(html)]
    assert all(i.ndim == 3 and i.shape[0] > 50 for i in imgs)
    emb, _, _ = embed(shapes_model, xt[:40], "gmp")
    assert emb.shape == (40, 16)
    assert not [f for f in js["findings"] if f["severity"] == "error"]


def test_command_reference_labels(tabular, tmp_path, capsys):
    """``--reference`` takes the reference's labels from its ``--y-key`` array when present;
    the examples check without ``--reference`` exits 2 naming the option."""
    import json

    from keras_audit import cli

    model, xtr, ytr, xte, yte, _ = tabular
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "data.npz", x=xte[:30], y=yte[:30])
    np.savez(tmp_path / "train.npz", x=xtr[:120], y=ytr[:120])
    np.savez(tmp_path / "train_x.npz", x=xtr[:120])
    np.savez(tmp_path / "bad_y.npz", x=xtr[:120], y=ytr[:7])
    base = ["report", str(tmp_path / "m.keras"), "--data", str(tmp_path / "data.npz"),
            "--checks", "examples", "--quiet", "--samples", "4"]
    assert cli.main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "examples check needs --reference" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--reference",
                     str(tmp_path / "bad_y.npz")]) == 2
    assert "one numeric label per reference sample (120)" in capsys.readouterr().err
    for name, expected in (("train.npz", "given"), ("train_x.npz", "predicted")):
        out = tmp_path / name.replace(".npz", "")
        assert cli.main([*base, "--out", str(out), "--reference", str(tmp_path / name)]) == 0
        ex = json.loads((out / "report.json").read_text(encoding="utf-8"))["examples"]
        assert ex["status"] == "ok" and ex["n_reference"] == 120
        assert ex["reference_labels"] == expected
