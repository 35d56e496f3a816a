"""The robustness, adversarial and shift sections of the report, and the command's
``--reference``: read back from report.json, the HTML and the exit status."""

import json

import numpy as np
import pytest
from _report_data import img_sources, read_json

from keras_audit.audit._weights import weights_hash
from keras_audit.audit.catalog import DEFAULT_CHECKS, AuditInputError
from keras_audit.audit.corruptions import IMAGE_CORRUPTIONS
from keras_audit.audit.runner import run

OPTIONS = {"robustness": {"severities": (1, 3, 5)},
           "adversarial": {"epsilons": (0.0, 8 / 255), "steps": 5, "max_samples": 48},
           "shift": {"permutations": 100}}
CHECKS = ("robustness", "adversarial", "shift")


@pytest.fixture(scope="module")
def report(shapes_model, shapes_data, tmp_path_factory):
    x, _, xt, yt, _ = shapes_data
    out = tmp_path_factory.mktemp("rob_report")
    before = (weights_hash(shapes_model), xt.tobytes(), x.tobytes())
    rep = run(shapes_model, xt[:60], yt[:60], checks=CHECKS, out_dir=out, samples=8,
              options=OPTIONS, reference=x[:200])
    assert (weights_hash(shapes_model), xt.tobytes(), x.tobytes()) == before
    return rep, out


def test_policy_metrics_in_report_json(report):
    rep, out = report
    j = read_json(out)
    rb, ad, sh = j["robustness"], j["adversarial"], j["shift"]
    assert rb["status"] == ad["status"] == sh["status"] == "ok"
    worst = rb["worst"]
    rows = rb["rows"]
    assert len(rows) == len(IMAGE_CORRUPTIONS) * 3 and rb["explainer"] == "gradcam"
    assert worst["delta_accuracy"] == min(r["delta_accuracy"] for r in rows)
    assert rb["stability_samples"] == 8
    assert 0.0 <= ad["8/255"]["accuracy"] <= ad["0/255"]["accuracy"] == ad["clean_accuracy"]
    assert ad["8/255"]["accuracy"] == min(ad["8/255"]["by_attack"][a]["accuracy"]
                                          for a in ("fgsm", "pgd"))
    assert 0.0 < sh["mmd"]["p_value"] <= 1.0 and 0.0 <= sh["domain_classifier"]["auroc"] <= 1
    assert sh["n_reference"] == 200 and sh["layer"] == "gmp"
    # the sections the caller did not ask for say so
    assert j["performance"]["status"] == "not requested"
    assert set(j["provenance"]["checks"]) == set(CHECKS)


def test_findings_and_tables(report):
    rep, out = report
    texts = [f["text"] for f in rep.content["findings"] if f["section"] == "robustness"]
    assert any("under" in t and "severity" in t and "rank correlation" in t for t in texts)
    assert any(f["section"] == "adversarial" and "8/255" in f["text"]
               for f in rep.content["findings"])
    assert any(f["section"] == "shift" for f in rep.content["findings"])
    for name in ("robustness", "adversarial"):
        assert (out / "tables" / f"{name}.csv").exists()
        assert len(rep.tables[name]) > 0


def test_html_has_the_sections_and_their_figures(report):
    rep, out = report
    html = (out / "report.html").read_text(encoding="utf-8")
    for anchor, title in (("robustness", "Robustness to corruptions"),
                          ("adversarial", "Adversarial robustness"),
                          ("shift", "Distribution shift")):
        assert f'id="{anchor}"' in html and title in html
    for key in ("robustness.accuracy_vs_severity", "robustness.stability_vs_severity",
                "adversarial.accuracy_vs_epsilon", "shift.ood_histograms"):
        assert key in rep.figures
    assert len(img_sources(html)) >= 4
    assert "MMD permutation p-value" in html


def test_not_requested_by_default(shapes_model, shapes_data):
    assert not set(CHECKS) & set(DEFAULT_CHECKS)
    _, _, xt, yt, _ = shapes_data
    rep = run(shapes_model, xt[:20], yt[:20], checks=("pruning",), out_dir=None,
              options={"pruning": {"sparsities": (0.0, 0.5), "per_layer": False,
                                   "drift": False}})
    for key in CHECKS:
        assert rep.content[key] == {"status": "not requested"}


def test_shift_without_reference_is_refused_before_work(shapes_model, shapes_data):
    _, _, xt, yt, _ = shapes_data
    with pytest.raises(AuditInputError, match="reference"):
        run(shapes_model, xt[:10], yt[:10], checks=("shift",), out_dir=None)
    with pytest.raises(AuditInputError, match="reference"):
        run(shapes_model, xt[:10], yt[:10], checks=("shift",), out_dir=None,
            reference=np.zeros((4, 8, 8, 3), np.float32))


def test_command_reference(shapes_model, shapes_data, tmp_path, capsys):
    from keras_audit import cli

    x, _, xt, yt, _ = shapes_data
    shapes_model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "data.npz", x=xt[:30], y=yt[:30])
    np.savez(tmp_path / "train.npz", x=x[:100])
    base = ["report", str(tmp_path / "m.keras"), "--data", str(tmp_path / "data.npz"),
            "--checks", "shift", "--quiet"]
    assert cli.main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "--reference" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", images=x[:10])
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--reference",
                     str(tmp_path / "other.npz")]) == 2
    assert "has no array 'x'" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--reference",
                     str(tmp_path / "train.npz")]) == 0
    j = json.loads((tmp_path / "c" / "report.json").read_text(encoding="utf-8"))
    assert j["shift"]["status"] == "ok" and j["shift"]["n_reference"] == 100


def test_robustness_section_in_a_browser_and_its_screenshot(shapes_model, shapes_data,
                                                            tmp_path):
    """The robustness section as a reader sees it: headless Chromium renders it with the
    report's own styles; the screenshot goes to test-artifacts/robustness_section.png."""
    import re

    from _report_data import FAST_OPTIONS, decode_data_uri
    from test_report_browser import ARTIFACTS, CHROMIUM, _DomReader, chromium

    from keras_audit.audit.report import SECTIONS

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    _, _, xt, yt, _ = shapes_data
    out = tmp_path / "report"
    run(shapes_model, xt[:40], yt[:40], checks=("performance", "robustness"), out_dir=out,
        samples=6, options={**FAST_OPTIONS, "robustness": {"severities": (1, 3, 5)}})
    source = (out / "report.html").read_text(encoding="utf-8")
    section = re.search(r'<section class="sec" id="robustness">.*?</section>', source, re.S)
    assert section, "no robustness section in report.html"
    styles = "".join(re.findall(r"<style\b.*?</style>", source, re.S))
    assert styles  # the report's own look, not the browser's defaults
    page = out / "robustness_section.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8">{styles}</head>'
                    f"<body>{section.group(0)}</body></html>", encoding="utf-8")
    done = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _DomReader()
    dom.feed(done.stdout)
    number = next(i for i, (key, _) in enumerate(SECTIONS, start=1) if key == "robustness")
    assert [h.strip() for h in dom.h2] == [f"{number}. Robustness to corruptions"]
    assert len(dom.imgs) >= 2  # accuracy against severity, and the stability curve
    for src in dom.imgs:
        pixels = decode_data_uri(src)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 50
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "robustness_section.png"
    shot.unlink(missing_ok=True)
    done = chromium("--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}",
                    page.as_uri(), profile=tmp_path / "profile2")
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 1600)
        assert len(set(img.convert("L").resize((64, 80)).getdata())) > 20  # not blank
