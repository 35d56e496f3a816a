"""Explanation quality: the randomisation sanity test and deletion/insertion faithfulness."""

import hashlib

import numpy as np
import pytest

from keras_audit.audit.quality import faithfulness, sanity, sanity_figure


def digest(model):
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def test_sanity_passes_on_trained_model_and_restores_weights(shapes_model, shapes_data):
    _, _, xt, _, _ = shapes_data
    before = digest(shapes_model)
    table = sanity(shapes_model, xt[:16], methods=("gradcam", "saliency"), seed=0)
    assert digest(shapes_model) == before
    assert list(table.columns[:4]) == ["method", "step", "layer", "spearman"]
    assert set(table.method) == {"gradcam", "saliency"}
    n_layers = 3  # conv1, conv2, probs
    assert sorted(table.step.unique()) == list(range(n_layers + 1))
    assert list(table[table.method == "gradcam"].layer) == ["<none>", "probs", "conv2", "conv1"]
    step0 = table[table.step == 0]
    assert np.allclose(step0.spearman, 1.0)
    last = table[table.step == n_layers].set_index("method").spearman
    assert (last.abs() < 0.5).all(), last
    assert table.groupby("method").passed.first().all()
    fig = sanity_figure(table)
    assert len(fig.axes[0].lines) == 3  # two methods and the threshold


def test_sanity_verdict_follows_the_threshold(shapes_model, shapes_data):
    """A threshold no correlation can be under fails every method; max_layers bounds the steps."""
    _, _, xt, _, _ = shapes_data
    table = sanity(shapes_model, xt[:8], methods=("gradient_input",), threshold=-1.0,
                   max_layers=1)
    assert not table.passed.any()
    assert sorted(table.step.unique()) == [0, 1]


def test_faithfulness_gradcam_beats_random_order(shapes_model, shapes_data):
    _, _, xt, yt, _ = shapes_data
    before = digest(shapes_model)
    table = faithfulness(shapes_model, xt[:32], targets=yt[:32],
                         methods=("gradcam", "saliency"), steps=12)
    assert digest(shapes_model) == before
    assert list(table.columns) == ["method", "deletion_auc", "insertion_auc",
                                   "random_deletion_auc", "random_insertion_auc", "n"]
    g = table.set_index("method").loc["gradcam"]
    assert g.deletion_auc < g.random_deletion_auc - 0.2
    assert g.insertion_auc > g.random_insertion_auc


def test_bad_arguments(shapes_model, shapes_data):
    _, _, xt, _, _ = shapes_data
    with pytest.raises(ValueError, match="unknown method.*gradcam"):
        sanity(shapes_model, xt[:4], methods=("gradcamm",))
    with pytest.raises(ValueError, match="steps"):
        faithfulness(shapes_model, xt[:4], steps=0)
    with pytest.raises(ValueError, match="takes batches of shape"):
        faithfulness(shapes_model, np.zeros((2, 5, 5, 3)))
