"""Adversarial robustness: accuracy under FGSM and PGD (L-infinity) attacks, per epsilon.

Hand-written on purpose: both attacks are a few lines on the model's gradients, and the
libraries that offer them do not take Keras 3 models (Foolbox and ART's TensorFlow paths
need Keras 2 / ``tf.keras``; torchattacks and AutoAttack need PyTorch); CleverHans is
unmaintained.

The attacks climb the crossentropy of the pre-softmax scores (the model's last softmax or
sigmoid left out, as the attribution engine does: saturated probabilities give vanishing
gradients), the squared error for regression. Inputs stay in the data's value range; epsilon
is a fraction of that range. PGD (Madry et al. 2018) starts at a random point of the
epsilon-ball and takes ``steps`` signed-gradient steps of ``step_size`` (epsilon / 4 by
default), projecting back after each. A sample counts as broken when any PGD iterate is
misclassified, the usual way of reporting PGD, so more steps never report a stronger model.
Everything runs in one ``tf.function`` per attack, traced once (epsilon is a tensor), and the
compiled attacks of the last few models are kept (``_compiled``): calling ``adversarial`` again
on the same model, as a sweep over settings or a report after a notebook run does, traces
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_audit._checks import positive_int
from keras_audit.audit._cache import ModelCache
from keras_audit.audit._labels import as_label_array, label_spec
from keras_audit.audit._scoring import OutputScorer
from keras_audit.audit.corruptions import check_range
from keras_audit.explain import GraphTap
from keras_audit.explain.forward import CompiledForward, check_batch, select_output
from keras_audit.render.figures import new_figure

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: the attacks
ATTACKS = ("fgsm", "pgd")
#: the default epsilons, as fractions of the input's value range
DEFAULT_EPSILONS = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)


def check_attacks(attack: str | Sequence[str]) -> tuple[str, ...]:
    """``attack`` as a tuple of names from ``ATTACKS``.

    Raises:
        ValueError: an unknown attack or none (the message lists the choices).
    """
    names = [attack] if isinstance(attack, str) else list(attack)
    bad = [a for a in names if a not in ATTACKS]
    if bad or not names:
        raise ValueError(f"unknown attack(s) {bad or names}; choices: {list(ATTACKS)}")
    return tuple(dict.fromkeys(names))


def check_epsilons(epsilons: float | Sequence[float]) -> tuple[float, ...]:
    """``epsilons`` as sorted unique fractions in ``[0, 1]``.

    Raises:
        ValueError: empty, not numbers, or outside ``[0, 1]``.
    """
    if isinstance(epsilons, int | float | np.number) and not isinstance(epsilons, bool):
        epsilons = (epsilons,)
    values = list(epsilons)
    if not values:
        raise ValueError("epsilons is empty; give fractions of the input range, e.g. (0, 8/255)")
    for e in values:
        if isinstance(e, bool) or not isinstance(e, int | float | np.number) or not (
                0.0 <= float(e) <= 1.0):
            raise ValueError(f"epsilon {e!r} is not a fraction of the input range in [0, 1]")
    return tuple(sorted({float(e) for e in values}))


def epsilon_key(eps: float) -> str:
    """How report.json names an epsilon: ``"8/255"`` when it is a whole number of 255ths,
    else the number with ``_`` for the decimal point (dotted metric paths stay unambiguous)."""
    k = eps * 255.0
    if abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:.6g}".replace(".", "_")

#: how many (model, settings) entries ``_CACHE`` keeps; each holds its model alive
CACHE_SIZE = 4
#: compiled attacks and forward passes of the last models attacked (see ``_compiled``)
_CACHE = ModelCache(CACHE_SIZE)
#: PGD with at most this many steps is unrolled in its graph (see ``_Attack``)
UNROLL_MAX = 20


def _compiled(model: keras.Model, key: tuple, build: Callable[[], object]) -> object:
    """The object ``build()`` made for ``model`` and ``key`` (an attack, a forward pass), kept
    for the ``CACHE_SIZE`` most recent entries: a repeated call reuses its trace."""
    return _CACHE.get(model, key, build)


class _Attack:
    """The compiled FGSM and PGD of one model, on its pre-activation scores."""

    def __init__(self, model: keras.Model, task: str, lo, hi, sample_shape: tuple,
                 label_shape: tuple, unroll: int | None = None) -> None:
        self.model, self.task = model, task
        # PGD's steps written out in the graph (``unroll`` of them) rather than a while loop:
        # measured 1.24x -> 0.99x of 10 compiled forward+backward passes on the reference CNN,
        # because Grappler optimises across the steps; a longer trace, so only up to UNROLL_MAX
        self.unroll = unroll
        self.tap = GraphTap(model)
        self.lo = tf.constant(lo, tf.float32)
        self.hi = tf.constant(hi, tf.float32)
        self.sample_shape = tuple(sample_shape)
        # epsilon and step per input value (tables: per feature), so shapes stay known
        spec = [tf.TensorSpec((None, *sample_shape), tf.float32),
                tf.TensorSpec((None, *label_shape), tf.float32),
                tf.TensorSpec(sample_shape, tf.float32), tf.TensorSpec(sample_shape, tf.float32),
                tf.TensorSpec((), tf.int32), tf.TensorSpec((2,), tf.int32)]
        self.trace_count = 0
        # autograph only for PGD's while loop (a long attack); an unrolled one and FGSM have
        # no tensor-dependent control flow, and autograph's conversion slows their trace
        self.pgd = tf.function(self._pgd, input_signature=spec, autograph=unroll is None)
        self.fgsm = tf.function(self._fgsm, input_signature=spec, autograph=False)

    def _scores(self, x):
        out, _ = self.tap.run(x, linear=True)
        return select_output(out, None, self.model)

    def _loss_and_wrong(self, x, y):
        """Per-sample loss to climb, and whether each sample is misclassified (regression:
        never; its loss is the measure)."""
        z = self._scores(x)
        if self.task == "regression":
            yt = tf.reshape(y, tf.shape(z))
            return tf.reduce_sum(tf.reshape(tf.square(z - yt), (tf.shape(z)[0], -1)), axis=1), \
                tf.zeros(tf.shape(z)[:1], tf.bool)
        if self.task == "binary":
            logit = tf.reshape(z, (-1,))
            loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logit)
            return loss, tf.cast(logit > 0, tf.float32) != y
        labels = tf.cast(y, tf.int32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)
        return loss, tf.argmax(z, axis=-1, output_type=tf.int32) != labels

    def _grad(self, x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, wrong = self._loss_and_wrong(x, y)
            total = tf.reduce_sum(loss)
        return tape.gradient(total, x), wrong

    def _clip(self, x_adv, x, eps):
        x_adv = tf.clip_by_value(x_adv, x - eps, x + eps)
        return tf.clip_by_value(x_adv, self.lo, self.hi)

    def _fgsm(self, x, y, eps, step, steps, seed):
        self.trace_count += 1
        g, _ = self._grad(x, y)
        return self._clip(x + eps * tf.sign(g), x, eps)

    def _pgd(self, x, y, eps, step, steps, seed):
        self.trace_count += 1
        start = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0) * eps
        x_adv = self._clip(x + start, x, eps)
        broken = tf.zeros(tf.shape(x)[:1], tf.bool)
        kept = x_adv
        for _ in (range(self.unroll) if self.unroll is not None else tf.range(steps)):
            g, wrong = self._grad(x_adv, y)
            # keep the first iterate that fooled the model
            first = tf.logical_and(wrong, tf.logical_not(broken))
            kept = tf.where(tf.reshape(first, (-1, *[1] * (len(x.shape) - 1))), x_adv, kept)
            broken = tf.logical_or(broken, wrong)
            x_adv = self._clip(x_adv + step * tf.sign(g), x, eps)
        # never fooled on the way: the last iterate (fooling or not)
        return tf.where(tf.reshape(broken, (-1, *[1] * (len(x.shape) - 1))), kept, x_adv)



class _Setup:
    """Validated inputs of an attack and the compiled attacks, ready to run."""

    def __init__(self, model, x, y, steps, batch_size, step_size, seed, value_range,
                 forward) -> None:
        self.steps = positive_int(steps, "steps")
        self.batch_size = positive_int(batch_size, "batch_size")
        self.frac = 0.25 if step_size is None else float(step_size)
        if not (math.isfinite(self.frac) and self.frac > 0):
            raise ValueError(f"step_size must be a positive fraction of epsilon; got "
                             f"{step_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
        self.seed = int(seed)
        x = check_batch(model, x)
        if x.ndim == 4 or value_range is not None:
            self.lo, self.hi = check_range(value_range, x)
            self.span = self.hi - self.lo
        else:  # tables and sequences: each feature's observed range
            self.lo = x.min(axis=0).astype(np.float32)
            self.hi = x.max(axis=0).astype(np.float32)
            self.span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0).astype(np.float32)
        self.x = x.astype(np.float32, copy=False)  # never written to
        y = as_label_array(y, len(x))
        if forward is None:
            bs = self.batch_size
            forward = _compiled(model, ("forward", bs),
                                lambda: CompiledForward(model, batch_size=bs))
        elif not isinstance(forward, CompiledForward) or forward.model is not model:
            raise ValueError("forward must be a CompiledForward built on this same model")
        self.forward = forward
        self.spec = label_spec(y, forward(self.x[:1]).shape[1:])
        self.y = self.spec.y_true.astype(np.float32)
        lo, hi = np.asarray(self.lo, np.float32), np.asarray(self.hi, np.float32)
        shapes = (tuple(self.x.shape[1:]), tuple(self.y.shape[1:]))
        unroll = self.steps if self.steps <= UNROLL_MAX else None
        self.attack = _compiled(
            model, ("attack", self.spec.task, lo.shape, lo.tobytes(), hi.tobytes(), shapes,
                    unroll),
            lambda: _Attack(model, self.spec.task, lo, hi, *shapes, unroll=unroll))

    def run(self, name: str, eps: float) -> np.ndarray:
        """The adversarial examples of attack ``name`` at ``eps`` (a fraction of the range)."""
        fn = self.attack.pgd if name == "pgd" else self.attack.fgsm
        e = tf.constant(np.broadcast_to(np.float32(eps) * np.asarray(self.span, np.float32),
                                        self.x.shape[1:]))
        n, bs = len(self.x), self.batch_size
        return np.concatenate([
            fn(tf.constant(self.x[i:i + bs]), tf.constant(self.y[i:i + bs]), e, e * self.frac,
               tf.constant(self.steps, tf.int32),
               tf.constant([self.seed % 2 ** 31, i % 2 ** 31], tf.int32)).numpy()
            for i in range(0, n, bs)])


def adversarial_examples(model: keras.Model, x: tf.Tensor | ArrayLike,
                         y: tf.Tensor | ArrayLike, epsilon: float, attack: str = "pgd",
                         steps: int = 10, batch_size: int = 256, *,
                         step_size: float | None = None, seed: int = 0,
                         value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The adversarial inputs ``adversarial`` scores, for one attack and one epsilon.

    Arguments as ``adversarial`` (``epsilon`` one fraction of the range, ``attack`` one name).

    Returns:
        float32 array of ``x``'s shape: within ``epsilon`` of ``x`` (L-infinity, in the
        input's units) and inside the value range. For PGD, each sample's first iterate that
        the model misclassifies, else the last iterate.

    Raises:
        ValueError: as ``adversarial``.
    """
    (name,) = check_attacks(attack)
    (eps,) = check_epsilons(epsilon)
    setup = _Setup(model, x, y, steps, batch_size, step_size, seed, value_range, None)
    return setup.x.copy() if eps == 0.0 else setup.run(name, eps)


def adversarial(model: keras.Model, x: tf.Tensor | ArrayLike, y: tf.Tensor | ArrayLike,
                epsilons: Sequence[float] = DEFAULT_EPSILONS,
                attack: str | Sequence[str] = "pgd", steps: int = 10, batch_size: int = 256,
                *, step_size: float | None = None, seed: int = 0,
                value_range: tuple[float, float] | None = None,
                forward: CompiledForward | None = None) -> pd.DataFrame:
    """Accuracy of ``model`` under L-infinity attacks of growing strength.

    Args:
        model: a trained, built single-input Keras model (weights never changed).
        x: the inputs, in the model's own scale (never modified).
        y: labels (class ids, one-hot rows, ``{0, 1}`` for one sigmoid unit, or regression
            targets: then ``accuracy`` is NaN and ``loss`` is the measure).
        epsilons: attack budgets as fractions of the input's value range, in ``[0, 1]``.
        attack: ``"pgd"``, ``"fgsm"`` or both (a sequence).
        steps: PGD's number of steps.
        batch_size: the largest batch attacked at once.
        step_size: PGD's step as a fraction of epsilon (default 1/4).
        seed: seeds PGD's random start.
        value_range: ``(lo, hi)`` the inputs are clipped to; ``None``: images get their
            nominal range (``[0, 1]``, ``[0, 255]``, ``[-1, 1]`` or the observed one), tables
            each feature's observed min and max.
        forward: a ``CompiledForward`` of this model to reuse for the clean and attacked outputs.

    Returns:
        A DataFrame, one row per (attack, epsilon): ``attack``, ``epsilon``, ``accuracy``,
        ``delta_accuracy`` (against the clean data), then ``loss``, ``delta_loss``,
        ``flip_rate`` and ``epsilon_abs`` (epsilon in the input's units). ``table.attrs``
        holds ``clean_accuracy``, ``clean_loss``, ``task``, ``value_range``, ``steps`` and
        ``step_size``.

    Raises:
        ValueError: before any work: an unknown attack (the message lists the choices), an
            epsilon outside ``[0, 1]``, a bad ``steps``, ``step_size``, ``batch_size``,
            ``seed`` or ``value_range``, ``x`` the model cannot take, or labels that do not
            fit its output.
    """
    attacks = check_attacks(attack)
    eps_list = check_epsilons(epsilons)
    setup = _Setup(model, x, y, steps, batch_size, step_size, seed, value_range, forward)
    scorer = OutputScorer(model, setup.spec, setup.forward(setup.x))
    clean = scorer.clean
    rows = []
    for name in attacks:
        for eps in eps_list:
            s = clean if eps == 0.0 else scorer.score(setup.forward(setup.run(name, eps)))
            rows.append({"attack": name, "epsilon": eps, "accuracy": s["accuracy"],
                         "delta_accuracy": s["accuracy"] - clean["accuracy"],
                         "loss": s["loss"], "delta_loss": s["loss"] - clean["loss"],
                         "flip_rate": s["flip_rate"],
                         "epsilon_abs": float(eps * np.mean(setup.span))})
    table = pd.DataFrame(rows)
    table.attrs.update(clean_accuracy=clean["accuracy"], clean_loss=clean["loss"],
                       loss_name=scorer.loss_name, task=setup.spec.task,
                       value_range=(float(np.min(setup.lo)), float(np.max(setup.hi))),
                       steps=setup.steps, step_size=setup.frac, seed=setup.seed)
    return table


def adversarial_figure(table: pd.DataFrame):
    """Accuracy (the loss for regression) against epsilon, one line per attack.

    Raises:
        ValueError: an empty table or one without the ``adversarial`` columns.
    """
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError("adversarial_figure needs a non-empty DataFrame from adversarial")
    missing = [c for c in ("attack", "epsilon", "accuracy", "loss") if c not in table]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; give the result of adversarial")
    metric = "accuracy" if table["accuracy"].notna().any() else "loss"
    fig = new_figure((6.0, 3.6))
    ax = fig.add_subplot()
    for name, g in table.groupby("attack", sort=False):
        g = g.sort_values("epsilon")
        ax.plot(g["epsilon"] * 255.0, g[metric], marker="o", ms=4, label=name.upper())
    ax.set_xlabel("epsilon (255ths of the input range)")
    ax.set_ylabel(metric)
    if metric == "accuracy":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
