"""The event files' size: photo-like pictures as JPEG where smaller, a budget per technique
per logged epoch, and every technique still logged every epoch.

A tiny CNN trains 2 epochs on scikit-learn's digits (smooth, photo-like inputs; classes 0-2)
with the default ``AuditCallback``; the event files are read back with TensorBoard's reader.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from _callbacks_data import tiny_cnn
from _tb import encoded_images
from PIL import Image, JpegImagePlugin

from keras_audit.callbacks import AuditCallback, GradCAMCallback
from keras_audit.callbacks.base import DEFAULT_MAX_BYTES_PER_EPOCH
from keras_audit.callbacks.budget import Picture, encode_epoch
from keras_audit.datasets import load_digits_images
from keras_audit.render.encode import downscale, jpeg_bytes
from keras_audit.render.png import png_fast

NAMES = ["zero", "one", "two"]
SIZE = 32  # upscaled 2x to the 64 px tiles (at 16 px, 4x blocks make the PNG smaller)
#: tags drawn from inputs and heatmaps (photo-like) and flat graphics, with the defaults
PHOTO = ("gradcam/conv2", "saliency/vanilla", "activations/conv1", "activations/conv2",
         "evaluation/mistakes")
FLAT = ("filters/conv1", "evaluation/confusion_matrix")


def digits(n: int = 96):
    x, y = load_digits_images(SIZE)
    keep = y < 3
    x, y = x[keep][:n], y[keep][:n]
    return x[: 2 * n // 3], y[: 2 * n // 3], x[2 * n // 3:], y[2 * n // 3:]


def fit(log_dir: str, **options) -> AuditCallback:
    x, y, xv, yv = digits()
    audit = AuditCallback((xv, yv), log_dir, class_names=NAMES, num_samples=8, **options)
    tiny_cnn(SIZE).fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[audit])
    return audit


def bytes_per_epoch(records: dict) -> dict:
    """``{(technique, step): encoded bytes}`` from ``encoded_images``."""
    out: dict = {}
    for tag, recs in records.items():
        for step, data, _ in recs:
            key = (tag.split("/")[0], step)
            out[key] = out.get(key, 0) + len(data)
    return out


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    log_dir = str(tmp_path_factory.mktemp("size_default"))
    audit = fit(log_dir)
    return audit, encoded_images(log_dir)


def test_every_picture_decodes_to_its_declared_size_at_both_epochs(default_run):
    _, records = default_run
    assert set(records) == set(PHOTO) | set(FLAT)
    for tag, recs in records.items():
        assert [step for step, _, _ in recs] == [0, 1], tag
        for _, data, (w, h) in recs:
            picture = Image.open(io.BytesIO(data))
            assert picture.format in ("PNG", "JPEG"), tag
            assert picture.size == (w, h), tag
            assert np.asarray(picture.convert("RGB")).shape == (h, w, 3), tag


def test_photo_pictures_are_jpeg_where_smaller_and_flat_ones_png(default_run):
    _, records = default_run
    formats = {tag: {Image.open(io.BytesIO(d)).format for _, d, _ in recs}
               for tag, recs in records.items()}
    for tag in FLAT:
        assert formats[tag] == {"PNG"}, tag
    jpeg = [tag for tag in PHOTO if "JPEG" in formats[tag]]
    assert "gradcam/conv2" in jpeg and "saliency/vanilla" in jpeg, formats
    for tag in jpeg:
        for _, data, _ in records[tag]:
            picture = Image.open(io.BytesIO(data))
            if picture.format != "JPEG":
                continue
            assert JpegImagePlugin.get_sampling(picture) == 0, tag  # 4:4:4: sharp captions
            pixels = np.asarray(picture.convert("RGB"))
            # smaller than the lossless PNG of (nearly) the same picture
            assert len(data) < len(png_fast(pixels)), tag


def test_each_technique_stays_within_the_default_budget(default_run):
    audit, records = default_run
    per_epoch = bytes_per_epoch(records)
    for (technique, step), nbytes in per_epoch.items():
        assert nbytes <= DEFAULT_MAX_BYTES_PER_EPOCH, (technique, step, nbytes)
        # what the callback reports is what the event file holds
        assert audit.callbacks[technique].picture_bytes[step] == nbytes, technique


def test_a_budget_lowers_quality_then_size_and_keeps_every_tag(tmp_path, default_run, caplog):
    _, default_records = default_run
    saliency = bytes_per_epoch(default_records)[("saliency", 1)]
    tight = int(saliency * 0.6)  # reachable by a lower JPEG quality or a smaller picture
    with caplog.at_level(logging.WARNING, logger="keras_audit.callbacks.base"):
        fit(str(tmp_path), options={"gradcam": {"max_bytes_per_epoch": 1000},
                                    "saliency": {"max_bytes_per_epoch": tight}})
    records = encoded_images(str(tmp_path))
    assert set(records) == set(default_records)  # no technique dropped
    per_epoch = bytes_per_epoch(records)
    for step in (0, 1):
        assert per_epoch[("saliency", step)] <= tight
        assert per_epoch[("gradcam", step)] < bytes_per_epoch(default_records)[("gradcam", step)]
    for tag in ("gradcam/conv2", "saliency/vanilla"):
        assert [s for s, _, _ in records[tag]] == [0, 1], tag
        for _, data, (w, h) in records[tag]:
            picture = Image.open(io.BytesIO(data))
            assert picture.format == "JPEG" and picture.size == (w, h), tag
    # 1000 bytes cannot be met: the last step (half the size) is written, with one warning
    (_, _, (w0, h0)), = [r for r in default_records["gradcam/conv2"] if r[0] == 0]
    (_, _, (w1, h1)), = [r for r in records["gradcam/conv2"] if r[0] == 0]
    assert (w1, h1) == (round(w0 / 2), round(h0 / 2))
    warned = [r.getMessage() for r in caplog.records if "max_bytes_per_epoch" in r.getMessage()]
    assert len(warned) == 1, warned  # once, though both epochs are over
    assert "GradCAMCallback (gradcam)" in warned[0] and "max_bytes_per_epoch=1000" in warned[0]
    assert f"take {per_epoch[('gradcam', 0)]} bytes" in warned[0]


def test_no_budget_and_the_budgets_errors(tmp_path):
    x, y, xv, yv = digits()
    for bad in (0, -5, 1.5, True, "200KB"):
        with pytest.raises(ValueError, match="max_bytes_per_epoch must be a positive integer"):
            GradCAMCallback((xv, yv), str(tmp_path), max_bytes_per_epoch=bad)
    with pytest.raises(ValueError, match="max_bytes_per_epoch"):
        AuditCallback((xv, yv), str(tmp_path), max_bytes_per_epoch=0)
    cb = GradCAMCallback((xv, yv), str(tmp_path), max_bytes_per_epoch=None, num_samples=4)
    assert cb.max_bytes_per_epoch is None


def test_encoders_and_the_budget_alone():
    rng = np.random.default_rng(0)
    flat = np.zeros((40, 60, 3), np.uint8)
    flat[:, 30:] = (200, 30, 30)
    smooth = np.clip(np.cumsum(rng.normal(0, 6, (96, 96, 3)), axis=1) + 128, 0,
                     255).astype(np.uint8)
    done = encode_epoch([Picture("flat", flat, photo=False), Picture("smooth", smooth, True)],
                        max_bytes=None)
    assert done.fits and done.step is None
    assert [e.format for e in done.pictures] == ["png", "jpeg"]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(done.pictures[0].data))),
                                  flat)  # flat graphics stay exact
    assert done.nbytes == sum(len(e.data) for e in done.pictures)
    tight = encode_epoch([Picture("smooth", smooth, True)], max_bytes=done.nbytes // 4)
    assert tight.step is not None and tight.nbytes <= done.nbytes // 4 and tight.fits
    assert downscale(flat, 0.5).shape == (20, 30, 3)
    assert Image.open(io.BytesIO(jpeg_bytes(flat, 90))).format == "JPEG"
    for bad in (0, 96, 2.5):
        with pytest.raises(ValueError, match="quality"):
            jpeg_bytes(flat, bad)
    with pytest.raises(ValueError, match="scale"):
        downscale(flat, 1.5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        jpeg_bytes(np.zeros((4, 4), np.uint8))
