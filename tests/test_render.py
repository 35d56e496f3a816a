"""keras_audit.render: values checked against matplotlib, PIL and hand-computed layouts."""

from __future__ import annotations

import base64
import io
import math
import subprocess
import sys
import threading
import warnings

import matplotlib
import numpy as np
import pytest
from PIL import Image

from keras_audit import render

PAD = 4


def up(tile: np.ndarray, k: int) -> np.ndarray:
    """Reference nearest-neighbour upscaling."""
    return tile.repeat(k, axis=0).repeat(k, axis=1)


def decode(png: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(png)))


def dark(region: np.ndarray, level: int = 100) -> int:
    """Number of pixels whose three channels are all below ``level``."""
    return int((region.max(axis=-1) < level).sum())


# -- to_uint8_images ---------------------------------------------------------------------------------
def test_float_with_negatives_maps_min_to_0_and_max_to_255_without_wrapping():
    x = np.array([[-1.0, -0.5], [0.0, 1.0]], np.float32)[None, ..., None].repeat(3, axis=-1)
    out = render.to_uint8_images(x)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out[0, ..., 0], [[0, 64], [128, 255]])
    # tf-explain's bug: a plain cast would wrap -1 to 255 and -0.5*255 to 129
    assert out[0, 0, 0, 0] == 0


def test_float_scaling_is_per_sample_and_joint_over_channels():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 1, (5, 6, 3)), rng.normal(100, 20, (5, 6, 3))]).astype(np.float64)
    out = render.to_uint8_images(x)
    for i in range(2):
        lo, hi = x[i].min(), x[i].max()
        expected = np.floor((x[i] - lo) / (hi - lo) * 255 + 0.5)
        np.testing.assert_allclose(out[i], expected, atol=1)
        assert out[i].min() == 0 and out[i].max() == 255


def test_uint8_passes_through_and_grayscale_becomes_rgb():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(render.to_uint8_images(rgb), rgb)
    gray = rng.integers(10, 20, (3, 4, 5), dtype=np.uint8)  # narrow range: must NOT be stretched
    for g in (gray, gray[..., None]):
        out = render.to_uint8_images(g)
        assert out.shape == (3, 4, 5, 3)
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], gray)
    rgba = rng.integers(0, 256, (2, 3, 3, 4), dtype=np.uint8)
    np.testing.assert_array_equal(render.to_uint8_images(rgba), rgba[..., :3])


def test_constant_and_nan_images_give_finite_black():
    x = np.full((2, 4, 4, 3), 0.7, np.float32)
    x[1, 0, 0, 0] = np.nan
    x[1, 1, 1, 1] = 1.7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = render.to_uint8_images(x)
    assert (out[0] == 0).all()
    assert out[1, 0, 0, 0] == 0 and out[1, 1, 1, 1] == 255 and out[1, 2, 2, 2] == 0


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3)), np.zeros((2, 8, 8, 5)), np.zeros((8,)),
                                 np.array([["a"]])])
def test_to_uint8_images_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="images"):
        render.to_uint8_images(bad)


# -- colorize / overlay ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["jet", "viridis", "gray", "inferno", "tab10"])
def test_colorize_matches_matplotlib(name):
    rng = np.random.default_rng(2)
    edges = np.arange(257, dtype=np.float32) / 256  # every bin boundary, 0 and 1 included
    maps = np.concatenate([edges, rng.random(511).astype(np.float32)]).reshape(2, 16, 24)
    expected = matplotlib.colormaps[name](maps, bytes=True)[..., :3]
    np.testing.assert_array_equal(render.colorize(maps, name), expected)
    as_float64 = maps.astype(np.float64)
    np.testing.assert_array_equal(render.colorize(as_float64, name),
                                  matplotlib.colormaps[name](as_float64, bytes=True)[..., :3])


def test_colorize_nan_is_black_and_out_of_range_clips():
    jet = matplotlib.colormaps["jet"]
    out = render.colorize(np.array([[np.nan, -3.0, 7.0]], np.float32), jet)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], jet(0.0, bytes=True)[:3])
    np.testing.assert_array_equal(out[0, 2], jet(1.0, bytes=True)[:3])
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        render.colorize(np.zeros((1, 2, 2)), "nope")


def test_overlay_alpha_ends_are_image_and_colormap():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    maps = rng.random((4, 9, 7)).astype(np.float32)
    np.testing.assert_array_equal(render.overlay(images, maps, alpha=0.0), images)
    np.testing.assert_array_equal(render.overlay(images, maps, alpha=1.0, cmap="viridis"),
                                  render.colorize(maps, "viridis"))
    heat = matplotlib.colormaps["jet"](maps, bytes=True)[..., :3].astype(float)
    expected = np.floor(0.7 * images + 0.3 * heat + 0.5)
    np.testing.assert_allclose(render.overlay(images, maps, alpha=0.3), expected, atol=1)


def test_overlay_single_image_float_input_nan_and_resize():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    one = render.overlay(image, np.full((8, 8), 0.5, np.float32), alpha=1.0)
    assert one.shape == (8, 8, 3)
    np.testing.assert_array_equal(one[0, 0], matplotlib.colormaps["jet"](0.5, bytes=True)[:3])
    gray_float = rng.normal(size=(2, 8, 8)).astype(np.float32)
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, 3, 3] = np.nan
    out = render.overlay(gray_float, maps, alpha=0.5)
    base = render.to_uint8_images(gray_float)
    np.testing.assert_array_equal(out[0, 3, 3], base[0, 3, 3])  # NaN: image unblended
    small = render.overlay(base, np.full((2, 2, 2), 0.25, np.float32), alpha=0.6)
    full = render.overlay(base, np.full((2, 8, 8), 0.25, np.float32), alpha=0.6)
    np.testing.assert_array_equal(small, full)  # a constant low-res map resizes to the same colour


def test_overlay_rejects_bad_arguments():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="alpha"):
        render.overlay(images, np.zeros((2, 4, 4)), alpha=1.5)
    with pytest.raises(ValueError, match="2 images but 3 maps"):
        render.overlay(images, np.zeros((3, 4, 4)))


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_maps_give_no_nan(value):
    rng = np.random.default_rng(5)
    x = rng.random((3, 8, 8, 3)).astype(np.float32)
    maps = np.full((3, 8, 8), value, np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        picture = render.explanation_grid(x, maps, captions=["a", "b", "c"])
        channels = render.channel_grid(np.full((4, 4, 5), value, np.float32))
    assert picture.dtype == np.uint8 and channels.dtype == np.uint8
    np.testing.assert_array_equal(render.overlay(x, maps, alpha=1.0)[0, 0, 0],
                                  matplotlib.colormaps["jet"](value, bytes=True)[:3])


# -- grid --------------------------------------------------------------------------------------------
def test_grid_dimensions_and_tile_placement_follow_the_layout():
    rng = np.random.default_rng(6)
    tiles = rng.integers(0, 256, (7, 10, 12, 3), dtype=np.uint8)
    out = render.grid(tiles, ncols=3, min_tile=96, pad=PAD)
    k = math.ceil(96 / 12)  # 8: the longer side reaches min_tile
    assert out.shape == (3 * 80 + 4 * PAD, 3 * 96 + 4 * PAD, 3)
    for i in range(7):
        r, c = divmod(i, 3)
        top, left = PAD + r * (80 + PAD), PAD + c * (96 + PAD)
        np.testing.assert_array_equal(out[top:top + 80, left:left + 96], up(tiles[i], k))
    assert (out[PAD + 2 * 84:, PAD + 100:] == 255).all()  # the two empty cells stay background
    default = render.grid(tiles, min_tile=96)
    assert default.shape[1] == 3 * 96 + 4 * PAD  # ceil(sqrt(7)) = 3 columns
    big = render.grid(np.zeros((2, 200, 100, 3), np.uint8), min_tile=96, pad=0)
    assert big.shape == (200, 200, 3)  # already large enough: factor 1


def test_captions_draw_dark_pixels_in_their_strip_only():
    tiles = np.full((4, 16, 16, 3), 255, np.uint8)  # white tiles: any dark pixel is text
    bare = render.grid(tiles, ncols=2, min_tile=64)
    out = render.grid(tiles, captions=["cat", None, "dog 0.93", "bird"], ncols=2, min_tile=64)
    strip = (out.shape[0] - bare.shape[0]) // 2
    assert strip >= 10 and out.shape[1] == bare.shape[1]
    assert dark(out) > 0
    for i, expect_text in enumerate([True, False, True, True]):
        r, c = divmod(i, 2)
        top, left = PAD + r * (64 + strip + PAD), PAD + c * (64 + PAD)
        assert dark(out[top:top + 64, left:left + 64]) == 0  # the tile itself is untouched
        assert (dark(out[top + 64:top + 64 + strip, left:left + 64]) > 5) == expect_text, i


def test_long_captions_wrap_or_widen_and_dark_background_gets_light_text():
    tiles = np.zeros((2, 8, 8, 3), np.uint8)
    short = render.grid(tiles, captions=["a", "b"], min_tile=32, background=0)
    long = render.grid(tiles, captions=["true: airplane  pred: automobile (0.93)", "b"],
                       min_tile=32, background=0)
    assert long.shape[0] > short.shape[0] or long.shape[1] > short.shape[1]
    assert long.shape[1] <= 2 * 3 * 32 + 3 * PAD  # cells widen at most 3x
    assert (short[PAD + 32:] > 150).all(axis=-1).sum() > 0  # white text on black


def test_title_and_mixed_tiles_including_figures():
    fig = render.heatmap(np.eye(3), ["a", "b", "c"], ["x", "y", "z"])
    width, height = (fig.get_size_inches() * fig.dpi).round().astype(int)
    small = np.zeros((5, 5), np.float32)
    out = render.grid([fig, small], captions=["head 0", "map"], ncols=2, title="attention/mha")
    no_title = render.grid([render.heatmap(np.eye(3), ["a", "b", "c"], ["x", "y", "z"]), small],
                           captions=["head 0", "map"], ncols=2)
    assert out.shape[0] > no_title.shape[0] and dark(out[:PAD + 12]) > 5
    assert no_title.shape[1] == 2 * width + 3 * PAD  # the figure keeps its size (factor 1)
    assert no_title.shape[0] >= height + 2 * PAD


def test_grid_rejects_bad_arguments():
    tiles = np.zeros((3, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="2 captions for 3 tiles"):
        render.grid(tiles, captions=["a", "b"])
    with pytest.raises(ValueError, match="ncols"):
        render.grid(tiles, ncols=0)
    with pytest.raises(ValueError, match="at least one tile"):
        render.grid([])
    with pytest.raises(ValueError, match="background"):
        render.grid(tiles, background=300)


# -- explanation and image grids ---------------------------------------------------------------------
def test_explanation_grid_puts_input_beside_overlay():
    rng = np.random.default_rng(7)
    x = rng.random((16, 32, 32, 3)).astype(np.float32)
    maps = rng.random((16, 32, 32)).astype(np.float32)
    texts = [render.caption(true=i % 3, pred=(i + 1) % 3, confidence=0.5) for i in range(16)]
    out = render.explanation_grid(x, maps, captions=texts, alpha=0.45)
    pair_w, cell_h = 2 * 96 + 2, 96
    assert out.shape[1] == 4 * pair_w + 5 * PAD
    strip = (out.shape[0] - 5 * PAD) // 4 - cell_h
    assert out.shape[0] == 4 * (cell_h + strip) + 5 * PAD and strip > 0
    images, blended = render.to_uint8_images(x), render.overlay(x, maps, alpha=0.45)
    for i in (0, 5, 15):
        r, c = divmod(i, 4)
        top, left = PAD + r * (cell_h + strip + PAD), PAD + c * (pair_w + PAD)
        np.testing.assert_array_equal(out[top:top + 96, left:left + 96], up(images[i], 3))
        np.testing.assert_array_equal(out[top:top + 96, left + 98:left + 194], up(blended[i], 3))
        assert dark(out[top + 96:top + 96 + strip, left:left + pair_w]) > 10


def test_image_grid_scales_each_image():
    x = np.stack([np.linspace(-5, 5, 64).reshape(8, 8), np.linspace(0, 1e-3, 64).reshape(8, 8)])
    out = render.image_grid(x, captions=["a", "b"], ncols=2)
    k = 12
    assert out[PAD, PAD].tolist() == [0, 0, 0]
    assert out[PAD + 8 * k - 1, PAD + 8 * k - 1].tolist() == [255, 255, 255]
    assert out[PAD + 8 * k - 1, 2 * PAD + 16 * k - 1].tolist() == [255, 255, 255]


def test_caption_text():
    names = ["cat", "dog"]
    assert render.caption(true=0, pred=1, confidence=0.934, class_names=names) == \
        "true: cat  pred: dog (0.93)"
    assert render.caption(true=np.int64(1), pred=1.0) == "true: 1  pred: 1"
    assert render.caption(pred="truck") == "pred: truck"
    assert render.caption(confidence=0.5) == "score: 0.50"
    assert render.caption() == ""
    with pytest.raises(ValueError, match="out of range"):
        render.caption(true=2, class_names=names)
    assert render.captions(true=[0, 1], pred=np.array([1, 1]), confidence=[0.1, 0.9],
                           class_names=names) == ["true: cat  pred: dog (0.10)",
                                                  "true: dog  pred: dog (0.90)"]
    with pytest.raises(ValueError, match="one length"):
        render.captions(true=[0, 1], pred=[1])


# -- filters and channels ----------------------------------------------------------------------------
def _cell_origin(out_h: int, nrows: int, cell: int, r: int, c: int, cell_w: int) -> tuple[int, int]:
    strip = (out_h - (nrows + 1) * PAD) // nrows - cell
    return PAD + r * (cell + strip + PAD), PAD + c * (cell_w + PAD)


def test_filter_grid_rgb_scales_kernel_jointly_and_shows_the_strong_filter():
    rng = np.random.default_rng(8)
    kernel = rng.uniform(-0.01, 0.01, (3, 3, 3, 6)).astype(np.float32)
    kernel[1, 1, 0, 4] = 1.0  # filter 4: red centre
    kernel[0, 0, :, 4] = -1.0  # ... and a black corner
    out = render.filter_grid(kernel)
    k = 16  # ceil(48 / 3)
    assert out.shape[1] == 3 * 48 + 4 * PAD  # 6 filters -> 3 columns, 2 rows
    top, left = _cell_origin(out.shape[0], 2, 48, 1, 1, 48)  # filter 4: row 1, column 1
    tile = out[top:top + 48, left:left + 48]
    centre = tile[k:2 * k, k:2 * k].reshape(-1, 3)
    assert (centre[:, 0] == 255).all() and (np.abs(centre[:, 1:].astype(int) - 128) <= 2).all()
    assert (tile[:k, :k] == 0).all()
    t0, l0 = _cell_origin(out.shape[0], 2, 48, 0, 0, 48)
    assert (np.abs(out[t0:t0 + 48, l0:l0 + 48].astype(int) - 128) <= 2).all()  # weak filter: grey
    assert dark(out[top + 48:top + 48 + 10, left:left + 48]) > 0  # its index label


def test_filter_grid_grayscale_mean_over_inputs_per_filter():
    kernel = np.zeros((3, 3, 8, 4), np.float32)
    kernel[:, :, :, 2] = np.eye(3)[:, :, None] * np.linspace(0.5, 1.5, 8)  # diagonal on average
    kernel[:, :, :, 0] = 1e-3 * np.arange(9).reshape(3, 3, 1)  # tiny, but scaled on its own
    out = render.filter_grid(kernel, max_filters=3)
    assert out.shape[1] == 2 * 48 + 3 * PAD
    top, left = _cell_origin(out.shape[0], 2, 48, 1, 0, 48)  # filter 2: row 1, column 0
    tile = out[top:top + 48, left:left + 48]
    assert (tile[..., 0] == tile[..., 2]).all()
    small = tile[8::16, 8::16, 0]
    np.testing.assert_array_equal(small, np.eye(3) * 255)
    t0, l0 = _cell_origin(out.shape[0], 2, 48, 0, 0, 48)
    np.testing.assert_array_equal(out[t0 + 8:t0 + 48:16, l0 + 8:l0 + 48:16, 0],
                                  np.round(np.arange(9).reshape(3, 3) / 8 * 255))
    wide = render.filter_grid(np.zeros((3, 3, 2, 40)), max_filters=32)
    assert wide.shape[1] == 6 * 48 + 7 * PAD
    with pytest.raises(ValueError, match="Conv2D kernel"):
        render.filter_grid(np.zeros((3, 3, 4)))


def test_channel_grid_picks_the_planted_strongest_channels():
    rng = np.random.default_rng(9)
    acts = rng.uniform(0, 0.1, (6, 6, 20)).astype(np.float32)
    acts[:3, :3, 13] = 20.0  # strongest: bright top-left
    acts[3:, 3:, 4] = 10.0  # second: bright bottom-right
    np.testing.assert_array_equal(render.strongest_channels(acts, 2), [13, 4])
    out = render.channel_grid(acts, max_channels=2, cmap="gray", min_tile=60)
    assert out.shape[1] == 2 * 60 + 3 * PAD
    top = PAD
    first, second = out[top:top + 60, PAD:PAD + 60, 0], out[top:top + 60, 2 * PAD + 60:2 * PAD + 120, 0]
    assert (first[:30, :30] == 255).all() and (first[30:, 30:] < 30).all()
    assert (second[30:, 30:] == 255).all() and (second[:30, :30] < 30).all()
    titled = render.channel_grid(acts[None], max_channels=2, caption="conv1 sample 0", cmap="gray",
                                 min_tile=60)
    assert titled.shape[0] > out.shape[0]


def test_channel_grid_for_sequences_shows_strongest_first():
    acts = np.zeros((40, 6), np.float32)
    acts[:, 5] = np.linspace(0, 10, 40)  # strongest: a ramp
    acts[:, 2] = 1.0
    out = render.channel_grid(acts, max_channels=3, cmap="gray")
    width = 40 * math.ceil(256 / 40)  # each step widened to reach 256 px
    ramp = out[PAD + 6, -PAD - width:-PAD, 0].astype(int)  # middle of the first strip
    assert ramp[0] == 0 and ramp[-1] == 255 and (np.diff(ramp) >= 0).all()
    assert (out[PAD + 14 + 6, -PAD - width:-PAD] == 0).all()  # 2nd: constant channel 2 -> zeros
    assert dark(out[PAD:PAD + 12, :-PAD - width]) > 5  # the "ch 5" label at its left
    with pytest.raises(ValueError, match="one sample"):
        render.channel_grid(np.zeros((2, 4, 4, 3)))


# -- figures and encoding ----------------------------------------------------------------------------
def test_png_bytes_round_trips_arrays_and_data_uri():
    rng = np.random.default_rng(10)
    for img in (rng.integers(0, 256, (13, 17, 3), dtype=np.uint8),
                rng.integers(0, 256, (5, 6), dtype=np.uint8)):
        np.testing.assert_array_equal(decode(render.png_bytes(img)), img)
    img = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
    uri = render.data_uri(img)
    assert uri.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(decode(base64.b64decode(uri.split(",", 1)[1])), img)
    with pytest.raises(ValueError, match="uint8"):
        render.png_bytes(np.zeros((4, 4, 3), np.float32))


def test_png_bytes_of_a_figure_matches_its_pixels():
    matrix = np.array([[5, 0], [1, 7]])
    pixels = render.figure_to_array(render.heatmap(matrix, ["a", "b"], ["a", "b"]))
    decoded = decode(render.png_bytes(render.heatmap(matrix, ["a", "b"], ["a", "b"])))
    np.testing.assert_array_equal(decoded[..., :3], pixels)


def test_heatmap_draws_the_matrix_with_its_values():
    matrix = np.array([[5, 0, 1], [2, 9, np.nan]])
    fig = render.heatmap(matrix, ["r0", "r1"], ["c0", "c1", "c2"], title="confusion")
    ax = fig.axes[0]
    np.testing.assert_array_equal(np.ma.filled(ax.images[0].get_array(), np.nan), matrix)
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "2", "5", "9"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c0", "c1", "c2"]
    assert ax.get_title() == "confusion"
    fractions = render.heatmap(np.array([[0.25, 0.5]]), ["x"], ["a", "b"], annotate=True)
    assert sorted(t.get_text() for t in fractions.axes[0].texts) == ["0.25", "0.50"]
    with pytest.raises(ValueError, match="col_labels has 2 entries for 3"):
        render.heatmap(np.zeros((2, 3)), ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown colormap"):
        render.heatmap(np.zeros((2, 2)), cmap="nope")


def _blend_white(rgb, alpha=0.85):
    return np.asarray(rgb[:3]) * 255 * alpha + 255 * (1 - alpha)


def test_scatter_2d_colours_points_by_class():
    rng = np.random.default_rng(11)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    labels = np.repeat([0, 1, 2], 50)
    points = centres[labels] + rng.normal(0, 0.5, (150, 2))
    out = render.scatter_2d(points, labels, class_names=["a", "b", "c", "d"], title="PCA")
    assert out.dtype == np.uint8 and out.shape == (420, 500, 3)
    tab10 = matplotlib.colormaps["tab10"]
    flat = out.reshape(-1, 3).astype(float)

    def present(c):
        return (np.abs(flat - _blend_white(tab10(c))).max(axis=1) < 8).sum()

    assert all(present(c) > 50 for c in (0, 1, 2))
    assert present(3) < 5  # class 3 ("d") has no points and stays out of the picture
    with pytest.raises(ValueError, match="out of range"):
        render.scatter_2d(points, labels, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        render.scatter_2d(np.zeros((5, 3)), None)


def test_figures_are_thread_safe():
    rng = np.random.default_rng(12)
    points, labels = rng.normal(size=(100, 2)), rng.integers(0, 3, 100)
    reference = render.scatter_2d(points, labels)
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = render.scatter_2d(points, labels)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, reference)


def test_no_pyplot_and_lazy_matplotlib():
    code = (
        "import sys, numpy as np\n"
        "import keras_audit.render as r\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "r.explanation_grid(np.random.rand(2, 8, 8, 3), np.random.rand(2, 8, 8), ['a', 'b'])\n"
        "r.data_uri(r.heatmap(np.eye(2), ['a', 'b'], ['a', 'b']))\n"
        "r.scatter_2d(np.random.rand(10, 2), np.arange(10) % 2)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_grids_from_several_threads_match_serial_results():
    rng = np.random.default_rng(13)
    x, maps = rng.random((6, 8, 8, 3)), rng.random((6, 8, 8))
    jobs = [[f"thread {t} sample {i} score {rng.random():.3f}" for i in range(6)] for t in range(6)]
    results, errors = [None] * len(jobs), []

    def work(j):
        try:
            results[j] = render.explanation_grid(x, maps, captions=jobs[j])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for j, texts in enumerate(jobs):
        np.testing.assert_array_equal(results[j], render.explanation_grid(x, maps, captions=texts))


def test_png_size_estimate_is_near_the_real_size():
    from keras_audit.render.png import png_fast, png_size_estimate

    rng = np.random.default_rng(0)
    flat = np.kron(rng.integers(0, 255, (12, 9, 3)), np.ones((40, 40, 1))).astype(np.uint8)
    noisy = rng.integers(0, 255, (500, 300, 3)).astype(np.uint8)
    for picture in (flat, noisy, noisy[:20]):
        real = len(png_fast(picture))
        assert real / 1.5 <= png_size_estimate(picture) <= real * 1.5
