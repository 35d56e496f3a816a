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
from tensorboard.plugins.image import metadata as image_metadata

from keras_audit.callbacks.layers import model_layers
from keras_audit.callbacks.samples import Samples, select_samples
from keras_audit.explain import LayerInfo
from keras_audit.explain.forward import CompiledForward
from keras_audit.render.png import png_fast

#: marks a summary as an image for TensorBoard (what tf.summary.image attaches)
_IMAGE_METADATA = image_metadata.create_summary_metadata(
    display_name=None, description=None).SerializeToString()
#: logged epochs whose drawing may be queued before the training thread waits for the worker
MAX_PENDING = 2


def _lower_priority() -> None:
    """Make the calling thread yield the CPU to training (Linux: per-thread nice +10)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


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
        self._errors: list[tuple[Callable[[BaseException], None], BaseException]] = []
        self._warned = False
        self._lock = threading.Lock()
        self._samples: dict = {}
        self._forward: CompiledForward | None = None
        self._pred: tuple | None = None  # (epoch, probs, the samples' base array)
        self._layers: tuple[keras.Model, list[LayerInfo]] | None = None

    # -- samples and predictions (training thread) ----------------------------------------------
    def reserve_samples(self, n: int) -> None:
        """Make sure the shared selection holds at least ``n`` samples."""
        self.max_samples = max(self.max_samples, int(n))

    def samples(self, validation_data: Any, n: int, model: keras.Model, seed: int) -> Samples:
        """The first ``n`` of the bundle's samples (chosen once for the largest request)."""
        key = (id(validation_data), seed)
        want = max(n, self.max_samples)
        have = self._samples.get(key)
        if have is None or have[1] < want:
            have = (select_samples(validation_data, want, model, seed), want)
            self._samples[key] = have
        return have[0].head(n)

    def model_layers(self, model: keras.Model) -> list[LayerInfo]:
        """The model's readable layers (``explain.list_layers``), listed once for the bundle."""
        if self._layers is None or self._layers[0] is not model:
            self._layers = (model, model_layers(model))
        return self._layers[1]

    def predict(self, model: keras.Model, samples: Samples, epoch: int) -> np.ndarray:
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
        """Tracings of the shared prediction pass (0 before it first runs)."""
        fn = getattr(self._forward, "_fn", None)
        return 0 if fn is None else int(fn.experimental_get_tracing_count())

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

        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="keras_audit_callbacks",
                initializer=_lower_priority)
        while len(self._pending) >= MAX_PENDING:
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(run))

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
    def _writer(self, log_dir: str):
        with self._lock:
            w = self._writers.get(log_dir)
            if w is None:  # lazily: a folder gets an event file only when something is written
                w = tf.summary.create_file_writer(log_dir)
                self._writers[log_dir] = w
            return w

    def write_image(self, log_dir: str, tag: str, image: np.ndarray, step: int) -> None:
        """Write one uint8 ``(H, W, 3)`` picture under ``tag`` at ``step`` into ``log_dir``.

        The same record as ``tf.summary.image`` (a PNG and its size), encoded by ``png_fast``.
        """
        image = np.asarray(image, np.uint8)
        data = png_fast(image)
        with self._writer(log_dir).as_default(step=step):
            tf.summary.write(tag, tf.constant([str(image.shape[1]), str(image.shape[0]), data]),
                             metadata=_IMAGE_METADATA)

    def write_scalar(self, log_dir: str, tag: str, value: float, step: int) -> None:
        """Write one scalar under ``tag`` at ``step`` into ``log_dir``."""
        with self._writer(log_dir).as_default(step=step):
            tf.summary.scalar(tag, float(value))

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
