"""AttentionMapsCallback: attention weights of MultiHeadAttention layers, per head, every epoch.

The weights come from ``keras_audit.explain.attention.AttentionScores``, which reads them from
the model's own forward pass without changing its outputs or its training. Sequence models get
a query x key heatmap per head with token (or position) labels; patch-based image models
(ViT-style) also get the attention rollout overlaid on the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from keras_audit import render
from keras_audit.callbacks.base import ExplanationCallback
from keras_audit.explain.attention import (
    OUTPUT_KEY,
    AttentionScores,
    patch_grid,
    rollout_maps,
)
from keras_audit.explain.forward import select_output

if TYPE_CHECKING:
    from keras_audit.callbacks.base import ValidationData

#: the most positions labelled on a heatmap axis; longer axes are labelled every k-th position
_MAX_LABELS = 32
#: heatmap cell sides, in pixels, and the side a heatmap aims for
_CELL_MIN, _CELL_MAX, _HEATMAP_SIDE = 3, 18, 200


class HeatmapFrame:
    """A labelled frame for ``query x key`` heatmaps, drawn once and filled per head.

    Hand-drawn (NumPy cells + Pillow text) rather than ``render.heatmap``, which makes a
    matplotlib figure per matrix (about 70 ms here), and a logged epoch draws samples x heads x
    layers of them. The labels are drawn once per sample (the samples are fixed), so filling a
    frame costs a colormap lookup and a copy.

    Args:
        row_labels, col_labels: one label per query / key position ("" for none).
        cmap: a matplotlib colormap name.
    """

    def __init__(self, row_labels: list[str], col_labels: list[str], cmap: str = "viridis") -> None:
        from PIL import Image, ImageDraw

        from keras_audit.render import text as _text

        tq, tk = len(row_labels), len(col_labels)
        self.cmap = cmap
        self.cell = cell = int(np.clip(_HEATMAP_SIDE // max(tq, tk, 1), _CELL_MIN, _CELL_MAX))
        fnt = _text.font(max(7, min(11, cell - 2)))
        lh = _text.line_height(fnt)
        cols = [_short(t) for t in col_labels]
        rows = [_short(t) for t in row_labels]
        widest = int(np.ceil(max((_text.text_width(fnt, t) for t in cols if t), default=0.0)))
        upright = widest + 2 > cell  # too wide for a cell: write the column labels upwards
        self.top = top = (widest + 3 if upright else lh + 2) if any(cols) else 0
        self.left = left = int(np.ceil(max((_text.text_width(fnt, t) for t in rows if t),
                                           default=0.0))) + 4
        row_every = max(1, int(np.ceil(lh / cell)))
        col_every = row_every if upright else 1
        picture = Image.new("RGB", (left + tk * cell + 1, top + tq * cell + 1), (255, 255, 255))
        draw = ImageDraw.Draw(picture)
        if upright and any(cols):
            strip = Image.new("RGB", (top, tk * cell), (255, 255, 255))  # drawn sideways, turned
            side = ImageDraw.Draw(strip)
            for k, t in enumerate(cols):
                if t and k % col_every == 0:
                    y = k * cell + (cell - lh) / 2
                    side.text((top - 2 - _text.text_width(fnt, t), y), t, fill=(0, 0, 0), font=fnt)
            picture.paste(strip.transpose(Image.Transpose.ROTATE_90), (left, 0))
        else:
            for k, t in enumerate(cols):
                if t:
                    x = left + k * cell + (cell - _text.text_width(fnt, t)) / 2
                    draw.text((x, 0), t, fill=(0, 0, 0), font=fnt)
        for k, t in enumerate(rows):
            if t and k % row_every == 0:
                y = top + k * cell + (cell - lh) / 2
                draw.text((left - 3 - _text.text_width(fnt, t), y), t, fill=(0, 0, 0), font=fnt)
        self.canvas = np.asarray(picture).copy()
        self.shape = (tq, tk)

    def fill(self, weights: np.ndarray) -> np.ndarray:
        """The frame with ``weights`` ``(Tq, Tk)`` as cells, coloured relative to their maximum.

        Returns:
            ``np.uint8`` ``(H, W, 3)``.
        """
        tq, tk = self.shape
        w = np.asarray(weights, np.float32)
        top = float(np.nanmax(w)) if np.isfinite(w).any() else 0.0
        colours = render.colorize(w / top if top > 0 else np.zeros_like(w), self.cmap)
        out = self.canvas.copy()
        c = self.cell
        region = out[self.top:self.top + tq * c, self.left:self.left + tk * c]
        region.reshape(tq, c, tk, c, 3)[...] = colours[:, None, :, None, :]
        return out


def _short(label: str, limit: int = 10) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "\u2026"


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
                 seed: int = 0) -> None:
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, seed=seed)
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
            self.write_image(f"attention/{path}", picture, step)
        if self.rollout:
            maps = rollout_maps([scores[p] for p in self._scores.layers], self._input_shape)
            self.write_image("attention/rollout", self._draw_rollout(maps, captions), step)
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
        tiles, texts = [], []
        n, heads, tq, tk = scores.shape
        for i in range(n):
            frame = self._frame(i, tq, tk)
            for h in range(heads):
                tiles.append(frame.fill(scores[i, h]))
                peak = float(scores[i, h].max())
                texts.append(f"{captions[i]}  head {h} (max {peak:.2f})" if h == 0
                             else f"head {h} (max {peak:.2f})")
        return render.grid(tiles, captions=texts, ncols=heads, min_tile=1,
                           title=f"attention/{path}: rows query, columns key")

    def _draw_rollout(self, maps: np.ndarray, captions: list[str]) -> np.ndarray:
        rows, cols = maps.shape[1:]
        h, w = self._input_shape[:2]
        # nearest upsampling: each patch is one token, so the map is constant over a patch
        up = np.repeat(np.repeat(maps, h // rows, axis=1), w // cols, axis=2)
        return render.explanation_grid(self.samples.x, up, captions=captions,
                                       title="attention rollout (input | rollout overlay)")
