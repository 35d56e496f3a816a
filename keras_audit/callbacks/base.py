"""What every explanation callback shares: samples, schedule, writers, failures and the chief.

A subclass fills in three hooks and inherits the rest::

    class MyCallback(ExplanationCallback):
        technique = "mine"                     # tag prefix

        def _setup(self):                      # on_train_begin, after the samples are chosen
            self.explainer = ...               # raise ValueError for configuration errors

        def _compute(self, epoch):             # training thread, logged epochs only
            return {"maps": self.explainer(self.samples.x)}   # NumPy payload, no pictures

        def _write(self, payload, step):       # worker thread: draw and write
            self.write_image(f"mine/{name}", picture, step)

The training thread only runs the compiled computations and copies their results to NumPy;
drawing, PNG encoding and writing run on one background worker, which ``on_train_end`` drains
before it flushes and closes the writers. Batch hooks are never overridden: Keras never stops
for these callbacks between batches (and keeps asynchronous dispatch where its backend has it).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import struct
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.image import metadata as image_metadata

from keras_audit import render
from keras_audit._checks import positive_int
from keras_audit.explain import spearman_per_sample
from keras_audit.explain.forward import CompiledForward, check_batch, model_input_shape

if TYPE_CHECKING:
    from typing import TypeAlias

    from numpy.typing import ArrayLike

    #: what the callbacks take as ``validation_data``: ``(x, y)``, ``x`` alone or a dataset
    ValidationData: TypeAlias = (
        tf.data.Dataset | tuple[tf.Tensor | ArrayLike, ...] | tf.Tensor | ArrayLike
    )

#: marks a summary as an image for TensorBoard (what tf.summary.image attaches)
_IMAGE_METADATA = image_metadata.create_summary_metadata(
    display_name=None, description=None).SerializeToString()
#: how many elements of a ``tf.data.Dataset`` are read, at most, to choose samples from
_DATASET_SCAN = 2048
#: logged epochs whose drawing may be queued before the training thread waits for the worker
_MAX_PENDING = 2
#: the smallest side tiles are drawn at (inputs are upscaled by an integer factor to reach it)
MIN_TILE = 64


class ExplanationLoggingWarning(RuntimeWarning):
    """A logging failure that did not stop training (``strict=False``)."""


def is_chief(model: keras.Model | None = None) -> bool:
    """Whether this process is the one that writes under the active ``tf.distribute`` strategy.

    The strategy is the one in scope, else the one ``model`` was created under. Its cluster
    resolver names this task: the ``chief`` task writes, or worker 0 when the cluster has no
    chief; evaluators and parameter servers never do. Without a multi-worker cluster (no
    strategy, ``MirroredStrategy``, one worker) the process is the chief.

    Args:
        model: the model being trained (its ``distribute_strategy`` is used when no strategy is
            in scope, as when Keras calls callbacks or a custom loop runs outside ``scope()``).

    Returns:
        ``True`` when this process should write summaries.
    """
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    else:
        strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    if task_type == "worker":
        try:
            jobs = resolver.cluster_spec().jobs
        except Exception:  # a resolver without a cluster spec: trust the worker index
            jobs = []
        return "chief" not in jobs and int(task_id or 0) == 0
    return False


# -- samples ------------------------------------------------------------------------------------
def png_fast(image: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W, 3)`` picture as PNG: no row filters, zlib level 1.

    Hand-written for speed: on these pictures (flat tiles, upscaled by repetition) it is 2.5x
    faster than Pillow at ``compress_level=1`` (adaptive row filters) and the files come out no
    larger; ``tf.summary.image``'s encoder is slower still. Any PNG reader decodes it.
    """
    img = np.ascontiguousarray(image, np.uint8)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"png_fast takes a uint8 (H, W, 3) picture; got shape {img.shape}")
    h, w = img.shape[:2]
    rows = np.zeros((h, 1 + 3 * w), np.uint8)  # each row: filter type 0 (none), then pixels
    rows[:, 1:] = img.reshape(h, 3 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b""))


def _lower_priority() -> None:
    """Make the calling thread yield the CPU to training (Linux: per-thread nice +10)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


@dataclass
class Samples:
    """The fixed validation samples a callback shows every epoch.

    Attributes:
        x: float32 batch ``(N, *input_shape)``.
        y: int class ids ``(N,)``, or ``None`` when the data had no labels.
        index: each sample's position in the validation data (or in the part of a dataset read).
    """

    x: np.ndarray
    y: np.ndarray | None
    index: np.ndarray

    def head(self, n: int) -> Samples:
        """The first ``n`` samples (the balanced order keeps any prefix balanced)."""
        return Samples(self.x[:n], None if self.y is None else self.y[:n], self.index[:n])


def _as_labels(y, n: int) -> np.ndarray:
    """Class ids from ids ``(N,)``, ``(N, 1)`` or one-hot/probabilities ``(N, C)``."""
    if isinstance(y, tf.Tensor):
        y = y.numpy()
    y = np.asarray(y)
    if y.dtype == object:
        raise ValueError("validation labels are an object array; give class ids or one-hot rows")
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim != 1:
        raise ValueError(
            f"validation labels must be class ids (N,) or one-hot rows (N, classes); got shape "
            f"{y.shape}"
        )
    if len(y) != n:
        raise ValueError(f"validation data has {n} samples but {len(y)} labels")
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        raise ValueError("validation labels must be class ids or one-hot rows; got fractions")
    if y.dtype.kind not in "iufb":
        raise ValueError(f"validation labels must be numeric class ids; got dtype {y.dtype}")
    return y.astype(np.int64)


def _read_dataset(ds: tf.data.Dataset, input_rank: int, limit: int):
    """Up to ``limit`` elements of a dataset of ``x`` or ``(x, y[, w])``, batched or not."""
    xs, ys, count, labelled = [], [], 0, None
    for elem in ds:
        if isinstance(elem, dict):
            raise ValueError("validation dataset elements must be x or (x, y) tuples, not dicts")
        if isinstance(elem, list | tuple):
            x, y = elem[0], (elem[1] if len(elem) > 1 else None)
        else:
            x, y = elem, None
        x = np.asarray(x)
        single = x.ndim == input_rank
        if single:
            x = x[None]
        if labelled is None:
            labelled = y is not None
        if labelled:
            y = np.asarray(y)
            y = y[None] if single else y
            ys.append(y)
        xs.append(x)
        count += len(x)
        if count >= limit:
            break
    if not xs:
        raise ValueError("the validation dataset is empty")
    try:
        x = np.concatenate(xs)
    except ValueError as exc:
        raise ValueError(f"validation dataset batches have inconsistent shapes: {exc}") from None
    return x, (np.concatenate(ys) if labelled else None)


def _split(validation_data):
    """``(x, y_or_None)`` from ``(x, y)``, ``(x, y, w)`` or ``x`` (arrays or tensors)."""
    if isinstance(validation_data, list | tuple):
        if len(validation_data) not in (1, 2, 3):
            raise ValueError(
                "validation_data must be (x, y), x alone, or a tf.data.Dataset of (x, y) "
                f"batches; got a sequence of length {len(validation_data)}"
            )
        x = validation_data[0]
        y = validation_data[1] if len(validation_data) > 1 else None
        return x, y
    return validation_data, None


def balanced_order(y: np.ndarray | None, n_pool: int, seed: int = 0) -> np.ndarray:
    """A deterministic order over the pool in which every prefix is class-balanced.

    Each class's indices are shuffled with ``seed``; the order takes one from each class in
    turn (classes in ascending order). Without labels it is a seeded permutation.
    """
    rng = np.random.default_rng(seed)
    if y is None:
        return rng.permutation(n_pool)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    width = max(len(p) for p in per_class)
    order = [p[k] for k in range(width) for p in per_class if k < len(p)]
    return np.asarray(order, np.int64)


def _is_built(model: keras.Model) -> bool:
    try:
        model_input_shape(model)
    except ValueError as exc:
        return "has not been built" not in str(exc)  # several inputs: built, refused later
    return True


def ensure_built(model: keras.Model, validation_data: ValidationData | None) -> bool:
    """Build a model that ``fit()`` has not built yet, from the validation inputs' shape.

    A ``Sequential`` model without ``keras.Input`` is built by its first training batch, which
    comes after ``on_train_begin``; the callbacks need its layers then. Building it here from
    ``(None, *x.shape[1:])`` does what that first call would do (``Model.build``, or one call
    on a zero batch for models whose ``build`` cannot infer the graph), creating the same
    weights from the same initialisers before any training step, so training is unchanged.
    Datasets are taken as batched, as ``fit()`` requires.

    Returns:
        Whether the model is built now (``False``: no data to take the shape from).
    """
    if _is_built(model):
        return True
    if validation_data is None:
        return False
    if isinstance(validation_data, tf.data.Dataset):
        spec = validation_data.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        if not isinstance(spec, tf.TensorSpec):
            return False
        shape = tuple(spec.shape)[1:]
        dtype = spec.dtype.name
    else:
        x, _ = _split(validation_data)
        if not hasattr(x, "shape") or len(x.shape) < 2:
            return False
        shape = tuple(x.shape)[1:]
        dtype = "float32"
    if any(d is None for d in shape):
        return False
    try:
        model.build((None, *shape))
    except Exception:  # noqa: BLE001 - a subclassed build() that cannot infer: call it
        model(np.zeros((1, *shape), dtype), training=False)
    return _is_built(model)


def select_samples(validation_data: ValidationData, num_samples: int, model: keras.Model,
                   seed: int = 0) -> Samples:
    """Choose ``num_samples`` fixed, class-balanced, deterministic samples.

    Args:
        validation_data: ``(x, y)`` (labels as ids or one-hot), ``x`` alone, or a
            ``tf.data.Dataset`` of ``(x, y)`` or ``x`` elements, batched or not (at most
            2048 elements are read from it).
        num_samples: how many to choose; fewer when the data has fewer.
        model: the model the samples must fit.
        seed: seeds the choice.

    Returns:
        ``Samples`` in the balanced order (class 0, class 1, ..., class 0, ...).

    Raises:
        ValueError: the data's type or shape does not fit the model, or the labels are not
            class ids.
    """
    input_shape = model_input_shape(model)
    if isinstance(validation_data, tf.data.Dataset):
        x, y = _read_dataset(validation_data, len(input_shape), _DATASET_SCAN)
    else:
        x, y = _split(validation_data)
        if x is None or isinstance(x, str | dict) or not hasattr(x, "__len__"):
            raise ValueError(
                "validation_data must be (x, y), x alone (a NumPy array or tensor), or a "
                f"tf.data.Dataset of (x, y) batches; got {type(validation_data).__name__}"
            )
    x = check_batch(model, x, what="validation x")
    if x.dtype.kind not in "uif":
        raise ValueError(f"validation x must be numeric; got dtype {x.dtype}")
    labels = None if y is None else _as_labels(y, len(x))
    order = balanced_order(labels, len(x), seed)[:num_samples]
    return Samples(
        x=x[order].astype(np.float32),
        y=None if labels is None else labels[order],
        index=order,
    )


# -- the session: samples, predictions, the worker and the writers, shared by a bundle -----------
class _Session:
    """State shared by the callbacks of one ``fit()``: one worker thread, one writer per folder.

    A standalone callback owns its own session; ``AuditCallback`` gives one to all its members,
    so they read the validation data once, share one prediction pass per epoch, share event
    files, and warn once between them.
    """

    def __init__(self) -> None:
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.pending: collections.deque = collections.deque()
        self.writers: dict[str, Any] = {}
        self.worker_errors: list = []
        self.warned = False
        self.lock = threading.Lock()
        self._samples: dict = {}
        self._forward: CompiledForward | None = None
        self._pred: tuple | None = None  # (epoch, probs, the samples' base array)
        #: seconds of each shared prediction pass (paid by the first member that logs an epoch)
        self.predict_seconds: list[float] = []
        self.max_samples = 0

    # samples and predictions (training thread)
    def samples(self, validation_data, n: int, model, seed: int) -> Samples:
        """The first ``n`` of the bundle's samples (chosen once for the largest request)."""
        key = (id(validation_data), seed)
        want = max(n, self.max_samples)
        have = self._samples.get(key)
        if have is None or have[1] < want:
            have = (select_samples(validation_data, want, model, seed), want)
            self._samples[key] = have
        return have[0].head(n)

    def predict(self, model, samples: Samples, epoch: int) -> np.ndarray:
        """The model's outputs on ``samples``; one pass per epoch serves the whole bundle.

        Members' samples are prefixes of one selection, so a pass over the first n samples
        serves every member that shows n or fewer.
        """
        if self._forward is None or self._forward.model is not model:
            self._forward = CompiledForward(model)
        n = len(samples.x)
        base = samples.x if samples.x.base is None else samples.x.base
        cached = self._pred
        if cached is not None and cached[0] == epoch and cached[2] is base \
                and len(cached[1]) >= n:
            return cached[1][:n]
        t0 = time.perf_counter()
        probs = self._forward(samples.x)
        self.predict_seconds.append(time.perf_counter() - t0)
        self._pred = (epoch, probs, base)
        return probs

    def forward_trace_count(self) -> int:
        fn = getattr(self._forward, "_fn", None)
        return 0 if fn is None else int(fn.experimental_get_tracing_count())

    # worker (drawing and writing)
    def submit(self, fn, synchronous: bool) -> None:
        if synchronous:
            fn()
            return
        if self.executor is None:
            self.executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="keras_audit_callbacks",
                initializer=_lower_priority)
        while len(self.pending) >= _MAX_PENDING:
            self.pending.popleft().result()
        self.pending.append(self.executor.submit(fn))

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def writer(self, log_dir: str):
        with self.lock:
            w = self.writers.get(log_dir)
            if w is None:
                w = tf.summary.create_file_writer(log_dir)
                self.writers[log_dir] = w
            return w

    def flush(self, log_dir: str) -> None:
        """Hand a folder's pending records to the file, so TensorBoard shows them now."""
        with self.lock:
            w = self.writers.get(log_dir)
        if w is not None:
            w.flush()

    def close(self) -> None:
        self.drain()
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        errors = []
        for w in self.writers.values():
            for op in (w.flush, w.close):
                try:
                    op()
                except Exception as exc:  # a full disk shows up here too
                    errors.append(exc)
        self.writers.clear()
        if errors:
            raise errors[0]


class ExplanationCallback(keras.callbacks.Callback):
    """Base class: fixed samples, the ``freq`` schedule, lazy writers, failures, the chief.

    Args:
        validation_data: ``(x, y)``, ``x`` alone (targets are then the predicted classes), or a
            ``tf.data.Dataset`` of ``(x, y)`` batches; ``None`` for callbacks that need no data
            (``FilterCallback``).
        log_dir: folder for the event files (it may be shared with
            ``keras.callbacks.TensorBoard``).
        num_samples: how many validation samples to show; chosen once in ``on_train_begin``,
            class-balanced when labels are given, deterministic (``seed``).
        freq: log on epochs 0, freq, 2*freq, ... and always on the last epoch.
        strict: ``False``: a failure while logging (unwritable folder, full disk, NaN maps) is
            reported once as an ``ExplanationLoggingWarning`` and training goes on. ``True``:
            it raises, and drawing runs on the training thread so it raises at the epoch that
            failed.
        class_names: names for the class ids in captions; ``None`` shows the ids.
        targets: the class each explanation is for: ``None`` (the true class when labels are
            given, else the predicted one), ``"true"``, ``"predicted"``, or an ``int``.
        seed: seeds the choice of samples.

    Attributes:
        samples: the chosen ``Samples`` (after ``on_train_begin``).
        logged_epochs: epochs whose explanations were computed and handed to the writer.
        epoch_end_seconds: training-thread time of each logged epoch's work.
        write_seconds: worker CPU time (drawing, encoding, writing) of each logged epoch (CPU,
            not wall time: the worker runs at a lower priority and waits for training).
        failures: the logging failures seen (``strict=False``).

    Raises:
        ValueError: on construction for bad arguments; in ``on_train_begin`` (before the first
            batch) for data or layers that do not fit the model.
    """

    #: tag prefix of the technique ("gradcam", "saliency", ...)
    technique = "explanation"
    #: whether the callback explains validation samples
    needs_data = True

    def __init__(self, validation_data: ValidationData | None, log_dir: str,
                 num_samples: int = 16, freq: int = 1, strict: bool = False,
                 class_names: list[str] | None = None,
                 targets: int | str | None = None, seed: int = 0) -> None:
        super().__init__()
        if self.needs_data and validation_data is None:
            raise ValueError(f"{type(self).__name__} needs validation_data: (x, y), x alone, "
                             "or a tf.data.Dataset of (x, y) batches")
        if not isinstance(log_dir, str | bytes) and not hasattr(log_dir, "__fspath__"):
            raise ValueError(f"log_dir must be a path; got {log_dir!r}")
        positive_int(num_samples, "num_samples")
        positive_int(freq, "freq")
        if targets is not None and not (
            targets in ("true", "predicted")
            or (isinstance(targets, int | np.integer) and not isinstance(targets, bool)
                and targets >= 0)
        ):
            raise ValueError(
                f"targets must be None, 'true', 'predicted' or a class index (int >= 0); got "
                f"{targets!r}"
            )
        if class_names is not None:
            class_names = [str(c) for c in class_names]
        self.validation_data = validation_data
        self.log_dir = str(log_dir.__fspath__() if hasattr(log_dir, "__fspath__") else log_dir)
        self.num_samples = int(num_samples)
        self.freq = int(freq)
        self.strict = bool(strict)
        self.class_names = class_names
        self.targets = targets
        self.seed = int(seed)
        self.samples: Samples | None = None
        self.logged_epochs: list[int] = []
        self.epoch_end_seconds: list[float] = []
        self.write_seconds: list[float] = []
        self.failures: list[BaseException] = []
        self._session: _Session | None = None
        self._owns_session = False
        self._chief = True
        self._last_epoch: int | None = None
        self._attempted: set[int] = set()
        self._deferred = False
        self._target_ids: np.ndarray | None = None

    # -- hooks for subclasses --------------------------------------------------------------------
    def _setup(self) -> None:
        """Build explainers once (training thread); raise ValueError for configuration errors."""

    def _compute(self, epoch: int) -> Any:
        """Run the compiled work for a logged epoch and return NumPy results (training thread)."""
        return None

    def _write(self, payload: Any, step: int) -> None:
        """Draw and write one logged epoch's results (worker thread)."""

    def trace_counts(self) -> dict[str, int]:
        """How many times each compiled computation of this callback has been traced."""
        return {}

    # -- Keras hooks ------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Choose the samples and build everything; configuration errors raise ValueError here."""
        if self._session is None or self._owns_session:
            self._session = _Session()
            self._owns_session = True
        self._chief = is_chief(self.model)
        self.logged_epochs, self.epoch_end_seconds, self.write_seconds = [], [], []
        self.failures = []
        self._last_epoch = None
        self._attempted = set()
        self._deferred = not ensure_built(self.model, self.validation_data)
        if self._deferred and not self.needs_data:
            return  # no data to build the model from: set up once fit() has built it
        if self.needs_data:
            self.samples = self._session.samples(self.validation_data, self.num_samples,
                                                 self.model, self.seed)
        self._setup()
        self._deferred = False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Log on scheduled epochs (chief only): compiled work here, drawing on the worker."""
        self._last_epoch = epoch
        self._report_worker_errors()
        if self._deferred:  # a model fit() built on its first batch (FilterCallback alone)
            self._setup()
            self._deferred = False
        if self._chief and self.should_log(epoch):
            self._log(epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Log the final epoch if an early stop skipped it, then drain, flush and close."""
        if self._chief and self._last_epoch is not None \
                and self._last_epoch not in self._attempted:
            self._log(self._last_epoch)
        if self._owns_session:
            self._close_session()
        self._report_worker_errors()

    # -- machinery ---------------------------------------------------------------------------------
    def should_log(self, epoch: int) -> bool:
        """Whether ``epoch`` is logged: every ``freq``-th from 0, and the last (``params``)."""
        if epoch % self.freq == 0:
            return True
        epochs = (self.params or {}).get("epochs")
        return epochs is not None and epoch == int(epochs) - 1

    def _log(self, epoch: int) -> None:
        self._attempted.add(epoch)
        t0 = time.perf_counter()
        try:
            payload = self._compute(epoch)
        except Exception as exc:
            self._fail(exc, epoch)
            return
        finally:
            self.epoch_end_seconds.append(time.perf_counter() - t0)
        self.logged_epochs.append(epoch)

        def task():
            t = time.thread_time()
            try:
                self._write(payload, epoch)
                self._session.flush(self.log_dir)  # visible in TensorBoard while training
            except Exception as exc:
                if self.strict:
                    raise
                with self._session.lock:
                    self._session.worker_errors.append((self, exc, epoch))
            finally:
                self.write_seconds.append(time.thread_time() - t)

        try:
            self._session.submit(task, synchronous=self.strict)
        except Exception as exc:
            self._fail(exc, epoch)
        self.epoch_end_seconds[-1] = time.perf_counter() - t0

    def _close_session(self) -> None:
        try:
            self._session.close()
        except Exception as exc:
            self._fail(exc, self._last_epoch)

    def _report_worker_errors(self) -> None:
        session = self._session
        if session is None or not session.worker_errors:
            return
        with session.lock:
            errors, session.worker_errors = session.worker_errors, []
        for cb, exc, epoch in errors:
            cb._fail(exc, epoch)

    def _fail(self, exc: BaseException, epoch: int | None) -> None:
        """A logging failure: raise when strict, else warn once per session and go on."""
        if self.strict:
            raise exc
        self.failures.append(exc)
        if self._session is not None and self._session.warned:
            return
        if self._session is not None:
            self._session.warned = True
        warnings.warn(
            f"{type(self).__name__} could not log epoch {epoch} to {self.log_dir!r}: "
            f"{type(exc).__name__}: {exc}. Training goes on; further logging failures of this "
            "run are not reported (strict=True raises instead).",
            ExplanationLoggingWarning, stacklevel=2,
        )

    # -- helpers for subclasses ----------------------------------------------------------------------
    def write_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Write one uint8 ``(H, W, 3)`` picture under ``tag`` at ``step`` (worker thread).

        The same record as ``tf.summary.image`` (a PNG and its size), encoded by ``png_fast``.
        """
        image = np.asarray(image, np.uint8)
        data = png_fast(image)
        writer = self._session.writer(self.log_dir)
        with writer.as_default(step=step):
            tf.summary.write(tag, tf.constant([str(image.shape[1]), str(image.shape[0]), data]),
                             metadata=_IMAGE_METADATA)

    def write_scalar(self, tag: str, value: float, step: int) -> None:
        """Write one scalar under ``tag`` at ``step`` (worker thread)."""
        writer = self._session.writer(self.log_dir)
        with writer.as_default(step=step):
            tf.summary.scalar(tag, float(value))

    def predictions(self, epoch: int) -> np.ndarray:
        """The model's outputs (probabilities) on the samples this epoch, shared by a bundle."""
        return self._session.predict(self.model, self.samples, epoch)

    def resolve_targets(self, n_classes: int, task: str = "multiclass") -> np.ndarray | None:
        """The class ids to explain per sample, or ``None`` for the predicted classes.

        Raises:
            ValueError: a label or the ``targets`` class is out of the model's range.
        """
        y = self.samples.y
        mode = self.targets
        if mode is None:
            mode = "true" if y is not None else "predicted"
        if mode == "predicted":
            return None
        if mode == "true":
            if y is None:
                raise ValueError(f"{type(self).__name__}: targets='true' needs labels in "
                                 "validation_data; give (x, y) or use targets='predicted'")
            t = y
        else:
            t = np.full(len(self.samples.x), int(mode), np.int64)
        hi = 1 if task in ("binary", "regression") else n_classes - 1
        bad = sorted({int(v) for v in np.unique(t) if not 0 <= v <= hi})
        if bad:
            raise ValueError(
                f"{type(self).__name__}: class id(s) {bad} are out of range for the model's "
                f"output ({n_classes} unit(s): valid ids 0..{hi})"
            )
        return t.astype(np.int32)

    def check_class_names(self, n_classes: int) -> None:
        """Raise ValueError when ``class_names`` does not name every output class."""
        if self.class_names is None:
            return
        need = max(n_classes, 2)
        if len(self.class_names) < need:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but the model has {need} "
                f"classes; give one name per class"
            )

    def captions(self, probs: np.ndarray) -> list[str]:
        """Per-sample captions from ``render.captions``: ``"true: cat  pred: dog (0.93)"``
        (without the true class when the data had no labels)."""
        probs = np.asarray(probs, np.float64)
        if probs.ndim == 1:
            probs = probs[:, None]
        if probs.shape[-1] == 1:  # one sigmoid unit
            p1 = probs[:, 0]
            pred = (p1 > 0.5).astype(int)
            conf = np.where(pred == 1, p1, 1.0 - p1)
        else:
            pred = probs.argmax(axis=-1)
            conf = probs[np.arange(len(probs)), pred]
        return render.captions(true=self.samples.y, pred=pred, confidence=conf,
                               class_names=self.class_names)

    def class_name(self, k: int) -> str:
        """The name of class ``k`` (its id when no ``class_names`` were given)."""
        k = int(k)
        if self.class_names is not None and 0 <= k < len(self.class_names):
            return self.class_names[k]
        return str(k)

    def check_finite(self, arr: np.ndarray, what: str, epoch: int) -> None:
        """Raise ``FloatingPointError`` when ``arr`` holds NaN or inf (a logging failure)."""
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(f"{what} at epoch {epoch} contain NaN or inf")

    def _attach(self, session: _Session) -> None:
        """Share a bundle's session (``AuditCallback``)."""
        self._session = session
        self._owns_session = False
        if self.needs_data:
            session.max_samples = max(session.max_samples, self.num_samples)


# -- maps over the inputs: shared by the Grad-CAM and saliency callbacks ---------------------------
class AttributionCallback(ExplanationCallback):
    """Base of the callbacks that draw one attribution map per sample over its input.

    Each logged epoch writes one picture under ``tag``: every sample next to its map overlaid
    on it (``colormap``, alpha-blended), captioned with the true class, the predicted class
    and the confidence. It also writes ``stability_tag``: the mean Spearman rank correlation
    of this epoch's maps with the previous logged epoch's (from the second logged epoch on).

    Args:
        colormap: a Matplotlib colormap name for the maps.
        alpha: the map's opacity over the input, in [0, 1].
        Other arguments: as ``ExplanationCallback``.

    Raises:
        ValueError: in ``on_train_begin`` when the model's input is not an image
            ``(H, W, C)``, besides the explainer's own errors.
    """

    #: the scalar tag of the stability measure (None: not logged)
    stability_tag: str | None = None

    def __init__(self, validation_data: ValidationData, log_dir: str, num_samples: int = 16,
                 freq: int = 1, targets: int | str | None = None, strict: bool = False,
                 class_names: list[str] | None = None, colormap: str = "jet",
                 alpha: float = 0.5, seed: int = 0) -> None:
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, targets=targets, seed=seed)
        _check_colormap(colormap)
        if not (isinstance(alpha, int | float) and 0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
        self.colormap = colormap
        self.alpha = float(alpha)
        self.explainer = None
        self._prev_maps: np.ndarray | None = None

    @property
    def tag(self) -> str:
        """The image tag (known after ``on_train_begin``)."""
        raise NotImplementedError

    def _build_explainer(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _setup(self) -> None:
        shape = model_input_shape(self.model)
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} draws maps over images; the model's input has shape "
                f"{(None, *shape)}, not (None, height, width, channels)"
            )
        self.explainer = self._build_explainer()
        self._target_ids = self.resolve_targets(self.explainer.n_classes, self.explainer.task)
        self.check_class_names(self.explainer.n_classes)
        self._prev_maps = None

    def _compute(self, epoch: int) -> dict:
        maps = self.explainer(self.samples.x, self._target_ids)
        self.check_finite(maps, f"{self.tag} maps", epoch)
        probs = self.predictions(epoch)
        self.check_finite(probs, "model outputs", epoch)
        scalars = self._scalars(maps, self.explainer.last_targets)
        # the stability is plain NumPy on finished maps: the worker computes it (in order)
        prev, self._prev_maps = self._prev_maps, maps
        return {"maps": maps, "prev_maps": prev, "probs": probs, "scalars": scalars}

    def _scalars(self, maps: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Scalars that need the model as it is now (computed on the training thread); the
        base class has none."""
        return {}

    def _write(self, payload: dict, step: int) -> None:
        picture = render.explanation_grid(self.samples.x, payload["maps"],
                                          captions=self.captions(payload["probs"]),
                                          alpha=self.alpha, cmap=self.colormap,
                                          min_tile=MIN_TILE)
        self.write_image(self.tag, picture, step)
        scalars = dict(payload["scalars"])
        if self.stability_tag is not None and payload.get("prev_maps") is not None:
            rho = spearman_per_sample(payload["prev_maps"], payload["maps"])
            if np.any(np.isfinite(rho)):
                scalars[self.stability_tag] = float(np.nanmean(rho))
        for tag, value in scalars.items():
            self.write_scalar(tag, value, step)

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the explainer and of the shared prediction pass."""
        out = {"forward": self._session.forward_trace_count() if self._session else 0}
        if self.explainer is not None:
            out[self.tag] = int(self.explainer.trace_count)
        return out


def _check_colormap(name: str) -> None:
    """Raise ValueError for a name that is not a Matplotlib colormap (render's check)."""
    render.colormap_lut(name)
