"""Read the outputs of chosen layers (nested models included) with one compiled pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit.explain._graph import GraphTap
from keras_audit.explain.base import _infos, _probe, quiet_function, resolve_layer
from keras_audit.explain.forward import check_inputs, model_inputs

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


class Activations:
    """``Activations(model, layers)(x) -> {path: np.ndarray}``: intermediate layer outputs.

    Args:
        model: a built Keras model.
        layers: layer names or paths (``"backbone/conv2"``); ``None`` takes every convolution
            layer (Conv1D/2D/3D, depthwise and separable), nested models included.

    The outputs also include ``"__output__"``, the model's own output, so a caller gets the
    predictions from the same pass. The computation is compiled once per input shape.

    Raises:
        ValueError: a layer is unknown (the message lists the choices), or the model has no
            convolution layer and ``layers`` is ``None``.
    """

    def __init__(self, model: keras.Model, layers: list[str] | None = None) -> None:
        self.model = model
        self.tap = GraphTap(model)
        self.inputs = model_inputs(model)
        captured, _, _ = _probe(model, self.tap, self.inputs)
        self.infos = _infos(self.tap, captured)
        if layers is None:
            chosen = [i for i in self.infos if "Conv" in type(i.layer).__name__
                      and not isinstance(i.layer, keras.Model)]
            if not chosen:
                raise ValueError(
                    f"model {model.name!r} has no convolution layer; name the layers to read. "
                    f"Choices: {[i.path for i in self.infos]}"
                )
        else:
            if isinstance(layers, str):
                layers = [layers]
            chosen = [resolve_layer(self.infos, name) for name in layers]
        self.layers = chosen
        self.paths = [i.path for i in chosen]
        self.trace_count = 0
        self._fn = quiet_function(self._traced)

    def _traced(self, xs):
        self.trace_count += 1
        out, captured = self.tap.run(list(xs), capture=self.paths, linear=False)
        result = {p: captured[p] for p in self.paths}
        result["__output__"] = out
        return result

    def __call__(self, x: tf.Tensor | ArrayLike | list | dict) -> dict[str, np.ndarray]:
        """Run the model on ``x``; return each chosen layer's output as NumPy, by path.

        ``x``: a batch, or for several inputs a list (input order) or dict (by input name).
        Integer inputs keep their integer type (token ids); the rest are fed as float32.
        """
        xs = [a.astype(np.int32 if s.integer else np.float32, copy=False)
              for a, s in zip(check_inputs(self.model, x, self.inputs), self.inputs)]
        out = self._fn([tf.constant(a) for a in xs])
        return {k: tf.nest.map_structure(lambda t: t.numpy(), v) for k, v in out.items()}
