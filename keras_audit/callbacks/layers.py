"""Which layers the callbacks draw: the model's layers as the engine lists them, the convolutions
among them, the spread default choice, and the width of the model's output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import keras
import numpy as np

from keras_audit.explain import LayerInfo, list_layers

_T = TypeVar("_T")

#: the most layers ``ActivationMapsCallback`` and ``FilterCallback`` draw when none are named
DEFAULT_LAYERS = 4


def model_layers(model: keras.Model) -> list[LayerInfo]:
    """Every layer the engine can read, nested models' layers included (one probe pass)."""
    return list_layers(model)


def is_conv2d(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is a 2-D convolution with a 4-D kernel (Conv2D, DepthwiseConv2D and
    their subclasses such as SeparableConv2D's depthwise part; never Conv2DTranspose)."""
    kernel = getattr(layer, "kernel", None)
    return (isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
            and not isinstance(layer, keras.layers.Conv2DTranspose)
            and kernel is not None and len(kernel.shape) == 4)


def is_feature_map_conv(info: LayerInfo) -> bool:
    """Whether a layer is a convolution (any ``Conv*`` layer, not a nested model) whose output is
    a 4-D ``(N, H, W, C)`` feature map."""
    return ("Conv" in type(info.layer).__name__ and not isinstance(info.layer, keras.Model)
            and len(info.output_shape) == 4)


def spread(items: Sequence[_T], limit: int = DEFAULT_LAYERS) -> list[_T]:
    """At most ``limit`` items spread evenly over ``items``, in order: the first, the last and
    evenly spaced ones between (every item when there are ``limit`` or fewer).

    With ``limit=4`` on a backbone's convolutions that is the first, one a third of the way,
    one two thirds of the way, and the last: early, middle and late features.
    """
    if len(items) <= limit:
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


def output_width(model: keras.Model, infos: Sequence[LayerInfo] | None = None) -> int:
    """Width of the model's (first) output's last axis, from its declared output shape, else
    from the last 2-D layer of ``infos``; 0 when neither says."""
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        shape = None
    if isinstance(shape, dict):
        shape = next(iter(shape.values()))
    if isinstance(shape, list) and shape and isinstance(shape[0], tuple | list):
        shape = shape[0]
    if shape:
        return int(shape[-1] or 0)
    for info in reversed(list(infos or [])):
        if len(info.output_shape) == 2:
            return int(info.output_shape[-1])
    return 0
