"""The strongest feature maps of chosen layers for fixed validation samples."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_audit import render
from keras_audit._checks import positive_int
from keras_audit.callbacks.base import (
    DEFAULT_MAX_BYTES_PER_EPOCH,
    ExplanationCallback,
    NothingToExplain,
)
from keras_audit.callbacks.layers import (
    DEFAULT_LAYERS,
    is_feature_map_conv,
    output_width,
    spread,
)
from keras_audit.explain import Activations, resolve_layer
from keras_audit.explain.forward import select_output
from keras_audit.render.channels import channel_rows

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData

#: channel tiles are small: 4 samples x 16 channels x up to 4 layers, PNG-encoded each epoch
CHANNEL_TILE = 32


class ActivationMapsCallback(ExplanationCallback):
    """Logs the strongest channels of chosen layers for fixed validation samples.

    Each logged epoch writes one picture per layer, ``activations/<layer path>``: one row per
    sample, titled with the true class, the predicted class and the confidence: the input
    followed by the ``max_channels`` channels with the highest mean activation for that sample,
    strongest first, each normalised on its own and labelled with its channel index.

    Args:
        validation_data: ``(x, y)``, ``x`` alone or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        log_dir: folder for the event files.
        layers: layer names or paths (``"backbone/conv2"``) with 4-D ``(N, H, W, C)`` outputs;
            ``None`` = at most 4 convolution layers (nested models included) spread over the
            model, in call order: the first, the last and evenly spaced ones between (every
            convolution when there are 4 or fewer), so a backbone of 120 convolutions shows
            early, middle and late features in 4 pictures, never one per layer. ``Conv1D`` and
            recurrent layers (3-D ``(N, T, C)`` outputs, as in text models) are not drawn: their
            per-token view is the Grad-CAM and saliency token heatmap.
        num_samples: samples shown (rows), class-balanced and fixed.
        max_channels: channels shown per sample (columns after the input).
        freq, strict, class_names, seed: as ``GradCAMCallback``.
        colormap: a Matplotlib colormap name for the channels (``None``: viridis, from
            ``render.technique_colormap``).
        output: for a model with several outputs, the one the captions show (index or name).
        max_bytes_per_epoch: the size budget of the pictures per logged epoch (default
            200 KB; ``None``: none), as ``ExplanationCallback`` describes.

    Models with several inputs: each row starts with the sample's first image input.

    Example:
        ```python
        cb = ActivationMapsCallback((x_val, y_val), "logs/run1", layers=["conv1", "conv2"])
        model.fit(x, y, epochs=10, callbacks=[cb])
        ```

    Raises:
        ValueError: a bad argument (on construction); an unknown layer, a layer without a 4-D
            output, a model without convolution layers (``layers=None``) or data that does not
            fit the model (in ``on_train_begin``, before the first batch).
    """

    technique = "activations"

    def __init__(self, validation_data: ValidationData, log_dir: str,
                 layers: list[str] | str | None = None,
                 num_samples: int = 4, max_channels: int = 16, freq: int = 1,
                 strict: bool = False, class_names: list[str] | dict[int, str] | None = None,
                 colormap: str | None = None, seed: int = 0,
                 output: int | str | None = None,
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, seed=seed, output=output,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        positive_int(max_channels, "max_channels")
        if layers is not None:
            layers = [layers] if isinstance(layers, str) else list(layers)
            if not layers or not all(isinstance(n, str) for n in layers):
                raise ValueError(f"layers must be layer names or None; got {layers!r}")
        if colormap is None:  # the technique's colormap (render/), viridis
            colormap = render.technique_colormap("activations")
        render.colormap_lut(colormap)  # ValueError for a name that is not a colormap
        self.layers = layers
        self.max_channels = int(max_channels)
        self.colormap = colormap
        self.reader: Activations | None = None
        self.layer_paths: list[str] = []

    def _setup(self) -> None:
        infos = self.model_layers()
        four_d = [i.path for i in infos if len(i.output_shape) == 4]
        if self.layers is None:
            convs = [i for i in infos if "Conv" in type(i.layer).__name__
                     and not isinstance(i.layer, keras.Model)]
            if not convs:
                raise NothingToExplain(
                    f"model {self.model.name!r} has no convolution layer; name the layers to "
                    f"read. Choices: {[i.path for i in infos]}"
                )
            maps = [i for i in convs if is_feature_map_conv(i)]
            if not maps:
                raise NothingToExplain(
                    "activation maps need layers with a 4-D (N, H, W, C) output; "
                    f"{[(i.path, i.output_shape) for i in convs]} are not. Choices: {four_d}"
                )
            chosen = spread(maps, DEFAULT_LAYERS)
        else:
            chosen = [resolve_layer(infos, name) for name in self.layers]  # unknown names raise
            flat = [i for i in chosen if len(i.output_shape) != 4]
            if flat:
                raise ValueError(
                    "activation maps need layers with a 4-D (N, H, W, C) output; "
                    f"{[(i.path, i.output_shape) for i in flat]} are not. Choices: {four_d}"
                )
        self.reader = Activations(self.model, [i.path for i in chosen])
        self.layer_paths = list(self.reader.paths)
        self.check_class_names(output_width(self.model, infos))

    def _warm(self) -> None:
        """Trace the reader on the samples' shapes (see ``ExplanationCallback._warm``)."""
        self.reader(self.samples.feed)

    def _compute(self, epoch: int) -> dict:
        out = self.reader(self.samples.feed)
        layers = {}
        for path in self.layer_paths:
            acts = np.asarray(out[path], np.float32)  # (n, h, w, C)
            self.check_finite(acts, f"activations of {path!r}", epoch)
            k = min(self.max_channels, acts.shape[-1])
            top = np.stack([render.strongest_channels(a, k) for a in acts])  # strongest first
            maps = np.take_along_axis(acts, top[:, None, None, :], axis=3)
            layers[path] = (np.moveaxis(maps, -1, 1), top)  # (n, k, h, w): a copy
        probs = select_output(out["__output__"], self.output, self.model)
        return {"layers": layers, "probs": np.asarray(probs, np.float32)}

    def _image(self) -> np.ndarray:
        """The input each row starts with: the first image input ((H, W, C) or (H, W))."""
        images = [a for a in self.samples.inputs if a.ndim in (3, 4)]
        return images[0] if images else self.samples.x

    def _write(self, payload: dict, step: int) -> None:
        captions = self.captions(payload["probs"])
        for path, (maps, top) in payload["layers"].items():
            picture = channel_rows(self._image(), maps, top, captions, cmap=self.colormap,
                                   min_tile=CHANNEL_TILE)
            self.write_image(f"activations/{path}", picture, step, photo=True)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the compiled activation reader (one per input shape)."""
        return {} if self.reader is None else {"activations": int(self.reader.trace_count)}

