"""The kernels pruning acts on: Dense and convolution kernels, found in nested models too, with
the axes that make one unit (an output neuron or filter) for structured pruning."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")
_PRUNABLE = (
    keras.layers.Dense,
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
)
_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
               keras.layers.Conv3DTranspose)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


@dataclass(frozen=True)
class PrunableKernel:
    """One prunable kernel.

    Attributes:
        layer_path: the layer's path, nested models' names first (``"backbone/conv2"``).
        layer: the Keras layer.
        variable: the kernel variable.
        unit_axes: the axes that index the kernel's output units (filters), used by
            ``filter_l1``: the last axis for Dense and Conv, the second-last for transposed
            convolutions, the last two (input channel x multiplier) for depthwise kernels.
    """

    layer_path: str
    layer: keras.layers.Layer
    variable: object
    unit_axes: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of weights in the kernel."""
        return int(np.prod(self.variable.shape))


def _unit_axes(layer, name: str, ndim: int) -> tuple[int, ...]:
    if name == "depthwise_kernel" or (isinstance(layer, _DEPTHWISE) and name == "kernel"):
        return (ndim - 2, ndim - 1)
    if isinstance(layer, _TRANSPOSED):
        return (ndim - 2,)
    return (ndim - 1,)


def prunable_kernels(model: keras.Model) -> list[PrunableKernel]:
    """The kernels of every Dense and convolution layer of ``model``, nested models included.

    Returns:
        ``PrunableKernel`` records in layer order (a shared layer appears once).
    """
    out: list[PrunableKernel] = []
    seen: set[int] = set()

    def walk(container, prefix: str) -> None:
        for layer in container.layers:
            path = prefix + layer.name
            if isinstance(layer, keras.Model):
                walk(layer, path + "/")
                continue
            inner = layer
            while isinstance(inner, keras.layers.Wrapper):  # TimeDistributed(Dense(...))
                inner = inner.layer
            if not isinstance(inner, _PRUNABLE):
                continue
            for v in inner.weights:
                if (v.name in _KERNEL_NAMES and id(v) not in seen
                        and np.dtype(v.dtype).kind == "f"):
                    seen.add(id(v))
                    out.append(PrunableKernel(path, inner, v,
                                              _unit_axes(inner, v.name, len(v.shape))))

    walk(model, "")
    return out


def layer_paths(kernels: list[PrunableKernel]) -> list[str]:
    """The distinct layer paths of ``kernels``, in order."""
    return list(dict.fromkeys(k.layer_path for k in kernels))


def select_layers(kernels: list[PrunableKernel], layers) -> list[PrunableKernel]:
    """Keep the kernels of the named layers (path, or a layer's own name when unique)."""
    if layers is None:
        return kernels
    paths = layer_paths(kernels)
    if isinstance(layers, str):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError:
        raise ValueError(f"layers must be None, a layer name or a list of names; got {layers!r}. "
                         f"Prunable layers: {paths}") from None
    if not layers:
        raise ValueError(f"layers is empty; prunable layers: {paths}")
    chosen: list[str] = []
    for name in layers:
        if not isinstance(name, str):
            raise ValueError(f"layer names must be strings; got {name!r}. Prunable layers: "
                             f"{paths}")
        if name in paths:
            chosen.append(name)
            continue
        by_name = [p for p in paths if p.rsplit("/", 1)[-1] == name]
        if len(by_name) == 1:
            chosen.append(by_name[0])
        elif by_name:
            raise ValueError(f"layer {name!r} is ambiguous: {by_name}; give the full path")
        else:
            raise ValueError(f"unknown or unprunable layer {name!r}; prunable layers (Dense "
                             f"and convolution kernels): {paths}")
    keep = set(chosen)
    return [k for k in kernels if k.layer_path in keep]
