"""Evaluation in TensorBoard every logged epoch: confusion matrix, per-class precision, recall
and F1, PR curves, the most confident mistakes (with Grad-CAM) and a table of predictions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit import render
from keras_audit._checks import positive_int
from keras_audit.callbacks.base import (
    DEFAULT_MAX_BYTES_PER_EPOCH,
    MIN_TILE,
    ExplanationCallback,
    NothingToExplain,
)
from keras_audit.callbacks.predictions import predicted_classes
from keras_audit.callbacks.samples import (
    DATASET_SCAN,
    _as_labels,
    _read_dataset,
    model_input_arrays,
    output_labels,
    split,
)
from keras_audit.callbacks.scalars import LAYOUTS
from keras_audit.explain import GradCAM, map_specs
from keras_audit.explain.forward import model_inputs, select_output
from keras_audit.render.confusion import confusion_image

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData

__all__ = ["EvaluationCallback", "pr_curve_tensor"]

#: thresholds of each PR curve (the pr_curves plugin's tensor is 6 x this, float32)
PR_THRESHOLDS = 51
#: validation samples whose gradients the gradient histograms average over
GRADIENT_SAMPLES = 64

DESCRIPTIONS = {
    "accuracy": "Share of the validation samples whose predicted class is the true one "
                "(all of validation_data). Higher is better.",
    "precision": "Of the validation samples predicted as **{c}**, the share that are {c}. "
                 "Higher is better.",
    "recall": "Of the validation samples of class **{c}**, the share predicted as {c}. "
              "Higher is better.",
    "f1": "Harmonic mean of precision and recall of class **{c}**. Higher is better.",
}


def tag_name(name: str) -> str:
    """A class name as one tag component (no ``/``, no spaces)."""
    return re.sub(r"[/\s]+", "_", str(name)).strip("_") or "_"


def pr_curve_tensor(labels: np.ndarray, scores: np.ndarray,
                    num_thresholds: int = PR_THRESHOLDS) -> tuple[np.ndarray, Any]:
    """A PR curve in the format of TensorBoard's ``pr_curves`` plugin.

    The counts come from ``tensorboard.plugins.pr_curve.summary.pb`` (NumPy, the plugin's own
    arithmetic); its TF ops do not run under TF2 eager, so the tensor is written with
    ``tf.summary.write`` and the plugin's metadata.

    Args:
        labels: ``(N,)`` booleans, the positive class.
        scores: ``(N,)`` scores in [0, 1] for the positive class.
        num_thresholds: thresholds evenly spaced over [0, 1].

    Returns:
        ``(tensor, metadata)``: float32 ``(6, num_thresholds)`` rows TP, FP, TN, FN, precision,
        recall, and the ``SummaryMetadata`` to write it with.
    """
    from tensorboard.plugins.pr_curve import summary as pr_summary

    pb = pr_summary.pb("pr", np.asarray(labels, bool),
                       np.clip(np.asarray(scores, np.float32), 0.0, 1.0),
                       num_thresholds=num_thresholds)
    value = pb.value[0]
    return tf.make_ndarray(value.tensor).astype(np.float32), value.metadata


class EvaluationCallback(ExplanationCallback):
    """Logs how the model does on the validation data, every logged epoch.

    Each logged epoch writes, over the whole ``validation_data`` (a ``tf.data.Dataset``: its
    first ``max_samples`` elements):

    - ``evaluation/confusion_matrix``: the confusion matrix as a picture (rows: true class,
      columns: predicted class, cells coloured by the row's share), and
      ``evaluation/confusion_matrix/counts``: the same counts as a text table;
    - ``evaluation/accuracy`` and ``evaluation/<metric>/<class>`` for ``precision``, ``recall``
      and ``f1`` (scikit-learn's definitions; 0 where a class is never predicted);
    - ``evaluation/pr/<class>`` (``pr_curves=True``): the class's precision-recall curve (one
      class against the rest, by its predicted probability) in the ``pr_curves`` plugin;
    - ``evaluation/mistakes``: the ``mistakes`` most confident mistakes, each beside the Grad-CAM
      of its predicted class where the model has a CAM layer (else the inputs alone), captioned
      with the true and predicted class; text models get a table instead;
    - ``evaluation/predictions``: a text table of ``predictions`` fixed, class-balanced samples
      (their true class, prediction and confidence); a prediction that changed since the last
      logged epoch is marked **changed** with the previous one;
    - ``histograms/<layer>/<weight>`` and ``histograms/<layer>/<weight>/gradient``
      (``histograms=True``): every trainable weight, and its gradient of the explained output's
      cross-entropy over the first 64 validation samples.

    Args:
        validation_data: ``(x, y)`` or a ``tf.data.Dataset`` of ``(x, y)`` batches (labels are
            needed: class ids or one-hot rows).
        log_dir: folder for the event files.
        class_names: names for the class ids (a list or a dict id -> name).
        freq: log epochs 0, freq, 2*freq, ... and the last.
        mistakes: how many mistakes to show (0: none).
        predictions: how many fixed samples the predictions table lists.
        pr_curves: write the PR curves.
        histograms: write weight and gradient histograms.
        strict: raise on logging failures instead of warning once.
        seed: seeds the choice of the fixed samples.
        output: for a model with several outputs, the one evaluated (index or name).
        max_samples: the most elements read from a ``tf.data.Dataset``.
        max_bytes_per_epoch: the size budget of the pictures per logged epoch (default
            200 KB; ``None``: none), as ``ExplanationCallback`` describes.

    Example:
        ```python
        cb = EvaluationCallback((x_val, y_val), "logs/run1", class_names=names)
        model.fit(x, y, epochs=10, callbacks=[cb])
        ```

    Raises:
        ValueError: a bad argument (on construction); data without labels, a regression output,
            or data that does not fit the model (in ``on_train_begin``); a ``NothingToExplain``
            (a ``ValueError``) for the first two, which ``AuditCallback``'s defaults skip.
    """

    technique = "evaluation"

    def __init__(self, validation_data: ValidationData, log_dir: str,
                 class_names: list[str] | dict[int, str] | None = None, freq: int = 1,
                 mistakes: int = 16, predictions: int = 32, pr_curves: bool = True,
                 histograms: bool = False, strict: bool = False, seed: int = 0,
                 output: int | str | None = None, max_samples: int = 10_000,
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        if isinstance(mistakes, bool) or not isinstance(mistakes, int | np.integer) \
                or mistakes < 0:
            raise ValueError(f"mistakes must be an integer >= 0; got {mistakes!r}")
        positive_int(predictions, "predictions")
        positive_int(max_samples, "max_samples")
        for name, value in (("pr_curves", pr_curves), ("histograms", histograms)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False; got {value!r}")
        super().__init__(validation_data, log_dir, num_samples=predictions, freq=freq,
                         strict=strict, class_names=class_names, seed=seed, output=output,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        self.mistakes = int(mistakes)
        self.predictions_shown = int(predictions)
        self.pr_curves = pr_curves
        self.histograms = histograms
        self.max_samples = int(max_samples)
        self.inputs: list[np.ndarray] = []
        self.labels: np.ndarray | None = None
        self.n_classes = 0
        self.cam: GradCAM | None = None
        self._image_input: int | None = None
        self._prev_pred: np.ndarray | None = None
        self._grad_fn = None
        self._weights: list[tuple[str, Any]] = []

    # -- set-up ------------------------------------------------------------------------------------
    def _read(self) -> None:
        specs = model_inputs(self.model)
        data = self.validation_data
        if isinstance(data, tf.data.Dataset):
            arrays, y = _read_dataset(data, self.model, specs,
                                      max(self.max_samples, DATASET_SCAN))
            arrays = [a[:self.max_samples] for a in arrays]
        else:
            x, y = split(data)
            arrays = model_input_arrays(self.model, x, specs)
        n = len(arrays[0])
        if y is None:
            raise NothingToExplain("EvaluationCallback needs labels: give validation_data as "
                                   "(x, y) or a dataset of (x, y) batches")
        labels = _as_labels(output_labels(y, self.model, self.output), n)
        if labels is None:
            raise NothingToExplain("EvaluationCallback evaluates classifiers; the labels of the "
                                   "evaluated output are continuous (a regression output)")
        self.inputs = arrays
        self.labels = labels[:n]

    def _setup(self) -> None:
        self._read()
        probs = self._probs(self._session.outputs(self.model, [a[:2] for a in self.inputs],
                                                  eager=True))
        self.n_classes = max(2, probs.shape[1])
        bad = sorted({int(v) for v in np.unique(self.labels)} - set(range(self.n_classes)))
        if bad:
            raise ValueError(f"EvaluationCallback: label(s) {bad} are out of range for the "
                             f"model's output ({self.n_classes} classes: ids "
                             f"0..{self.n_classes - 1})")
        self.check_class_names(self.n_classes)
        kinds = [m.kind for m in map_specs(self.model, model_inputs(self.model),
                                           self.model_layers())]
        self._image_input = next((k for k, kind in enumerate(kinds) if kind == "image"), None)
        self.cam = None
        if self.mistakes and self._image_input is not None:
            output = self.output
            try:  # in an AuditCallback: the Grad-CAM member's explainer (the same key)
                self.cam = self._session.shared(
                    ("cam", "gradcam", None, output, True),
                    lambda: GradCAM(self.model, output=output))
            except ValueError:  # no layer with spatial axes: mistakes are drawn without maps
                self.cam = None
        self._prev_pred = None
        for metric in ("precision", "recall", "f1"):  # one chart per metric, a line per class
            LAYOUTS.register(self.log_dir, "evaluation", f"{metric} per class",
                             [f"^evaluation/{metric}/"])
        self.charts = True
        self._weights = []
        self._grad_fn = None
        if self.histograms:
            self._weights = [(f"{_layer_path(self.model, w)}/{w.name}", w)
                             for w in self.model.trainable_weights]
            self._grad_fn = self._build_gradients()

    def _build_gradients(self):
        model, variables = self.model, [w for _, w in self._weights]
        output, binary = self.output, self.n_classes == 2

        @tf.function(reduce_retracing=True, autograph=False)
        def grads(inputs, y):
            from keras_audit.callbacks.session import feed_structure

            with tf.GradientTape() as tape:
                out = model(feed_structure(model, list(inputs)), training=False)
                p = tf.cast(select_output(out, output, model), tf.float32)
                p = tf.reshape(p, (tf.shape(p)[0], -1))
                if binary and p.shape[-1] == 1:
                    loss = keras.losses.binary_crossentropy(tf.cast(y[:, None], tf.float32), p)
                else:
                    loss = keras.losses.sparse_categorical_crossentropy(y, p)
                loss = tf.reduce_mean(loss)
            return tape.gradient(loss, [getattr(v, "value", v) for v in variables])

        return grads

    def _probs(self, outs: Any) -> np.ndarray:
        p = np.asarray(select_output(outs, self.output, self.model), np.float64)
        p = p.reshape(len(p), -1)
        if p.shape[1] == 1:  # one sigmoid unit: the two classes' probabilities
            p = np.concatenate([1.0 - p, p], axis=1)
        return p

    # -- each logged epoch ------------------------------------------------------------------------
    def _warm(self) -> None:
        """Trace the prediction pass and the mistakes' Grad-CAM on their shapes (see
        ``ExplanationCallback._warm``)."""
        self._session.trace_forward(self.model, self.inputs)
        if self.cam is not None:
            pad = np.arange(self.mistakes) % len(self.labels)
            feed = [a[pad] for a in self.inputs]
            self.cam(feed[0] if len(feed) == 1 else feed, np.zeros(len(pad), np.int32))

    def _compute(self, epoch: int) -> dict:
        probs = self._probs(self._session.outputs(self.model, self.inputs))
        self.check_finite(probs, "model outputs on the validation data", epoch)
        pred, conf = predicted_classes(probs)
        wrong = np.flatnonzero(pred != self.labels)
        worst = wrong[np.argsort(-conf[wrong], kind="stable")][:self.mistakes]
        maps = None
        if self.cam is not None and len(worst):
            # padded to a fixed batch (the first mistake repeated): one trace for every epoch
            pad = np.concatenate([worst, np.full(self.mistakes - len(worst), worst[0])])
            feed = [a[pad] for a in self.inputs]
            maps = np.asarray(self.cam(feed[0] if len(feed) == 1 else feed,
                                       pred[pad].astype(np.int32)))[:len(worst)]
        if isinstance(self.validation_data, tf.data.Dataset):  # re-read: positions may differ
            fixed = self._probs(self.predictions(epoch))
        else:  # the fixed samples index the same arrays: no second pass
            fixed = probs[self.samples.index]
        weights, grads = {}, {}
        if self.histograms:
            weights = {name: np.array(keras.ops.convert_to_numpy(w)) for name, w in self._weights}
            m = GRADIENT_SAMPLES
            g = self._grad_fn([tf.constant(a[:m]) for a in self.inputs],
                              tf.constant(self.labels[:m].astype(np.int32)))
            grads = {name: np.asarray(v) for (name, _), v in zip(self._weights, g)
                     if v is not None}
        prev, self._prev_pred = self._prev_pred, predicted_classes(fixed)[0]
        return {"probs": probs, "pred": pred, "conf": conf, "worst": worst, "maps": maps,
                "fixed": fixed, "prev": prev, "weights": weights, "grads": grads}

    def _write(self, payload: dict, step: int) -> None:
        from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

        y, pred, probs = self.labels, payload["pred"], payload["probs"]
        k = self.n_classes
        names = [self.class_name(c) for c in range(k)]
        counts = confusion_matrix(y, pred, labels=np.arange(k))
        accuracy = float(np.mean(pred == y))
        title = f"epoch {step}: accuracy {accuracy:.3f} on {len(y)} validation samples"
        self.write_image("evaluation/confusion_matrix", confusion_image(counts, names, title),
                         step)
        self.write_text("evaluation/confusion_matrix/counts", _counts_table(counts, names), step,
                        "Rows: true class; columns: predicted class.")
        self.write_scalar("evaluation/accuracy", accuracy, step, DESCRIPTIONS["accuracy"])
        prec, rec, f1, _ = precision_recall_fscore_support(
            y, pred, labels=np.arange(k), zero_division=0)
        for c in range(k):
            for metric, values in (("precision", prec), ("recall", rec), ("f1", f1)):
                self.write_scalar(f"evaluation/{metric}/{tag_name(names[c])}", float(values[c]),
                                  step, DESCRIPTIONS[metric].format(c=names[c]))
            if self.pr_curves:
                tensor, meta = pr_curve_tensor(y == c, probs[:, c])
                meta.summary_description = (
                    f"Precision against recall of class **{names[c]}** (one against the rest, "
                    f"by its predicted probability) over {len(y)} validation samples.")
                self._session.write_tensor(self.log_dir, f"evaluation/pr/{tag_name(names[c])}",
                                           tensor, step, meta)
        if self.mistakes:
            self._write_mistakes(payload, step)
        self.write_text("evaluation/predictions", self._predictions_table(payload), step,
                        "Fixed validation samples; **changed** marks a prediction that differs "
                        "from the previous logged epoch's.")
        for name, values in payload["weights"].items():
            self._session.write_histogram(self.log_dir, f"histograms/{name}", values, step)
        for name, values in payload["grads"].items():
            self._session.write_histogram(self.log_dir, f"histograms/{name}/gradient", values,
                                          step)

    def _write_mistakes(self, payload: dict, step: int) -> None:
        worst, pred, conf = payload["worst"], payload["pred"], payload["conf"]
        texts = [render.caption(true=int(self.labels[i]), pred=int(pred[i]),
                                confidence=float(conf[i]),
                                class_names=[self.class_name(c) for c in range(self.n_classes)])
                 for i in worst]
        if self._image_input is None:  # text or tables: the mistakes as a table
            rows = [f"| {int(i)} | {t} |" for i, t in zip(worst, texts)]
            body = "\n".join(["| sample | mistake |", "|---:|---|", *rows]) if rows \
                else f"No mistakes at epoch {step}."
            self.write_text("evaluation/mistakes", body, step,
                            "The most confident mistakes on the validation data.")
            return
        if len(worst) == 0:
            blank = np.full((MIN_TILE, MIN_TILE, 3), 255, np.uint8)
            picture = render.grid([blank], captions=[f"no mistakes at epoch {step}"],
                                  min_tile=MIN_TILE, title="evaluation/mistakes")
        else:
            images = self.inputs[self._image_input][worst]
            if payload["maps"] is not None:
                picture = render.explanation_grid(
                    images, payload["maps"], captions=texts, min_tile=MIN_TILE,
                    cmap=render.technique_colormap("gradcam"),
                    title=f"most confident mistakes: input | Grad-CAM of the predicted class "
                          f"({self.cam.layer_name})")
            else:
                picture = render.image_grid(images, captions=texts, min_tile=MIN_TILE,
                                            title="most confident mistakes")
        self.write_image("evaluation/mistakes", picture, step, photo=True)

    def _predictions_table(self, payload: dict) -> str:
        fixed, prev = payload["fixed"], payload["prev"]
        pred, conf = predicted_classes(fixed)
        y = self.samples.y
        lines = ["| sample | true | predicted | confidence | change |", "|---:|---|---|---:|---|"]
        for i in range(len(pred)):
            true = self.class_name(y[i]) if y is not None else ""
            mark = ""
            if prev is not None and prev[i] != pred[i]:
                mark = f"**changed** (was {self.class_name(prev[i])})"
            ok = "" if y is None or y[i] == pred[i] else " ✗"
            lines.append(f"| {int(self.samples.index[i])} | {true} | "
                         f"{self.class_name(pred[i])}{ok} | {conf[i]:.3f} | {mark} |")
        return "\n".join(lines)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the shared prediction pass and of the mistakes' Grad-CAM."""
        out = {"forward": self._session.forward_trace_count() if self._session else 0}
        if self.cam is not None and self.cam.trace_count:  # 0 until a mistake is drawn
            out["gradcam"] = int(self.cam.trace_count)
        return out


def _counts_table(counts: np.ndarray, names: list[str]) -> str:
    """The confusion counts as a Markdown table (rows: true, columns: predicted)."""
    head = "| true \\ predicted | " + " | ".join(names) + " |"
    rule = "|---|" + "---:|" * len(names)
    rows = [f"| {names[i]} | " + " | ".join(str(int(v)) for v in row) + " |"
            for i, row in enumerate(counts)]
    return "\n".join([head, rule, *rows])


def _layer_path(model: keras.Model, weight: Any) -> str:
    """The name of the layer that owns ``weight`` (its path's first part)."""
    path = getattr(weight, "path", None) or weight.name
    parts = str(path).split("/")
    return "/".join(parts[:-1]) if len(parts) > 1 else parts[0]
