"""The corruptions: identity at severity 0, distance growing with severity, no retracing, and
agreement with ImageNet-C's reference code (the ``imagecorruptions`` package)."""

import hashlib

import numpy as np
import pytest

from keras_audit.audit.corruptions import (
    IMAGE_CORRUPTIONS,
    TABLE_CORRUPTIONS,
    corrupt,
    corrupter_for,
    infer_range,
)
from keras_audit.datasets import make_shapes


@pytest.fixture(scope="module")
def images():
    x, _, _ = make_shapes(n=24, size=32, seed=3)
    return x


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(64, 6)) * [1, 2, 3, 0.5, 10, 1] + [0, 1, 2, 3, 4, 5]).astype(
        np.float32)


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


@pytest.mark.parametrize("name", IMAGE_CORRUPTIONS)
def test_image_corruption_identity_monotone_and_in_range(images, name):
    before = digest(images)
    c = corrupter_for(images, "image")
    out = {s: c(images, name, s, seed=1) for s in range(6)}
    assert digest(images) == before  # the input is never written to
    np.testing.assert_array_equal(out[0], images)  # severity 0: unchanged
    dist = [rms(out[s], images) for s in range(6)]
    assert all(b > a for a, b in zip(dist, dist[1:])), (name, dist)
    for s in range(1, 6):
        assert out[s].shape == images.shape and out[s].dtype == np.float32
        assert out[s].min() >= 0.0 and out[s].max() <= 1.0
    # one trace for the whole sweep: severity is a tensor
    assert c.trace_count == 1


@pytest.mark.parametrize("name", TABLE_CORRUPTIONS)
def test_table_corruption_identity_and_monotone(table, name):
    c = corrupter_for(table, "table")
    out = {s: c(table, name, s, seed=2) for s in range(6)}
    np.testing.assert_array_equal(out[0], table)
    std = table.std(axis=0)
    dist = [rms(out[s] / std, table / std) for s in range(6)]
    assert all(b > a for a, b in zip(dist, dist[1:])), (name, dist)
    assert c.trace_count == 1


def test_table_noise_is_in_units_of_each_feature_std(table):
    big = np.repeat(table, 50, axis=0)
    noisy = corrupt(big, "gaussian_noise", 5, seed=0)  # 1.0 std at severity 5
    ratio = (noisy - big).std(axis=0) / big.std(axis=0)
    np.testing.assert_allclose(ratio, 1.0, atol=0.05)


def test_feature_dropout_sets_values_to_the_mean(table):
    out = corrupt(table, "feature_dropout", 5, seed=0)
    changed = out != table
    share = changed.mean()
    assert 0.4 < share < 0.6  # half the values at severity 5
    means = np.broadcast_to(table.mean(axis=0), table.shape)
    np.testing.assert_allclose(out[changed], means[changed], rtol=1e-5)


def test_value_range_scales_corruptions(images):
    """An image in [0, 255] gets the same corruption as in [0, 1], scaled."""
    a = corrupt(images, "contrast", 3)
    b = corrupt(images * 255.0, "contrast", 3)
    np.testing.assert_allclose(b / 255.0, a, atol=1e-5)
    assert infer_range(images * 2 - 1) == (-1.0, 1.0)
    assert infer_range((images * 255).astype(np.uint8)) == (0.0, 255.0)


def test_seeded(images):
    a = corrupt(images, "gaussian_noise", 2, seed=5)
    np.testing.assert_array_equal(a, corrupt(images, "gaussian_noise", 2, seed=5))
    assert not np.array_equal(a, corrupt(images, "gaussian_noise", 2, seed=6))


def test_bad_arguments(images, table):
    with pytest.raises(ValueError, match="choices") as info:
        corrupt(images, "fog", 1)
    assert all(n in str(info.value) for n in IMAGE_CORRUPTIONS)
    with pytest.raises(ValueError, match="feature_dropout"):
        corrupt(table, "gaussian_blur", 1)
    with pytest.raises(ValueError, match="0..5"):
        corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="0..5"):
        corrupt(images, "contrast", 1.5)
    with pytest.raises(ValueError, match="value_range"):
        corrupt(images, "contrast", 1, value_range=(1, 0))


# -- agreement with the reference implementation ----------------------------------------------

REFERENCE = {"gaussian_noise": "gaussian_noise", "shot_noise": "shot_noise",
             "gaussian_blur": "gaussian_blur", "brightness": "brightness",
             "contrast": "contrast", "jpeg": "jpeg_compression", "pixelate": "pixelate"}


@pytest.fixture(scope="module")
def photos():
    """Three real photographs (scikit-image's data), 64x64 uint8 (ImageNet-C needs >= 32)."""
    import skimage.data
    import skimage.transform

    return np.stack([
        (skimage.transform.resize(f(), (64, 64), anti_aliasing=True) * 255).astype(np.uint8)
        for f in (skimage.data.astronaut, skimage.data.chelsea, skimage.data.coffee)])


@pytest.fixture(scope="module")
def reference(monkeypatch_module):
    import imagecorruptions
    import imagecorruptions.corruptions as icc
    from skimage.filters import gaussian

    # imagecorruptions 1.1.2 calls gaussian(..., multichannel=True), which scikit-image >= 0.22
    # removed; channel_axis=-1 is the same filter
    monkeypatch_module.setattr(
        icc, "gaussian",
        lambda img, sigma, multichannel=True, **kw: gaussian(img, sigma=sigma, channel_axis=-1,
                                                             **kw))
    return imagecorruptions.corrupt


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.parametrize("name", ["gaussian_blur", "brightness", "contrast", "pixelate", "jpeg"])
def test_deterministic_corruptions_match_imagecorruptions(photos, reference, name):
    """Measured on these photos: blur, contrast, brightness and pixelate differ by at most one
    grey level out of 255 (mean 0.00-0.85: rounding); JPEG by a mean of 0.9 and at most 3
    (encoder rounding)."""
    x = photos.astype(np.float32) / 255.0
    for s in range(1, 6):
        ours = np.round(corrupt(x, name, s) * 255.0)
        theirs = np.stack([reference(im, severity=s, corruption_name=REFERENCE[name])
                           for im in photos]).astype(np.float64)
        diff = np.abs(ours - theirs)
        if name == "jpeg":
            assert diff.mean() <= 1.5 and diff.max() <= 4, (s, diff.mean(), diff.max())
        else:
            assert diff.max() <= 1, (name, s, diff.max())


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise"])
def test_noise_strength_matches_imagecorruptions(photos, reference, name):
    """Random corruptions cannot match pixel by pixel: their mean absolute change agrees with
    the reference's within 5% at every severity (measured: within 1.5%)."""
    np.random.seed(0)  # the reference draws from NumPy's global generator
    x = photos.astype(np.float32) / 255.0
    for s in range(1, 6):
        ours = np.abs(corrupt(x, name, s, seed=1) * 255.0 - photos).mean()
        theirs = np.abs(np.stack([reference(im, severity=s, corruption_name=REFERENCE[name])
                                  for im in photos]).astype(np.float64) - photos).mean()
        assert abs(ours / theirs - 1) < 0.05, (s, ours, theirs)
