"""Grad-CAM / Grad-CAM++ maps of fixed validation samples, with faithfulness and stability.

``DeletionInsertion`` (the compiled AUC batch) lives in the engine, ``keras_audit.explain``;
it is imported here too so ``keras_audit.callbacks.DeletionInsertion`` keeps working.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.callbacks.attribution import AttributionCallback
from keras_audit.callbacks.base import DEFAULT_MAX_BYTES_PER_EPOCH, NothingToExplain
from keras_audit.callbacks.methods import CAM_METHODS
from keras_audit.callbacks.scalars import LAYOUTS
from keras_audit.explain import spearman_per_sample
from keras_audit.explain.metrics import DeletionInsertion

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from keras_audit.callbacks.samples import ValidationData

__all__ = ["CAM_METHODS", "DeletionInsertion", "GradCAMCallback", "ROBUSTNESS_NOISE",
           "gaussian_noise"]

#: the noise std of ``robustness=True``, a fraction of the data range: ImageNet-C's
#: gaussian_noise at severity 1 (c = 0.08 on [0, 1] images)
ROBUSTNESS_NOISE = 0.08


def image_range(x: np.ndarray) -> tuple[float, float]:
    """The nominal value range of images: ``(0, 1)``, ``(0, 255)``, ``(-1, 1)`` or the observed
    ``(min, max)``; the same rule as ``keras_audit.audit.corruptions.infer_range``, which the
    callbacks may not import (the layers never import each other)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    for a, b in ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)):
        if lo >= a and hi <= b:
            return a, b
    return lo, hi if hi > lo else lo + 1.0


def gaussian_noise(x: np.ndarray, std: float, value_range: tuple[float, float],
                   seed: int = 0) -> np.ndarray:
    """``x`` plus seeded Gaussian noise of ``std`` times the data range, clipped to the range.

    With ``std=0.08`` on ``[0, 1]`` images this is ImageNet-C's ``gaussian_noise`` at severity 1
    (``keras_audit.audit`` sweeps every severity; this is the one level the callbacks need).

    Args:
        x: a batch of images.
        std: the noise's standard deviation, a fraction of ``hi - lo``.
        value_range: ``(lo, hi)`` of the data.
        seed: the same seed gives the same noise (a stateless draw).

    Returns:
        The corrupted batch, of ``x``'s shape and float dtype (``x`` is not changed).
    """
    lo, hi = (float(v) for v in value_range)
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.clip_by_value(x + std * (hi - lo) * tf.random.stateless_normal(
        tf.shape(x), seed=(int(seed), 0x6e6f)), lo, hi).numpy()


class GradCAMCallback(AttributionCallback):
    """Logs Grad-CAM (or Grad-CAM++) heatmaps of fixed validation samples to TensorBoard.

    Each logged epoch writes the picture ``gradcam/<layer>`` (``gradcam++/<layer>``): every
    sample next to its heatmap overlaid on it, captioned with the true class, the predicted
    class and the confidence. It also writes the scalars

    - ``explanations/<method>/<layer>/deletion_auc`` and ``.../insertion_auc``, and the same
      for a random pixel order, ``.../random_deletion_auc`` and ``.../random_insertion_auc``
      (the RISE protocol with ``metric_steps`` steps on the first ``metric_samples`` samples, run
      as one compiled batch); lower deletion and higher insertion than random mean the maps
      point at what the model uses. ``.../worse_than_random`` counts the AUCs that lose to
      their baseline, and the text ``.../warnings`` says so when one does;
    - ``explanations/<method>/<layer>/stability``: the mean Spearman rank correlation of the
      maps with the previous logged epoch's (from the second logged epoch on);
    - with ``robustness``, ``explanations/<method>/<layer>/robustness``: the mean Spearman rank
      correlation of the maps with the maps of the same samples under one fixed mild
      corruption (seeded Gaussian noise, the same every epoch), at every logged epoch: whether
      the maps grow more or less brittle as the model trains.

    Every scalar carries a description, and the folder's Custom Scalars layout draws each AUC
    beside its random baseline in one chart. The tags name the method and the layer, so a
    ``gradcam`` and a ``gradcam++`` callback can share a ``log_dir``.

    Text models (integer token ids read by an ``Embedding``, then ``Conv1D`` or recurrent
    layers): the map is the CAM of a 3-D ``(N, t, C)`` layer resized to the input's length, one
    value per token, drawn as a token heatmap (see ``AttributionCallback``); the AUCs are left
    out (they blank image pixels). Models with several inputs: the CAM explains the first image
    input (else the first token or sequence input) and the picture's title names it
    (``"input: image"``); the AUCs are left out (the engine's ``DeletionInsertion`` feeds one
    input).

    Args:
        validation_data: ``(x, y)``, ``x`` alone or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        log_dir: folder for the event files.
        layer: the layer (name or ``"backbone/conv2"`` path) with spatial axes; ``None`` = the
            engine's stable default: the last such layer with a user-given name (see
            ``keras_audit.explain.GradCAM``).
        method: ``"gradcam"`` or ``"gradcam++"``.
        num_samples: samples shown (class-balanced, fixed for the whole run).
        freq: log epochs 0, freq, 2*freq, ... and the last.
        targets: ``None`` (true class if labelled, else predicted), ``"true"``, ``"predicted"``
            or a class id.
        strict: raise on logging failures instead of warning once.
        class_names: class names for the captions.
        metrics: ``None`` (default): log the stability, and the deletion/insertion AUCs where
            they apply (a model whose one input is an image ``(H, W, C)``); ``True``: the same,
            and a ``ValueError`` in ``on_train_begin`` where the AUCs do not apply; ``False``:
            neither.
        metric_samples: how many of the samples the AUCs use (the first ones: still balanced).
            The AUCs cost one compiled forward pass over
            ``metric_samples * (4 * (metric_steps - 1) + 2) + 1`` images (57 by default: about
            14 ms on 32x32x3 inputs and the reference CNN of ``benchmarks/bench_callbacks.py``,
            where a plain forward pass over as many images takes 11 ms).
        metric_steps: points on each deletion/insertion curve after the first (4: 0, 25, 50,
            75 and 100% of the pixels). A trend across epochs, not a fine-grained AUC: pass
            more steps for that, at ``4 * metric_samples`` images per extra step.
        colormap, alpha: how the heatmap is drawn over the input.
        scale: ``"per_map"`` (each map by its own range) or ``"across_epochs"`` (each sample's
            raw map over its largest value at any logged epoch so far): see
            ``AttributionCallback``.
        seed: seeds the choice of samples and the random pixel order.
        vocabulary: the strings of token ids (a list, or a dict id -> string or string -> id)
            for text models; ``None`` shows the ids.
        output: for a model with several outputs, the one explained (index or name; ``None``:
            the first); its labels choose the samples and caption them.
        robustness: ``False`` (default): no robustness scalar; ``True``: log it under Gaussian
            noise of std ``ROBUSTNESS_NOISE`` (0.08) of the data range, ImageNet-C's
            ``gaussian_noise`` at severity 1; a number in (0, 1]: that std instead. The noise
            is drawn once (seeded by ``seed``) and costs one more CAM pass per logged epoch.
            Needs a model whose one input is an image ``(H, W, C)``.
        max_bytes_per_epoch: the size budget of the pictures per logged epoch (default
            200 KB; ``None``: none), as ``ExplanationCallback`` describes.

    Attributes:
        metric_seconds: per logged epoch, the part of ``epoch_end_seconds`` spent on the AUCs.
        robustness_seconds: per logged epoch, the part spent on the robustness scalar.

    Example:
        ```python
        cb = GradCAMCallback((x_val, y_val), "logs/run1", class_names=names)
        model.fit(x, y, epochs=10, callbacks=[cb])
        ```

    Raises:
        ValueError: a bad argument (on construction); an unknown layer or one without spatial
            axes, a subclassed model (its layers cannot be read), data that does not fit the
            model, labels out of range, token ids beyond the vocabulary, or ``metrics=True``
            where the AUCs do not apply, or ``robustness`` on a model that does not take one
            image input (in ``on_train_begin``, before the first batch).
    """

    technique = "gradcam"

    def __init__(self, validation_data: ValidationData, log_dir: str, layer: str | None = None,
                 method: str = "gradcam", num_samples: int = 16, freq: int = 1,
                 targets: int | str | None = None, strict: bool = False,
                 class_names: list[str] | dict[int, str] | None = None,
                 metrics: bool | None = None, metric_samples: int = 4, metric_steps: int = 4,
                 colormap: str | None = None, alpha: float = 0.5, seed: int = 0,
                 vocabulary: Sequence[str] | Mapping | None = None,
                 output: int | str | None = None, robustness: bool | float = False,
                 scale: str = "per_map",
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        if not (isinstance(robustness, bool) or (isinstance(robustness, int | float)
                                                 and 0.0 < float(robustness) <= 1.0)):
            raise ValueError(f"robustness must be True, False or a noise std in (0, 1] (a "
                             f"fraction of the data range); got {robustness!r}")
        if not isinstance(method, str) or method not in CAM_METHODS:  # a list: AuditCallback
            raise ValueError(f"unknown method {method!r}; choices: {sorted(CAM_METHODS)} (one name; "
                             "AuditCallback's options take a list)")
        positive_int(metric_samples, "metric_samples")
        positive_int(metric_steps, "metric_steps")
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a layer name or None; got {layer!r}")
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         targets=targets, strict=strict, class_names=class_names,
                         colormap=colormap, alpha=alpha, seed=seed, vocabulary=vocabulary,
                         output=output, scale=scale,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        if metrics is not None and not isinstance(metrics, bool):
            raise ValueError(f"metrics must be None, True or False; got {metrics!r}")
        self.layer = layer
        self.method = method
        self.metrics = metrics
        self.metric_samples = int(metric_samples)
        self.metric_steps = int(metric_steps)
        self._faithfulness: DeletionInsertion | None = None
        self.metric_seconds: list[float] = []
        self.robustness = robustness
        self.robustness_seconds: list[float] = []
        self._noisy: np.ndarray | None = None
        if self.metrics is False:
            self.log_stability = False

    @property
    def tag_base(self) -> str:
        """``"<method>/<layer path>"``."""
        return f"{self.method}/{self.explainer.layer_name}"

    def _build_explainer(self):
        method, layer, output, normalize = self.method, self.layer, self.output, \
            self.normalize_maps
        try:  # shared in an AuditCallback with the evaluation's mistakes (the same key)
            return self._session.shared(
                ("cam", method, layer, output, normalize),
                lambda: CAM_METHODS[method](self.model, layer=layer, output=output,
                                            normalize=normalize))
        except ValueError as exc:
            if self.layer is None and not self._has_spatial_layer():
                raise NothingToExplain(f"{type(self).__name__} ({self.method}): {exc}") from exc
            raise

    def _has_spatial_layer(self) -> bool:
        """Whether any readable layer (not a whole model) has a 3-D or 4-D output with spatial
        axes longer than 1 (a subclassed model lists none)."""
        return any(len(i.output_shape) in (3, 4) and not isinstance(i.layer, keras.Model)
                   and all(d is not None and d > 1 for d in i.output_shape[1:-1])
                   for i in self.model_layers())

    def _explained_specs(self):
        ex = self.explainer.explained or self.explainer.maps_for[0]
        return [(0, ex)]

    def _auc_problem(self) -> str | None:
        """Why the deletion/insertion AUCs do not apply to this model, or ``None``."""
        ex = self._explained_specs()[0][1]
        if len(self.samples.inputs) > 1:
            return ("the model has several inputs, and the engine's DeletionInsertion feeds "
                    "the model one input")
        if ex.kind != "image" or not ex.channel_axis:
            return (f"they blank and blur the pixels of an (H, W, C) image, and the input is "
                    f"{ex.kind} of shape {(None, *self.explainer.inputs[0].shape)}")
        return None

    @property
    def robustness_std(self) -> float | None:
        """The noise std of the robustness scalar (a fraction of the data range), or ``None``."""
        if self.robustness is False:
            return None
        return ROBUSTNESS_NOISE if self.robustness is True else float(self.robustness)

    def _setup(self) -> None:
        super()._setup()
        self._faithfulness = None
        self.metric_seconds = []
        self.robustness_seconds = []
        self._noisy = None
        std = self.robustness_std
        if std is not None:
            problem = self._auc_problem()  # the same condition: one (H, W, C) image input
            if problem is not None:
                raise ValueError(f"{type(self).__name__}: robustness= adds noise to one image "
                                 f"input, which does not apply here: {problem}. Pass "
                                 "robustness=False")
            x = self.samples.x
            # drawn once: the same noise every epoch, so the curve shows the model changing
            self._noisy = gaussian_noise(x, std, image_range(x), self.seed).astype(x.dtype)
            LAYOUTS.register_robustness(self.log_dir, self.tag_base)
        problem = None if self.metrics is False else self._auc_problem()
        if self.metrics is True and problem is not None:
            raise ValueError(f"{type(self).__name__}: metrics=True asks for deletion/insertion "
                             f"AUCs, which do not apply here: {problem}. Pass metrics=None "
                             "(the stability alone) or metrics=False")
        if self.metrics is not False and problem is None:
            x = self.samples.x[:self.metric_samples]
            self._faithfulness = DeletionInsertion(
                self.model, x, steps=self.metric_steps, seed=self.seed,
                forward=self._session.forward_function(self.model))

    def _scalars(self, maps: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        out = super()._scalars(maps, targets)
        if self._faithfulness is not None:
            m = self.metric_samples
            t0 = time.perf_counter()
            aucs = self._faithfulness(maps[:m], targets[:m])
            self.metric_seconds.append(time.perf_counter() - t0)
            out.update({k: float(np.mean(v)) for k, v in aucs.items()})
        if self._noisy is not None:
            t0 = time.perf_counter()
            noisy = self.explainer(self._noisy, targets)  # the clean maps' targets
            rho = spearman_per_sample(maps, noisy)
            self.robustness_seconds.append(time.perf_counter() - t0)
            if np.any(np.isfinite(rho)):  # NaN only where a map is constant (no ranking)
                out["robustness"] = float(np.nanmean(rho))
        return out

    def _warm_scalars(self, maps: np.ndarray, targets: np.ndarray) -> None:
        if self._faithfulness is not None:
            m = self.metric_samples
            self._faithfulness(maps[:m], targets[:m])
        if self._noisy is not None:
            self.explainer(self._noisy, targets)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the CAM, the shared prediction pass and the AUC computation."""
        out = super().trace_counts()
        if self._faithfulness is not None:
            out["deletion_insertion"] = self._faithfulness.trace_count
        return out
