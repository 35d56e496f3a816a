"""The base of the callbacks that draw one attribution map per sample over its input
(Grad-CAM and saliency): the map grid, and the stability of the maps between logged epochs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from keras_audit import render
from keras_audit.callbacks.base import MIN_TILE, ExplanationCallback
from keras_audit.explain import spearman_per_sample
from keras_audit.explain.forward import model_input_shape

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData


class AttributionCallback(ExplanationCallback):
    """Base of the callbacks that draw one attribution map per sample over its input.

    Each logged epoch writes one picture under ``tag``: every sample next to its map overlaid
    on it (``colormap``, alpha-blended), captioned with the true class, the predicted class
    and the confidence. It also writes ``stability_tag``: the mean Spearman rank correlation
    of this epoch's maps with the previous logged epoch's (from the second logged epoch on).

    Args:
        colormap: a Matplotlib colormap name for the maps.
        alpha: the map's opacity over the input, in [0, 1].
        Other arguments: as ``ExplanationCallback``.

    Raises:
        ValueError: in ``on_train_begin`` when the model's input is not an image
            ``(H, W, C)``, besides the explainer's own errors.
    """

    #: the scalar tag of the stability measure (None: not logged)
    stability_tag: str | None = None

    def __init__(self, validation_data: ValidationData, log_dir: str, num_samples: int = 16,
                 freq: int = 1, targets: int | str | None = None, strict: bool = False,
                 class_names: list[str] | None = None, colormap: str = "jet",
                 alpha: float = 0.5, seed: int = 0) -> None:
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, targets=targets, seed=seed)
        render.colormap_lut(colormap)  # ValueError for a name that is not a colormap
        if not (isinstance(alpha, int | float) and 0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
        self.colormap = colormap
        self.alpha = float(alpha)
        self.explainer = None
        self._prev_maps: np.ndarray | None = None

    @property
    def tag(self) -> str:
        """The image tag (known after ``on_train_begin``)."""
        raise NotImplementedError

    def _build_explainer(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _setup(self) -> None:
        shape = model_input_shape(self.model)
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} draws maps over images; the model's input has shape "
                f"{(None, *shape)}, not (None, height, width, channels)"
            )
        self.explainer = self._build_explainer()
        self._target_ids = self.resolve_targets(self.explainer.n_classes, self.explainer.task)
        self.check_class_names(self.explainer.n_classes)
        self._prev_maps = None

    def _compute(self, epoch: int) -> dict:
        maps = self.explainer(self.samples.x, self._target_ids)
        self.check_finite(maps, f"{self.tag} maps", epoch)
        probs = self.predictions(epoch)
        self.check_finite(probs, "model outputs", epoch)
        scalars = self._scalars(maps, self.explainer.last_targets)
        # the stability is plain NumPy on finished maps: the worker computes it (in order)
        prev, self._prev_maps = self._prev_maps, maps
        return {"maps": maps, "prev_maps": prev, "probs": probs, "scalars": scalars}

    def _scalars(self, maps: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Scalars that need the model as it is now (computed on the training thread); the
        base class has none."""
        return {}

    def _write(self, payload: dict, step: int) -> None:
        picture = render.explanation_grid(self.samples.x, payload["maps"],
                                          captions=self.captions(payload["probs"]),
                                          alpha=self.alpha, cmap=self.colormap,
                                          min_tile=MIN_TILE)
        self.write_image(self.tag, picture, step)
        scalars = dict(payload["scalars"])
        if self.stability_tag is not None and payload.get("prev_maps") is not None:
            rho = spearman_per_sample(payload["prev_maps"], payload["maps"])
            if np.any(np.isfinite(rho)):
                scalars[self.stability_tag] = float(np.nanmean(rho))
        for tag, value in scalars.items():
            self.write_scalar(tag, value, step)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the explainer and of the shared prediction pass."""
        out = {"forward": self._session.forward_trace_count() if self._session else 0}
        if self.explainer is not None:
            out[self.tag] = int(self.explainer.trace_count)
        return out
