"""The real TensorBoard server serves what the callbacks wrote; a headless browser shows it.

A tiny CNN trains 2 epochs with ``AuditCallback``; ``tensorboard`` is started on 127.0.0.1 on a
free port against the run's folder. Its HTTP API must list our image tags with one sample each
and both steps, serve the very PNGs we wrote, and list the explanation scalars. When Chromium is
installed (``.ci/run`` installs it), the Images dashboard is loaded headless and its screenshot
saved to ``test-artifacts/callbacks_tensorboard_images.png``.
"""

import io
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _callbacks_data import CLASS_NAMES, shapes, tiny_cnn
from _tb import http_get, read_events, tensorboard_server
from PIL import Image

from keras_audit.callbacks import AuditCallback

TAGS = {"gradcam/conv2", "saliency/vanilla", "activations/conv1", "activations/conv2",
        "filters/conv1", "evaluation/confusion_matrix", "evaluation/mistakes"}
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists(
    "/usr/bin/chromium") else None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    x, y, xv, yv = shapes(n=160)
    log_dir = tmp_path_factory.mktemp("tb_run")
    model = tiny_cnn()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0,
              callbacks=[AuditCallback((xv, yv), str(log_dir), num_samples=8,
                                       class_names=CLASS_NAMES)])
    tags: dict = {}

    def ready(base: str) -> bool:  # the server loads the run in the background
        tags.clear()
        tags.update(json.loads(http_get(f"{base}/data/plugin/images/tags")).get(".", {}))
        return TAGS <= set(tags)

    with tensorboard_server(log_dir, ready) as base:
        yield base, log_dir, tags


def test_the_server_lists_our_image_tags_with_one_sample_each(server):
    _, _, tags = server
    assert set(tags) == TAGS
    assert all(meta["samples"] == 1 for meta in tags.values())


def test_the_server_serves_our_pictures_at_each_step(server):
    base, log_dir, _ = server
    ours = read_events(str(log_dir))["images"]
    for tag in TAGS:
        url = f"{base}/data/plugin/images/images?run=.&tag={urllib.request.quote(tag)}&sample=0"
        entries = json.loads(http_get(url))
        assert [e["step"] for e in entries] == [0, 1], tag
        last = http_get(f"{base}/data/plugin/images/individualImage?{entries[-1]['query']}")
        served = np.asarray(Image.open(io.BytesIO(last)).convert("RGB"))
        np.testing.assert_array_equal(served, ours[tag][-1][1])


def test_the_server_lists_the_explanation_scalars(server):
    base, _, _ = server
    scalars = json.loads(http_get(f"{base}/data/plugin/scalars/tags")).get(".", {})
    cam = "explanations/gradcam/conv2/"
    assert {cam + "deletion_auc", cam + "insertion_auc", cam + "random_deletion_auc",
            cam + "random_insertion_auc", cam + "stability",
            "explanations/saliency/vanilla/stability"} <= set(scalars)
    assert all(meta["description"] for meta in scalars.values())  # every scalar says what it is


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_the_images_dashboard_renders_in_a_headless_browser(server, tmp_path):
    base, _, _ = server
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "callbacks_tensorboard_images.png"
    if shot.exists():
        shot.unlink()
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1400,1100", "--virtual-time-budget=20000",
           "--hide-scrollbars", f"--screenshot={shot}", f"{base}/?darkMode=false#images"]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                   check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape[:2] == (1100, 1400)
    header = picture[:40].reshape(-1, 3).astype(int)  # TensorBoard's orange toolbar
    assert np.mean((header[:, 0] > 200) & (header[:, 1] > 90) & (header[:, 1] < 160)
                   & (header[:, 2] < 60)) > 0.5
    # our pictures (viridis channel maps, colour kernels) fill the dashboard's cards
    body = picture[150:].reshape(-1, 3)
    assert len(np.unique(body, axis=0)) > 2000


def test_the_pr_curves_plugin_serves_our_curves(server):
    base, log_dir, _ = server
    tags = json.loads(http_get(f"{base}/data/plugin/pr_curves/tags")).get(".", {})
    assert set(tags) == {f"evaluation/pr/{c}" for c in CLASS_NAMES}
    ours = read_events(str(log_dir))["pr_curves"]
    for tag in tags:
        url = f"{base}/data/plugin/pr_curves/pr_curves?run=.&tag={urllib.request.quote(tag)}"
        entries = json.loads(http_get(url))["."]
        assert [e["step"] for e in entries] == [0, 1], tag
        step, curve = ours[tag][-1]
        # the plugin cuts the curve after the last threshold with a prediction above it
        n = len(entries[-1]["precision"])
        assert 1 <= n <= curve.shape[1]
        np.testing.assert_allclose(entries[-1]["precision"], curve[4, :n], rtol=1e-6)
        np.testing.assert_allclose(entries[-1]["recall"], curve[5, :n], rtol=1e-6)
        assert entries[-1]["recall"][0] == 1.0


def test_the_custom_scalars_layout_puts_each_auc_beside_its_baseline(server):
    base, _, _ = server
    layout = json.loads(http_get(f"{base}/data/plugin/custom_scalars/layout"))
    charts = {c["title"]: c["multiline"]["tag"] for cat in layout["category"]
              for c in cat["chart"]}
    scalars = set(json.loads(http_get(f"{base}/data/plugin/scalars/tags")).get(".", {}))

    for method, metric in (("gradcam/conv2", "deletion"), ("gradcam/conv2", "insertion")):
        title = next(t for t in charts if t.startswith(f"{method}: {metric} AUC"))
        (pattern,) = charts[title]
        drawn = {t for t in scalars if re.search(pattern, t)}
        assert drawn == {f"explanations/{method}/{metric}_auc",
                         f"explanations/{method}/random_{metric}_auc"}, title
    stability = next(t for t in charts if t.startswith("saliency/vanilla: stability"))
    assert {t for t in scalars if re.search(charts[stability][0], t)} == {
        "explanations/saliency/vanilla/stability"}
    url = (f"{base}/data/plugin/custom_scalars/scalars?run=.&"
           f"tag={urllib.request.quote(charts[title][0])}")
    served = json.loads(http_get(url))
    assert served["regex_valid"] and set(served["tag_to_events"]) == drawn
