"""GradCAMCallback(robustness=...): the maps' rank correlation with the maps of noisy inputs,
read back from the event files at every logged epoch."""

from __future__ import annotations

import numpy as np
import pytest
from _callbacks_data import read_events, shapes, tiny_cnn
from _callbacks_models import labels, text, text_x

from keras_audit.callbacks import AuditCallback, GradCAMCallback
from keras_audit.callbacks.gradcam import ROBUSTNESS_NOISE, gaussian_noise
from keras_audit.callbacks.scalars import LAYOUTS

EPOCHS = 4
TAG = "explanations/gradcam/conv2/robustness"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One fit of the tiny CNN with three callbacks: the default noise (through AuditCallback's
    options), a strong noise and a negligible one, each in its own folder."""
    xt, yt, xv, yv = shapes(n=240, size=16)
    model = tiny_cnn(16)
    root = tmp_path_factory.mktemp("robustness")
    mild = AuditCallback((xv, yv), str(root / "mild"), include=("gradcam",),
                         options={"gradcam": {"robustness": True, "layer": "conv2"}},
                         num_samples=8, metrics=False)
    strong = GradCAMCallback((xv, yv), str(root / "strong"), layer="conv2", num_samples=8,
                             metrics=False, robustness=0.5)
    tiny = GradCAMCallback((xv, yv), str(root / "tiny"), layer="conv2", num_samples=8,
                           metrics=False, robustness=1e-7)
    hist = model.fit(xt, yt, epochs=EPOCHS, batch_size=32, verbose=0,
                     callbacks=[mild, strong, tiny])
    return {"root": root, "acc": hist.history["accuracy"][-1],
            "cb": {"mild": mild.callbacks["gradcam"], "strong": strong, "tiny": tiny},
            **{k: read_events(str(root / k)) for k in ("mild", "strong", "tiny")}}


def test_scalar_at_every_logged_epoch_in_range(runs):
    assert runs["acc"] > 0.9  # a trained model: its maps point at the square
    for name in ("mild", "strong", "tiny"):
        ev = runs[name]
        steps = [s for s, _ in ev["scalars"][TAG]]
        assert steps == list(range(EPOCHS)), (name, steps)
        values = np.array([v for _, v in ev["scalars"][TAG]])
        assert np.all(np.isfinite(values)) and np.all((values >= -1) & (values <= 1)), values
        assert "severity 1" in ev["descriptions"][TAG] and "gradcam/conv2" in \
            ev["descriptions"][TAG]
    # the other scalars are as without robustness= (metrics=False: none), the picture is there
    assert set(runs["mild"]["scalars"]) == {TAG}
    assert set(runs["mild"]["images"]) == {"gradcam/conv2"}
    assert runs["cb"]["mild"].robustness_std == ROBUSTNESS_NOISE == 0.08


def test_stronger_noise_ranks_lower(runs):
    mild = dict(runs["mild"]["scalars"][TAG])
    strong = dict(runs["strong"]["scalars"][TAG])
    tiny = dict(runs["tiny"]["scalars"][TAG])
    last = EPOCHS - 1
    assert tiny[last] > 0.99  # no noise to speak of: the same ranking
    assert tiny[last] > mild[last] > strong[last], (tiny[last], mild[last], strong[last])
    # one CAM pass per logged epoch, on the same shape: no retracing
    cb = runs["cb"]["strong"]
    assert len(cb.robustness_seconds) == EPOCHS
    assert cb.trace_counts()["gradcam/conv2"] == 1


def test_layout_charts_the_scalar(runs):
    layout = LAYOUTS.layout(str(runs["root"] / "strong"))
    tags = [t for c in layout.category for ch in c.chart for t in ch.multiline.tag]
    assert r"^explanations/gradcam/conv2/robustness$" in tags


def test_noise_is_seeded_clipped_and_scaled():
    x = np.linspace(0, 1, 2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
    a = gaussian_noise(x, 0.08, (0.0, 1.0), seed=3)
    assert np.array_equal(a, gaussian_noise(x, 0.08, (0.0, 1.0), seed=3))
    assert not np.array_equal(a, gaussian_noise(x, 0.08, (0.0, 1.0), seed=4))
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.shape == x.shape
    # the std scales with the data range: the same draw on 0..255 data is 255 times larger
    b = gaussian_noise(x * 255, 0.08, (0.0, 255.0), seed=3)
    np.testing.assert_allclose(b, a * 255, rtol=1e-5, atol=1e-3)
    mid = np.full((1, 64, 64, 3), 0.5, np.float32)  # far from the clip: the std is 0.08
    assert abs(float(np.std(gaussian_noise(mid, 0.08, (0.0, 1.0)) - mid)) - 0.08) < 0.005


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, "yes", None])
def test_bad_robustness_is_refused(bad):
    x = np.zeros((4, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match="robustness must be True, False or a noise std"):
        GradCAMCallback(x, "unused", robustness=bad)


def test_robustness_on_text_is_refused_before_the_first_batch(tmp_path):
    model = text(recurrent=False)
    x, y = text_x(), labels(classes=2)
    cb = GradCAMCallback((x, y), str(tmp_path), robustness=True)
    with pytest.raises(ValueError, match="robustness= adds noise to one image input"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])
