"""The training-time callbacks, read back through TensorBoard's own event reader.

A tiny CNN learns coloured squares (16x16, 3 classes) for 4 epochs with ``AuditCallback``
defaults and ``freq=2``, so epochs 0, 2 and 3 (the last) are logged.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import types  # noqa: E402
import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from _callbacks_data import CLASS_NAMES, read_events, shapes, tiny_cnn, weights_of  # noqa: E402

from keras_audit import render  # noqa: E402
from keras_audit.callbacks import (  # noqa: E402
    ActivationMapsCallback,
    AuditCallback,
    ExplanationLoggingWarning,
    FilterCallback,
    GradCAMCallback,
    SaliencyCallback,
    is_chief,
    select_samples,
)
from keras_audit.callbacks.base import (  # noqa: E402
    CARD_FONT,
    MIN_TILE,  # noqa: E402
    ExplanationCallback,
    balanced_order,
)
from keras_audit.explain import GradCAM, Saliency, deletion_insertion  # noqa: E402

EPOCHS, FREQ, LOGGED = 4, 2, [0, 2, 3]
IMAGE_TAGS = {"gradcam/conv2", "saliency/vanilla", "activations/conv1", "activations/conv2",
              "filters/conv1", "evaluation/confusion_matrix",
              "evaluation/mistakes"}
AUC_NAMES = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")
EVAL_SCALARS = {"evaluation/accuracy"} | {f"evaluation/{m}/{c}" for m in ("precision", "recall",
                                                                          "f1")
                                         for c in CLASS_NAMES}
SCALAR_TAGS = ({f"explanations/gradcam/conv2/{m}" for m in (*AUC_NAMES, "worse_than_random",
                                                             "stability")}
               | {"explanations/saliency/vanilla/stability"} | EVAL_SCALARS)


@pytest.fixture(scope="module")
def data():
    return shapes()


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """One fit() with AuditCallback defaults; the model, the callback and what was written."""
    x, y, xv, yv = data
    log_dir = str(tmp_path_factory.mktemp("audit"))
    model = tiny_cnn()
    audit = AuditCallback((xv, yv), log_dir, class_names=CLASS_NAMES, freq=FREQ)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExplanationLoggingWarning)
        history = model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[audit])
    return types.SimpleNamespace(model=model, audit=audit, log_dir=log_dir,
                                 events=read_events(log_dir), history=history, data=data)


# -- what is written ---------------------------------------------------------------------------
def test_exact_tags_one_image_per_logged_step(run):
    images, scalars = run.events["images"], run.events["scalars"]
    assert set(images) == IMAGE_TAGS
    assert set(scalars) == SCALAR_TAGS
    for tag, records in images.items():
        assert [step for step, _, _ in records] == LOGGED, tag
    for tag in SCALAR_TAGS:
        want = LOGGED[1:] if "stability" in tag else LOGGED
        assert [step for step, _ in scalars[tag]] == want, tag
    assert len(run.history.history["loss"]) == EPOCHS


def test_pictures_have_their_declared_size_and_are_not_blank(run):
    for tag, records in run.events["images"].items():
        sizes = set()
        for step, picture, (w, h) in records:
            assert picture.shape == (h, w, 3), (tag, step)
            sizes.add(picture.shape)
            assert picture.std() > 20, f"{tag} at step {step} is nearly uniform"
            assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 50, (tag, step)
        assert len(sizes) == 1, f"{tag} changed size between epochs"


def test_the_last_pictures_draw_the_final_model(run):
    """The last logged epoch ran on the final weights: redraw it independently and compare."""
    model = run.model
    cam_cb = run.audit.callbacks["gradcam"]
    x, y = cam_cb.samples.x, cam_cb.samples.y
    probs = model.predict(x, verbose=0)
    texts = render.captions(true=y, pred=probs.argmax(1), confidence=probs.max(1),
                            class_names=CLASS_NAMES)
    for tag, explainer, cb in (("gradcam/conv2", GradCAM(model, layer="conv2"), cam_cb),
                               ("saliency/vanilla", Saliency(model),
                                run.audit.callbacks["saliency"])):
        expected = render.explanation_grid(x, explainer(x, y), captions=texts,
                                           **cb.grid_options)
        step, picture, _ = run.events["images"][tag][-1]
        assert step == EPOCHS - 1
        np.testing.assert_array_equal(picture, expected, err_msg=tag)
    # weights mode: the first conv and deeper kernels of 5x5 or more; conv2 is 3x3 (issue 15)
    assert "filters/conv2" not in run.events["images"]
    for layer in ("conv1",):
        kernel = model.get_layer(layer).kernel.numpy()
        expected = render.filter_grid(kernel, max_filters=32, min_tile=32)
        np.testing.assert_array_equal(run.events["images"][f"filters/{layer}"][-1][1], expected)


def test_the_same_samples_are_shown_every_epoch_and_the_maps_change(run):
    samples = run.audit.callbacks["gradcam"].samples
    pictures = [p for _, p, _ in run.events["images"]["gradcam/conv2"]]
    # layout contract of render.explanation_grid: pairs in 2 columns (the most that fit the
    # TensorBoard card), pad 4, centred in cells, the colour bar in a strip at the right
    k = render.upscale_factor(16, 16, MIN_TILE)
    side, pad = 16 * k, 4
    bar_w = render.colorbar("jet", side, font_size=CARD_FONT).shape[1] + pad
    cell_w = (pictures[0].shape[1] - bar_w - 3 * pad) // 2
    left = pad + (cell_w - (2 * side + 2)) // 2
    expected = render.to_uint8_images(samples.x[:1])[0].repeat(k, 0).repeat(k, 1)
    for picture in pictures:  # the same first sample, pixel for pixel, every epoch
        np.testing.assert_array_equal(picture[pad:pad + side, left:left + side], expected)
    over = slice(left + side + 2, left + 2 * side + 2)
    first, last = (p[pad:pad + side, over].astype(int) for p in (pictures[0], pictures[-1]))
    assert np.abs(first - last).mean() > 2, "the heatmap did not change as the model trained"


def test_every_technique_picture_changes_as_training_proceeds(run):
    for tag, records in run.events["images"].items():
        if tag.startswith("evaluation/"):  # a model right from epoch 0: no mistakes to change
            continue
        a, b = records[0][1].astype(int), records[-1][1].astype(int)
        assert np.abs(a - b).mean() > 0.5, f"{tag} is the same at the first and last epoch"


def test_auc_scalars_equal_the_engine_on_the_final_weights(run):
    """The last logged epoch ran on the final weights: recompute with the engine, compare."""
    cb = run.audit.callbacks["gradcam"]
    x = cb.samples.x[:cb.metric_samples]
    targets = cb.samples.y[:cb.metric_samples]
    maps = GradCAM(run.model, layer="conv2")(x, targets)
    ref = deletion_insertion(run.model, x, maps, targets, steps=cb.metric_steps, seed=cb.seed)
    for name, values in ref.items():
        step, logged = run.events["scalars"][f"explanations/gradcam/conv2/{name}"][-1]
        assert step == EPOCHS - 1
        assert logged == pytest.approx(float(np.mean(values)), abs=1e-5), name
    for tag in ("explanations/gradcam/conv2/stability", "explanations/saliency/vanilla/stability"):
        for _, value in run.events["scalars"][tag]:
            assert -1.0 <= value <= 1.0


def test_captions_name_true_and_predicted_classes(run):
    cb = run.audit.callbacks["gradcam"]
    probs = run.model.predict(cb.samples.x, verbose=0)
    captions = cb.captions(probs)
    for text, label, p in zip(captions, cb.samples.y, probs):
        assert text == f"true: {CLASS_NAMES[label]}  pred: {CLASS_NAMES[p.argmax()]} " \
                       f"({p.max():.2f})"


def test_nothing_retraces_after_the_first_logged_epoch(run):
    counts = run.audit.trace_counts()
    assert counts and all(v == 1 for v in counts.values()), counts


def test_samples_are_balanced_deterministic_and_shared(run, data):
    _, _, xv, yv = data
    cb = run.audit.callbacks["gradcam"]
    counts = np.bincount(cb.samples.y, minlength=3)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 16
    np.testing.assert_array_equal(cb.samples.x, xv[cb.samples.index])
    np.testing.assert_array_equal(cb.samples.y, yv[cb.samples.index])
    again = select_samples((xv, yv), 16, run.model)
    np.testing.assert_array_equal(again.index, cb.samples.index)
    onehot = select_samples((xv, np.eye(3)[yv]), 16, run.model)
    np.testing.assert_array_equal(onehot.index, cb.samples.index)
    # the bundle's members show prefixes of the same samples
    act = run.audit.callbacks["activations"]
    np.testing.assert_array_equal(act.samples.index, cb.samples.index[:4])


def test_balanced_order_every_prefix_is_balanced():
    y = np.array([0] * 50 + [1] * 5 + [2] * 20)
    order = balanced_order(y, len(y), seed=3)
    assert sorted(order.tolist()) == list(range(len(y)))
    for n in range(1, 16):
        counts = np.bincount(y[order[:n]], minlength=3)
        assert counts.max() - counts.min() <= 1, (n, counts)


def test_the_schedule_logs_every_freq_and_the_last_epoch():
    cb = GradCAMCallback(np.zeros((2, 4, 4, 3)), "unused", freq=3)
    cb.set_params({"epochs": 8})
    assert [e for e in range(8) if cb.should_log(e)] == [0, 3, 6, 7]
    cb.set_params({"epochs": 7})
    assert [e for e in range(7) if cb.should_log(e)] == [0, 3, 6]


def test_no_batch_hook_is_overridden_so_keras_keeps_async_dispatch(tmp_path, data):
    xv = data[2]
    cbs = [GradCAMCallback(xv, str(tmp_path)), SaliencyCallback(xv, str(tmp_path)),
           ActivationMapsCallback(xv, str(tmp_path)), FilterCallback(str(tmp_path)),
           AuditCallback(xv, str(tmp_path))]
    for cb in cbs:
        for hook in ("on_batch_begin", "on_batch_end", "on_train_batch_begin",
                     "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end"):
            inherited = getattr(type(cb), hook) is getattr(keras.callbacks.Callback, hook)
            assert inherited, (type(cb).__name__, hook)
    # (Keras enables async dispatch only on thread-safe backends; ours never turn it off)
    plain = keras.callbacks.CallbackList([keras.callbacks.History()])
    assert keras.callbacks.CallbackList(cbs)._async_train == plain._async_train


# -- other data forms --------------------------------------------------------------------------
def test_x_alone_and_a_batched_dataset(tmp_path, data):
    x, y, xv, yv = data
    model = tiny_cnn(seed=1)
    ds = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(7)
    alone = GradCAMCallback(xv, str(tmp_path / "alone"), num_samples=6, metrics=False)
    from_ds = SaliencyCallback(ds, str(tmp_path / "ds"), num_samples=6)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[alone, from_ds])
    assert alone.samples.y is None
    assert alone.captions(np.eye(3)[[0, 1, 2, 0, 1, 2]])[:2] == ["pred: 0 (1.00)",
                                                                "pred: 1 (1.00)"]
    np.testing.assert_array_equal(from_ds.samples.x, xv[from_ds.samples.index])
    assert np.bincount(from_ds.samples.y, minlength=3).tolist() == [2, 2, 2]
    assert set(read_events(str(tmp_path / "alone"))["images"]) == {"gradcam/conv2"}
    assert set(read_events(str(tmp_path / "ds"))["images"]) == {"saliency/vanilla"}


def test_an_early_stop_still_logs_the_final_epoch(tmp_path, data):
    x, y, xv, yv = data

    class StopAfterOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    model = tiny_cnn()
    cb = ActivationMapsCallback((xv, yv), str(tmp_path), freq=5, num_samples=2)
    model.fit(x, y, epochs=10, batch_size=32, verbose=0, callbacks=[StopAfterOne(), cb])
    steps = [s for s, _, _ in read_events(str(tmp_path))["images"]["activations/conv1"]]
    assert steps == [0, 1]


# -- nested models, filters ----------------------------------------------------------------------
def test_nested_model_layers_and_activation_maximisation(tmp_path, data):
    x, y, xv, yv = data
    model = tiny_cnn(nested=True)
    cam = GradCAMCallback((xv, yv), str(tmp_path), layer="backbone/conv1", num_samples=4)
    acts = ActivationMapsCallback((xv, yv), str(tmp_path), num_samples=2, max_channels=4)
    maxi = FilterCallback(str(tmp_path), mode="maximize", max_filters=3, steps=15)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cam, acts, maxi])
    events = read_events(str(tmp_path))
    assert set(events["images"]) == {"gradcam/backbone/conv1", "activations/backbone/conv1",
                                     "activations/backbone/conv2", "filters/backbone/conv1",
                                     "filters/backbone/conv2"}
    assert all([s for s, _, _ in r] == [0, 1] for r in events["images"].values())
    # gradient ascent makes each filter fire far more than on the starting noise
    images = np.concatenate(list(maxi.maximizer().values()))
    after = maxi.maximizer.activations(images)
    before = maxi.maximizer.activations(maxi.maximizer.start)
    assert np.all(after > before), (before, after)
    assert np.median(after - before) > 0.1
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert maxi.trace_counts() == {"maximize": 1}
    # the ascent is deterministic for fixed weights
    np.testing.assert_array_equal(np.concatenate(list(maxi.maximizer().values())), images)


# -- configuration errors: raised before the first batch -----------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda d, xv, yv: GradCAMCallback((xv, yv), d, layer="nope"), "unknown layer 'nope'"),
    (lambda d, xv, yv: GradCAMCallback((xv, yv), d, layer="probs"), "no spatial output"),
    (lambda d, xv, yv: SaliencyCallback((xv[:, :8, :8], yv), d), "shape"),
    (lambda d, xv, yv: GradCAMCallback((xv, yv + 5), d), "out of range"),
    (lambda d, xv, yv: ActivationMapsCallback((xv, yv), d, layers=["probs"]), "4-D"),
    (lambda d, xv, yv: FilterCallback(d, layers=["gmp"]), "not a 2-D convolution"),
    (lambda d, xv, yv: GradCAMCallback((xv, yv), d, class_names=["a"]), "class_names"),
    (lambda d, xv, yv: AuditCallback((xv, yv[:3]), d), "labels"),
])
def test_configuration_errors_raise_before_the_first_batch(tmp_path, data, make, match):
    x, y, xv, yv = data
    model = tiny_cnn()
    before = weights_of(model)
    cb = make(str(tmp_path), xv, yv)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    assert int(model.optimizer.iterations.numpy()) == 0
    for a, b in zip(before, weights_of(model)):
        np.testing.assert_array_equal(a, b)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("make, match", [
    (lambda: GradCAMCallback(np.zeros((2, 4, 4, 3)), "d", method="cam"), "gradcam\\+\\+"),
    (lambda: SaliencyCallback(np.zeros((2, 4, 4, 3)), "d", method="x"), "smoothgrad"),
    (lambda: SaliencyCallback(np.zeros((2, 4, 4, 3)), "d", method="smoothgrad",
                              method_options={"steps": 3}), "num_samples"),
    (lambda: FilterCallback("d", mode="deepdream"), "maximize"),
    (lambda: GradCAMCallback(np.zeros((2, 4, 4, 3)), "d", freq=0), "freq"),
    (lambda: GradCAMCallback(None, "d"), "validation_data"),
    (lambda: GradCAMCallback(np.zeros((2, 4, 4, 3)), "d", targets="best"), "targets"),
    (lambda: AuditCallback(np.zeros((2, 4, 4, 3)), "d", include=("gradcam", "shap")),
     "valid names: .*attention.*embeddings"),
    (lambda: AuditCallback(np.zeros((2, 4, 4, 3)), "d", colour="red"), "colour"),
    (lambda: AuditCallback(np.zeros((2, 4, 4, 3)), "d", options={"lime": {}}), "lime"),
])
def test_bad_arguments_raise_on_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shared_options_reach_only_the_members_that_take_them(tmp_path):
    audit = AuditCallback(np.zeros((2, 8, 8, 3)), str(tmp_path), freq=3, max_channels=2,
                          options={"filters": {"mode": "maximize", "max_filters": 2}})
    assert {cb.freq for cb in audit.callbacks.values()} == {3}
    assert audit.callbacks["activations"].max_channels == 2
    assert audit.callbacks["filters"].mode == "maximize"
    assert list(audit.callbacks) == ["gradcam", "saliency", "activations", "filters",
                                     "evaluation"]


# -- logging failures -------------------------------------------------------------------------------
def _fit(model, data, callbacks, epochs=3):
    x, y, _, _ = data
    return model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)


def _logging_warnings(record):
    return [w for w in record if issubclass(w.category, ExplanationLoggingWarning)]


def test_unwritable_log_dir_warns_once_and_training_goes_on(tmp_path, data):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    audit = AuditCallback(data[2:], str(blocker / "logs"), num_samples=4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        history = _fit(tiny_cnn(), data, [audit])
    assert len(history.history["loss"]) == 3
    found = _logging_warnings(record)
    assert len(found) == 1, [str(w.message) for w in found]
    assert "a_file" in str(found[0].message)


def test_full_disk_warns_once_or_raises_when_strict(tmp_path, data, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # the disk is full where each record is appended to the event file
    from keras_audit.callbacks.events import EventWriter

    monkeypatch.setattr(EventWriter, "_record", full_disk)
    audit = AuditCallback(data[2:], str(tmp_path / "lenient"), num_samples=4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        history = _fit(tiny_cnn(), data, [audit])
    assert len(history.history["loss"]) == 3
    found = _logging_warnings(record)
    assert len(found) == 1 and "No space left" in str(found[0].message)
    assert sum(len(cb.failures) for cb in audit.callbacks.values()) >= 3

    strict = GradCAMCallback(data[2:], str(tmp_path / "strict"), num_samples=4, strict=True)
    model = tiny_cnn()
    with pytest.raises(OSError, match="No space left"):
        _fit(model, data, [strict])
    assert len(strict.logged_epochs) == 1  # it raised at the first logged epoch


def test_nan_maps_warn_once_or_raise_when_strict(tmp_path, data):
    class Poison(keras.callbacks.Callback):  # NaN weights: NaN outputs, NaN maps
        def on_train_begin(self, logs=None):
            k = self.model.get_layer("probs").kernel
            k.assign(tf.fill(k.shape, np.nan))

    cb = GradCAMCallback(data[2:], str(tmp_path / "lenient"), num_samples=4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        history = _fit(tiny_cnn(), data, [Poison(), cb])
    assert len(history.history["loss"]) == 3
    found = _logging_warnings(record)
    assert len(found) == 1 and "NaN" in str(found[0].message)
    assert len(cb.failures) == 3 and cb.logged_epochs == []  # tried each epoch once
    assert not os.path.exists(tmp_path / "lenient")  # nothing was worth writing
    strict = GradCAMCallback(data[2:], str(tmp_path / "strict"), num_samples=4, strict=True)
    with pytest.raises(FloatingPointError, match="NaN"):
        _fit(tiny_cnn(), data, [Poison(), strict])


# -- the chief ----------------------------------------------------------------------------------------
def _on(task_type, task_id, jobs):
    spec = tf.train.ClusterSpec({j: [f"127.0.0.1:{2000 + i}" for i in range(n)]
                                 for j, n in jobs.items()})
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=task_type, task_id=task_id)
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    return types.SimpleNamespace(distribute_strategy=strategy)


def test_the_chief_is_taken_from_the_strategy_cluster_resolver():
    assert is_chief(None) and is_chief(types.SimpleNamespace(distribute_strategy=None))
    assert is_chief(_on("worker", 0, {"worker": 2}))
    assert not is_chief(_on("worker", 1, {"worker": 2}))
    assert is_chief(_on("chief", 0, {"chief": 1, "worker": 2}))
    assert not is_chief(_on("worker", 0, {"chief": 1, "worker": 2}))
    assert not is_chief(_on("evaluator", 0, {"worker": 2, "evaluator": 1}))


def test_a_non_chief_writes_nothing(tmp_path, data, monkeypatch):
    import keras_audit.callbacks.base as base

    monkeypatch.setattr(base, "is_chief", lambda model=None: False)
    cb = GradCAMCallback(data[2:], str(tmp_path / "logs"), num_samples=4)
    _fit(tiny_cnn(), data, [cb], epochs=2)
    assert not os.path.exists(tmp_path / "logs") and cb.logged_epochs == []


def test_subclass_hooks_run_on_the_worker_and_are_drained_by_train_end(tmp_path, data):
    import threading

    seen = []

    class Slow(ExplanationCallback):
        technique = "slow"

        def _compute(self, epoch):
            return epoch

        def _write(self, payload, step):
            import time

            time.sleep(0.2)
            seen.append((payload, threading.current_thread().name))
            self.write_scalar("slow/epoch", payload, step)

    cb = Slow(data[2:], str(tmp_path))
    _fit(tiny_cnn(), data, [cb], epochs=3)
    assert [p for p, _ in seen] == [0, 1, 2]  # all three done before fit() returned
    assert all(name.startswith("keras_audit_callbacks") for _, name in seen)
    assert read_events(str(tmp_path))["scalars"]["slow/epoch"] == [(0, 0.0), (1, 1.0), (2, 2.0)]


# -- other model kinds ------------------------------------------------------------------------------
def test_a_sequential_grayscale_model_and_a_sigmoid_unit(tmp_path, data):
    from sklearn.datasets import load_digits

    digits = load_digits()
    xd = (digits.images / 16.0).astype("float32")[..., None]
    keras.utils.set_random_seed(0)
    seq = keras.Sequential([keras.Input((8, 8, 1)),
                            keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                                name="c1"),
                            keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    seq.compile("adam", "sparse_categorical_crossentropy")
    audit = AuditCallback((xd[1500:], digits.target[1500:]), str(tmp_path / "seq"),
                          num_samples=10)
    seq.fit(xd[:300], digits.target[:300], epochs=1, verbose=0, callbacks=[audit])
    events = read_events(str(tmp_path / "seq"))
    assert set(events["images"]) == {"gradcam/c1", "saliency/vanilla", "activations/c1",
                                     "filters/c1", "evaluation/confusion_matrix",
                                     "evaluation/mistakes"}
    assert sorted(audit.callbacks["gradcam"].samples.y.tolist()) == list(range(10))

    x, y, xv, yv = data
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    binary = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))
    binary.compile("adam", "binary_crossentropy")
    cb = GradCAMCallback((xv, (yv == 0).astype("float32")), str(tmp_path / "bin"), num_samples=4,
                         class_names=["other", "red"])
    binary.fit(x, (y == 0).astype("float32"), epochs=1, verbose=0, callbacks=[cb])
    p = binary.predict(cb.samples.x, verbose=0)[:, 0]
    assert cb.captions(p[:, None])[0] == (
        f"true: {['other', 'red'][cb.samples.y[0]]}  pred: {['other', 'red'][int(p[0] > 0.5)]} "
        f"({max(p[0], 1 - p[0]):.2f})")
    assert [s for s, _ in read_events(str(tmp_path / "bin"))["scalars"]
            ["explanations/gradcam/conv/deletion_auc"]] == [0]


def _unbuilt_sequential() -> keras.Sequential:
    """A Sequential model without keras.Input: fit() builds it on the first batch, after
    on_train_begin."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.GlobalMaxPooling2D(name="gmp"),
        keras.layers.Dense(3, activation="softmax", name="probs")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    return model


def test_a_sequential_model_built_by_fit_is_explained_and_trains_the_same(tmp_path, data):
    x, y, xv, yv = data
    plain = _unbuilt_sequential()
    plain.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
    model = _unbuilt_sequential()
    assert not model.built
    audit = AuditCallback(tf.data.Dataset.from_tensor_slices((xv, yv)).batch(16),
                          str(tmp_path / "seq"), num_samples=6, class_names=CLASS_NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExplanationLoggingWarning)
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False, callbacks=[audit])
    events = read_events(str(tmp_path / "seq"))
    assert set(events["images"]) == {"gradcam/conv2", "saliency/vanilla", "activations/conv1",
                                     "activations/conv2", "filters/conv1",
                                     "evaluation/confusion_matrix", "evaluation/mistakes"}
    assert all([s for s, *_ in recs] == [0, 1] for recs in events["images"].values())
    for a, b in zip(weights_of(plain), weights_of(model)):  # building early changed nothing
        np.testing.assert_array_equal(a, b)


def test_a_filter_callback_alone_waits_for_fit_to_build_the_model(tmp_path, data):
    x, y, _, _ = data
    model = _unbuilt_sequential()
    cb = FilterCallback(str(tmp_path), strict=True)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    events = read_events(str(tmp_path))
    assert {t: [s for s, *_ in r] for t, r in events["images"].items()} == {
        "filters/conv1": [0, 1]}  # conv2's 3x3 kernels are skipped (weights mode)


def test_the_fast_png_encoder_round_trips_exactly():
    import io

    from PIL import Image

    from keras_audit.callbacks.base import png_fast

    rng = np.random.default_rng(0)
    for shape in [(1, 1, 3), (7, 5, 3), (64, 130, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = Image.open(io.BytesIO(png_fast(img)))
        assert decoded.format == "PNG" and decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), img)
    with pytest.raises(ValueError, match="H, W, 3"):
        png_fast(np.zeros((4, 4), np.uint8))


def test_the_bundle_takes_registered_techniques_such_as_embeddings(tmp_path, data):
    x, y, xv, yv = data
    audit = AuditCallback((xv, yv), str(tmp_path), include=("gradcam", "embeddings"),
                          num_samples=12, metrics=False, class_names=CLASS_NAMES)
    tiny_cnn().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[audit])
    events = read_events(str(tmp_path))
    assert set(events["images"]) == {"gradcam/conv2", "embeddings/gmp"}
    assert all([s for s, _, _ in r] == [0, 1] for r in events["images"].values())
    # one shared sample choice: the embedding's samples are the CAM's
    np.testing.assert_array_equal(audit.callbacks["embeddings"].samples.index,
                                  audit.callbacks["gradcam"].samples.index)


def readme_default_tags() -> dict[str, bool]:
    """The README's table of default tags: pattern -> whether it must appear every run (the
    ``warnings`` text appears only at epochs where a map loses to random)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- default-tags -->")[1].split("<!-- /default-tags -->")[0]
    tags = [line.split("|")[1].strip().strip("`") for line in block.splitlines()
            if line.startswith("| `")]
    return {t: not t.endswith("/warnings") for t in tags}


def test_the_readme_lists_exactly_the_tags_the_defaults_write(run):
    import re

    written = {t for kind in ("images", "scalars", "text", "pr_curves")
               for t in run.events[kind]}
    patterns = readme_default_tags()
    regex = {p: re.compile("^" + re.escape(p).replace("<layer>", "[^/]+(/[^/]+)*?")
                           .replace("<class>", "[^/]+") + "$") for p in patterns}
    for tag in written:
        assert sum(bool(r.match(tag)) for r in regex.values()) == 1, tag
    for p, required in patterns.items():
        if required:
            assert any(regex[p].match(t) for t in written), f"README lists {p}, not written"


def test_a_misspelt_option_is_a_value_error_naming_the_valid_ones():
    xv = np.zeros((4, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['layr'\] for technique "
                                         r"'gradcam'; valid: \[.*'layer'"):
        AuditCallback(xv, "d", options={"gradcam": {"layr": "conv2"}})
    with pytest.raises(ValueError, match=r"unknown method \['vanilla'\].*choices"):
        SaliencyCallback(xv, "d", method=["vanilla"])


def test_a_list_of_methods_logs_each_under_its_own_tag(data, tmp_path):
    x, y, xv, yv = data
    audit = AuditCallback((xv, yv), str(tmp_path), include=("saliency",), num_samples=2,
                          options={"saliency": {"method": ["vanilla", "smoothgrad"]}})
    assert list(audit.callbacks) == ["saliency/vanilla", "saliency/smoothgrad"]
    tiny_cnn().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[audit])
    events = read_events(str(tmp_path))
    assert set(events["images"]) == {"saliency/vanilla", "saliency/smoothgrad"}
    assert set(events["scalars"]) == {"explanations/saliency/vanilla/stability",
                                      "explanations/saliency/smoothgrad/stability"}
