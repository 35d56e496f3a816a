"""One table of cases, as captum's test config: callback set x model kind x data form.

Every case trains its tiny model for one epoch with the callbacks and reads the event files back
with TensorBoard's reader: the exact image tags, the scalars that apply to the model, the
default techniques left out, and values that make sense (class-balanced samples, AUCs in [0, 1],
pictures that are not blank). A new model kind or data form gets the whole battery from one row.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from _callbacks_models import KINDS, N  # noqa: E402
from _tb import read_events  # noqa: E402

from keras_audit.callbacks import AuditCallback, GradCAMCallback, SaliencyCallback  # noqa: E402

AUC_NAMES = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
             "worse_than_random")
#: kinds that read token ids: the evaluation lists their mistakes as text, not pictures
TOKEN_KINDS = {"tokens_conv1d", "tokens_lstm"}


def evaluation_tags(kind, labelled: bool) -> tuple[set, set]:
    """The image and scalar tags EvaluationCallback (in AuditCallback's defaults) writes."""
    if not labelled:
        return set(), set()
    classes = (0, 1) if kind.name in TOKEN_KINDS else (0, 1, 2)
    images = {"evaluation/confusion_matrix"} | (
        set() if kind.name in TOKEN_KINDS else {"evaluation/mistakes"})
    scalars = {"evaluation/accuracy"} | {f"evaluation/{m}/{c}" for m in ("precision", "recall",
                                                                         "f1")
                                        for c in classes}
    return images, scalars
#: kinds whose Grad-CAM logs the deletion/insertion AUCs (one (H, W, C) image input)
WITH_AUCS = {"sequential", "functional", "nested_backbone", "multi_output", "dict_input",
             "uint8_input", "mixed_precision"}
FORMS = ("arrays", "x_alone", "tf_data")


def _tuple(x):
    return tuple(x) if isinstance(x, list) else x


def validation(kind, form):
    x, y = kind.x(16, seed=1), kind.y(16)
    if form == "arrays":
        return (x, y), True
    if form == "x_alone":
        return ((x,) if isinstance(x, list) else x), False
    return tf.data.Dataset.from_tensor_slices((_tuple(x), y)).batch(8), True


def _attribution_set(data, log_dir, kind):
    opts = {k: v for k, v in kind.options.items() if k == "vocabulary"}
    cbs = [SaliencyCallback(data, log_dir, num_samples=4, strict=True, **opts)]
    if "gradcam" not in kind.skipped:
        cbs.insert(0, GradCAMCallback(data, log_dir, num_samples=4, strict=True, **opts))
    return cbs


def _audit_set(data, log_dir, kind):
    return [AuditCallback(data, log_dir, num_samples=4, strict=True, **kind.options)]


SETS = {"audit": _audit_set, "attribution": _attribution_set}
CASES = [pytest.param(s, k, f, id=f"{s}-{k.name}-{f}")
         for s in SETS for k in KINDS for f in (FORMS if s == "audit" else ("arrays",))]


@pytest.mark.parametrize("cb_set, kind, form", CASES)
def test_callbacks_on_every_model_kind(tmp_path, cb_set, kind, form):
    policy = keras.mixed_precision.global_policy().name
    model = kind.build()
    assert keras.mixed_precision.global_policy().name == policy  # builders restore it
    data, labelled = validation(kind, form)
    log_dir = str(tmp_path)
    callbacks = SETS[cb_set](data, log_dir, kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(kind.x(N), kind.y(N), epochs=1, batch_size=16, verbose=0,
                  callbacks=callbacks)
    events = read_events(log_dir)

    expected = set(kind.tags)
    eval_images, eval_scalars = evaluation_tags(kind, labelled and cb_set == "audit")
    if cb_set == "attribution":
        expected = {t for t in expected if t.split("/")[0] in ("gradcam", "saliency")}
    assert set(events["images"]) == expected | eval_images
    for tag, records in events["images"].items():
        assert [step for step, *_ in records] == [0], tag
        picture = records[0][1]
        assert picture.ndim == 3 and picture.std() > 5, tag  # drawn, not blank

    cam = next((t for t in events["images"] if t.startswith("gradcam/")), None)
    aucs = {f"explanations/{cam}/{m}" for m in AUC_NAMES} if kind.name in WITH_AUCS else set()
    # no stability at the first logged epoch
    assert set(events["scalars"]) == aucs | eval_scalars
    for tag in aucs | eval_scalars:
        (step, value), = events["scalars"][tag]
        top = 2.0 if tag.endswith("worse_than_random") else 1.0
        assert step == 0 and 0.0 <= value <= top, (tag, value)

    if cb_set == "audit":
        audit = callbacks[0]
        assert set(audit.skipped) == set(kind.skipped) | (set() if labelled else {"evaluation"})
        left_out = [w for w in caught if "AuditCallback leaves out" in str(w.message)]
        assert len(left_out) == (1 if kind.skipped or not labelled else 0)
        member = next(cb for name, cb in audit.callbacks.items() if name not in audit.skipped)
    else:
        member = callbacks[0]
    samples = member.samples
    assert len(samples.x) == 4 and len(samples.inputs) == (2 if kind.name == "multi_input" else 1)
    if labelled:
        counts = np.bincount(samples.y, minlength=2 if "tokens" in kind.name else 3)
        assert counts.max() - counts.min() <= 1  # class-balanced
    else:
        assert samples.y is None


@pytest.mark.parametrize("make, match", [
    (lambda d, x: GradCAMCallback(x, d), r"GradCAM.*subclassed.*no functional graph"),
    (lambda d, x: AuditCallback(x, d, include=("gradcam", "saliency")),
     r"GradCAM.*subclassed.*no functional graph"),
    (lambda d, x: AuditCallback(x, d, include=("activations",)), r"no convolution layer"),
])
def test_a_subclassed_model_is_refused_by_name_when_asked_explicitly(tmp_path, make, match):
    from _callbacks_models import images, labels, subclassed

    model = subclassed()
    cb = make(str(tmp_path), (images(8), labels(8)))
    with pytest.raises(ValueError, match=match):
        model.fit(images(16), labels(16), epochs=1, verbose=0, callbacks=[cb])
    assert int(model.optimizer.iterations.numpy()) == 0
    assert not os.listdir(tmp_path)
