"""Gradient attributions: Saliency, SmoothGrad, Integrated Gradients and Gradient x Input.

SmoothGrad and Integrated Gradients evaluate many copies of each sample. They do it in chunks
of ``batch_size // N`` copies inside one compiled loop, so a call is one ``tf.function`` run
whose memory never exceeds ``batch_size`` samples (plus the batch itself).

Where the gradient is taken (an "attribution point"): each model input itself, except integer
token ids, whose gradient does not exist: for them the point is the output of the
``Embedding`` that reads them (as captum's ``LayerIntegratedGradients``), and the map has one
score per token. ``layer=`` moves the point to any layer's output. The channel (or embedding)
axis of a point is summed for the signed methods (Gradient x Input, Integrated Gradients) and
reduced by its maximum for the unsigned ones (of ``|gradient|``). uint8 pixels are fed as exact
float32 values, so the gradient is taken at the first float tensor, the input itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.explain.base import Explainer, _probe_batch, chunk_size, resolve_layer

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: the gradient methods, for error messages about models the CAM methods cannot explain
GRADIENT_METHODS = "Saliency, SmoothGrad, IntegratedGradients, GradientInput"


@dataclass(frozen=True)
class _Point:
    """Where gradients are taken: model input ``index``, or the output of ``layer``."""

    index: int | None
    layer: str | None
    channel_axis: bool
    name: str


class Saliency(Explainer):
    """Vanilla gradient saliency (Simonyan et al. 2014): ``max_c |d score / d x|`` per pixel.

    ``maps = Saliency(model)(x, targets=None)``.

    Args:
        model, output, normalize, batch_size: as ``Explainer``.
        layer: attribute to this layer's output (a name or path) instead of the inputs; the map
            then has the layer's shape without its last (channel) axis. ``None``: each input,
            or the ``Embedding`` output for integer token ids (see the module doc).

    Attributes:
        points: the attribution points, one per returned map (``.name``: input or layer).

    Raises:
        ValueError: ``layer`` is unknown, or is given for a subclassed model (its layers cannot
            be read); an input has no gradient (e.g. integer ids without a readable
            ``Embedding``), besides ``Explainer``'s errors.
    """

    def __init__(self, model: keras.Model, output: int | str | None = None,
                 normalize: bool = True, batch_size: int = 256,
                 layer: str | None = None) -> None:
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size)
        self.points = self._make_points(layer)
        self._check_differentiable()

    # -- set-up ---------------------------------------------------------------------------------
    def _make_points(self, layer: str | None) -> list[_Point]:
        name = type(self).__name__
        if layer is not None:
            if self.tap.kind == "subclassed":
                raise ValueError(
                    f"{name}: model {self.model.name!r} is subclassed, so its inner layers "
                    "cannot be read (its call() has no functional graph); leave layer=None to "
                    "attribute to the inputs"
                )
            info = resolve_layer(self.layers, layer)
            return [_Point(None, info.path, len(info.output_shape) >= 3, info.path)]
        return [_Point(m.index, m.layer, m.channel_axis or m.layer is not None, m.layer or m.name)
                for m in self.maps_for]

    def _check_differentiable(self) -> None:
        """One eager gradient on two random samples: every point must receive a gradient."""
        xs = [tf.cast(a, tf.int32) if m.kind == "tokens" else tf.cast(a, tf.float32)
              for a, m in zip(_probe_batch(self.inputs), self.maps_for)]
        with tf.GradientTape() as tape:
            logits, vals = self._run_points(xs, tape=tape)
            score = tf.reduce_sum(logits)
        grads = tape.gradient(score, vals)
        dead = [p for p, g in zip(self.points, grads) if g is None]
        if dead:
            spec = self.inputs[dead[0].index] if dead[0].index is not None else None
            why = (f"input {spec.name!r} has dtype {spec.dtype}, and no Embedding layer that "
                   "reads it can be found (a subclassed model hides it)"
                   if spec is not None and spec.integer else
                   "the score does not depend on it through differentiable operations")
            raise ValueError(
                f"{type(self).__name__} cannot take a gradient at {dead[0].name!r}: {why}. "
                "Integer ids need a functional or Sequential model whose Embedding reads them."
            )

    # -- the forward pass with the points exposed ----------------------------------------------
    def _run_points(self, xs, subs=None, tape=None):
        """Run the model; point values come from ``subs`` (one tensor per point) when given.

        Returns the float32 logits and the tensors at the points (watched on ``tape``).
        """
        feed = list(xs)
        vals: list = [None] * len(self.points)
        replace = {}
        for j, p in enumerate(self.points):
            if p.layer is None:
                v = subs[j] if subs is not None else feed[p.index]
                if tape is not None:
                    tape.watch(v)
                feed[p.index] = v
                vals[j] = v
            else:
                def at_layer(out, j=j):
                    v = subs[j] if subs is not None else out
                    if tape is not None:
                        tape.watch(v)
                    vals[j] = v
                    return v
                replace[p.layer] = at_layer
        logits, _ = self._logits(feed, replace=replace)
        return logits, vals

    def _maps(self, arrays):
        """Reduce each point's attribution to a map; one map per point."""
        return [self._reduce(a, p.channel_axis) for a, p in zip(arrays, self.points)]

    def _input_grads(self, xs, targets):
        with tf.GradientTape() as tape:
            logits, vals = self._run_points(xs, tape=tape)
            used = self._resolve_targets(logits, targets)
            score = self._score(logits, used)
        grads = tape.gradient(score, vals)
        return [tf.cast(g, tf.float32) for g in grads], used, vals

    def _compute(self, xs, targets):
        grads, used, _ = self._input_grads(xs, targets)
        return self._maps([tf.abs(g) for g in grads]), used


class GradientInput(Saliency):
    """Gradient x Input (Shrikumar et al. 2016): ``sum_c x * d score / d x``; signed when raw.

    Arguments as ``Saliency``; at an ``Embedding`` the product is summed over the embedding
    axis, one score per token.
    """

    signed = True

    def _compute(self, xs, targets):
        grads, used, vals = self._input_grads(xs, targets)
        return self._maps([tf.cast(v, tf.float32) * g for v, g in zip(vals, grads)]), used


def _tile(a, k: int):
    """``k`` copies of a batch, copy-major: row ``c * N + i`` is sample ``i``."""
    return tf.tile(a, [k] + [1] * (len(a.shape) - 1))


class _Repeated(Saliency):
    """Base for methods that average gradients over ``total`` perturbed copies of each sample."""

    def _averaged_grads(self, xs, logits, vals, targets, total: int, make_copies):
        """Mean gradient per point over copies; ``make_copies(j, k, p)`` -> (k, N, ...) of
        point ``p``'s values, for chunk ``j``. ``logits``/``vals``: the batch's own."""
        used = self._resolve_targets(logits, targets)
        n = xs[0].shape[0]
        k = chunk_size(total, n, self.batch_size)
        accs = [tf.zeros(v.shape, tf.float32) for v in vals]
        tiled = tf.tile(used, [k])
        feed = [_tile(a, k) for a in xs]
        for j in tf.range(total // k):
            subs = [tf.reshape(make_copies(j, k, p), (k * n, *v.shape[1:]))
                    for p, v in enumerate(vals)]
            with tf.GradientTape() as tape:
                lg, pts = self._run_points(feed, subs=subs, tape=tape)
                score = self._score(lg, tiled)
            grads = tape.gradient(score, pts)
            accs = [acc + tf.reduce_sum(tf.reshape(tf.cast(g, tf.float32),
                                                   (k, n, *acc.shape[1:])), axis=0)
                    for acc, g in zip(accs, grads)]
        return [acc / float(total) for acc in accs], used

    def _values(self, xs):
        """The logits and float32 point values of a batch (no tape)."""
        logits, vals = self._run_points(xs)
        return logits, [tf.cast(v, tf.float32) for v in vals]


class SmoothGrad(_Repeated):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of each sample.

    Args:
        model, output, normalize, batch_size, layer: as ``Saliency``.
        num_samples: noisy copies per sample.
        noise: the noise's standard deviation as a fraction of each sample's value range
            (the paper recommends 0.1-0.2); for token ids, of the embedding's range.
        seed: seeds the noise; the same seed gives the same maps.

    The map is ``max_c |mean gradient|`` per pixel, as for ``Saliency``.

    Raises:
        ValueError: ``num_samples`` < 1 or ``noise`` < 0, besides ``Saliency``'s errors.
    """

    def __init__(self, model: keras.Model, num_samples: int = 20, noise: float = 0.2,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256, seed: int = 0, layer: str | None = None) -> None:
        positive_int(num_samples, "num_samples")
        if not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a non-negative fraction of the range; got {noise!r}")
        self.num_samples, self.noise, self.seed = int(num_samples), float(noise), int(seed)
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size,
                         layer=layer)

    def _compute(self, xs, targets):
        logits, vals = self._values(xs)
        sigmas = []
        for v in vals:
            axes = list(range(1, len(v.shape)))
            sigmas.append(self.noise * (tf.reduce_max(v, axis=axes, keepdims=True)
                                        - tf.reduce_min(v, axis=axes, keepdims=True)))

        def copies(j, k, p):
            v = vals[p]
            eps = tf.random.stateless_normal((k, *v.shape), seed=tf.stack([self.seed + p, j]))
            return v[None] + eps * sigmas[p][None]

        grads, used = self._averaged_grads(xs, logits, vals, targets, self.num_samples, copies)
        return self._maps([tf.abs(g) for g in grads]), used


class IntegratedGradients(_Repeated):
    """Integrated Gradients (Sundararajan et al. 2017): path integral from a baseline to x.

    Args:
        model, output, normalize, batch_size, layer: as ``Saliency``.
        steps: points on the straight path (midpoint Riemann sum).
        baseline: ``None`` (zeros; token id 0), a number (for token ids: the id), an array of
            one sample's shape, or for several inputs a list (input order) or dict (by name)
            of those. At an ``Embedding`` (or ``layer=``) the path runs from the layer's output
            for the baseline input (the embedding of the baseline id) to its output for x.

    The raw map (``normalize=False``) is ``sum_c (x - baseline) * mean gradient``, signed; the
    sum over every map (all inputs, all tokens) approximates ``score(x) - score(baseline)``
    (completeness). After each call ``last_convergence_delta`` holds, per sample,
    ``score(x) - score(baseline) - sum(maps)``. At a layer the baseline's score is taken with
    the layer's output for the baseline and everything else (other inputs, the padding mask
    of a masking ``Embedding``) from x.

    Raises:
        ValueError: ``steps`` < 1, or a baseline of the wrong shape or for unknown inputs.
    """

    signed = True

    def __init__(self, model: keras.Model, steps: int = 32,
                 baseline: float | ArrayLike | list | dict | None = None,
                 output: int | str | None = None, normalize: bool = True,
                 batch_size: int = 256, layer: str | None = None) -> None:
        positive_int(steps, "steps")
        self.steps = int(steps)
        self._baseline_arg = baseline
        super().__init__(model, output=output, normalize=normalize, batch_size=batch_size,
                         layer=layer)
        self.baselines = self._check_baseline(baseline)
        self.baseline = self.baselines[0]
        self.last_convergence_delta: np.ndarray | None = None

    def _check_baseline(self, baseline) -> list[np.ndarray]:
        names = [s.name for s in self.inputs]
        if isinstance(baseline, Mapping):
            unknown = sorted(set(baseline) - set(names))
            if unknown:
                raise ValueError(f"baseline names unknown inputs {unknown}; inputs: {names}")
            parts = [baseline.get(n) for n in names]
        elif isinstance(baseline, list | tuple) and len(self.inputs) > 1:
            if len(baseline) != len(names):
                raise ValueError(
                    f"baseline has {len(baseline)} entries; the model's inputs are {names}")
            parts = list(baseline)
        else:
            parts = [baseline] * len(names)
        out = []
        for spec, m, b in zip(self.inputs, self.maps_for, parts):
            dtype = np.int32 if m.kind == "tokens" else np.float32
            arr = np.asarray(0 if b is None else b, dtype=dtype)
            if arr.ndim and arr.shape != tuple(spec.shape):
                raise ValueError(
                    f"baseline must be a number or one sample of shape {spec.shape}"
                    + ("" if len(names) == 1 else f" for input {spec.name!r}")
                    + f"; got shape {arr.shape}"
                )
            out.append(arr)
        return out

    def _traced(self, xs, targets):
        self.trace_count += 1
        xs = list(xs)
        base_feed = [tf.broadcast_to(tf.constant(b), tf.shape(a)) for a, b in
                     zip(xs, self.baselines)]
        logits, vals = self._values(xs)
        _, base_vals = self._values(base_feed)
        # The baseline's score with x's other inputs (and x's mask: an all-padding baseline
        # of a masking Embedding would be undefined), as captum's layer attributions do.
        base_logits, _ = self._run_points(xs, subs=base_vals)
        diffs = [v - b for v, b in zip(vals, base_vals)]
        alphas = (tf.range(self.steps, dtype=tf.float32) + 0.5) / float(self.steps)

        def copies(j, k, p):
            a = tf.reshape(alphas[j * k:(j + 1) * k], [-1] + [1] * len(vals[p].shape))
            return base_vals[p][None] + a * diffs[p][None]

        grads, used = self._averaged_grads(xs, logits, vals, targets, self.steps, copies)
        attrs = [d * g for d, g in zip(diffs, grads)]
        total = tf.add_n([tf.reduce_sum(a, axis=list(range(1, len(a.shape)))) for a in attrs])
        delta = self._score(logits, used) - self._score(base_logits, used) - total
        return tuple(self._finish(m) for m in self._maps(attrs)), used, delta

    def _keep_extras(self, extras: list) -> None:
        self.last_convergence_delta = extras[0]
