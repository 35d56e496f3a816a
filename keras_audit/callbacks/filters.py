"""Convolution filters: kernel grids, activation-maximisation images, or the validation patches
that most activate each filter.

The gradient ascent itself is the engine's ``keras_audit.explain.maximize.ActivationMaximizer``,
imported here too so ``keras_audit.callbacks.ActivationMaximizer`` keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_audit import render
from keras_audit._checks import positive_int
from keras_audit.callbacks.base import (
    DEFAULT_MAX_BYTES_PER_EPOCH,
    MIN_TILE,
    ExplanationCallback,
    NothingToExplain,
)
from keras_audit.callbacks.layers import DEFAULT_LAYERS, is_conv2d, spread
from keras_audit.callbacks.samples import select_samples
from keras_audit.explain import Activations, resolve_layer
from keras_audit.explain.forward import model_input_shape, model_inputs
from keras_audit.explain.maximize import ActivationMaximizer

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData
    from keras_audit.explain import LayerInfo

__all__ = ["DEFAULT_MAX_FILTERS", "MIN_KERNEL", "MODES", "ActivationMaximizer", "FilterCallback",
           "crop_patch", "rank_examples", "receptive_field"]

MODES = ("weights", "maximize", "examples")
#: filters per layer when ``max_filters`` is not given
DEFAULT_MAX_FILTERS = {"weights": 32, "maximize": 8, "examples": 8}
#: the smallest kernel side drawn in ``weights`` mode beyond the first convolution: a 3x3 kernel
#: of a deeper layer is a grey square that says nothing
MIN_KERNEL = 5


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def receptive_field(infos: list[LayerInfo], path: str) -> tuple[
        tuple[int, int], tuple[int, int], tuple[float, float]]:
    """The input window one output position of layer ``path`` sees, per spatial axis.

    Walks the layers before ``path`` in call order (``infos``, as ``explain.list_layers`` gives
    them) and composes every convolution's and pooling layer's kernel size (dilation included)
    and stride: ``size += (k - 1) * jump``, ``jump *= stride``. A chain is exact; for branching
    graphs (residual blocks) it follows every layer on the way, which bounds the largest path.
    ``"same"`` padding is taken as ``(k - 1) // 2`` on the leading side (exact for stride 1),
    so a centre is within half a stride of the true one.

    Args:
        infos: the model's layers in call order.
        path: the layer whose outputs are located.

    Returns:
        ``(size, jump, start)``: window side in input pixels, input pixels between adjacent
        output positions, and the input coordinate of output position 0's window centre, each
        as ``(rows, cols)``. Position ``i`` is centred at ``start + i * jump``.

    Raises:
        ValueError: ``path`` is not in ``infos``.
    """
    paths = [i.path for i in infos]
    if path not in paths:
        raise ValueError(f"unknown layer {path!r}; choices: {paths}")
    size, jump, start = [1, 1], [1, 1], [0.0, 0.0]
    for info in infos[:paths.index(path) + 1]:
        layer = info.layer
        if isinstance(layer, keras.Model):
            continue  # a nested model's own layers are listed after it
        kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        strides = getattr(layer, "strides", None)
        if kernel is None or strides is None or len(np.atleast_1d(kernel)) != 2:
            continue  # no spatial window (dense, activations, 1-D layers)
        k, st = _pair(kernel), _pair(strides)
        d = _pair(getattr(layer, "dilation_rate", 1))
        same = getattr(layer, "padding", "valid") == "same"
        for a in range(2):
            k_eff = d[a] * (k[a] - 1) + 1
            start[a] += ((k_eff - 1) / 2 - ((k_eff - 1) // 2 if same else 0)) * jump[a]
            size[a] += (k_eff - 1) * jump[a]
            jump[a] *= st[a]
    return (size[0], size[1]), (jump[0], jump[1]), (start[0], start[1])


def rank_examples(activations: np.ndarray, filter_ids: Any, k: int) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` images that most activate each filter, by the filter's maximum over positions.

    Args:
        activations: a layer's outputs ``(N, h, w, C)``.
        filter_ids: the channels ranked.
        k: examples per filter (fewer when ``N < k``).

    Returns:
        ``(indices (F, k), scores (F, k), positions (F, k, 2))``: image indices, strongest
        first, the maximum activation and its ``(row, col)`` output position.

    Raises:
        ValueError: ``activations`` is not 4-D.
    """
    acts = np.asarray(activations, np.float32)
    if acts.ndim != 4:
        raise ValueError(f"activations must be (N, h, w, C); got shape {acts.shape}")
    n, h, w, _ = acts.shape
    sub = acts[..., np.asarray(filter_ids, int)].reshape(n, h * w, -1)  # (N, hw, F)
    flat_arg = sub.argmax(axis=1)  # (N, F)
    best = sub.max(axis=1)  # (N, F)
    k = min(int(k), n)
    order = np.argsort(-best, axis=0, kind="stable")[:k].T  # (F, k), stable: ties by index
    scores = np.take_along_axis(best.T, order, axis=1)
    pos = np.take_along_axis(flat_arg.T, order, axis=1)
    return order, scores, np.stack([pos // w, pos % w], axis=-1)


def crop_patch(image: np.ndarray, centre: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """The ``size`` window of ``image`` ``(H, W, C)`` centred on ``centre``, moved inside the image
    at its borders (so every patch of a layer has one size); the whole image when the window
    is at least as large as it."""
    out = []
    for a in range(2):
        n, s = image.shape[a], min(int(size[a]), image.shape[a])
        lo = int(np.clip(round(centre[a] - (s - 1) / 2), 0, n - s))
        out.append(slice(lo, lo + s))
    return image[out[0], out[1]]


class FilterCallback(ExplanationCallback):
    """Logs what the convolution filters of chosen layers look for.

    Each logged epoch writes one picture per layer, ``filters/<layer path>``:

    - ``mode="weights"``: the first ``max_filters`` kernels as a tiled grid
      (``render.filter_grid``). A layer that reads 3 channels (an RGB first layer) shows each
      kernel as a colour tile, the layer scaled jointly so 0 is mid-grey; other layers show
      each kernel averaged over its input channels, in grey, scaled on its own.
      With ``layers=None`` only kernels a person can read are drawn: the first 2-D convolution
      (its kernels see pixels directly) and deeper ones whose kernels are at least 5x5
      (``MIN_KERNEL``); the 3x3 kernels of deeper layers are skipped (grey squares that say
      nothing; ``mode="maximize"`` or ``"examples"`` shows what they respond to). Layers named
      in ``layers`` are drawn whatever their kernel size.
    - ``mode="maximize"``: for ``max_filters`` filters spread over each layer, the input that
      most excites the filter, found by ``steps`` steps of gradient ascent on the filter's mean
      activation (normalised gradients, L2 and total-variation penalties, random jitter),
      starting from the same seeded noise every epoch. All filters of all layers run as one
      batch in one compiled loop, built once. Its cost per logged epoch is ``steps`` forward
      and backward passes over ``layers x max_filters`` images: about 280 ms for the 4 conv
      layers of the reference CNN in ``benchmarks/bench_callbacks.py`` (32x32x3, 8 filters,
      20 steps), so give it a ``freq`` of several epochs on short epochs.
    - ``mode="examples"``: for ``max_filters`` filters spread over each layer, the
      ``num_examples`` validation images (of ``num_images`` fixed, class-balanced ones) whose
      strongest activation of the filter is highest, one row per filter, strongest first, each
      captioned with the activation. Where the layer's receptive field (``receptive_field``:
      the kernel sizes and strides of the convolutions and poolings up to it) is smaller than
      the image, the tile is the patch that field covers around the position of the strongest
      activation; otherwise the whole image. One compiled pass of ``explain.Activations`` over
      the ``num_images`` images per logged epoch; ``last_ranking`` keeps the ranking.

    Args:
        log_dir: folder for the event files.
        layers: layer names or paths (``"backbone/conv2"``); ``None`` = at most 4 2-D
            convolution layers (nested models included) spread over the model, in call order:
            the first, the last and evenly spaced ones between (every one when there are 4 or
            fewer), never one picture per layer of a deep backbone. ``Conv1D`` kernels (text and
            sequence models) are not drawn: a ``(width, channels)`` kernel over embedding
            dimensions is no picture a person reads.
        mode: ``"weights"``, ``"maximize"`` or ``"examples"``.
        max_filters: filters shown per layer (default 32 for weights, 8 for the others).
        freq, strict: as ``GradCAMCallback``.
        steps: gradient-ascent steps (``maximize``).
        learning_rate: step size as a fraction of the input range (``maximize``).
        input_range: the ``(low, high)`` range of the model's inputs; the images are kept in it.
        seed: seeds the starting noise and the jitter, and the choice of ``num_images``.
        validation_data: ``(x, y)``, ``x`` alone or a ``tf.data.Dataset``; needed by
            ``examples`` (the images searched), ignored by the other modes.
        num_images: validation images searched (``examples``), chosen once, class-balanced.
        num_examples: images shown per filter (``examples``).
        max_bytes_per_epoch: the size budget of the pictures per logged epoch (default
            200 KB; ``None``: none), as ``ExplanationCallback`` describes.

    Example:
        ```python
        cb = FilterCallback("logs/run1", mode="maximize", max_filters=4)
        model.fit(x, y, epochs=10, callbacks=[cb])
        ```

    Raises:
        ValueError: a bad argument, or ``mode="examples"`` without ``validation_data`` (on
            construction); an unknown layer, a layer that is not a 2-D convolution, or
            (``maximize``, ``examples``) a model whose input is not an image (in
            ``on_train_begin``, before the first batch).

    Attributes:
        last_ranking: ``examples`` mode: ``{layer path: (indices (F, k), scores (F, k))}`` of
            the last logged epoch, indices into ``images.x``; ``images`` holds the searched
            ``Samples`` (``images.index`` maps them back to the validation data).
    """

    technique = "filters"
    needs_data = False

    def __init__(self, log_dir: str, layers: list[str] | str | None = None,
                 mode: str = "weights", max_filters: int | None = None, freq: int = 1,
                 strict: bool = False, steps: int = 20, learning_rate: float = 0.05,
                 input_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                 validation_data: ValidationData | None = None, num_images: int = 256,
                 num_examples: int = 4,
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choices: {list(MODES)}")
        if mode == "examples" and validation_data is None:
            raise ValueError("FilterCallback(mode='examples') needs validation_data: the images "
                             "searched for the ones that most activate each filter; give "
                             "(x, y), x alone or a tf.data.Dataset, or use mode='weights' or "
                             "'maximize'")
        positive_int(num_images, "num_images")
        positive_int(num_examples, "num_examples")
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
        # needs_data stays False: the images are read in _setup, not shared with a bundle's
        # samples (hundreds of them would enlarge every member's selection)
        super().__init__(validation_data if mode == "examples" else None, log_dir,
                         num_samples=1, freq=freq, strict=strict, seed=seed,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        self.num_images = int(num_images)
        self.num_examples = int(num_examples)
        self.reader: Activations | None = None
        self.images = None
        self.fields: dict[str, tuple] = {}
        self.last_ranking: dict[str, tuple[np.ndarray, np.ndarray]] = {}
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
            if self.mode == "weights":  # the first conv, and deeper ones with readable kernels
                convs = convs[:1] + [i for i in convs[1:]
                                     if min(i.layer.kernel.shape[:2]) >= MIN_KERNEL]
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
        if self.mode != "weights":
            what = {"maximize": "activation maximisation optimises one input image",
                    "examples": "filter examples crop one input image"}[self.mode]
            specs = model_inputs(self.model)
            if len(specs) > 1:
                raise ValueError(
                    f"FilterCallback(mode={self.mode!r}): {what}, and the model has "
                    f"{len(specs)} inputs {[s.name for s in specs]}; use mode='weights'"
                )
            shape = model_input_shape(self.model)
            if len(shape) != 3 or None in shape:
                raise ValueError(
                    f"FilterCallback(mode={self.mode!r}) draws images; the model's input has "
                    f"shape {(None, *shape)}, not a fixed (None, height, width, channels)"
                )
        if self.mode == "examples":
            self.images = select_samples(self.validation_data, self.num_images, self.model,
                                         self.seed, infos=infos)
            self.reader = Activations(self.model, self.layer_paths)  # compiled once
            self.fields = {p: receptive_field(infos, p) for p in self.layer_paths}
        if self.mode == "maximize":
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
        if self.mode == "examples":
            out = self.reader(self.images.x)
            ranking = {}
            for path in self.layer_paths:
                acts = np.asarray(out[path], np.float32)
                self.check_finite(acts, f"activations of {path!r}", epoch)
                ranking[path] = rank_examples(acts, self.filter_ids[path], self.num_examples)
            self.last_ranking = {p: (r[0], r[1]) for p, r in ranking.items()}
            return {"ranking": ranking}
        images = self.maximizer()
        self.check_finite(np.concatenate([v.ravel() for v in images.values()]),
                          "activation-maximisation images", epoch)
        return {"images": images}

    def _write(self, payload: dict, step: int) -> None:
        if self.mode == "weights":
            for path, kernel in payload["kernels"].items():
                picture = render.filter_grid(kernel, max_filters=self.max_filters, min_tile=32)
                self.write_image(f"filters/{path}", picture, step)
        elif self.mode == "examples":
            for path, (order, scores, pos) in payload["ranking"].items():
                size, jump, start = self.fields[path]
                tiles, labels = [], []
                for f, row, row_scores, row_pos in zip(self.filter_ids[path], order, scores, pos):
                    for rank, (i, score, (r, c)) in enumerate(zip(row, row_scores, row_pos)):
                        centre = (start[0] + r * jump[0], start[1] + c * jump[1])
                        tiles.append(crop_patch(self.images.x[i], centre, size))
                        labels.append(f"f{f}: {score:.3g}" if rank else f"filter {f}: {score:.3g}")
                picture = render.image_grid(np.stack(tiles), captions=labels,
                                            ncols=order.shape[1], min_tile=MIN_TILE)
                self.write_image(f"filters/{path}", picture, step, photo=True)
        else:
            for path, images in payload["images"].items():
                labels = [f"filter {f}" for f in self.filter_ids[path]]
                picture = render.image_grid(images, captions=labels, min_tile=MIN_TILE)
                self.write_image(f"filters/{path}", picture, step, photo=True)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the compiled gradient-ascent loop (``maximize``; one in all) or of the
        activation reader (``examples``; one in all)."""
        if self.reader is not None:
            return {"examples": int(self.reader.trace_count)}
        return {} if self.maximizer is None else {"maximize": self.maximizer.trace_count}

