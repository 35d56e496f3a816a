"""Run a Keras 3 model layer by layer, reading intermediate outputs and pre-activation scores.

Hand-written because Keras 3 offers no public way to do this for the models users have:
``model.output`` is undefined on a ``Sequential`` built with ``keras.Input``, and a sub-model
``keras.Model(model.inputs, inner_layer.output)`` raises "Graph disconnected" when the layer sits
inside a nested backbone. Instead of rebuilding or cloning the model, ``GraphTap`` calls the
model's own layers on the given tensor (so it shares the live weights and costs the same as
``model(x)``), descending into nested models, and records the outputs of the layers asked for.

For functional models it walks the graph with ``Functional._run_through_graph``, the same method
``Functional.call`` uses; it is not public API, and ``GraphTap`` checks for it at construction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import keras
from tensorflow import autograph as _autograph

tf_do_not_convert = _autograph.experimental.do_not_convert

_SQUASHING = ("softmax", "sigmoid")


@dataclass(frozen=True)
class LayerInfo:
    """A layer that can be read from a model.

    Attributes:
        path: the layer's name, prefixed by the names of the nested models that hold it
            (``"backbone/conv2"``); a top-level layer's path is its name.
        layer: the Keras layer object.
        output_shape: the layer's output shape with ``None`` for the batch axis.
    """

    path: str
    layer: keras.layers.Layer
    output_shape: tuple

    @property
    def name(self) -> str:
        """The layer's own name (the last part of ``path``)."""
        return self.layer.name


def _kind(model) -> str:
    if isinstance(model, keras.Sequential):
        return "sequential"
    if hasattr(model, "_run_through_graph") and hasattr(model, "_nodes_by_depth"):
        return "functional"
    return "subclassed"


def _activation_name(layer) -> str | None:
    """The squashing activation a layer ends with, or None."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None)
    return name if name in _SQUASHING else None


def _call_layer(layer, args, kwargs, training):
    if not training and type(layer) is keras.layers.BatchNormalization and len(args) == 1 \
            and set(kwargs) <= {"mask"}:  # the mask is passed through (used only in training)
        return _inference_batch_norm(layer, args[0])
    if getattr(layer, "_call_has_training_arg", False):
        kwargs = dict(kwargs, training=training)
    return layer(*args, **kwargs)


def _inference_batch_norm(layer: keras.layers.BatchNormalization, x):
    """``layer(x, training=False)`` as one scale and one offset per channel, read from the
    layer's live variables: the same numbers (float32, cast back to ``x``'s dtype as Keras
    does under mixed precision). Hand-written for tracing speed: Keras 3's call builds about
    twenty operations per layer, and their gradients more; on a DenseNet121 (121 of them) this
    takes about 0.5 s off each traced explanation (``benchmarks/bench_backbone.py``)."""
    import tensorflow as tf

    rank = len(x.shape)
    axis = layer.axis % rank
    inv = tf.math.rsqrt(tf.cast(layer.moving_variance.value, tf.float32) + layer.epsilon)
    if layer.scale:
        inv = inv * tf.cast(layer.gamma.value, tf.float32)
    offset = -tf.cast(layer.moving_mean.value, tf.float32) * inv
    if layer.center:
        offset = offset + tf.cast(layer.beta.value, tf.float32)
    if axis != rank - 1:
        shape = [1] * rank
        shape[axis] = -1
        inv, offset = tf.reshape(inv, shape), tf.reshape(offset, shape)
    out = tf.cast(tf.cast(x, tf.float32) * inv + offset, x.dtype)
    mask = getattr(x, "_keras_mask", None)
    if mask is not None:  # Keras passes the mask through a batch normalisation
        out._keras_mask = mask
    return out


class GraphTap:
    """Calls a model's layers one by one on a tensor, recording chosen layers' outputs.

    Args:
        model: a built Keras model: ``Sequential``, functional (nested models included) or
            subclassed (subclassed models run as a whole: no intermediate layer can be read and
            the final activation cannot be removed).

    ``run(x, capture, linear, replace)`` returns ``(outputs, captured)`` where ``captured`` maps
    each requested path to its tensor; ``x`` is a tensor, or a list in ``model.inputs`` order for
    a model with several inputs. ``replace`` maps a path to a function of that layer's output
    whose result is used downstream instead (to watch it on a tape, or to feed interpolated
    embeddings); a mask Keras attached to the output is carried over. With ``linear=True`` the final softmax/sigmoid of each output is
    left out, so the outputs are logits. The model is never modified, not even for a moment:
    a ``Dense(..., activation="softmax")`` head is called through its linear twin, a second
    Python object sharing the layer's state (the same variables, the same config) whose
    activation is the identity. (An earlier version swapped the layer's own activation for the
    duration of the call; a model traced or called on another thread meanwhile, such as
    ``fit()``'s train step while the callbacks trace on their worker, would have seen it.)
    """

    def __init__(self, model: keras.Model) -> None:
        if not getattr(model, "built", False):
            raise ValueError(
                f"model {model.name!r} has not been built: call it on a batch or build it with "
                "keras.Input before explaining it"
            )
        self.model = model
        self.kind = _kind(model)
        self.head_activations: list[str | None] = []
        self._replace: dict = {}
        self._twins: dict[int, keras.layers.Layer] = {}

    def _linear_twin(self, layer: keras.layers.Layer) -> keras.layers.Layer:
        """``layer`` with the identity as its activation: a shallow copy of its attributes
        (``copy.copy`` would save and reload it, making new variables), so it computes with the
        layer's own variables; the layer itself is untouched."""
        twin = self._twins.get(id(layer))
        if twin is None:
            twin = object.__new__(type(layer))
            twin.__dict__.update(layer.__dict__)
            object.__setattr__(twin, "activation", keras.activations.linear)
            self._twins[id(layer)] = twin
        return twin

    # -- layer listing ----------------------------------------------------------------------
    def layers(self) -> list[tuple[str, keras.layers.Layer]]:
        """Every readable layer as ``(path, layer)``, in call order, nested models expanded."""
        out: list[tuple[str, keras.layers.Layer]] = []
        self._collect(self.model, "", out)
        return out

    def _collect(self, model, prefix, out) -> None:
        kind = _kind(model)
        if kind == "subclassed" and model is not self.model:
            out.append((prefix.rstrip("/") or model.name, model))
            return
        for layer in _ordered_layers(model):
            if isinstance(layer, keras.layers.InputLayer):
                continue
            path = prefix + layer.name
            if isinstance(layer, keras.Model) and _kind(layer) != "subclassed":
                out.append((path, layer))
                self._collect(layer, path + "/", out)
            else:
                out.append((path, layer))

    # -- running ----------------------------------------------------------------------------
    # not converted by autograph (there is no tensor-dependent control flow here): called from
    # a converted explainer, autograph would otherwise route every layer call through its
    # converted_call, about a second of each trace on a DenseNet121
    @tf_do_not_convert
    def run(self, x, capture=(), linear: bool = True, training: bool = False,
            replace: dict[str, Callable] | None = None):
        """Run the model on ``x``; return ``(outputs, {path: tensor})`` for paths in ``capture``."""
        captured: dict = {}
        wanted = set(capture)
        heads: list[str | None] = []
        self._replace = dict(replace or {})
        if self.kind == "subclassed" and self._replace:
            raise ValueError(
                f"model {self.model.name!r} is subclassed: its inner layers cannot be read or "
                "replaced (its call() has no functional graph)"
            )
        if isinstance(x, list | tuple) and len(x) == 1:
            x = x[0]
        try:
            out = self._run(self.model, "", x, wanted, captured, linear, training, heads,
                            top=True)
        finally:
            self._replace = {}
        self.head_activations = heads
        return out, captured

    def _run(self, model, prefix, x, wanted, captured, linear, training, heads, top=False):
        kind = _kind(model)
        if kind == "sequential":
            layers = [layer for layer in model.layers
                      if not isinstance(layer, keras.layers.InputLayer)]
            h = x
            for i, layer in enumerate(layers):
                last = i == len(layers) - 1
                h = self._step(layer, prefix, (h,), {}, wanted, captured,
                               linear and last, training, heads)
            return h
        if kind == "functional":
            head_ops = {id(t._keras_history.operation) for t in model.outputs}

            def operation_fn(op):
                def call(*args, **kwargs):
                    return self._step(op, prefix, args, kwargs, wanted, captured,
                                      linear and id(op) in head_ops, training, heads)
                return call

            return model._run_through_graph(x, operation_fn=operation_fn)
        # Subclassed: opaque. The outputs are the model's own (with any final activation).
        if linear and top:
            heads.append(None)
        return model(x, training=training)

    def _step(self, layer, prefix, args, kwargs, wanted, captured, head, training, heads):
        path = prefix + layer.name
        if isinstance(layer, keras.Model) and _kind(layer) != "subclassed":
            inner = args[0] if len(args) == 1 else list(args)
            out = self._run(layer, path + "/", inner, wanted, captured, head, training, heads)
        elif head:
            act = _activation_name(layer)
            heads.append(act)
            if act is None:
                out = _call_layer(layer, args, kwargs, training)
            elif isinstance(layer, keras.layers.Softmax) or isinstance(
                layer, keras.layers.Activation
            ):
                out = args[0]  # a standalone softmax/sigmoid layer: its input is the logits
            else:
                out = _call_layer(self._linear_twin(layer), args, kwargs, training)
        else:
            out = _call_layer(layer, args, kwargs, training)
        if path in self._replace:
            new = self._replace[path](out)
            mask = getattr(out, "_keras_mask", None)
            if mask is not None and new is not out:
                new._keras_mask = mask  # keep what a masking Embedding tells the RNN after it
            out = new
        if path in wanted:
            captured[path] = out
        return out


def _ordered_layers(model) -> list:
    """Layers of a model in the order they are called."""
    if _kind(model) == "functional":
        return list(model.operations)
    return list(model.layers)


def _snake(name: str) -> str:
    """Keras's default layer name for a class name (``GlobalAveragePooling2D`` ->
    ``global_average_pooling2d``), as ``keras.src.utils.naming`` makes it (not public)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def has_generated_name(op) -> bool:
    """Whether a layer's name is one Keras made up (``conv2d_3``, ``add_12``), which changes
    with how many such layers the session created before; a given name is stable."""
    return re.fullmatch(re.escape(_snake(type(op).__name__)) + r"(_\d+)?", op.name) is not None


_MERGES = (keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average,
           keras.layers.Maximum, keras.layers.Minimum, keras.layers.Concatenate)


def is_merge(op) -> bool:
    """A merge layer (Add, Concatenate, ...) or a bare op (``x + y``) rather than a layer."""
    return isinstance(op, _MERGES) or not isinstance(op, keras.layers.Layer)


def input_consumers(model, index: int, prefix: str = "") -> list[tuple[str, object]]:
    """The layers that read input ``index`` of ``model`` directly, as ``(path, layer)``.

    A nested functional model that reads the input is looked into, so the layers inside it that
    read its own input are returned (with their nested paths). Subclassed models return ``[]``.
    """
    kind = _kind(model)
    if kind == "sequential":
        layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
        return _expand(layers[0], 0, prefix) if layers else []
    if kind != "functional":
        return []
    tensor = model.inputs[index]
    return [pair for op, pos in _readers(model, tensor) for pair in _expand(op, pos, prefix)]


def layer_consumers(model, op, prefix: str = "") -> list[tuple[str, object]]:
    """The layers that read ``op``'s output inside ``model`` (top level only), as (path, layer)."""
    kind = _kind(model)
    if kind == "sequential":
        layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
        nxt = [layers[i + 1] for i, la in enumerate(layers[:-1]) if la is op]
        return [pair for la in nxt for pair in _expand(la, 0, prefix)]
    if kind != "functional":
        return []
    outs = [t for node in op._inbound_nodes for t in node.output_tensors]
    return [pair for t in outs for r, pos in _readers(model, t)
            for pair in _expand(r, pos, prefix)]


def _readers(model, tensor) -> list[tuple[object, int]]:
    """Operations of ``model`` whose inputs include ``tensor``, with its position among them."""
    found = []
    for op in model.operations:
        for node in op._inbound_nodes:
            ids = [id(t) for t in node.input_tensors]
            if id(tensor) in ids:
                found.append((op, ids.index(id(tensor))))
                break
    return found


def _expand(op, position: int, prefix: str) -> list[tuple[str, object]]:
    if isinstance(op, keras.Model) and _kind(op) != "subclassed":
        return input_consumers(op, min(position, len(op.inputs) - 1), prefix + op.name + "/")
    return [(prefix + op.name, op)]
