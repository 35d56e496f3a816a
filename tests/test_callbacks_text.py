"""Text models (integer token ids -> Embedding -> Conv1D or LSTM): token heatmaps read back from
the event files and redrawn from the callback's own maps, the vocabulary, and its errors."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _callbacks_models import VOCABULARY, labels, text, text_x  # noqa: E402
from _tb import read_events  # noqa: E402

from keras_audit import render  # noqa: E402
from keras_audit.callbacks import AuditCallback, GradCAMCallback, SaliencyCallback  # noqa: E402
from keras_audit.explain import GradCAM, Saliency  # noqa: E402
from keras_audit.render.tokens import TokenRows  # noqa: E402


def _fit(model, callbacks, pad=False, epochs=1):
    model.fit(text_x(48, pad=pad), labels(48, 2), epochs=epochs, batch_size=16, verbose=0,
              callbacks=callbacks)


@pytest.mark.parametrize("recurrent, layer", [(False, "conv1d"), (True, "lstm")])
@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_token_heatmap_is_the_maps_over_the_vocabulary(tmp_path, recurrent, layer, method):
    model = text(recurrent)
    val = (text_x(16, seed=1, pad=recurrent), labels(16, 2))
    make = GradCAMCallback if method == "gradcam" else SaliencyCallback
    cb = make(val, str(tmp_path), num_samples=4, strict=True, vocabulary=VOCABULARY)
    _fit(model, [cb], pad=recurrent)
    tag = f"gradcam/{layer}" if method == "gradcam" else "saliency/vanilla"
    events = read_events(str(tmp_path))
    assert set(events["images"]) == {tag}
    (step, picture, _), = events["images"][tag]
    assert step == 0

    ids = cb.samples.x
    assert ids.dtype == np.int32 and ids.shape == (4, 12)
    engine = (GradCAM(model) if method == "gradcam" else Saliency(model))
    maps = engine(ids, cb.samples.y)  # the engine's maps: one score per token
    assert maps.shape == (4, 12) and np.all(np.isfinite(maps))
    assert maps.min() >= 0 and maps.max() <= 1
    # Grad-CAM's ReLU may zero a whole map of an untrained LSTM; saliency never is constant
    spread = np.ptp(maps, axis=1)
    assert (spread.max() if method == "gradcam" else spread.min()) > 0
    words = [[VOCABULARY[i] for i in row] for row in ids]
    pad = ids == 0 if recurrent else None
    if recurrent:
        assert pad.sum() > 0  # the LSTM's samples end in masked padding, drawn grey
    captions = cb.captions(model.predict(ids, verbose=0))
    expected = TokenRows(words, pad=pad, cmap=cb.colormap).draw(
        maps, captions, title=f"{tag}  (tokens)")
    np.testing.assert_array_equal(picture, expected)  # the tokens as text, cells coloured
    # each non-padding cell has the colour of its token's attribution
    rows = TokenRows(words, pad=pad, cmap=cb.colormap)
    colours = render.colorize(maps, cb.colormap)
    for i, boxes in enumerate(rows.boxes):
        for k, (top, left) in enumerate(boxes):
            want = (225, 225, 225) if pad is not None and pad[i, k] else tuple(colours[i, k])
            assert tuple(picture[top + 1, left + 1]) == want


def test_without_a_vocabulary_the_ids_are_drawn_and_dicts_match_lists(tmp_path):
    model = text(False)
    val = (text_x(16, seed=1), labels(16, 2))
    plain = GradCAMCallback(val, str(tmp_path / "ids"), num_samples=4, metrics=False)
    by_id = GradCAMCallback(val, str(tmp_path / "by_id"), num_samples=4, metrics=False,
                            vocabulary=dict(enumerate(VOCABULARY)))
    by_word = GradCAMCallback(val, str(tmp_path / "by_word"), num_samples=4, metrics=False,
                              vocabulary={w: i for i, w in enumerate(VOCABULARY)})
    listed = GradCAMCallback(val, str(tmp_path / "list"), num_samples=4, metrics=False,
                             vocabulary=VOCABULARY)
    _fit(model, [plain, by_id, by_word, listed])
    ids = plain.samples.x
    assert plain._rows[0].labels == [[str(i) for i in row] for row in ids]
    pictures = {name: read_events(str(tmp_path / name))["images"]["gradcam/conv1d"][0][1]
                for name in ("ids", "by_id", "by_word", "list")}
    np.testing.assert_array_equal(pictures["by_id"], pictures["list"])
    np.testing.assert_array_equal(pictures["by_word"], pictures["list"])
    assert not np.array_equal(pictures["ids"], pictures["list"])


@pytest.mark.parametrize("vocabulary, match", [
    ("the cat", "list of strings.*got str"),
    (12, "list of strings.*got int"),
    ([], "empty"),
    (["a", 3], "entry 1"),
    ({0: "a", -1: "b"}, "non-negative"),
    ({"a": 0, "b": 0}, "id 0 twice"),
])
def test_a_bad_vocabulary_is_refused_on_construction(vocabulary, match):
    with pytest.raises(ValueError, match=match):
        SaliencyCallback(text_x(4), "d", vocabulary=vocabulary)
    with pytest.raises(ValueError, match=match):
        AuditCallback(text_x(4), "d", vocabulary=vocabulary)


def test_ids_beyond_the_vocabulary_are_refused_before_the_first_batch(tmp_path):
    model = text(False)
    cb = GradCAMCallback((text_x(16, seed=1), labels(16, 2)), str(tmp_path), num_samples=4,
                         vocabulary=VOCABULARY[:5])
    with pytest.raises(ValueError, match=r"vocabulary has 5 entries \(ids 0..4\).*token id"):
        _fit(model, [cb])
    assert int(model.optimizer.iterations.numpy()) == 0
    assert not os.listdir(tmp_path)


def test_explicit_filters_on_a_text_model_say_why(tmp_path):
    model = text(False)
    audit = AuditCallback((text_x(16), labels(16, 2)), str(tmp_path),
                          include=("gradcam", "filters"))
    with pytest.raises(ValueError, match="no 2-D convolution"):
        _fit(model, [audit])
    assert int(model.optimizer.iterations.numpy()) == 0


def test_stability_of_token_maps_is_logged_from_the_second_epoch(tmp_path):
    model = text(True)
    cb = GradCAMCallback((text_x(16, seed=1, pad=True), labels(16, 2)), str(tmp_path),
                         num_samples=4, vocabulary=VOCABULARY)
    _fit(model, [cb], pad=True, epochs=2)
    scalars = read_events(str(tmp_path))["scalars"]
    assert set(scalars) == {"explanations/gradcam/lstm/stability"}  # no AUCs on token ids
    (step, rho), = scalars["explanations/gradcam/lstm/stability"]
    assert step == 1 and -1.0 <= rho <= 1.0


def test_metrics_true_on_token_ids_says_why(tmp_path):
    model = text(False)
    cb = GradCAMCallback((text_x(16), labels(16, 2)), str(tmp_path), metrics=True)
    with pytest.raises(ValueError, match="metrics=True.*do not apply.*tokens"):
        _fit(model, [cb])
