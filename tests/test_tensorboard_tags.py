"""Trust scalars that explain themselves: the method in every tag (two CAM callbacks in one
``log_dir`` never collide), a description on every scalar, and a warning where a map does worse
than its random baseline."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _callbacks_data import read_events, shapes, tiny_cnn  # noqa: E402

from keras_audit.callbacks import GradCAMCallback, SaliencyCallback  # noqa: E402
from keras_audit.callbacks.scalars import LAYOUTS, baseline_warnings  # noqa: E402

LAYOUT_TAG = "custom_scalars__config__"


def _tags(events: dict) -> set:
    return {t for kind in ("images", "scalars", "text") for t in events[kind]}


class InvertedCAM(GradCAMCallback):
    """Grad-CAM turned upside down: the least important pixels ranked first (a map that
    should lose to a random order)."""

    def _maps(self, epoch):
        return [1.0 - m for m in super()._maps(epoch)]


def test_gradcam_and_gradcam_pp_in_one_folder_write_disjoint_tags(tmp_path):
    x, y, xv, yv = shapes(n=80)
    shared, alone = str(tmp_path / "shared"), {m: str(tmp_path / m) for m in ("gradcam",
                                                                               "gradcam++")}
    cbs = [GradCAMCallback((xv, yv), shared, method=m, num_samples=4, strict=True)
           for m in alone]
    cbs += [GradCAMCallback((xv, yv), d, method=m, num_samples=4, strict=True)
            for m, d in alone.items()]
    tiny_cnn().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=cbs)
    plain, plus = (_tags(read_events(alone[m])) for m in ("gradcam", "gradcam++"))
    assert plain and plus and not plain & plus
    assert all("gradcam++" in t for t in plus) and not any("gradcam++" in t for t in plain)
    together = read_events(shared)
    assert _tags(together) == plain | plus
    for kind in ("images", "scalars"):
        for tag, records in together[kind].items():  # one record per step: nothing collided
            steps = [r[0] for r in records]
            assert steps == sorted(set(steps)), tag
    # the one layout of the folder charts both methods
    layout = LAYOUTS.layout(shared)
    titles = {c.title for cat in layout.category for c in cat.chart}
    assert {t.split(":")[0] for t in titles} == {"gradcam/conv2", "gradcam++/conv2"}
    assert LAYOUT_TAG in read_events(shared)["other"]


def test_every_scalar_has_a_description(tmp_path):
    x, y, xv, yv = shapes(n=80)
    cbs = [GradCAMCallback((xv, yv), str(tmp_path), num_samples=4),
           SaliencyCallback((xv, yv), str(tmp_path), num_samples=4)]
    tiny_cnn().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=cbs)
    events = read_events(str(tmp_path))
    assert {"explanations/saliency/vanilla/stability",
            "explanations/gradcam/conv2/deletion_auc"} <= set(events["scalars"])
    for tag in events["scalars"]:
        text = events["descriptions"][tag]
        assert len(text) > 40 and tag.split("/")[1] in text.replace("**", ""), tag


def test_a_map_worse_than_random_is_flagged(tmp_path):
    x, y, xv, yv = shapes(n=120)
    cb = InvertedCAM((xv, yv), str(tmp_path), num_samples=8, metric_samples=8, strict=True)
    tiny_cnn().fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[cb])
    events = read_events(str(tmp_path))
    s = {t: dict(r) for t, r in events["scalars"].items()}
    b = "explanations/gradcam/conv2/"
    warned = dict(events["text"].get(b + "warnings", []))
    flagged = 0
    for step in (0, 1, 2):
        worse = int(s[b + "deletion_auc"][step] > s[b + "random_deletion_auc"][step]) + int(
            s[b + "insertion_auc"][step] < s[b + "random_insertion_auc"][step])
        assert s[b + "worse_than_random"][step] == worse
        assert (step in warned) == (worse > 0)
        if worse:
            assert "random baseline" in warned[step] and f"Epoch {step}" in warned[step]
        flagged += worse
    assert flagged > 0, "an inverted map was expected to lose to a random order at least once"


def test_baseline_warnings_name_the_metric_and_both_values():
    good = {"deletion_auc": 0.2, "random_deletion_auc": 0.4, "insertion_auc": 0.7,
            "random_insertion_auc": 0.5}
    assert baseline_warnings(good, "gradcam/conv2") == []
    bad = dict(good, deletion_auc=0.45, insertion_auc=0.30)
    out = baseline_warnings(bad, "gradcam/conv2")
    assert len(out) == 2
    assert "deletion AUC 0.450" in out[0] and "0.400" in out[0]
    assert "insertion AUC 0.300" in out[1] and "0.500" in out[1]
    assert baseline_warnings({"deletion_auc": np.nan, "random_deletion_auc": 0.1}, "x") == []
