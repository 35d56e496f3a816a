"""Audits over data streamed in batches (a ``tf.data.Dataset`` or a ``DataSource``).

Memory stays bounded by one batch of inputs plus the per-sample outputs (predictions, labels,
group labels): the inputs are never held whole.

Which sections see what, on streamed data:

- **every sample** (streamed): performance (one pass, shared with the context), every
  pruning level (one pass per level), every robustness corruption at all its severities (one
  pass per corruption, re-chunked by ``Stream.chunks``), and the data section's counts and class
  balance;
- **the drawn samples**: the explained samples and the SHAP/LIME background are drawn from
  the stream and held as small arrays (``ctx.x``), and every other section (explanations,
  quality, galleries, tabular importance, model details, provenance hashes) runs on them
  unchanged.

The draw reproduces the array path exactly: the labels collected during the forward pass give
the same class-balanced, seeded order (``balanced_order``) and the same background
permutation as ``build_context`` on arrays; one extra read pass (no model) then gathers those
rows. So a dataset and the same data as arrays give equal metrics and the same explained
indices (``ctx.stream.explain_index``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_audit.audit.catalog import DEFAULT_SAMPLES, AuditInputError

#: the background rows tabular LIME reads (``sections.explain_lime.TRAINING_SIZE``)
_LIME_ROWS = 500


def is_stream(data: object) -> bool:
    """True when ``data`` is a ``tf.data.Dataset``, a ``DataSource`` or a ``Stream`` (the
    streamed path)."""
    from keras_audit.audit.sources import DataSource

    if isinstance(data, DataSource | Stream):
        return True
    import sys

    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


class Stream:
    """Re-iterable ``(x, y, groups)`` NumPy batches over a dataset or a ``DataSource``.

    Args:
        data: a ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, groups)`` batches (``groups``
            a tensor of labels or a dict ``{attribute: labels}``), or a ``DataSource``.
        strategy: a ``tf.distribute.Strategy`` the forward passes run under, or None.

    Raises:
        AuditInputError: a dataset whose elements are not such tuples.
    """

    #: where the forward passes run (``"ray"`` for ``ray_engine.RayStream``)
    engine = "local"

    def __init__(self, data: Any, strategy: Any = None) -> None:
        from keras_audit.audit.sources import DataSource

        self.source = data if isinstance(data, DataSource) else None
        if self.source is not None:
            self.dataset = None
        else:
            spec = data.element_spec
            if not isinstance(spec, tuple) or len(spec) not in (2, 3):
                raise AuditInputError(
                    "a dataset for the audit must yield (x, y) or (x, y, groups) batches; got "
                    f"elements {spec}")
            if isinstance(spec[0], dict | tuple | list):
                raise AuditInputError("streamed data supports single-input models (x one "
                                      "tensor per batch); pass arrays for several inputs")
            self.dataset = data
        self.strategy = strategy

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, dict | None]]:
        """Yield ``(x, y, groups or None)`` NumPy batches in the data's order."""
        if self.source is not None:
            for x, y in self.source.batches():
                yield x, y, None
            return
        for elem in self.dataset.as_numpy_iterator():
            yield elem[0], elem[1], (_groups(elem[2]) if len(elem) == 3 else None)

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, x[start:start + size])`` over the data's inputs, whatever the data's
        own batches: the chunks an array ``x`` sliced every ``size`` rows gives (the last one
        shorter), so per-chunk seeds and shapes match the array path. Memory: one chunk plus
        one of the data's batches."""
        held: list[np.ndarray] = []
        n_held = start = 0
        for x, _, _ in self.batches():
            x = np.asarray(x)
            while len(x):
                take = min(size - n_held, len(x))
                held.append(x[:take])
                n_held += take
                x = x[take:]
                if n_held == size:
                    yield start, held[0] if len(held) == 1 else np.concatenate(held)
                    start += size
                    held, n_held = [], 0
        if n_held:
            yield start, held[0] if len(held) == 1 else np.concatenate(held)

    def tf_dataset(self):
        """The data as a ``tf.data.Dataset`` of tuples (for ``tf.distribute``)."""
        return self.source.dataset() if self.source is not None else self.dataset

    def collect(self, forward: Callable) -> tuple[np.ndarray, np.ndarray, dict | None]:
        """One pass: the model's raw outputs, the labels and the group labels of every sample.

        Args:
            forward: a ``CompiledForward`` (used when there is no strategy).

        Returns:
            ``(raw outputs (N, ...), y (N, ...), {attribute: (N,)} or None)``.
        """
        outs, ys, groups = [], [], []
        for raw, y, g in self._forward_batches(forward):
            outs.append(raw)
            ys.append(y)
            groups.append(g)
        if not outs:
            raise AuditInputError("the data yielded no samples")
        merged = None
        if groups[0] is not None:
            merged = {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}
        return np.concatenate(outs), np.concatenate(ys), merged

    def outputs(self, forward: Callable) -> np.ndarray:
        """One pass: the model's raw outputs on every sample, ``(N, ...)``."""
        return np.concatenate([raw for raw, _, _ in self._forward_batches(forward)])

    def _forward_batches(self, forward):
        if self.strategy is None and self.dataset is not None:
            yield from _dataset_forward(forward, self.dataset)
            return
        if self.strategy is None:
            for x, y, g in self.batches():
                yield forward(x), y, g
            return
        yield from _distributed(forward, self.tf_dataset(), self.strategy)

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The rows of ``x`` at ``indices`` (in that order), gathered in one read pass."""
        want = np.asarray(indices, np.int64)
        order = np.argsort(want, kind="stable")
        sorted_idx = want[order]
        rows: list[np.ndarray] = []
        start = 0
        for x, _, _ in self.batches():
            lo, hi = np.searchsorted(sorted_idx, [start, start + len(x)])
            if hi > lo:
                rows.append(np.array(x[sorted_idx[lo:hi] - start]))
            start += len(x)
        if not rows:
            raise AuditInputError("the data yielded no samples")
        got = np.concatenate(rows)
        out = np.empty_like(got)
        out[order] = got
        return out


def _groups(g) -> dict[str, np.ndarray]:
    if isinstance(g, dict):
        return {str(k): _labels(v) for k, v in g.items()}
    return {"group": _labels(g)}


def _labels(v) -> np.ndarray:
    a = np.asarray(v)
    return a.astype(str) if a.dtype.kind in "SO" else a


def _dataset_forward(forward, dataset):
    """The compiled forward pass fed the dataset's tensors directly: no NumPy round trip for
    the inputs (only the outputs and labels come back), so it keeps up with ``model.predict``."""
    import tensorflow as tf

    if forward._fn is None:
        forward._build(tf.float32)
    dtype = forward._dtypes[0]
    for elem in dataset:
        x = elem[0] if elem[0].dtype == dtype else tf.cast(elem[0], dtype)
        g = _groups({k: v.numpy() for k, v in elem[2].items()} if isinstance(elem[2], dict)
                    else elem[2].numpy()) if len(elem) == 3 else None
        yield forward._fn(x).numpy(), elem[1].numpy(), g


def _distributed(forward, dataset, strategy):
    """The forward pass under ``strategy``: each batch split over the replicas, then the
    replicas' outputs (and labels) concatenated in replica order, which is the batch order."""
    import tensorflow as tf

    model, select = forward.model, forward._select
    dist = strategy.experimental_distribute_dataset(dataset)

    @tf.function(autograph=False)
    def step(x):
        return strategy.run(lambda v: select(model(tf.cast(v, tf.float32), training=False)),
                            args=(x,))

    def local(value):
        return np.concatenate([np.asarray(v) for v in
                               strategy.experimental_local_results(value)])

    for elem in dist:
        raw = local(step(elem[0]))
        y = local(elem[1])
        g = None
        if len(elem) == 3:
            g = ({k: _labels(local(v)) for k, v in elem[2].items()}
                 if isinstance(elem[2], dict) else {"group": _labels(local(elem[2]))})
        yield raw, y, g


@dataclass(frozen=True)
class StreamInfo:
    """The streamed data as the context holds it (``ctx.stream``).

    Attributes:
        stream: the re-iterable batches (``Stream``).
        n: the number of samples.
        raw: the model's outputs on every sample (the context's pass; performance reuses it).
        y: every sample's labels.
        spec: what every sample's labels say (``LabelSpec``; ``ctx.spec`` reads the drawn ones).
        groups: ``{attribute: (N,) labels}`` from ``(x, y, groups)`` batches, or None.
        explain_index: the explained samples' indices into the data (as on arrays).
        background_order: the seeded background permutation's first rows (indices into the
            data), as ``AuditContext.background_set`` draws them on arrays.
        positions: data index -> row of ``ctx.x`` for every drawn sample.
        head: the first rows of the data (the pruning drift's samples).
    """

    stream: Stream
    n: int
    raw: np.ndarray
    y: np.ndarray
    spec: Any
    groups: dict | None
    explain_index: np.ndarray
    background_order: np.ndarray
    positions: dict
    head: np.ndarray

    def rows(self, indices) -> np.ndarray:
        """Rows of ``ctx.x`` for data ``indices``."""
        return np.asarray([self.positions[int(i)] for i in indices], np.int64)


def build_stream_context(model, data, *, defaults: dict, strategy: Any = None,
                         samples: int | None = None, seed: int = 0, options: dict | None = None,
                         background: Any = None, groups: Any = None, baseline: Any = None,
                         **kwargs: Any):
    """The ``AuditContext`` of streamed ``data``: one forward pass over every sample, the
    drawn samples gathered, and the context built on them with ``stream`` set.

    Raises:
        AuditInputError: what ``build_context`` raises, and: a multi-input model, ``groups``
            or ``baseline`` given with streamed data (groups come from ``(x, y, groups)``
            batches; the comparison runs on arrays), or data without samples.
    """
    import keras

    from keras_audit.audit._labels import label_spec
    from keras_audit.audit.context import _count, build_context, data_kind, merge_options
    from keras_audit.explain import balanced_order
    from keras_audit.explain.forward import CompiledForward, model_inputs

    if not isinstance(model, keras.Model):
        raise AuditInputError(f"model must be a keras.Model; got {type(model).__name__}")
    if len(model_inputs(model)) > 1:
        raise AuditInputError("streamed data supports single-input models; pass arrays for "
                              "a model with several inputs")
    if groups is not None:
        raise AuditInputError("groups= applies to arrays; with streamed data the dataset "
                              "yields (x, y, groups) batches")
    if baseline is not None:
        raise AuditInputError("baseline= (the comparison) needs arrays; it does not stream yet")
    seed = _count(seed, "seed", 0)
    merged = merge_options(defaults, options)
    # a Stream given as data is used as it is (engine="ray" passes a RayStream)
    stream = data if isinstance(data, Stream) else Stream(data, strategy)
    out_idx = kwargs.get("output")
    forward = CompiledForward(model, output=out_idx,
                              batch_size=int(merged["performance"]["batch_size"]))
    if stream.dataset is not None:
        shape = stream.dataset.element_spec[0].shape
        if shape.rank == len(forward.input_shape):
            raise AuditInputError(f"the dataset yields single samples {shape}: batch it "
                                  "(dataset.batch(256)) so each element is a batch")
    try:
        raw, y, group_labels = stream.collect(forward)
        spec = label_spec(np.asarray(y), raw.shape[1:])
    except ValueError as exc:
        raise AuditInputError(str(exc)) from None
    n = len(raw)
    if samples is not None:
        samples = _count(samples, "samples (a positive integer or None)", 1)
    n_explain = min(n, samples if samples is not None else DEFAULT_SAMPLES)
    # the same draws as build_context and AuditContext.background_set on arrays
    if spec.task == "regression":
        explain = np.sort(balanced_order(None, n_explain, seed=seed, n_pool=n))
    else:
        explain = balanced_order(spec.y_true, n_explain, seed=seed)
    kind = data_kind(np.empty((0, *forward.input_shape)))
    shap_rows = merged["shap"]["background_size"] or (16 if kind == "image" else 50)
    size = max(int(shap_rows), _LIME_ROWS if kind == "tabular" else 0)
    rest = np.setdiff1d(np.arange(n), explain)
    pool = rest if len(rest) else np.arange(n)
    bg_order = np.random.default_rng(seed + 1).permutation(pool)[:min(size, len(pool))]
    extra = np.setdiff1d(bg_order, explain)
    drawn = np.concatenate([explain, extra]).astype(np.int64)
    drift_rows = min(int(merged["pruning"]["drift_samples"]), n)
    rows = stream.take(np.concatenate([drawn, np.arange(drift_rows)]))
    x_drawn, head = rows[:len(drawn)], rows[len(drawn):]
    ctx = build_context(model, x_drawn, np.asarray(y)[drawn], defaults=defaults, samples=samples,
                        seed=seed, options=options, background=background, **kwargs)
    if group_labels is not None:
        from keras_audit.audit.groups import check_groups

        try:
            group_labels = check_groups(group_labels, n)
        except ValueError as exc:
            raise AuditInputError(str(exc)) from None
    info = StreamInfo(stream=stream, n=n, raw=raw, y=np.asarray(y), spec=spec, groups=group_labels,
                      explain_index=explain, background_order=bg_order,
                      positions={int(i): p for p, i in enumerate(drawn)}, head=head)
    return dataclasses.replace(ctx, explain_idx=np.arange(len(explain)), stream=info)
