"""The base of the callbacks that draw one attribution map per sample over its input
(Grad-CAM and saliency): the pictures (image grids, or token heatmaps for text), which inputs
they cover, and the stability of the maps between logged epochs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from keras_audit import render
from keras_audit.callbacks.base import (
    CARD_FONT,
    CARD_WIDTH,
    DEFAULT_MAX_BYTES_PER_EPOCH,
    MIN_TILE,
    ExplanationCallback,
)
from keras_audit.callbacks.scalars import LAYOUTS, METRIC_DESCRIPTIONS, baseline_warnings
from keras_audit.callbacks.tokens import Vocabulary
from keras_audit.explain import spearman_per_sample
from keras_audit.render.tokens import TokenRows

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from keras_audit.callbacks.samples import ValidationData
    from keras_audit.explain import MapSpec

#: the kinds of input (``explain.MapSpec.kind``) the callbacks draw maps over
DRAWN_KINDS = ("image", "tokens", "sequence")
#: how maps are scaled to [0, 1] for drawing (``AttributionCallback(scale=...)``)
SCALES = ("per_map", "across_epochs")


@dataclass(frozen=True)
class View:
    """One picture a logged epoch writes: the maps of one model input.

    Attributes:
        tag: the image tag.
        map_index: which of the explainer's maps (its list, in input order) it draws.
        input_index: the model input the maps cover.
        input_name: that input's name.
        kind: ``"image"`` (overlay grid) or ``"tokens"``/``"sequence"`` (token heatmap).
    """

    tag: str
    map_index: int
    input_index: int
    input_name: str
    kind: str


class AttributionCallback(ExplanationCallback):
    """Base of the callbacks that draw one attribution map per sample over its input.

    Each logged epoch writes one picture under ``tag``, for each drawn input:

    - image inputs (``(H, W, C)``, or ``(H, W)`` grayscale): every sample next to its map
      overlaid on it (``colormap``, alpha-blended);
    - integer token ids read by an ``Embedding`` (text models), and sequences ``(T, C)``: one
      token heatmap per sample, a row of cells (wrapped every 16) coloured by the token's
      attribution, labelled with the token's string from ``vocabulary`` (else its id; padding
      ids an ``Embedding(mask_zero=True)`` masks are grey); sequences are labelled by step.

    Each sample is captioned with the true class, the predicted class and the confidence.
    Image grids are laid out for TensorBoard's image card (``CARD_WIDTH``, about 335 px): as
    many pairs per row as fit unshrunk, captions in 13 px type, and a colour bar (the
    colormap from 0 to 1) beside the first row.
    Models with several inputs: the image inputs are drawn (else the token or sequence ones;
    tabular inputs never), the picture's title names the input (``"input: image"``), and when
    several inputs are drawn each has its own tag, ``<tag>/<input name>``.

    It also writes the scalar ``explanations/<tag>/stability``: the mean Spearman rank
    correlation of this epoch's maps (of the first drawn input) with the previous logged
    epoch's (from the second logged epoch). Every scalar tag is ``explanations/<tag>/<metric>``
    (the method is in it: two callbacks in one ``log_dir`` never share a tag), carries a
    description, and is drawn in the folder's Custom Scalars layout (each AUC beside its random
    baseline, see ``keras_audit.callbacks.scalars``). Where the subclass measures AUCs, each
    logged epoch also writes ``explanations/<tag>/worse_than_random`` (how many AUCs lose to
    their random baseline) and, when one does, the text ``explanations/<tag>/warnings``.

    Args:
        colormap: a Matplotlib colormap name for the maps; ``None``: the technique's own
            (``render.technique_colormap``: ``jet`` for Grad-CAM, ``inferno`` for saliency),
            which the report uses too.
        alpha: the map's opacity over the input, in [0, 1].
        vocabulary: the strings of token ids: a list (entry i for id i) or a dict (id ->
            string, or string -> id); ``None`` labels tokens by their ids.
        output: for a model with several outputs, the one explained (index or name).
        scale: how each map is brought to [0, 1] for drawing: ``"per_map"`` (default) by its
            own min and max, so every epoch shows full contrast; ``"across_epochs"``: the raw
            map (its absolute value for signed methods) divided by the largest value that
            sample's maps reached at any logged epoch so far, so a flat, weak map of an
            untrained model looks flat and weak, and maps brighten as the model learns.
        Other arguments: as ``ExplanationCallback``.

    Raises:
        ValueError: on construction for a vocabulary that is not a list or dict of strings; in
            ``on_train_begin`` when no input of the model can be drawn (tabular inputs), or the
            samples hold token ids the vocabulary lacks, besides the explainer's own errors.
    """

    #: whether the stability between logged epochs is written
    log_stability: bool = True

    def __init__(self, validation_data: ValidationData, log_dir: str, num_samples: int = 16,
                 freq: int = 1, targets: int | str | None = None, strict: bool = False,
                 class_names: list[str] | dict[int, str] | None = None,
                 colormap: str | None = None,
                 alpha: float = 0.5, seed: int = 0,
                 vocabulary: Sequence[str] | Mapping | None = None,
                 output: int | str | None = None, scale: str = "per_map",
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choices: {list(SCALES)}")
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, targets=targets, seed=seed,
                         output=output,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        if colormap is None:  # the technique's colormap, the same in the report (render/)
            colormap = render.technique_colormap(self.technique)
        render.colormap_lut(colormap)  # ValueError for a name that is not a colormap
        if not (isinstance(alpha, int | float) and 0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
        self.colormap = colormap
        self.alpha = float(alpha)
        self.scale = scale
        self._peaks: dict[int, np.ndarray] = {}  # map index -> each sample's largest value so far
        self.vocabulary = Vocabulary(vocabulary)  # ValueError for anything but a list or dict
        self.explainer = None
        self.views: list[View] = []
        self._rows: dict[int, TokenRows] = {}
        self._prev_maps: np.ndarray | None = None

    @property
    def normalize_maps(self) -> bool:
        """Whether the explainer scales each map itself (``scale="per_map"``)."""
        return self.scale == "per_map"

    @property
    def grid_options(self) -> dict:
        """The keyword arguments of ``render.explanation_grid`` the image pictures are drawn
        with (the card layout, the colormap and its colour bar)."""
        return {"alpha": self.alpha, "cmap": self.colormap, "min_tile": MIN_TILE,
                "font_size": CARD_FONT, "colorbar": True, "fit_width": CARD_WIDTH}

    @property
    def tag_base(self) -> str:
        """The tag of the pictures when one input is drawn (known after ``on_train_begin``)."""
        raise NotImplementedError

    def scalar_tag(self, metric: str) -> str:
        """``explanations/<tag_base>/<metric>`` (known after ``on_train_begin``)."""
        return f"explanations/{self.tag_base}/{metric}"

    @property
    def stability_tag(self) -> str | None:
        """The stability scalar's tag (``None``: not logged)."""
        return self.scalar_tag("stability") if self.log_stability else None

    @property
    def tag(self) -> str:
        """The first picture's tag (known after ``on_train_begin``)."""
        return self.views[0].tag if self.views else self.tag_base

    def _build_explainer(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _explained_specs(self) -> list[tuple[int, MapSpec]]:
        """``(map index, MapSpec)`` of every map the explainer returns."""
        return list(enumerate(self.explainer.maps_for))

    def _setup(self) -> None:
        self.explainer = self._build_explainer()
        specs = self._explained_specs()
        drawn = [(k, m) for k, m in specs if m.kind == "image"] or \
            [(k, m) for k, m in specs if m.kind in DRAWN_KINDS]
        if not drawn:
            raise ValueError(
                f"{type(self).__name__} draws maps over images, token ids or sequences; the "
                f"model's input(s) {[(m.name, (None, *self.explainer.inputs[m.index].shape), m.kind) for _, m in specs]} "
                "are none of these (tabular inputs have no picture to draw over; "
                "keras_audit.audit explains them)"
            )
        base = self.tag_base
        self.views = [View(base if len(drawn) == 1 else f"{base}/{m.name}", k, m.index, m.name,
                           m.kind) for k, m in drawn]
        self._rows = {}
        for view in self.views:
            if view.kind == "image":
                continue
            a = self.samples.inputs[view.input_index]
            if view.kind == "tokens":
                self.vocabulary.check(a, f"the validation samples of input {view.input_name!r}")
                labels = self.vocabulary.labels(a)
                pad = a == 0 if self._masks_zero(view) else None
            else:
                labels = [[str(t) for t in range(a.shape[1])]] * len(a)
                pad = None
            self._rows[view.input_index] = TokenRows(labels, pad=pad, cmap=self.colormap)
        self._target_ids = self.resolve_targets(self.explainer.n_classes, self.explainer.task)
        self.check_class_names(self.explainer.n_classes)
        self._prev_maps = None
        self._peaks = {}
        LAYOUTS.register_pair(self.log_dir, base)
        self.charts = True

    def _masks_zero(self, view: View) -> bool:
        """Whether the Embedding reading a token input masks id 0 (padding)."""
        spec = self.explainer.maps_for[view.input_index]
        info = next((i for i in self.explainer.layers if i.path == spec.layer), None)
        return bool(getattr(getattr(info, "layer", None), "mask_zero", False))

    def _maps(self, epoch: int) -> list[np.ndarray]:
        """The explainer's maps of the samples, one array per map (input order)."""
        maps = self.explainer(self.samples.feed, self._target_ids)
        maps = list(maps) if isinstance(maps, list) else [maps]
        return maps if self.normalize_maps else [self._across_epochs(k, np.asarray(m))
                                                 for k, m in enumerate(maps)]

    def _across_epochs(self, index: int, raw: np.ndarray) -> np.ndarray:
        """Raw maps over each sample's running peak (``scale="across_epochs"``), in [0, 1]."""
        m = np.abs(raw) if self.explainer.signed else np.maximum(raw, 0.0)
        flat = m.reshape(len(m), -1)
        peak = np.nanmax(flat, axis=1) if flat.shape[1] else np.zeros(len(m), m.dtype)
        if index in self._peaks:
            peak = np.maximum(peak, self._peaks[index])
        self._peaks[index] = peak
        scale = np.divide(1.0, peak, out=np.zeros_like(peak, dtype=np.float32),
                          where=peak > 0)
        return (m * scale.reshape((-1,) + (1,) * (m.ndim - 1))).astype(np.float32)

    def _warm(self) -> None:
        """Trace the explainer, the shared prediction pass and the scalars' work on the
        samples' shapes (see ``ExplanationCallback._warm``)."""
        maps = self.explainer(self.samples.feed, self._target_ids)
        self._session.trace_forward(self.model, self.samples.inputs)
        first = (list(maps) if isinstance(maps, list) else [maps])[self.views[0].map_index]
        self._warm_scalars(np.asarray(first, np.float32), self.explainer.last_targets)

    def _warm_scalars(self, maps: np.ndarray, targets: np.ndarray) -> None:
        """Trace what ``_scalars`` runs (nothing in the base class)."""

    def _compute(self, epoch: int) -> dict:
        all_maps = self._maps(epoch)
        maps = {v.map_index: all_maps[v.map_index] for v in self.views}
        for v in self.views:
            self.check_finite(maps[v.map_index], f"{v.tag} maps", epoch)
        probs = self.predictions(epoch)
        self.check_finite(probs, "model outputs", epoch)
        first = maps[self.views[0].map_index]
        scalars = self._scalars(first, self.explainer.last_targets)
        # the stability is plain NumPy on finished maps: the worker computes it (in order)
        prev, self._prev_maps = self._prev_maps, first
        return {"maps": maps, "prev_maps": prev, "probs": probs, "scalars": scalars}

    def _scalars(self, maps: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Scalars that need the model as it is now (computed on the training thread), by
        metric name (``"deletion_auc"``: written as ``explanations/<tag>/deletion_auc``); the
        base class has none."""
        return {}

    def _title(self, view: View) -> str | None:
        several = len(self.explainer.inputs) > 1
        return f"input: {view.input_name}" if several else None

    def _picture(self, view: View, maps: np.ndarray, captions: list[str]) -> np.ndarray:
        if view.kind == "image":
            return render.explanation_grid(self.samples.inputs[view.input_index], maps,
                                           captions=captions, title=self._title(view),
                                           **self.grid_options)
        title = f"{view.tag}  ({self._title(view) or 'tokens'})" if view.kind == "tokens" \
            else f"{view.tag}  (steps)"
        return self._rows[view.input_index].draw(maps, captions, title=title)

    def _write(self, payload: dict, step: int) -> None:
        captions = self.captions(payload["probs"])
        for view in self.views:
            picture = self._picture(view, payload["maps"][view.map_index], captions)
            self.write_image(view.tag, picture, step, photo=view.kind == "image")
        scalars = dict(payload["scalars"])
        base = self.tag_base
        if "deletion_auc" in scalars or "insertion_auc" in scalars:
            warnings = baseline_warnings(scalars, base)
            scalars["worse_than_random"] = float(len(warnings))
            if warnings:
                self.write_text(self.scalar_tag("warnings"),
                                "\n\n".join(f"**Epoch {step}**: {w}" for w in warnings), step,
                                "Written at the epochs where a map does worse than its random "
                                "baseline.")
        if self.log_stability and payload.get("prev_maps") is not None:
            first = payload["maps"][self.views[0].map_index]
            rho = spearman_per_sample(payload["prev_maps"], first)
            if np.any(np.isfinite(rho)):
                scalars["stability"] = float(np.nanmean(rho))
        for metric, value in scalars.items():
            self.write_scalar(self.scalar_tag(metric), value, step,
                              METRIC_DESCRIPTIONS.get(metric, "").format(base=base) or None)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the explainer and of the shared prediction pass."""
        out = {"forward": self._session.forward_trace_count() if self._session else 0}
        if self.explainer is not None:
            out[self.tag] = int(self.explainer.trace_count)
        return out

