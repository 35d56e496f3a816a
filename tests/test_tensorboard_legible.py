"""Pictures a TensorBoard user can read: captions and tiles at the Images card's default size,
a colour bar on every overlay, and maps scaled across epochs on request.

A tiny CNN trains 2 epochs with a Grad-CAM and a saliency callback; the real ``tensorboard``
serves the run on 127.0.0.1 and headless Chromium screenshots its Images dashboard into
``test-artifacts/tensorboard_legible_images.png``. The picture is found in the screenshot pixel
for pixel (so it is shown unshrunk), and the caption lines' ink is measured there.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _callbacks_data import CLASS_NAMES, shapes, tiny_cnn
from _tb import http_get, read_events, tensorboard_server
from PIL import Image

from keras_audit import render
from keras_audit.callbacks import GradCAMCallback, SaliencyCallback
from keras_audit.callbacks.base import CARD_FONT, CARD_WIDTH, MIN_TILE
from keras_audit.explain import GradCAM

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists(
    "/usr/bin/chromium") else None)
N = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    x, y, xv, yv = shapes(n=160)
    log_dir = str(tmp_path_factory.mktemp("legible"))
    model = tiny_cnn()
    cam = GradCAMCallback((xv, yv), log_dir, num_samples=N, class_names=CLASS_NAMES,
                          metrics=False, scale="across_epochs")
    sal = SaliencyCallback((xv, yv), log_dir, num_samples=N, class_names=CLASS_NAMES)
    # keep each epoch's raw CAM (the engine, normalize=False) to check the logged pixels against
    raw = []

    class Raw(__import__("keras").callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raw.append(np.asarray(GradCAM(self.model, layer="conv2", normalize=False)(
                cam.samples.x, cam.samples.y)))

    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cam, sal, Raw()])
    return model, log_dir, cam, sal, raw, read_events(log_dir)


def _layout(picture_width: int, pair_width: int, pad: int = 4) -> int:
    """Pairs per row of an explanation grid with a colour bar (its width is known)."""
    bar = render.colorbar("jet", MIN_TILE, font_size=CARD_FONT).shape[1] + pad
    return (picture_width - bar - pad) // (pair_width + pad)


def test_pictures_fit_the_card_and_give_each_sample_96_px(run):
    _, _, cam, _, _, events = run
    pair = 2 * 16 * render.upscale_factor(16, 16, MIN_TILE) + 2
    for tag in ("gradcam/conv2", "saliency/vanilla"):
        for _, picture, _ in events["images"][tag]:
            assert picture.shape[1] <= CARD_WIDTH, tag  # shown at its own size, not shrunk
            per_row = _layout(picture.shape[1], pair)
            assert per_row == 2, tag
            assert picture.shape[1] / per_row >= 96, tag  # pixels per sample as displayed


def test_overlays_carry_a_colour_bar_of_the_technique_colormap(run):
    _, _, cam, sal, _, events = run
    for tag, technique in (("gradcam/conv2", "gradcam"), ("saliency/vanilla", "saliency")):
        picture = events["images"][tag][-1][1]
        cmap = render.technique_colormap(technique)
        side = 16 * render.upscale_factor(16, 16, MIN_TILE)
        bar = render.colorbar(cmap, side, font_size=CARD_FONT)
        top, right = 4, picture.shape[1] - 4  # beside the first row, a pad from the edge
        np.testing.assert_array_equal(picture[top:top + side, right - bar.shape[1]:right], bar)
        # the bar runs the colormap from 1 (top) to 0 (bottom)
        lut = render.colormap_lut(cmap)
        np.testing.assert_array_equal(bar[0, 0], lut[len(lut) - 2])
        np.testing.assert_array_equal(bar[-1, 0], lut[0])
    assert (cam.colormap, sal.colormap) == ("jet", "inferno")


def test_colorbar_labels_and_bad_input():
    bar = render.colorbar("viridis", 80, font_size=13)
    ink = (bar[:, 13:] < 100).all(axis=2)  # black label text right of the 10 px bar
    rows = np.flatnonzero(ink.any(axis=1))
    assert rows.min() < 14 and rows.max() > 80 - 14  # a label at each end
    assert not ink[20:60].any()  # nothing between them
    with pytest.raises(ValueError, match="unknown colormap"):
        render.colorbar("nope", 80)
    with pytest.raises(ValueError, match="height"):
        render.colorbar("jet", 5)


def test_across_epochs_scales_by_each_samples_running_peak(run):
    _, _, cam, _, raw, events = run
    assert cam.scale == "across_epochs" and len(raw) == 2
    peak = np.maximum(raw[0].reshape(N, -1).max(1), raw[1].reshape(N, -1).max(1))
    k = render.upscale_factor(16, 16, MIN_TILE)
    side = 16 * k
    for epoch, (step, picture, _) in enumerate(events["images"]["gradcam/conv2"]):
        assert step == epoch
        so_far = np.maximum.reduce([r.reshape(N, -1).max(1) for r in raw[:epoch + 1]])
        maps = np.clip(raw[epoch] / so_far[:, None, None], 0, 1)
        blended = render.overlay(cam.samples.x, maps, alpha=cam.alpha, cmap="jet")
        # the first sample's overlay, right of its input in the first cell
        cell_w = (picture.shape[1] - render.colorbar("jet", side, font_size=CARD_FONT)
                  .shape[1] - 4 - 3 * 4) // 2
        left = 4 + (cell_w - (2 * side + 2)) // 2 + side + 2
        logged = picture[4:4 + side:k, left:left + side:k].astype(int)
        # photo-like pictures may be stored as JPEG (quality 85): a small, bounded error
        err = np.abs(logged - blended[0].astype(int))
        assert err.mean() <= 3 and np.percentile(err, 99) <= 40, (epoch, err.mean())
        own = np.clip(raw[epoch] / raw[epoch].reshape(N, -1).max(1)[:, None, None], 0, 1)
        if not np.allclose(own[0], maps[0]):  # the running peak differs from its own peak
            per_map = render.overlay(cam.samples.x[:1], own[:1], alpha=cam.alpha, cmap="jet")
            assert err.mean() < np.abs(logged - per_map[0].astype(int)).mean(), epoch
    # the epoch-0 maps were drawn against a peak the later epoch raised: they look weaker
    assert (peak > raw[0].reshape(N, -1).max(1)).any()


def test_scale_must_be_one_of_the_choices():
    x, y, xv, yv = shapes(n=40)
    for cls in (GradCAMCallback, SaliencyCallback):
        with pytest.raises(ValueError, match=r"unknown scale 'global'.*per_map.*across_epochs"):
            cls((xv, yv), "/tmp/unused", scale="global")


def _tile_rows(screen: np.ndarray) -> list[tuple[int, int]]:
    """Blocks of screen rows that cross tiles: rows with a run of >= 40 non-light pixels
    (tiles are dark or coloured; TensorBoard's text never runs that long), >= 20 rows tall,
    TensorBoard's orange toolbar left out."""
    filled = screen.astype(int).sum(axis=2) < 600
    longest = np.zeros(len(screen), int)
    for y, row in enumerate(filled):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        if len(edges):
            longest[y] = (edges[1::2] - edges[::2]).max()
    blocks, start = [], None
    for y, long in enumerate(np.append(longest >= 40, False)):
        if long and start is None:
            start = y
        elif not long and start is not None:
            rgb = np.median(screen[start:y].reshape(-1, 3), axis=0)
            if y - start >= 20 and not (rgb[0] > 200 and rgb[2] < 60):  # not the orange bar
                blocks.append((start, y))
            start = None
    return blocks


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D mask, in order."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(edges[1::2] - edges[::2])


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_captions_read_at_the_cards_default_size(run, tmp_path):
    _, log_dir, _, _, _, events = run
    tag = "gradcam/conv2"

    def ready(base: str) -> bool:
        return tag in json.loads(http_get(f"{base}/data/plugin/images/tags")).get(".", {})

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "tensorboard_legible_images.png"
    if shot.exists():
        shot.unlink()
    with tensorboard_server(log_dir, ready) as base:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--force-color-profile=srgb", f"--user-data-dir={tmp_path / 'profile'}",
               "--window-size=1400,1100", "--virtual-time-budget=20000", "--hide-scrollbars",
               f"--screenshot={shot}", f"{base}/?darkMode=false#images"]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                       check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    screen = np.asarray(Image.open(shot).convert("RGB"))
    picture = events["images"][tag][-1][1]
    (t0, t1), (t2, _) = _tile_rows(screen)[:2]  # the first two rows of Grad-CAM tiles
    side = 16 * render.upscale_factor(16, 16, MIN_TILE)
    shown = (t1 - t0) / side  # how much the card scales the picture
    per_sample = shown * picture.shape[1] / 2  # two samples a row (see the test above)
    # the caption strip between the rows: the first line's ink height, as the screen shows it
    strip = screen[t1:t2].astype(int).sum(axis=2) < 3 * 110
    lines = _runs(strip.any(axis=1))
    print(f"card scale {shown:.3f}, {per_sample:.0f} px per sample, caption lines {lines} px")
    assert 0.9 <= shown <= 1.3, shown  # shown near its own size: never a thumbnail
    assert per_sample >= 96
    assert len(lines) == 2 and min(lines) >= 9, f"caption lines are {lines} px tall on screen"
