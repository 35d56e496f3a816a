"""The session of one ``fit()``: the shared samples and prediction pass, one background worker
that draws and writes, one event-file writer per folder, and the mailbox of worker errors.

A standalone callback owns its session; ``AuditCallback`` owns one for all its members, so they
read the validation data once, share one prediction pass per epoch, share event files, and warn
once between them. Whoever owns a session closes it; members only use it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit.callbacks.events import EventWriter
from keras_audit.callbacks.layers import model_layers
from keras_audit.callbacks.samples import Samples, select_samples
from keras_audit.explain import GraphTap, LayerInfo, model_inputs, select_output
from keras_audit.render.png import png_fast

#: how often the warm-ups look whether fit() has finished its first training step (seconds)
WARM_POLL_SECONDS = 0.05
#: the longest the warm-ups wait for that first step before they give up
WARM_MAX_WAIT_SECONDS = 600.0
#: logged epochs whose drawing may be queued before the training thread waits for the worker
MAX_PENDING = 2


def _lower_priority() -> None:
    """Make the calling thread yield the CPU to training (Linux: per-thread nice +10)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


def feed_structure(model: keras.Model, arrays: list) -> Any:
    """The model's inputs as its ``call`` expects them: one tensor, a list in ``model.inputs``
    order, or a dict by input name for a model built on a dict of inputs (Keras warns about a
    structure that differs from the one it was built with)."""
    try:
        struct = model.input
    except (AttributeError, ValueError):  # subclassed: one input
        struct = None
    if isinstance(struct, dict):
        return {str(t.name): a for t, a in zip(model.inputs, arrays)}
    return arrays[0] if len(arrays) == 1 else list(arrays)


class ModelOutputs:
    """``model(inputs, training=False)`` for every input of a model, compiled once.

    Hand-written next to the engine's ``CompiledForward`` because that one takes a single
    input; this one takes any number (token ids stay integers), returns every output (a
    bundle's members may explain different ones) as float32 NumPy, and never retraces
    (batch-agnostic signature).

    Args:
        model: a built Keras model.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.specs = model_inputs(model)
        self._fn = None

    def _build(self, dtypes: list) -> None:
        sig = [tf.TensorSpec((None, *s.shape), d) for s, d in zip(self.specs, dtypes)]
        # the model's own layers through the engine's GraphTap (the same numbers as
        # model(x)): it traces a DenseNet121 in 1.0 s where model(x) takes 1.6 s
        tap = GraphTap(self.model)

        @tf.function(input_signature=sig, autograph=False)
        def fn(*xs):
            out, _ = tap.run(list(xs), linear=False)
            return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), out)

        self._fn = fn

    def __call__(self, inputs: list[np.ndarray], eager: bool = False) -> Any:
        """The model's outputs (the model's structure: one array, a list or a dict).

        ``eager=True`` runs the model without compiling (no trace: for a first look at the
        outputs of a few samples during set-up, which costs a DenseNet121 about 0.4 s where
        tracing costs it seconds)."""
        arrays = [np.asarray(a) for a in inputs]
        dtypes = [tf.int32 if a.dtype.kind in "iu" and a.dtype != np.uint8 else tf.float32
                  for a in arrays]
        if eager:
            feed = [tf.constant(a, dtype=d) for a, d in zip(arrays, dtypes)]
            out = self.model(feed_structure(self.model, feed), training=False)
            return tf.nest.map_structure(lambda t: np.asarray(tf.cast(t, tf.float32)), out)
        if self._fn is None:
            self._build(dtypes)
        dtypes = [s.dtype for s in self._fn.input_signature]
        out = self._fn(*[tf.constant(a, dtype=d) for a, d in zip(arrays, dtypes)])
        return tf.nest.map_structure(lambda t: t.numpy(), out)

    @property
    def trace_count(self) -> int:
        """Tracings of the compiled pass (0 before it first runs)."""
        return 0 if self._fn is None else int(self._fn.experimental_get_tracing_count())


class Session:
    """State shared by the callbacks of one ``fit()``: samples, predictions, worker, writers.

    Args:
        max_samples: the most samples any member shows (they are chosen once, for the largest
            request; members see prefixes). Members raise it with ``reserve_samples``.

    Attributes:
        predict_seconds: seconds of each shared prediction pass (paid by the first member that
            logs an epoch).
    """

    def __init__(self, max_samples: int = 0) -> None:
        self.max_samples = int(max_samples)
        self.predict_seconds: list[float] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque = collections.deque()
        self._writers: dict[str, Any] = {}
        self._layouts: set[str] = set()
        self._errors: list[tuple[Callable[[BaseException], None], BaseException]] = []
        self._warned = False
        self._lock = threading.Lock()
        self._samples: dict = {}
        self._forward: ModelOutputs | None = None
        self._pred: tuple | None = None  # (epoch, probs, the samples' base array)
        self._layers: tuple[keras.Model, list[LayerInfo]] | None = None
        self._warming: list[threading.Thread] = []
        self._to_warm: list[Callable[[], None]] = []
        self._cancel_warm = threading.Event()
        self._shared: dict[tuple, Any] = {}

    # -- samples and predictions (training thread) ----------------------------------------------
    def reserve_samples(self, n: int) -> None:
        """Make sure the shared selection holds at least ``n`` samples."""
        self.max_samples = max(self.max_samples, int(n))

    def samples(self, validation_data: Any, n: int, model: keras.Model, seed: int,
                output: int | str | None = None) -> Samples:
        """The first ``n`` of the bundle's samples (chosen once for the largest request;
        balanced by the labels of ``output``)."""
        key = (id(validation_data), seed, output)
        want = max(n, self.max_samples)
        have = self._samples.get(key)
        if have is None or have[1] < want:
            infos = self.model_layers(model) if any(
                s.integer for s in model_inputs(model)) else None
            have = (select_samples(validation_data, want, model, seed, output=output,
                                   infos=infos), want)
            self._samples[key] = have
        return have[0].head(n)

    def model_layers(self, model: keras.Model) -> list[LayerInfo]:
        """The model's readable layers (``explain.list_layers``), listed once for the bundle."""
        if self._layers is None or self._layers[0] is not model:
            self._layers = (model, model_layers(model))
        return self._layers[1]

    def predict(self, model: keras.Model, samples: Samples, epoch: int,
                output: int | str | None = None) -> np.ndarray:
        """The model's ``output`` (``None``: the first) on ``samples``; one pass per epoch
        serves the whole bundle, whichever outputs its members explain.

        Members' samples are prefixes of one selection, so a pass over the first n samples
        serves every member that shows n or fewer.
        """
        if self._forward is None or self._forward.model is not model:
            self._forward = ModelOutputs(model)
        n = len(samples.x)
        base = samples.x if samples.x.base is None else samples.x.base
        cached = self._pred
        if cached is not None and cached[0] == epoch and cached[2] is base \
                and cached[3] >= n:
            outs = cached[1]
        else:
            t0 = time.perf_counter()
            outs = self._forward(samples.inputs)
            self.predict_seconds.append(time.perf_counter() - t0)
            self._pred = (epoch, outs, base, n)
        return np.asarray(select_output(outs, output, model))[:n]

    def forward_function(self, model: keras.Model) -> Callable[[tf.Tensor], Any]:
        """The shared prediction pass as a ``tf.function`` of one float32 batch (a model with
        one float input), for a member's own compiled work to call inside its graph: it reuses
        this pass's trace instead of tracing the model again (TF calls a traced function's
        concrete graph from another function)."""
        if self._forward is None or self._forward.model is not model:
            self._forward = ModelOutputs(model)
        if self._forward._fn is None:
            self._forward._build([tf.float32])
        return self._forward._fn

    def trace_forward(self, model: keras.Model, inputs: list[np.ndarray]) -> None:
        """Trace the shared prediction pass on ``inputs``'s dtypes, once per session (its
        signature takes any batch size, so two samples do): for the members' warm-ups, which
        would otherwise each run it."""
        if self.forward_trace_count() == 0 or self._forward.model is not model:
            self.outputs(model, [a[:2] for a in inputs])

    def forward_trace_count(self) -> int:
        """Tracings of the shared prediction pass (0 before it first runs)."""
        return 0 if self._forward is None else self._forward.trace_count

    # -- the worker -------------------------------------------------------------------------------
    def submit(self, task: Callable[[], None], on_error: Callable[[BaseException], None],
               synchronous: bool = False) -> None:
        """Run ``task`` on the worker (in order), or now when ``synchronous`` (it then raises).

        An error of a task on the worker goes to the mailbox; ``deliver_errors`` hands it to its
        ``on_error`` on the training thread. At most ``MAX_PENDING`` tasks wait: then the
        training thread waits for the oldest.
        """
        if synchronous:
            task()
            return

        def run() -> None:
            try:
                task()
            except Exception as exc:
                with self._lock:
                    self._errors.append((on_error, exc))

        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="keras_audit_callbacks",
                    initializer=_lower_priority)
        while len(self._pending) >= MAX_PENDING:
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(run))

    def warm(self, task: Callable[[], None]) -> None:
        """Queue ``task`` (a member's ``_warm``: its compiled calls on the real shapes, results
        thrown away) to run on the warm-up thread while the first epoch trains, so the tracing overlaps
        training instead of following it; ``start_warm`` starts the queue once every member is
        set up. A failure is ignored here: the epoch-end call that the task prepared raises it
        where it is reported."""
        def run() -> None:
            try:
                task()
            except Exception:  # noqa: BLE001 - the real call reports it
                pass

        with self._lock:
            self._to_warm.append(run)

    def start_warm(self, model: keras.Model | None = None) -> None:
        """Start the queued ``warm`` tasks on a warm-up thread (called on the training thread,
        in ``on_train_begin``).

        They first wait for ``model``'s optimizer to count one training step: ``fit()`` traces
        its train step in its first batch, and two threads tracing at once only take turns at
        the interpreter, while training after that is compiled code that leaves it free. (No
        batch hook is used for this: overriding one would stop Keras's asynchronous dispatch.)
        A model without an optimizer starts them at once.
        """
        with self._lock:
            tasks, self._to_warm = self._to_warm, []
            if not tasks:
                return
            cancel = self._cancel_warm = threading.Event()
        step = getattr(getattr(model, "optimizer", None), "iterations", None)
        try:
            first = None if step is None else int(step.numpy())
        except Exception:  # noqa: BLE001 - an unreadable counter: do not wait for it
            first = None

        def run_all() -> None:
            deadline = time.monotonic() + WARM_MAX_WAIT_SECONDS
            while first is not None and not cancel.is_set() and time.monotonic() < deadline:
                try:
                    if int(step.numpy()) != first:
                        break
                except Exception:  # noqa: BLE001 - the counter cannot be read: go ahead
                    break
                cancel.wait(WARM_POLL_SECONDS)
            for task in tasks:
                if cancel.is_set():  # the first logged epoch came first: it traces itself
                    return
                task()

        # a daemon thread at normal priority (the drawing worker runs at nice +10): it must
        # finish within the first epoch, and a fit() that dies before its first step must not
        # keep the interpreter from exiting
        thread = threading.Thread(target=run_all, name="keras_audit_warm", daemon=True)
        with self._lock:
            self._warming.append(thread)
        thread.start()

    def shared(self, key: tuple, build: Callable[[], Any]) -> Any:
        """The object ``build()`` made for ``key`` in this session (built on first request):
        members that need the same explainer (Grad-CAM of the same layer for the maps and for
        the mistakes) share it, and so its traces."""
        with self._lock:
            found = self._shared.get(key)
        if found is None:
            found = build()
            with self._lock:
                found = self._shared.setdefault(key, found)
        return found

    def wait_warm(self) -> None:
        """Wait for every queued ``warm`` task (training thread, before the first logged
        epoch's compiled work)."""
        with self._lock:  # tasks not started yet are dropped: the real calls trace
            warming, self._warming, self._to_warm = self._warming, [], []
            self._cancel_warm.set()
        for thread in warming:
            thread.join()

    def deliver_errors(self) -> None:
        """Hand the worker's errors so far to their ``on_error`` (training thread)."""
        with self._lock:
            errors, self._errors = self._errors, []
        for on_error, exc in errors:
            on_error(exc)

    def first_warning(self) -> bool:
        """``True`` the first time it is asked: the session warns once for all its members."""
        with self._lock:
            first, self._warned = not self._warned, True
        return first

    # -- writing (worker thread) ------------------------------------------------------------------
    def _writer(self, log_dir: str) -> EventWriter:
        with self._lock:
            w = self._writers.get(log_dir)
            if w is None:  # lazily: a folder gets an event file only when something is written
                w = EventWriter(log_dir)
                self._writers[log_dir] = w
            return w

    def write_image(self, log_dir: str, tag: str, image: np.ndarray, step: int) -> None:
        """Write one uint8 ``(H, W, 3)`` picture under ``tag`` at ``step`` into ``log_dir``.

        The same record as ``tf.summary.image`` (a PNG and its size), encoded by ``png_fast``.
        """
        image = np.asarray(image, np.uint8)
        self.write_encoded(log_dir, tag, png_fast(image), image.shape[1], image.shape[0], step)

    def write_encoded(self, log_dir: str, tag: str, data: bytes, width: int, height: int,
                      step: int) -> None:
        """Write one encoded picture (PNG or JPEG bytes, ``width`` x ``height`` pixels) under
        ``tag`` at ``step``: the record ``tf.summary.image`` writes. TensorBoard's Images
        dashboard serves any encoded picture with the MIME type it detects in the bytes."""
        self._writer(log_dir).image(tag, data, int(width), int(height), step)

    def write_scalar(self, log_dir: str, tag: str, value: float, step: int,
                     description: str | None = None) -> None:
        """Write one scalar under ``tag`` at ``step`` into ``log_dir`` (``description``: the
        Markdown TensorBoard shows beside the chart)."""
        self._writer(log_dir).scalar(tag, float(value), step, description)

    def write_text(self, log_dir: str, tag: str, text: str, step: int,
                   description: str | None = None) -> None:
        """Write Markdown ``text`` (the Text dashboard renders tables) under ``tag``."""
        self._writer(log_dir).text(tag, text, step, description)

    def write_histogram(self, log_dir: str, tag: str, values: np.ndarray, step: int,
                        description: str | None = None) -> None:
        """Write a histogram of ``values`` under ``tag`` (TensorBoard's Histograms dashboard)."""
        self._writer(log_dir).histogram(tag, values, step, description)

    def write_tensor(self, log_dir: str, tag: str, tensor: np.ndarray, step: int,
                     metadata: Any) -> None:
        """Write ``tensor`` with a plugin's ``SummaryMetadata`` (PR curves, layouts)."""
        self._writer(log_dir).tensor(tag, tensor, step, metadata)

    def write_layout(self, log_dir: str, layout: Any, step: int) -> None:
        """Write a Custom Scalars layout (``layout_pb2.Layout``) into ``log_dir``, once per
        folder and session (the registry that builds it holds every member's charts)."""
        from tensorboard.plugins.custom_scalar import metadata as cs_metadata

        with self._lock:
            if log_dir in self._layouts:
                return
            self._layouts.add(log_dir)
        self.write_tensor(log_dir, cs_metadata.CONFIG_SUMMARY_TAG,
                          np.array(layout.SerializeToString(), dtype=object), step,
                          cs_metadata.create_summary_metadata())

    def outputs(self, model: keras.Model, inputs: list[np.ndarray], batch_size: int = 512,
                eager: bool = False) -> Any:
        """The model's outputs on any number of samples, in batches, through the one compiled
        pass the session shares (its signature takes any batch size: no retracing), or with
        ``eager=True`` uncompiled (a few samples at set-up: see ``ModelOutputs``)."""
        if self._forward is None or self._forward.model is not model:
            self._forward = ModelOutputs(model)
        n = len(inputs[0])
        parts = [self._forward([a[i:i + batch_size] for a in inputs], eager=eager)
                 for i in range(0, n, batch_size)]
        return tf.nest.map_structure(lambda *p: np.concatenate(p), *parts)

    def flush(self, log_dir: str) -> None:
        """Hand a folder's pending records to the file, so TensorBoard shows them now."""
        with self._lock:
            w = self._writers.get(log_dir)
        if w is not None:
            w.flush()

    def close(self) -> None:
        """Wait for the worker, then flush and close every writer.

        Raises:
            Exception: the first error of a writer (a full disk shows up here too).
        """
        self.wait_warm()
        while self._pending:
            self._pending.popleft().result()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        errors = []
        for w in self._writers.values():
            for op in (w.flush, w.close):
                try:
                    op()
                except Exception as exc:
                    errors.append(exc)
        self._writers.clear()
        if errors:
            raise errors[0]
