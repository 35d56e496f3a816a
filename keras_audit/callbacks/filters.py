"""Convolution filters: kernel grids, or activation-maximisation images.

The gradient ascent itself is the engine's ``keras_audit.explain.maximize.ActivationMaximizer``,
imported here too so ``keras_audit.callbacks.ActivationMaximizer`` keeps working.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_audit import render
from keras_audit._checks import positive_int
from keras_audit.callbacks.base import MIN_TILE, ExplanationCallback, NothingToExplain
from keras_audit.callbacks.layers import DEFAULT_LAYERS, is_conv2d, spread
from keras_audit.explain.base import resolve_layer
from keras_audit.explain.forward import model_input_shape, model_inputs
from keras_audit.explain.maximize import ActivationMaximizer

__all__ = ["DEFAULT_MAX_FILTERS", "MODES", "ActivationMaximizer", "FilterCallback"]

MODES = ("weights", "maximize")
#: filters per layer when ``max_filters`` is not given
DEFAULT_MAX_FILTERS = {"weights": 32, "maximize": 8}


class FilterCallback(ExplanationCallback):
    """Logs what the convolution filters of chosen layers look for.

    Each logged epoch writes one picture per layer, ``filters/<layer path>``:

    - ``mode="weights"``: the first ``max_filters`` kernels as a tiled grid
      (``render.filter_grid``). A layer that reads 3 channels (an RGB first layer) shows each
      kernel as a colour tile, the layer scaled jointly so 0 is mid-grey; other layers show
      each kernel averaged over its input channels, in grey, scaled on its own.
    - ``mode="maximize"``: for ``max_filters`` filters spread over each layer, the input that
      most excites the filter, found by ``steps`` steps of gradient ascent on the filter's mean
      activation (normalised gradients, L2 and total-variation penalties, random jitter),
      starting from the same seeded noise every epoch. All filters of all layers run as one
      batch in one compiled loop, built once. Its cost per logged epoch is ``steps`` forward
      and backward passes over ``layers x max_filters`` images: about 280 ms for the 4 conv
      layers of the reference CNN in ``benchmarks/bench_callbacks.py`` (32x32x3, 8 filters,
      20 steps), so give it a ``freq`` of several epochs on short epochs.

    Args:
        log_dir: folder for the event files.
        layers: layer names or paths (``"backbone/conv2"``); ``None`` = at most 4 2-D
            convolution layers (nested models included) spread over the model, in call order:
            the first, the last and evenly spaced ones between (every one when there are 4 or
            fewer), never one picture per layer of a deep backbone. ``Conv1D`` kernels (text and
            sequence models) are not drawn: a ``(width, channels)`` kernel over embedding
            dimensions is no picture a person reads.
        mode: ``"weights"`` or ``"maximize"``.
        max_filters: filters shown per layer (default 32 for weights, 8 for maximize).
        freq, strict: as ``GradCAMCallback``.
        steps: gradient-ascent steps (``maximize``).
        learning_rate: step size as a fraction of the input range (``maximize``).
        input_range: the ``(low, high)`` range of the model's inputs; the images are kept in it.
        seed: seeds the starting noise and the jitter.

    Example:
        ```python
        cb = FilterCallback("logs/run1", mode="maximize", max_filters=4)
        model.fit(x, y, epochs=10, callbacks=[cb])
        ```

    Raises:
        ValueError: a bad argument (on construction); an unknown layer, a layer that is not a
            2-D convolution, or (``maximize``) a model whose input is not an image (in
            ``on_train_begin``, before the first batch).
    """

    technique = "filters"
    needs_data = False

    def __init__(self, log_dir: str, layers: list[str] | str | None = None,
                 mode: str = "weights", max_filters: int | None = None, freq: int = 1,
                 strict: bool = False, steps: int = 20, learning_rate: float = 0.05,
                 input_range: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choices: {list(MODES)}")
        if max_filters is None:
            max_filters = DEFAULT_MAX_FILTERS[mode]
        positive_int(max_filters, "max_filters")
        positive_int(steps, "steps")
        if not (isinstance(learning_rate, int | float) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number; got {learning_rate!r}")
        lo_hi = tuple(input_range) if isinstance(input_range, list | tuple) else ()
        if len(lo_hi) != 2 or not all(np.isfinite(v) for v in lo_hi) or lo_hi[0] >= lo_hi[1]:
            raise ValueError(f"input_range must be (low, high) with low < high; got "
                             f"{input_range!r}")
        if layers is not None:
            layers = [layers] if isinstance(layers, str) else list(layers)
            if not layers or not all(isinstance(n, str) for n in layers):
                raise ValueError(f"layers must be layer names or None; got {layers!r}")
        super().__init__(None, log_dir, num_samples=1, freq=freq, strict=strict, seed=seed)
        self.layers = layers
        self.mode = mode
        self.max_filters = int(max_filters)
        self.steps = int(steps)
        self.learning_rate = float(learning_rate)
        self.input_range = (float(lo_hi[0]), float(lo_hi[1]))
        self.layer_paths: list[str] = []
        self.filter_ids: dict[str, np.ndarray] = {}
        self.maximizer: ActivationMaximizer | None = None
        self._infos = []

    def _setup(self) -> None:
        infos = self.model_layers()
        convs = [i for i in infos if is_conv2d(i.layer)]
        if self.layers is None:
            if not convs:
                raise NothingToExplain(
                    f"model {self.model.name!r} has no 2-D convolution layer to draw; name the "
                    f"layers. Layers: {[i.path for i in infos]}"
                )
            chosen = spread(convs, DEFAULT_LAYERS)
        else:
            chosen = []
            for name in self.layers:
                info = resolve_layer(infos, name)
                if not is_conv2d(info.layer):
                    raise ValueError(
                        f"layer {info.path!r} ({type(info.layer).__name__}) is not a 2-D "
                        f"convolution; choices: {[i.path for i in convs]}"
                    )
                chosen.append(info)
        self._infos = chosen
        self.layer_paths = [i.path for i in chosen]
        self.filter_ids = {}
        for info in chosen:
            n_filters = int(info.output_shape[-1])
            k = min(self.max_filters, n_filters)
            ids = np.arange(k) if self.mode == "weights" else \
                np.unique(np.linspace(0, n_filters - 1, k).round().astype(int))
            self.filter_ids[info.path] = ids
        self.maximizer = None
        if self.mode == "maximize":
            specs = model_inputs(self.model)
            if len(specs) > 1:
                raise ValueError(
                    f"FilterCallback(mode='maximize'): activation maximisation optimises one "
                    f"input image, and the model has {len(specs)} inputs "
                    f"{[s.name for s in specs]}; use mode='weights'"
                )
            shape = model_input_shape(self.model)
            if len(shape) != 3 or None in shape:
                raise ValueError(
                    f"activation maximisation draws images; the model's input has shape "
                    f"{(None, *shape)}, not a fixed (None, height, width, channels)"
                )
            self.maximizer = ActivationMaximizer(
                self.model, self.filter_ids, steps=self.steps, learning_rate=self.learning_rate,
                input_range=self.input_range, seed=self.seed)

    def _compute(self, epoch: int) -> dict:
        if self.mode == "weights":
            kernels = {}
            for info in self._infos:  # a copy: the weights move on while the worker draws
                k = np.array(keras.ops.convert_to_numpy(info.layer.kernel), np.float32)
                self.check_finite(k, f"kernels of {info.path!r}", epoch)
                kernels[info.path] = k
            return {"kernels": kernels}
        images = self.maximizer()
        self.check_finite(np.concatenate([v.ravel() for v in images.values()]),
                          "activation-maximisation images", epoch)
        return {"images": images}

    def _write(self, payload: dict, step: int) -> None:
        if self.mode == "weights":
            for path, kernel in payload["kernels"].items():
                picture = render.filter_grid(kernel, max_filters=self.max_filters, min_tile=32)
                self.write_image(f"filters/{path}", picture, step)
        else:
            for path, images in payload["images"].items():
                labels = [f"filter {f}" for f in self.filter_ids[path]]
                picture = render.image_grid(images, captions=labels, min_tile=MIN_TILE)
                self.write_image(f"filters/{path}", picture, step)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the compiled gradient-ascent loop (``maximize``; one in all)."""
        return {} if self.maximizer is None else {"maximize": self.maximizer.trace_count}

