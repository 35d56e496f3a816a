"""EvaluationCallback, read back through TensorBoard's own event reader.

A tiny CNN learns coloured squares (3 classes) for 3 epochs with ``freq=2`` (epochs 0 and 2
logged); the last logged epoch ran on the final weights, so everything it wrote is recomputed
from the final model with scikit-learn and the engine and compared.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import types  # noqa: E402
import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _callbacks_data import CLASS_NAMES, read_events, shapes, tiny_cnn  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # noqa: E402

from keras_audit import render  # noqa: E402
from keras_audit.callbacks import AuditCallback, EvaluationCallback  # noqa: E402
from keras_audit.callbacks.base import MIN_TILE  # noqa: E402
from keras_audit.explain import GradCAM  # noqa: E402

EPOCHS, FREQ, LOGGED = 3, 2, [0, 2]
WEIGHTS = {f"histograms/{layer}/{w}" for layer in ("conv1", "conv2", "probs")
           for w in ("kernel", "bias")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    x, y, xv, yv = shapes()
    yv = yv.copy()
    yv[::7] = (yv[::7] + 1) % 3  # mislabelled samples: the trained model still makes mistakes
    log_dir = str(tmp_path_factory.mktemp("evaluation"))
    model = tiny_cnn()
    cb = EvaluationCallback((xv, yv), log_dir, class_names=CLASS_NAMES, freq=FREQ,
                            mistakes=6, predictions=12, histograms=True, strict=True)
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[cb])
    probs = model.predict(xv, verbose=0)
    return types.SimpleNamespace(model=model, cb=cb, events=read_events(log_dir), xv=xv, yv=yv,
                                 probs=probs, pred=probs.argmax(1))


def table(markdown: str) -> list[list[str]]:
    """The body rows of a Markdown table, cells stripped."""
    rows = [ln.strip().strip("|").split("|") for ln in markdown.splitlines()[2:]]
    return [[c.strip() for c in r] for r in rows]


def test_every_tag_at_each_logged_step(run):
    ev = run.events
    scalars = {"evaluation/accuracy"} | {f"evaluation/{m}/{c}" for m in ("precision", "recall",
                                                                          "f1")
                                         for c in CLASS_NAMES}
    assert set(ev["images"]) == {"evaluation/confusion_matrix", "evaluation/mistakes"}
    assert set(ev["scalars"]) == scalars
    assert set(ev["text"]) == {"evaluation/confusion_matrix/counts", "evaluation/predictions"}
    assert set(ev["pr_curves"]) == {f"evaluation/pr/{c}" for c in CLASS_NAMES}
    assert set(ev["histograms"]) == WEIGHTS | {f"{t}/gradient" for t in WEIGHTS}
    for kind in ("images", "scalars", "text", "pr_curves", "histograms"):
        for tag, records in ev[kind].items():
            assert [r[0] for r in records] == LOGGED, (kind, tag)
    for tag in scalars:  # every scalar says what it measures
        assert len(ev["descriptions"][tag]) > 20, tag


def test_confusion_counts_equal_sklearn_on_the_same_predictions(run):
    step, text = run.events["text"]["evaluation/confusion_matrix/counts"][-1]
    assert step == EPOCHS - 1
    rows = table(text)
    assert [r[0] for r in rows] == CLASS_NAMES
    counts = np.array([[int(v) for v in r[1:]] for r in rows])
    np.testing.assert_array_equal(counts, confusion_matrix(run.yv, run.pred, labels=[0, 1, 2]))
    assert counts.sum() == len(run.yv)
    picture = run.events["images"]["evaluation/confusion_matrix"][-1][1]
    np.testing.assert_array_equal(picture, render.confusion_image(
        counts, CLASS_NAMES, f"epoch {step}: accuracy {np.mean(run.pred == run.yv):.3f} on "
        f"{len(run.yv)} validation samples"))


def test_per_class_scalars_equal_sklearn(run):
    prec, rec, f1, _ = precision_recall_fscore_support(run.yv, run.pred, labels=[0, 1, 2],
                                                       zero_division=0)
    scalars = {tag: dict(recs) for tag, recs in run.events["scalars"].items()}
    for c, name in enumerate(CLASS_NAMES):
        for metric, ref in (("precision", prec), ("recall", rec), ("f1", f1)):
            assert scalars[f"evaluation/{metric}/{name}"][2] == pytest.approx(ref[c], abs=1e-6)
    assert scalars["evaluation/accuracy"][2] == pytest.approx(np.mean(run.pred == run.yv))


def test_pr_curve_counts_are_the_thresholded_predictions(run):
    for c, name in enumerate(CLASS_NAMES):
        step, curve = run.events["pr_curves"][f"evaluation/pr/{name}"][-1]
        assert curve.shape == (6, 51)
        tp, fp, tn, fn, precision, recall = curve
        pos = run.yv == c
        # bucket floor(p * 50) >= t  <=>  p >= t / 50 (away from float ties)
        above = np.floor(run.probs[:, c][None] * 50) >= np.arange(51)[:, None]
        np.testing.assert_array_equal(tp, (above & pos).sum(1))
        np.testing.assert_array_equal(fp, (above & ~pos).sum(1))
        np.testing.assert_array_equal(tp + fn, pos.sum())
        np.testing.assert_array_equal(fp + tn, (~pos).sum())
        assert recall[0] == pytest.approx(1.0) and precision[0] == pytest.approx(pos.mean())


def test_mistakes_are_the_most_confident_with_their_grad_cam(run):
    wrong = np.flatnonzero(run.pred != run.yv)
    conf = run.probs.max(1)
    worst = wrong[np.argsort(-conf[wrong], kind="stable")][:6]
    picture = run.events["images"]["evaluation/mistakes"][-1][1]
    assert len(worst) > 0, "the tiny model after 3 epochs was expected to make mistakes"
    cam = GradCAM(run.model)
    maps = cam(run.xv[worst], run.pred[worst])
    texts = render.captions(true=run.yv[worst], pred=run.pred[worst], confidence=conf[worst],
                            class_names=CLASS_NAMES)
    expected = render.explanation_grid(
        run.xv[worst], maps, captions=texts, min_tile=MIN_TILE,
        cmap=render.technique_colormap("gradcam"),
        title=f"most confident mistakes: input | Grad-CAM of the predicted class "
              f"({cam.layer_name})")
    np.testing.assert_allclose(picture.astype(int), expected.astype(int), atol=2)


def test_predictions_table_marks_the_changes(run):
    (_, first), (_, last) = run.events["text"]["evaluation/predictions"]
    before, after = table(first), table(last)
    samples = run.cb.samples
    assert len(after) == 12
    assert [int(r[0]) for r in after] == [int(i) for i in samples.index]
    final = run.model.predict(samples.x, verbose=0).argmax(1)
    assert [r[2].replace(" ✗", "") for r in after] == [CLASS_NAMES[k] for k in final]
    assert [r[1] for r in after] == [CLASS_NAMES[k] for k in samples.y]
    assert all(r[4] == "" for r in before)  # nothing to compare with at the first epoch
    for b, a in zip(before, after):
        was, now = b[2].replace(" ✗", ""), a[2].replace(" ✗", "")
        assert (a[4] == f"**changed** (was {was})") == (was != now)


def test_weight_histograms_hold_the_final_weights(run):
    for layer in ("conv1", "probs"):
        w = run.model.get_layer(layer).kernel.numpy()
        _, hist = run.events["histograms"][f"histograms/{layer}/kernel"][-1]
        assert hist[:, 2].sum() == pytest.approx(w.size)
        assert hist[0, 0] == pytest.approx(w.min(), abs=1e-6)
        assert hist[-1, 1] == pytest.approx(w.max(), abs=1e-6)
        _, grad = run.events["histograms"][f"histograms/{layer}/kernel/gradient"][-1]
        assert grad[:, 2].sum() == pytest.approx(w.size) and np.ptp(grad[:, :2]) > 0


def test_configuration_errors_are_value_errors_before_training():
    x, y, xv, yv = shapes(n=40)
    for kwargs, words in ((dict(mistakes=-1), "mistakes"), (dict(predictions=0), "predictions"),
                          (dict(pr_curves="yes"), "pr_curves")):
        with pytest.raises(ValueError, match=words):
            EvaluationCallback((xv, yv), "/tmp/unused", **kwargs)
    model = tiny_cnn()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="needs labels"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[EvaluationCallback(xv, "/tmp/unused")])
    with pytest.raises(ValueError, match="out of range"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[EvaluationCallback((xv, yv + 5), "/tmp/unused")])
    for a, b in zip(before, model.get_weights()):  # refused before the first batch
        np.testing.assert_array_equal(a, b)


def test_audit_callback_includes_evaluation_and_skips_it_without_labels(tmp_path):
    x, y, xv, yv = shapes(n=40)
    audit = AuditCallback(xv, str(tmp_path), num_samples=2)
    assert "evaluation" in audit.callbacks
    model = tiny_cnn()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[audit])
    assert "needs labels" in audit.skipped["evaluation"]
    assert any("evaluation" in str(w.message) for w in seen)
    assert not any(t.startswith("evaluation/") for t in read_events(str(tmp_path))["images"])
    keras.backend.clear_session()


def test_confusion_image_colours_each_row_by_its_share_and_refuses_bad_counts():
    counts = np.array([[8, 2], [0, 10]])
    picture = render.confusion_image(counts, ["a", "b"])
    assert picture.dtype == np.uint8 and picture.ndim == 3
    with pytest.raises(ValueError, match="square"):
        render.confusion_image(np.ones((2, 3)))
    with pytest.raises(ValueError, match="class names"):
        render.confusion_image(counts, ["a"])


def test_one_colormap_per_technique_in_the_callbacks_and_render():
    from keras_audit.callbacks import GradCAMCallback, SaliencyCallback

    xv = np.zeros((2, 16, 16, 3), np.float32)
    assert GradCAMCallback(xv, "d").colormap == render.technique_colormap("gradcam") == "jet"
    assert GradCAMCallback(xv, "d", method="gradcam++").colormap == "jet"
    assert SaliencyCallback(xv, "d", method="smoothgrad").colormap == \
        render.technique_colormap("saliency/smoothgrad") == "inferno"
    with pytest.raises(ValueError, match="known"):
        render.technique_colormap("nope")
