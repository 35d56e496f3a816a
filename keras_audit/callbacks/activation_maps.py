"""The strongest feature maps of chosen layers for fixed validation samples."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from keras_audit import render
from keras_audit._checks import positive_int
from keras_audit.callbacks.base import ExplanationCallback, _check_colormap
from keras_audit.explain import Activations
from keras_audit.explain.forward import select_output

if TYPE_CHECKING:
    from keras_audit.callbacks.base import ValidationData

#: channel tiles are small: 4 samples x 16 channels x every conv layer, PNG-encoded each epoch
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
            ``None`` = every convolution layer, nested models included.
        num_samples: samples shown (rows), class-balanced and fixed.
        max_channels: channels shown per sample (columns after the input).
        freq, strict, class_names, seed: as ``GradCAMCallback``.
        colormap: a Matplotlib colormap name for the channels.

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
                 strict: bool = False, class_names: list[str] | None = None,
                 colormap: str = "viridis", seed: int = 0) -> None:
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, seed=seed)
        positive_int(max_channels, "max_channels")
        if layers is not None:
            layers = [layers] if isinstance(layers, str) else list(layers)
            if not layers or not all(isinstance(n, str) for n in layers):
                raise ValueError(f"layers must be layer names or None; got {layers!r}")
        _check_colormap(colormap)
        self.layers = layers
        self.max_channels = int(max_channels)
        self.colormap = colormap
        self.reader: Activations | None = None
        self.layer_paths: list[str] = []

    def _setup(self) -> None:
        reader = Activations(self.model, self.layers)  # unknown names raise here
        flat = [i for i in reader.layers if len(i.output_shape) != 4]
        if flat:
            four_d = [i.path for i in reader.infos if len(i.output_shape) == 4]
            keep = [i.path for i in reader.layers if len(i.output_shape) == 4]
            if self.layers is not None or not keep:
                raise ValueError(
                    "activation maps need layers with a 4-D (N, H, W, C) output; "
                    f"{[(i.path, i.output_shape) for i in flat]} are not. Choices: {four_d}"
                )
            reader = Activations(self.model, keep)  # the default: 2-D convolutions only
        self.reader = reader
        self.layer_paths = list(reader.paths)
        out_units = _output_units(reader)
        self.check_class_names(out_units)

    def _compute(self, epoch: int) -> dict:
        out = self.reader(self.samples.x)
        layers = {}
        for path in self.layer_paths:
            acts = np.asarray(out[path], np.float32)  # (n, h, w, C)
            self.check_finite(acts, f"activations of {path!r}", epoch)
            k = min(self.max_channels, acts.shape[-1])
            top = np.stack([render.strongest_channels(a, k) for a in acts])  # strongest first
            maps = np.take_along_axis(acts, top[:, None, None, :], axis=3)
            layers[path] = (np.moveaxis(maps, -1, 1), top)  # (n, k, h, w): a copy
        probs = select_output(out["__output__"], None, self.model)  # the first output
        return {"layers": layers, "probs": np.asarray(probs)}

    def _write(self, payload: dict, step: int) -> None:
        captions = self.captions(payload["probs"])
        inputs = render.to_uint8_images(self.samples.x)
        for path, (maps, top) in payload["layers"].items():
            rows = []
            for image, chans, ids, text in zip(inputs, maps, top, captions):
                tiles = [image] + list(render.colorize(render.normalize_per_sample(chans),
                                                       self.colormap))
                rows.append(render.grid(tiles, captions=["input"] + [f"ch {c}" for c in ids],
                                        ncols=len(tiles), min_tile=CHANNEL_TILE, title=text))
            self.write_image(f"activations/{path}", render.grid(rows, ncols=1, min_tile=1), step)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the compiled activation reader (one per input shape)."""
        return {} if self.reader is None else {"activations": int(self.reader.trace_count)}


def _output_units(reader: Activations) -> int:
    """The width of the model's output, from the probe the reader already ran."""
    for info in reversed(reader.infos):
        shape = info.output_shape
        if len(shape) == 2:
            return int(shape[-1])
    return 0
