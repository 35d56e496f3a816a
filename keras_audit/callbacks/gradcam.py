"""Grad-CAM / Grad-CAM++ maps of fixed validation samples, with faithfulness and stability.

``DeletionInsertion`` (the compiled AUC batch) lives in the engine, ``keras_audit.explain``;
it is imported here too so ``keras_audit.callbacks.DeletionInsertion`` keeps working.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from keras_audit._checks import positive_int
from keras_audit.callbacks.attribution import AttributionCallback
from keras_audit.callbacks.methods import CAM_METHODS
from keras_audit.explain.metrics import DeletionInsertion

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData

__all__ = ["CAM_METHODS", "DeletionInsertion", "GradCAMCallback"]


class GradCAMCallback(AttributionCallback):
    """Logs Grad-CAM (or Grad-CAM++) heatmaps of fixed validation samples to TensorBoard.

    Each logged epoch writes the picture ``gradcam/<layer>`` (``gradcam++/<layer>``): every
    sample next to its heatmap overlaid on it, captioned with the true class, the predicted
    class and the confidence. It also writes the scalars

    - ``explanations/deletion_auc``, ``explanations/insertion_auc`` and the same for a random
      pixel order, ``explanations/random_deletion_auc`` and ``explanations/random_insertion_auc``
      (the RISE protocol with ``metric_steps`` steps on the first ``metric_samples`` samples, run
      as one compiled batch); lower deletion and higher insertion than random mean the maps
      point at what the model uses;
    - ``explanations/stability``: the mean Spearman rank correlation of the maps with the
      previous logged epoch's (from the second logged epoch on).

    Write one CAM callback per ``log_dir``: the scalar tags do not name the method.

    Args:
        validation_data: ``(x, y)``, ``x`` alone or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        log_dir: folder for the event files.
        layer: the convolution layer (name or ``"backbone/conv2"`` path); ``None`` = the last
            layer with a 4-D output.
        method: ``"gradcam"`` or ``"gradcam++"``.
        num_samples: samples shown (class-balanced, fixed for the whole run).
        freq: log epochs 0, freq, 2*freq, ... and the last.
        targets: ``None`` (true class if labelled, else predicted), ``"true"``, ``"predicted"``
            or a class id.
        strict: raise on logging failures instead of warning once.
        class_names: class names for the captions.
        metrics: log the deletion/insertion AUCs and the stability.
        metric_samples: how many of the samples the AUCs use (the first ones: still balanced).
            The AUCs cost one compiled forward pass over
            ``metric_samples * (4 * (metric_steps - 1) + 2) + 1`` images (57 by default: about
            14 ms on 32x32x3 inputs and the reference CNN of ``benchmarks/bench_callbacks.py``,
            where a plain forward pass over as many images takes 11 ms).
        metric_steps: points on each deletion/insertion curve after the first (4: 0, 25, 50,
            75 and 100% of the pixels). A trend across epochs, not a fine-grained AUC: pass
            more steps for that, at ``4 * metric_samples`` images per extra step.
        colormap, alpha: how the heatmap is drawn over the input.
        seed: seeds the choice of samples and the random pixel order.

    Attributes:
        metric_seconds: per logged epoch, the part of ``epoch_end_seconds`` spent on the AUCs.

    Example:
        ```python
        cb = GradCAMCallback((x_val, y_val), "logs/run1", class_names=names)
        model.fit(x, y, epochs=10, callbacks=[cb])
        ```

    Raises:
        ValueError: a bad argument (on construction); an unknown layer or one without spatial
            axes, data that does not fit the model, or labels out of range (in
            ``on_train_begin``, before the first batch).
    """

    technique = "gradcam"
    stability_tag = "explanations/stability"

    def __init__(self, validation_data: ValidationData, log_dir: str, layer: str | None = None,
                 method: str = "gradcam", num_samples: int = 16, freq: int = 1,
                 targets: int | str | None = None, strict: bool = False,
                 class_names: list[str] | None = None, metrics: bool = True,
                 metric_samples: int = 4, metric_steps: int = 4, colormap: str = "jet",
                 alpha: float = 0.5, seed: int = 0) -> None:
        if method not in CAM_METHODS:
            raise ValueError(f"unknown method {method!r}; choices: {sorted(CAM_METHODS)}")
        positive_int(metric_samples, "metric_samples")
        positive_int(metric_steps, "metric_steps")
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a layer name or None; got {layer!r}")
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         targets=targets, strict=strict, class_names=class_names,
                         colormap=colormap, alpha=alpha, seed=seed)
        self.layer = layer
        self.method = method
        self.metrics = bool(metrics)
        self.metric_samples = int(metric_samples)
        self.metric_steps = int(metric_steps)
        self._faithfulness: DeletionInsertion | None = None
        self.metric_seconds: list[float] = []
        if not self.metrics:
            self.stability_tag = None

    @property
    def tag(self) -> str:
        """``"<method>/<layer path>"``."""
        return f"{self.method}/{self.explainer.layer_name}"

    def _build_explainer(self):
        return CAM_METHODS[self.method](self.model, layer=self.layer)

    def _setup(self) -> None:
        super()._setup()
        self._faithfulness = None
        self.metric_seconds = []
        if self.metrics:
            x = self.samples.x[:self.metric_samples]
            self._faithfulness = DeletionInsertion(self.model, x, steps=self.metric_steps,
                                                   seed=self.seed)

    def _scalars(self, maps: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        out = super()._scalars(maps, targets)
        if self._faithfulness is not None:
            m = self.metric_samples
            t0 = time.perf_counter()
            aucs = self._faithfulness(maps[:m], targets[:m])
            self.metric_seconds.append(time.perf_counter() - t0)
            out.update({f"explanations/{k}": float(np.mean(v)) for k, v in aucs.items()})
        return out

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the CAM, the shared prediction pass and the AUC computation."""
        out = super().trace_counts()
        if self._faithfulness is not None:
            out["deletion_insertion"] = self._faithfulness.trace_count
        return out
