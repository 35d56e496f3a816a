"""Gradient saliency maps (vanilla, SmoothGrad, Integrated Gradients, Gradient x Input)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from keras_audit.callbacks.attribution import AttributionCallback
from keras_audit.callbacks.base import DEFAULT_MAX_BYTES_PER_EPOCH
from keras_audit.callbacks.methods import SALIENCY_METHODS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from keras_audit.callbacks.samples import ValidationData

__all__ = ["SALIENCY_METHODS", "SaliencyCallback"]


class SaliencyCallback(AttributionCallback):
    """Logs gradient saliency maps of fixed validation samples to TensorBoard.

    Each logged epoch writes the picture ``saliency/<method>``: every sample next to its map
    overlaid on it, captioned with the true class, the predicted class and the confidence;
    and the scalar ``explanations/saliency/<method>/stability``, the mean Spearman rank
    correlation of the maps with the previous logged epoch's (from the second logged epoch).

    Text models (integer token ids read by an ``Embedding``): the gradient is taken at the
    Embedding's output (integer ids have none), one score per token, drawn as a token heatmap
    (see ``AttributionCallback``). Several inputs: the engine returns one map per input; the
    image inputs are drawn (tabular ones are not), titled with the input's name, and each has
    its own tag ``saliency/<method>/<input name>`` when there are several.

    Args:
        validation_data: ``(x, y)``, ``x`` alone or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        log_dir: folder for the event files.
        method: ``"vanilla"``, ``"smoothgrad"``, ``"integrated_gradients"`` or
            ``"gradient_input"``.
        num_samples, freq, targets, strict, class_names, colormap, alpha, seed, vocabulary,
            output, scale: as ``GradCAMCallback``.
        method_options: keyword arguments for the explainer, e.g. ``{"num_samples": 8}`` for
            SmoothGrad or ``{"steps": 16}`` for Integrated Gradients (each costs that many
            gradient passes per sample per logged epoch).
        max_bytes_per_epoch: the size budget of the pictures per logged epoch (default
            200 KB; ``None``: none), as ``ExplanationCallback`` describes.

    Example:
        ```python
        cb = SaliencyCallback((x_val, y_val), "logs/run1", method="smoothgrad",
                              method_options={"num_samples": 8})
        model.fit(x, y, epochs=10, callbacks=[cb])
        ```

    Raises:
        ValueError: an unknown method or option (on construction); data that does not fit the
            model or labels out of range (in ``on_train_begin``, before the first batch).
    """

    technique = "saliency"

    def __init__(self, validation_data: ValidationData, log_dir: str, method: str = "vanilla",
                 num_samples: int = 16, freq: int = 1, targets: int | str | None = None,
                 strict: bool = False, class_names: list[str] | dict[int, str] | None = None,
                 method_options: dict | None = None, colormap: str | None = None,
                 alpha: float = 0.6, seed: int = 0,
                 vocabulary: Sequence[str] | Mapping | None = None,
                 output: int | str | None = None, scale: str = "per_map",
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        if not isinstance(method, str) or method not in SALIENCY_METHODS:  # a list: AuditCallback
            raise ValueError(f"unknown method {method!r}; choices: {sorted(SALIENCY_METHODS)} (one name; "
                             "AuditCallback's options take a list)")
        options = dict(method_options or {})
        accepted = set(inspect.signature(SALIENCY_METHODS[method].__init__).parameters)
        unknown = sorted(set(options) - (accepted - {"self", "model", "output", "normalize"}))
        if unknown:
            valid = sorted(accepted - {"self", "model", "output", "normalize"})  # scale= sets it
            raise ValueError(f"unknown option(s) {unknown} for method {method!r}; valid: {valid}")
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         targets=targets, strict=strict, class_names=class_names,
                         colormap=colormap, alpha=alpha, seed=seed, vocabulary=vocabulary,
                         output=output, scale=scale,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        self.method = method
        self.method_options = options

    @property
    def tag_base(self) -> str:
        """``"saliency/<method>"``."""
        return f"saliency/{self.method}"

    def _build_explainer(self):
        return SALIENCY_METHODS[self.method](self.model, output=self.output,
                                             normalize=self.normalize_maps,
                                             **self.method_options)

    def _explained_specs(self):
        # one map per attribution point: the inputs, or the one layer= names; LRP (relevance,
        # no attribution points) returns one map per input, as the base class reads them
        points = getattr(self.explainer, "points", None)
        if points is None:
            return super()._explained_specs()
        specs = self.explainer.maps_for
        if any(p.index is None for p in points):  # layer=: the map has the layer's shape
            return []
        return [(k, specs[p.index]) for k, p in enumerate(points)]
