"""AttentionMapsCallback: attention weights of MultiHeadAttention layers, per head, every epoch.

The weights come from ``keras_audit.explain.attention.AttentionScores``, which reads them from
the model's own forward pass without changing its outputs or its training. Sequence models get
a query x key heatmap per head with token (or position) labels; patch-based image models
(ViT-style) also get the attention rollout overlaid on the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from keras_audit.callbacks.base import DEFAULT_MAX_BYTES_PER_EPOCH, ExplanationCallback
from keras_audit.explain.attention import (
    OUTPUT_KEY,
    AttentionScores,
    patch_grid,
    rollout_maps,
)
from keras_audit.explain.forward import select_output
from keras_audit.render.frames import HeatmapFrame, attention_grid, rollout_overlay

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData

__all__ = ["AttentionMapsCallback", "HeatmapFrame"]

#: the most positions labelled on a heatmap axis; longer axes are labelled every k-th position
_MAX_LABELS = 32


class AttentionMapsCallback(ExplanationCallback):
    """Logs the attention weights of ``keras.layers.MultiHeadAttention`` layers as heatmaps.

    For each chosen layer, the image ``attention/<layer>`` has one row per sample and one
    column per head: the ``query x key`` attention weights (rows sum to 1), labelled with the
    input tokens when the layer attends over the input sequence (``token_names`` maps ids to
    text), else with positions. Each row's caption gives the true class, the predicted class and
    its confidence. For a patch-based image model (the tokens tile the input as square patches,
    with or without one leading class token) the image ``attention/rollout`` shows the attention
    rollout over all attention layers (Abnar & Zuidema, 2020) overlaid on each input.

    Layers inside nested models or custom layers (a ``TransformerBlock``) are found too; a layer
    path is ``"<holder>/<layer>"``. The weights are read from the model's own forward pass in
    inference mode, so its outputs and its training are unchanged.

    Args:
        validation_data: ``(x, y)``, ``x`` alone, or a ``tf.data.Dataset`` of ``(x, y)``.
        log_dir: the folder of the run.
        layers: attention layer names or paths; ``None`` takes every ``MultiHeadAttention``
            layer the model calls.
        num_samples: how many validation samples (class-balanced, fixed).
        freq: log on epochs 0, freq, 2*freq, ... and always the last.
        strict: ``False`` turns a logging failure into one warning; ``True`` raises.
        class_names: names for the class ids in captions.
        token_names: text for each token id, to label sequence heatmaps (``None``: the ids).
        seed: seeds the choice of samples.
        max_bytes_per_epoch: the size budget of the pictures per logged epoch (default
            200 KB; ``None``: none), as ``ExplanationCallback`` describes.

    Attributes:
        layer_paths: the chosen layers, in call order (after ``on_train_begin``).
        rollout: whether ``attention/rollout`` is logged (a patch-based image model).
        last_scores: the latest logged weights, ``{path: (N, heads, Tq, Tk)}``.

    Example:
        ```python
        model.fit(x, y, epochs=10,
                  callbacks=[AttentionMapsCallback((x_val, y_val), "logs/run1")])
        ```

    Raises:
        ValueError: bad arguments (on construction); in ``on_train_begin``, before the first
            batch: a model without ``MultiHeadAttention`` layers, an unknown layer (the message
            lists the attention layers), or data that does not fit the model.
    """

    technique = "attention"

    def __init__(self, validation_data: ValidationData, log_dir: str,
                 layers: list[str] | str | None = None,
                 num_samples: int = 4, freq: int = 1, strict: bool = False,
                 class_names: list[str] | None = None, token_names: list[str] | None = None,
                 seed: int = 0,
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, seed=seed,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        if isinstance(layers, str):
            layers = [layers]
        if layers is not None and (
            not isinstance(layers, list | tuple) or not layers
            or not all(isinstance(name, str) for name in layers)
        ):
            raise ValueError(
                f"layers must be None, a layer name, or a non-empty list of names; got {layers!r}"
            )
        self.layers = None if layers is None else list(layers)
        self.token_names = None if token_names is None else [str(t) for t in token_names]
        self.layer_paths: list[str] = []
        self.rollout = False
        self.last_scores: dict[str, np.ndarray] | None = None
        self._scores: AttentionScores | None = None
        self._tokens: np.ndarray | None = None
        self._frames: dict[tuple, HeatmapFrame] = {}
        self._input_shape: tuple = ()
        self._patch_labels: list[str] | None = None

    # -- hooks ------------------------------------------------------------------------------------
    def _setup(self) -> None:
        chosen = AttentionScores(self.model, self.layers)  # ValueError lists the choices
        self.layer_paths = list(chosen.layers)
        # Rollout needs every attention layer in call order, whatever was chosen to be drawn.
        every = chosen if self.layers is None else AttentionScores(self.model, None)
        input_shape = every.input_shape
        shapes = [every.shapes[p] for p in every.layers]
        square = all(s[0] == s[1] == shapes[0][0] for s in shapes)
        grid = patch_grid(input_shape, shapes[0][0]) if square else None
        self.rollout = grid is not None
        self._patch_labels = None
        if grid is not None:  # ViT-style: label tokens by patch "row,col" (and the class token)
            rows, cols, cls = grid
            self._patch_labels = (["cls"] if cls else []) + [
                f"{r},{c}" for r in range(rows) for c in range(cols)]
        self._scores = every if self.rollout else chosen
        self._input_shape = input_shape
        self.last_scores = None
        self._frames = {}
        x = self.samples.x
        # Integer-valued 1-D inputs are token ids: label the heatmaps with them.
        if len(input_shape) == 1 and np.all(np.mod(x, 1) == 0):
            self._tokens = x.astype(np.int64)
        else:
            self._tokens = None
        if self.token_names is not None and self._tokens is not None:
            top = int(self._tokens.max())
            if top >= len(self.token_names):
                raise ValueError(
                    f"token_names has {len(self.token_names)} names but the samples hold token "
                    f"id {top}; give one name per token id"
                )

    def _compute(self, epoch: int) -> dict:
        out = self._scores(self.samples.x)
        outputs = out.pop(OUTPUT_KEY)
        outputs = select_output(outputs, None, self.model)  # the first output
        return {"scores": out, "outputs": np.asarray(outputs)}

    def _write(self, payload: dict, step: int) -> None:
        scores = payload["scores"]
        for path in self.layer_paths:
            self.check_finite(scores[path], f"attention weights of {path!r}", step)
        captions = self.captions(payload["outputs"])
        for path in self.layer_paths:
            picture = self._draw_layer(path, scores[path], captions)
            self.write_image(f"attention/{path}", picture, step, photo=True)
        if self.rollout:
            maps = rollout_maps([scores[p] for p in self._scores.layers], self._input_shape)
            self.write_image("attention/rollout", self._draw_rollout(maps, captions), step,
                             photo=True)
        self.last_scores = {p: scores[p] for p in self.layer_paths}

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the compiled attention reader (one per input shape)."""
        return {} if self._scores is None else {"attention": self._scores.trace_count}

    # -- drawing ----------------------------------------------------------------------------------
    def _labels(self, sample: int, length: int) -> list[str]:
        """Axis labels: the sample's tokens when the axis is the input sequence, patches
        (``"row,col"``, ``"cls"``) for a patch-based image model, else positions."""
        if self._tokens is not None and length == self._tokens.shape[1]:
            ids = self._tokens[sample]
            names = [self.token_names[i] if self.token_names else str(i) for i in ids]
        elif self._patch_labels is not None and length == len(self._patch_labels):
            names = list(self._patch_labels)
        else:
            names = [str(i) for i in range(length)]
        step = max(1, int(np.ceil(length / _MAX_LABELS)))
        return [name if i % step == 0 else "" for i, name in enumerate(names)]

    def _frame(self, sample: int, tq: int, tk: int) -> HeatmapFrame:
        key = (sample, tq, tk)
        frame = self._frames.get(key)
        if frame is None:
            frame = HeatmapFrame(self._labels(sample, tq), self._labels(sample, tk))
            self._frames[key] = frame
        return frame

    def _draw_layer(self, path: str, scores: np.ndarray, captions: list[str]) -> np.ndarray:
        _, _, tq, tk = scores.shape
        frames = [self._frame(i, tq, tk) for i in range(len(scores))]
        return attention_grid(frames, scores, captions,
                              title=f"attention/{path}: rows query, columns key")

    def _draw_rollout(self, maps: np.ndarray, captions: list[str]) -> np.ndarray:
        return rollout_overlay(self.samples.x, maps, captions)
