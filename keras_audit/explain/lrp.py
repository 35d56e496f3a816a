"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) for Keras 3 models.

Hand-written: the maintained LRP libraries (zennit, captum) are PyTorch, and iNNvestigate needs
TensorFlow below 2.15 with eager execution off, so Keras 3 has none. The rules follow the
definitions zennit documents (its stabiliser, its treatment of negative inputs).

How it runs (zennit's design, carried over to TensorFlow): one forward pass over the model's
live layers (``GraphTap``'s walk, nothing cloned), where every layer that redistributes
relevance is wrapped in a ``tf.custom_gradient`` whose backward function maps the relevance at
the layer's output to the relevance at its input by the layer's rule. One backward pass seeded
with the explained score then carries relevance to the inputs, and TensorFlow's autodiff does
the graph walk, summing relevance where a tensor feeds several layers. Layers that only move
values (Flatten, Reshape, Concatenate, max pooling, padding, Dropout) keep their ordinary
gradient, which moves relevance the same way: winner-takes-all for max pooling, the slice for
Concatenate.

Per layer:

- Dense and Conv1D/2D/3D: the chosen rule (``zero``, ``epsilon``, ``gamma``, ``alpha_beta``,
  ``z_plus``), or the composite's rule for that kind of layer (``flat`` or ``box`` for the first
  linear layer, the one that reads the input through shape-only layers).
- BatchNormalization right after a Dense/Conv layer without activation is folded into it (the
  kernel scaled, the bias shifted); anywhere else it passes relevance unchanged, as zennit's
  ``Pass``. Rescaling, Normalization and the ReLU family (fused or as layers) pass it unchanged.
- Average pooling (also global) and Add split relevance in proportion to each input's
  contribution (zennit's ``Norm``).
- The model's final softmax or sigmoid is left out: relevance starts from the pre-activation
  score of the explained class, as every explainer in the engine does.

Speed: the epsilon rule costs about one compiled forward+backward pass
(``benchmarks/bench_lrp.py``). Two exact shortcuts keep it there: a fused ReLU's output stands
in for its pre-activation in the rules (relevance is 0 wherever that output is 0), so the
convolution, bias and ReLU stay one fused kernel; and an input known to be non-negative (a
ReLU's output) skips the negative-input terms of the sign-splitting rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit.explain._graph import (
    GraphTap,
    _activation_name,
    _call_layer,
    _kind,
    _ordered_layers,
    input_consumers,
)
from keras_audit.explain.base import Explainer, _probe_batch
from keras_audit.explain.forward import select_output

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: the rules ``rule=`` takes
RULES = ("zero", "epsilon", "gamma", "alpha_beta", "z_plus")
#: the composites ``composite=`` takes, as zennit names them:
#: first linear layer / convolutions / dense layers
COMPOSITES = {
    "epsilon_plus_flat": ("flat", "z_plus", "epsilon"),
    "epsilon_gamma_box": ("box", "gamma", "epsilon"),
}
#: the stabiliser of the rules other than epsilon (zennit's default)
STABILIZER = 1e-6


def _classes(*names: str) -> tuple[type, ...]:
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


_CONV = _classes("Conv1D", "Conv2D", "Conv3D")
_LINEAR = _classes("Dense") + _CONV
_AVERAGE = _classes("AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
                    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D")
_MAX = _classes("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D",
                "GlobalMaxPooling2D", "GlobalMaxPooling3D")
# value-moving layers whose ordinary gradient moves relevance; those in _SHAPE also carry the
# input's value range (for the box rule) to the first linear layer
_SHAPE = _classes("Flatten", "Reshape", "Permute", "ZeroPadding1D", "ZeroPadding2D",
                  "ZeroPadding3D", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
                  "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                  "ActivityRegularization", "Identity")
_MOVE = _SHAPE + _MAX + _classes("Concatenate")
# layers that pass relevance unchanged (zennit's Pass); the first two carry the value range
_AFFINE = _classes("Rescaling", "Normalization")
_PASS = _AFFINE + _classes("BatchNormalization", "ReLU", "LeakyReLU", "ELU", "PReLU",
                           "Activation")
_ADD = _classes("Add")
#: activations relevance passes through unchanged (the ReLU family)
RELU_FAMILY = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish")
_SUPPORTED = ("Dense, Conv1D/2D/3D, BatchNormalization, average and max pooling (also global), "
              "Add, Concatenate, Flatten, Reshape, Permute, ZeroPadding, Dropout, Rescaling, "
              "Normalization and ReLU-family activations")


def _act_name(layer) -> str:
    act = getattr(layer, "activation", None)
    return "linear" if act is None else getattr(act, "__name__", str(act))


def _divide(r, z, eps: float):
    """``r / z`` stabilised as zennit does: ``z + eps * sign(z)`` (sign 0 -> +1); ``eps = 0``
    gives exact division with 0 where ``z`` is 0 (the zero rule)."""
    if eps == 0:
        return tf.math.divide_no_nan(r, z)
    return r / (z + tf.where(z >= 0, eps, -eps))


def _vjp(lin0: Callable, x, w, s):
    """``s`` pulled back through the bias-free linear map ``lin0(., w)`` at ``x``'s shape.

    The map is linear, so the pullback uses only ``w`` and shapes: the forward recomputed here
    feeds nothing and TensorFlow prunes it from the compiled graph.
    """
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        y = lin0(x, w)
    return tape.gradient(y, x, output_gradients=s)


def _pos(t):
    return tf.maximum(t, 0.0)


def _neg(t):
    return tf.minimum(t, 0.0)


@dataclass(frozen=True)
class _Rules:
    """The numbers the rules use, checked once in the constructor."""

    epsilon: float
    gamma: float
    alpha: float
    beta: float

    def linear(self, rule: str, x, z, r, w, b, lin0, bounds=None, nonneg: bool = False,
               pos_in: bool = False):
        """The relevance at a linear layer's input, for relevance ``r`` at its pre-activation
        output ``z = lin0(x, w) + b`` (``b`` may be ``None``).

        ``nonneg``: ``z`` is the layer's ReLU output instead, and ``r`` is 0 wherever it is 0
        (see ``LRP._relu_shortcut``): the rules then agree with the pre-activation ones and
        need fewer operations (the forward pass keeps its fused convolution+bias+ReLU).
        ``pos_in``: ``x`` is known to be non-negative, so its negative part is skipped.
        """
        bias = (lambda f: 0.0) if b is None else (lambda f: f(b))
        if rule in ("zero", "epsilon"):
            eps = self.epsilon if rule == "epsilon" else 0.0
            if nonneg:
                s = tf.math.divide_no_nan(r, z) if eps == 0 else r / (z + eps)
            else:
                s = _divide(r, z, eps)
            return x * _vjp(lin0, x, w, s)
        wp, wn = _pos(w), _neg(w)
        # inputs split by sign (zennit's form); a non-negative input (a ReLU's) is one part
        parts = [(x, False)] if pos_in else [(_pos(x), False), (_neg(x), True)]

        def z_of(wa, wb):  # wa on the positive inputs, wb on the negative ones
            return tf.add_n([lin0(xi, wb if neg else wa) for xi, neg in parts])

        def r_of(wa, wb, s):
            return tf.add_n([xi * _vjp(lin0, x, wb if neg else wa, s) for xi, neg in parts])

        if rule in ("alpha_beta", "z_plus"):
            alpha, beta = (1.0, 0.0) if rule == "z_plus" else (self.alpha, self.beta)
            out = alpha * r_of(wp, wn, _divide(r, z_of(wp, wn) + bias(_pos), STABILIZER))
            if beta:
                out -= beta * r_of(wn, wp, _divide(r, z_of(wn, wp) + bias(_neg), STABILIZER))
            return out
        if rule == "gamma":
            g = self.gamma
            up, un = w + g * wp, w + g * wn  # positive / negative contributions enhanced
            bp = 0.0 if b is None else b + g * _pos(b)
            bn = 0.0 if b is None else b + g * _neg(b)
            sp = _divide(r, z_of(up, un) + bp, STABILIZER)
            if nonneg:  # no negative outputs: the negative part carries no relevance
                return r_of(up, un, sp)
            sn = tf.where(z < 0, _divide(r, z_of(un, up) + bn, STABILIZER), 0.0)
            return r_of(up, un, tf.where(z > 0, sp, 0.0)) + r_of(un, up, sn)
        if rule == "flat":
            ones = tf.ones_like(w)
            return _vjp(lin0, x, ones, _divide(r, lin0(tf.ones_like(x), ones), STABILIZER))
        if rule == "box":
            low, high = (tf.broadcast_to(v, tf.shape(x)) for v in bounds)
            s = _divide(r, z - lin0(low, wp) - lin0(high, wn), STABILIZER)
            return x * _vjp(lin0, x, w, s) - low * _vjp(lin0, x, wp, s) - high * _vjp(
                lin0, x, wn, s)
        raise AssertionError(rule)  # pragma: no cover - rules are checked in the constructor


def _lin0(layer) -> Callable:
    """The bias-free linear map of a Dense or convolution layer, ``f(x, kernel)``."""
    if isinstance(layer, _CONV):
        pad = None
        if layer.padding == "causal":  # Conv1D: pad the past, then a valid convolution
            left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            pad = ([[0, 0], [left, 0], [0, 0]] if layer.data_format == "channels_last"
                   else [[0, 0], [0, 0], [left, 0]])
        padding = "valid" if pad else layer.padding

        def conv(x, w):
            if pad:
                x = tf.pad(x, pad)
            return keras.ops.conv(x, w, strides=list(layer.strides), padding=padding,
                                  dilation_rate=layer.dilation_rate,
                                  data_format=layer.data_format)
        return conv
    return lambda x, w: keras.ops.matmul(x, w)


def _bias_shape(layer, rank: int) -> tuple:
    if isinstance(layer, _CONV) and layer.data_format == "channels_first":
        return (1, -1) + (1,) * (rank - 2)
    return (-1,)


def _bn_scale_shift(bn):
    """BatchNormalization at inference as ``x * scale + shift`` per channel (float32)."""
    var = tf.cast(bn.moving_variance, tf.float32)
    scale = tf.math.rsqrt(var + bn.epsilon)
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, tf.float32)
    shift = -tf.cast(bn.moving_mean, tf.float32) * scale
    if bn.center:
        shift = shift + tf.cast(bn.beta, tf.float32)
    return scale, shift


def _unbroadcast(t, shape):
    """Sum ``t`` over the axes broadcast to reach it from ``shape`` (Add of unequal shapes)."""
    if t.shape == shape:
        return t
    axes = [i for i, (a, b) in enumerate(zip(t.shape, shape)) if b == 1 and a != 1]
    return tf.reshape(tf.reduce_sum(t, axis=axes, keepdims=True), [-1, *shape[1:]])


# -- the model walk: which layers, which rules --------------------------------------------------
def _leaves(model, prefix: str = ""):
    """``(path, layer, containing model)`` of every leaf layer, nested models expanded (a
    nested subclassed model is a leaf)."""
    for layer in _ordered_layers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model) and _kind(layer) != "subclassed":
            yield from _leaves(layer, prefix + layer.name + "/")
        else:
            yield prefix + layer.name, layer, model


def _head_ids(model) -> set[int]:
    """Ids of the layers that produce the model's outputs (nested heads included)."""
    kind = _kind(model)
    if kind == "sequential":
        ops = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)][-1:]
    elif kind == "functional":
        ops = [t._keras_history.operation for t in model.outputs]
    else:
        return set()
    out: set[int] = set()
    for op in ops:
        if isinstance(op, keras.Model) and _kind(op) != "subclassed":
            out |= _head_ids(op)
        else:
            out.add(id(op))
    return out


def _check_layers(model) -> None:
    """Every layer must be one LRP has a rule for; ValueError names the first that is not."""
    if _kind(model) == "subclassed":
        raise ValueError(
            f"LRP cannot explain subclassed model {model.name!r}: its layers cannot be read "
            "(its call() has no functional graph), and LRP needs a rule per layer. Use a "
            "functional or Sequential model."
        )
    heads = _head_ids(model)
    for path, layer, _ in _leaves(model):
        what = f"LRP cannot explain layer {path!r} ({type(layer).__name__})"
        if isinstance(layer, keras.Model):
            raise ValueError(f"{what}: a subclassed model inside the model hides its layers")
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"{what}: a bare operation has no LRP rule; use a layer "
                             f"({_SUPPORTED})")
        if not isinstance(layer, _LINEAR + _AVERAGE + _MOVE + _PASS + _ADD + (
                keras.layers.Softmax,)):
            raise ValueError(f"{what}: it has no LRP rule. Supported layers: {_SUPPORTED}")
        if isinstance(layer, keras.layers.Softmax) or (
                isinstance(layer, _LINEAR + _classes("Activation"))
                and _act_name(layer) not in RELU_FAMILY):
            act = "softmax" if isinstance(layer, keras.layers.Softmax) else _act_name(layer)
            if id(layer) in heads and act in ("softmax", "sigmoid"):
                continue  # the head's squashing activation is left out
            raise ValueError(
                f"{what}: activation {act!r} has no LRP rule (relevance passes only through "
                f"the ReLU family {list(RELU_FAMILY)}; a softmax or sigmoid is allowed only "
                "as the model's final activation)"
            )
        if getattr(layer, "quantization_mode", None):
            raise ValueError(f"{what}: quantized kernels ({layer.quantization_mode}) are not "
                             "supported")


def _fold_pairs(model) -> dict[int, keras.layers.Layer]:
    """``{id(BatchNormalization): the Dense/Conv it folds into}``: a linear layer without
    activation, called once, whose only reader is the normalisation over its channel axis."""
    pairs: dict[int, keras.layers.Layer] = {}
    for _, layer, owner in _leaves(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or len(
                layer._inbound_nodes) > 1:
            continue
        if _kind(owner) == "sequential":
            seq = [la for la in owner.layers if not isinstance(la, keras.layers.InputLayer)]
            k = seq.index(layer)
            prev = seq[k - 1] if k else None
            readers = 1
        else:
            src = layer._inbound_nodes[0].input_tensors
            prev = src[0]._keras_history.operation if len(src) == 1 else None
            readers = sum(1 for op in owner.operations for node in op._inbound_nodes
                          if any(t is src[0] for t in node.input_tensors))
            readers += sum(1 for t in owner.outputs if t is src[0])  # a model output too
        if not isinstance(prev, _LINEAR) or _act_name(prev) != "linear" or readers != 1 or len(
                prev._inbound_nodes) > 1:
            continue
        axis = layer.axis[0] if isinstance(layer.axis, list | tuple) else layer.axis
        rank = len(prev.output.shape)
        channel = 1 if isinstance(prev, _CONV) and prev.data_format == "channels_first" else (
            rank - 1)
        if axis % rank == channel:
            pairs[id(layer)] = prev
    return pairs


def _relu_shortcut(model, folds: dict) -> bool:
    """Whether the rules may read a fused ReLU's output instead of its pre-activation.

    They may when relevance is 0 wherever that output is 0: every rule but flat and box (which
    see only the raw input) hands a layer relevance in proportion to its input values, and so
    do pooling, Add and the ReLU family. Only a layer that passes relevance unchanged while
    mapping 0 elsewhere breaks this: a BatchNormalization not folded, or a Rescaling or
    Normalization past the inputs.
    """
    at_input = {id(op) for k in range(len(model.inputs)) for _, op in input_consumers(model, k)}
    for _, layer, _ in _leaves(model):
        if isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in folds:
            return False
        if isinstance(layer, _AFFINE) and id(layer) not in at_input:
            return False
    return True


class _RelevanceTap(GraphTap):
    """``GraphTap`` whose leaf layers run as relevance operations (see the module doc).

    Built per trace by ``LRP``: ``run`` returns the logits. With ``record_layers``, ``probes``
    then holds, per layer, a zero tensor of shape ``(N, 1, ...)`` added to the layer's output,
    whose gradient is the layer's total relevance per sample.
    """

    def __init__(self, model, lrp: LRP, tape, raw: dict) -> None:
        super().__init__(model)
        self.lrp = lrp
        self.tape = tape
        self.raw = raw  # id(tensor) -> (tensor, low, high): tensors that are the raw input
        self.pending: dict[int, tuple] = {}  # id(linear output) -> (layer, its input)
        self.nonneg: dict[int, tf.Tensor] = {}  # tensors known to be >= 0 (ReLU outputs)
        self.probes: list[tuple[str, tf.Tensor]] = []
        self.layer_rules: dict[str, str] = {}

    def _step(self, layer, prefix, args, kwargs, wanted, captured, head, training, heads):
        if isinstance(layer, keras.Model) and _kind(layer) != "subclassed":
            return super()._step(layer, prefix, args, kwargs, wanted, captured, head,
                                 training, heads)
        if head:
            heads.append(_activation_name(layer))
        path = prefix + layer.name
        out = self._relevance(layer, path, args, kwargs, head)
        self._mark_nonneg(layer, args[0], out)
        if (self.lrp.record_layers and isinstance(out, tf.Tensor) and id(out) not in self.pending
                and out.dtype.is_floating):
            probe = tf.zeros(tf.concat([tf.shape(out)[:1], tf.ones([len(out.shape) - 1],
                                                                   tf.int32)], 0), out.dtype)
            self.tape.watch(probe)
            self.probes.append((path, probe))
            new = out + probe
            if id(out) in self.raw:  # keep the marks on the probed tensor
                self.raw[id(new)] = (new, *self.raw[id(out)][1:])
            if id(out) in self.nonneg:
                self.nonneg[id(new)] = new
            out = new
        return out

    def _relevance(self, layer, path, args, kwargs, head):
        lrp = self.lrp
        x = args[0]
        if isinstance(layer, keras.layers.Softmax) or (
                head and isinstance(layer, keras.layers.Activation)
                and _act_name(layer) in ("softmax", "sigmoid")):
            return x  # the head's squashing activation: its input is the logits
        if isinstance(layer, _LINEAR):
            if id(layer) in lrp._folded_linears:
                out = _call_layer(layer, args, kwargs, False)  # feeds only the folded BN
                self.pending[id(out)] = (layer, x)
                return out
            w = tf.cast(layer.kernel, tf.float32)
            b = None if layer.bias is None else tf.cast(layer.bias, tf.float32)
            squash = head and _act_name(layer) in ("softmax", "sigmoid")
            act = keras.activations.linear if squash else layer.activation
            return self._linear(layer, path, x, w, b, act)
        if isinstance(layer, keras.layers.BatchNormalization) and id(x) in self.pending:
            linear, xin = self.pending[id(x)]
            scale, shift = _bn_scale_shift(layer)
            w = tf.cast(linear.kernel, tf.float32) * scale
            b = shift if linear.bias is None else tf.cast(linear.bias, tf.float32) * scale + shift
            return self._linear(linear, path, xin, w, b, keras.activations.linear)
        if isinstance(layer, _AVERAGE):
            return self._average(layer, x, kwargs)
        if isinstance(layer, _ADD):
            return self._add(list(x))
        if isinstance(layer, _PASS):
            out = _pass(lambda t: tf.cast(_call_layer(layer, (t,), kwargs, False), tf.float32),
                        tf.cast(x, tf.float32))
            if isinstance(layer, _AFFINE):
                self._carry_range(layer, x, out, monotone=True)
            return out
        out = _call_layer(layer, args, kwargs, False)  # _MOVE: the ordinary gradient
        if isinstance(layer, _SHAPE):
            self._carry_range(layer, x, out)
        return out

    def _mark_nonneg(self, layer, x, out) -> None:
        """Remember ``out`` as non-negative when the layer makes it so (a ReLU) or keeps it
        so (pooling, shape layers, Add and Concatenate of non-negative tensors)."""
        if not isinstance(out, tf.Tensor):
            return
        ins = x if isinstance(x, list | tuple) else [x]
        relu = _act_name(layer) in ("relu", "relu6") or (
            isinstance(layer, keras.layers.ReLU) and not layer.negative_slope
            and layer.threshold >= 0)
        keeps = isinstance(layer, _MOVE + _AVERAGE + _ADD) and all(
            isinstance(t, tf.Tensor) and id(t) in self.nonneg for t in ins)
        if relu or keeps:
            self.nonneg[id(out)] = out

    def _carry_range(self, layer, x, out, monotone: bool = False) -> None:
        """Mark ``out`` as raw input when ``x`` is, pushing the value range through ``layer``."""
        if not isinstance(x, tf.Tensor) or id(x) not in self.raw:
            return
        _, low, high = self.raw[id(x)]
        lo = tf.cast(_call_layer(layer, (low,), {}, False), tf.float32)
        hi = tf.cast(_call_layer(layer, (high,), {}, False), tf.float32)
        if monotone:  # a negative scale swaps the ends
            lo, hi = tf.minimum(lo, hi), tf.maximum(lo, hi)
        self.raw[id(out)] = (out, lo, hi)

    def _linear(self, layer, path, x, w, b, act):
        lrp = self.lrp
        first = isinstance(x, tf.Tensor) and id(x) in self.raw
        rule = lrp._rule_for(layer, first)
        self.layer_rules[path] = rule
        bounds = self.raw[id(x)][1:] if rule == "box" else None
        lin0 = _lin0(layer)
        rank = len(x.shape)
        bias = None if b is None else tf.reshape(b, _bias_shape(layer, rank))
        rules = lrp._rules

        shortcut = (getattr(act, "__name__", "") == "relu" and lrp._relu_shortcut
                    and not lrp._exact)
        pos_in = isinstance(x, tf.Tensor) and id(x) in self.nonneg and not lrp._exact

        @tf.custom_gradient
        def op(t):
            z = lin0(t, w) if bias is None else lin0(t, w) + bias
            a = tf.cast(act(z), tf.float32)

            def grad(r):
                if shortcut:
                    return rules.linear(rule, t, a, r, w, bias, lin0, bounds, nonneg=True,
                                        pos_in=pos_in)
                return rules.linear(rule, t, z, r, w, bias, lin0, bounds, pos_in=pos_in)
            return a, grad

        return op(tf.cast(x, tf.float32))

    def _average(self, layer, x, kwargs):
        eps = self.lrp._rules.epsilon if self.lrp.rule in ("zero", "epsilon") else STABILIZER
        pool = lambda t, _=None: tf.cast(_call_layer(layer, (t,), kwargs, False), tf.float32)  # noqa: E731

        @tf.custom_gradient
        def op(t):
            z = pool(t)

            def grad(r):
                return t * _vjp(pool, t, None, _divide(r, z, eps))
            return z, grad

        return op(tf.cast(x, tf.float32))

    def _add(self, xs):
        eps = self.lrp._rules.epsilon if self.lrp.rule in ("zero", "epsilon") else STABILIZER
        shapes = [t.shape for t in xs]

        @tf.custom_gradient
        def op(*ts):
            z = ts[0]
            for t in ts[1:]:
                z = z + t

            def grad(r):
                s = _divide(r, z, eps)
                return [_unbroadcast(t * s, shape) for t, shape in zip(ts, shapes)]
            return z, grad

        return op(*[tf.cast(t, tf.float32) for t in xs])


def _pass(fn, x):
    """``fn(x)`` whose backward passes relevance unchanged (zennit's ``Pass``)."""
    @tf.custom_gradient
    def op(t):
        def grad(r, variables=None):  # a layer with weights (BatchNormalization, PReLU)
            return (r, [None] * len(variables)) if variables else r
        return fn(t), grad
    return op(x)


class LRP(Explainer):
    """Layer-wise relevance propagation: ``relevance = LRP(model, rule="epsilon")(x, targets)``.

    The explained class's pre-activation score is redistributed layer by layer down to the
    input by the chosen rule; the map is the input relevance summed over channels (signed when
    raw). See the module doc for how each kind of layer is handled.

    Args:
        model: a built functional or Sequential model of the layers listed in the module doc.
        rule: the rule of every Dense and convolution layer: ``"zero"`` (LRP-0),
            ``"epsilon"`` (LRP-epsilon), ``"gamma"`` (favours positive contributions by
            ``gamma``), ``"alpha_beta"`` (positive parts weighted ``alpha``, negative
            ``beta``) or ``"z_plus"`` (positive contributions only; alpha 1, beta 0).
        epsilon: the epsilon rule's stabiliser (and the one of average pooling and Add under
            the zero and epsilon rules); the zero rule uses none.
        gamma: the gamma rule's weight of positive contributions.
        alpha, beta: the alpha-beta rule's weights; ``alpha - beta`` must be 1.
        composite: instead of one rule, a rule per kind of layer, as zennit names them:
            ``"epsilon_plus_flat"`` (flat on the first linear layer, z-plus on convolutions,
            epsilon on dense layers) or ``"epsilon_gamma_box"`` (the box rule within
            ``low``..``high`` on the first linear layer, gamma on convolutions, epsilon on
            dense layers). ``rule`` is then not used.
        low, high: the range of the input values (a number or an array that broadcasts to one
            sample), for the box rule; e.g. 0 and 1 for pixels scaled to [0, 1].
        record_layers: also record each layer's total relevance (``last_layer_relevance``);
            off by default, as it costs an addition and a sum per layer.
        output, normalize, batch_size: as ``Explainer``.

    Attributes:
        layer_rules: ``{layer path: rule}`` for each Dense/convolution layer (a folded
            BatchNormalization appears under its own path).
        last_conservation: per sample of the latest call, the input relevance's sum divided
            by the explained score (1.0 when relevance is conserved; biases and the
            stabilisers absorb some, and NaN for a zero score).
        last_layer_relevance: with ``record_layers``, per sample of the latest call, the total
            relevance at each layer's output, ``{layer path: (N,)}`` in call order (else
            ``None``).

    Raises:
        ValueError: an unknown rule or composite, a negative or non-finite ``epsilon`` or
            ``gamma``, ``alpha - beta`` not 1 or a negative one, ``low > high``, or a layer LRP
            has no rule for (the message names it), besides ``Explainer``'s errors.
    """

    signed = True

    def __init__(self, model: keras.Model, rule: str = "epsilon", epsilon: float = 1e-6,
                 gamma: float = 0.25, alpha: float = 2.0, beta: float = 1.0,
                 composite: str | None = None, low: float | ArrayLike = 0.0,
                 high: float | ArrayLike = 1.0, record_layers: bool = False,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown LRP rule {rule!r}; choices: {list(RULES)}")
        if composite is not None and composite not in COMPOSITES:
            raise ValueError(f"unknown LRP composite {composite!r}; choices: {list(COMPOSITES)}"
                             " (or composite=None and one rule=)")
        for name, v in (("epsilon", epsilon), ("gamma", gamma), ("alpha", alpha),
                        ("beta", beta)):
            if not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number; got {v!r}")
        if not np.isclose(alpha - beta, 1.0):
            raise ValueError(f"the alpha-beta rule needs alpha - beta = 1 (relevance is "
                             f"conserved only then); got alpha={alpha}, beta={beta}")
        lo, hi = np.asarray(low, np.float32), np.asarray(high, np.float32)
        if lo.shape != hi.shape and (lo.ndim and hi.ndim):
            raise ValueError(f"low and high must have one shape; got {lo.shape}, {hi.shape}")
        if np.any(lo > hi):
            raise ValueError("low must not exceed high (the input's value range)")
        GraphTap(model)  # the built check, before walking the layers
        _check_layers(model)
        self.rule, self.composite = rule, composite
        self.record_layers = bool(record_layers)
        self._rules = _Rules(0.0 if rule == "zero" and composite is None else float(epsilon),
                             float(gamma), float(alpha), float(beta))
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size)
        self._bounds = []
        for spec in self.inputs:
            shape = tuple(1 if d is None else d for d in spec.shape)
            try:
                self._bounds.append(tuple(np.broadcast_to(v, shape)[None] for v in (lo, hi)))
            except ValueError:
                raise ValueError(f"low/high of shape {lo.shape} do not broadcast to one sample "
                                 f"of input {spec.name!r} {spec.shape}") from None
        self._folds = _fold_pairs(model)
        self._folded_linears = {id(v) for v in self._folds.values()}
        self._relu_shortcut = _relu_shortcut(model, self._folds)
        self._exact = False  # True: never use the ReLU shortcuts (the tests compare both)
        self.layer_rules: dict[str, str] = {}
        self.last_conservation: np.ndarray | None = None
        self.last_layer_relevance: dict[str, np.ndarray] | None = None
        self._probe_paths: list[str] = []
        # One eager pass on two random samples: learns each layer's rule and fails early.
        xs = [tf.cast(a, tf.float32) for a in _probe_batch(self.inputs)]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            self._forward(xs, tape)

    def _rule_for(self, layer, first: bool) -> str:
        if self.composite is None:
            return self.rule
        first_rule, conv_rule, dense_rule = COMPOSITES[self.composite]
        if first:
            return first_rule
        return conv_rule if isinstance(layer, _CONV) else dense_rule

    def _forward(self, xs, tape):
        """The relevance forward pass: logits, and the tap (probes, rules used)."""
        for a in xs:
            tape.watch(a)
        raw = {id(a): (a, tf.constant(lo), tf.constant(hi)) for a, (lo, hi) in
               zip(xs, self._bounds)}
        tap = _RelevanceTap(self.model, self, tape, raw)
        out, _ = tap.run(list(xs), linear=True)
        logits = tf.cast(select_output(out, self.output, self.model), tf.float32)
        if self._flat_output:
            logits = tf.reshape(logits, (-1, 1))
        self.layer_rules = dict(tap.layer_rules)
        self._probe_paths = [p for p, _ in tap.probes]
        return logits, tap

    def _traced(self, xs, targets):
        self.trace_count += 1  # runs only while tracing
        xs = [tf.cast(a, tf.float32) for a in xs]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            logits, tap = self._forward(xs, tape)
        used = self._resolve_targets(logits, targets)
        score = self._score(logits, used)
        # relevance starts as the explained score on the explained unit (the zero rule's R/z
        # at the output is then 1: the gradient, as LRP-0 = Gradient x Input requires)
        hot = tf.one_hot(used, self.n_classes) if self.n_classes > 1 else tf.ones_like(logits)
        probes = [p for _, p in tap.probes]
        grads = tape.gradient(logits, xs + probes, output_gradients=hot * score[:, None],
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        rel = grads[:len(xs)]
        total = tf.add_n([tf.reduce_sum(r, axis=list(range(1, len(r.shape)))) for r in rel])
        layers = (tf.stack([tf.reshape(g, (-1,)) for g in grads[len(xs):]], axis=1) if probes
                  else tf.zeros((tf.shape(score)[0], 0)))
        maps = [self._finish(self._reduce(r, m.channel_axis)) for r, m in zip(rel, self.maps_for)]
        return tuple(maps), used, total, score, layers

    def _keep_extras(self, extras: list) -> None:
        total, score, layers = extras
        with np.errstate(divide="ignore", invalid="ignore"):
            self.last_conservation = np.where(score != 0, total / score, np.nan).astype(
                np.float32)
        if self.record_layers:
            self.last_layer_relevance = {p: layers[:, k]
                                         for k, p in enumerate(self._probe_paths)}
