"""Event files written with TensorBoard's own protobufs and its pure-Python file writer.

``tf.summary`` runs a handful of eager TensorFlow ops for every record (shape asserts, a
``cond`` on the recording state, a tensor copy): about a millisecond of CPU each on 2 cores, and
``AuditCallback`` writes over a hundred records per logged epoch, on a worker thread that
competes with training for the cores. These records are the same summaries (the same plugin
metadata and tensors ``tf.summary.scalar`` / ``text`` / ``histogram`` / ``image`` write, which
TensorBoard and its ``EventAccumulator`` read alike), built as protobufs with TensorBoard's
``tensor_util`` and appended to the event file by ``tf.io.TFRecordWriter`` (an event file is a
TFRecord file of ``Event`` protos; its C++ writer does the framing and CRCs, one call per
record). TensorBoard's own pure-Python ``EventFileWriter`` was tried: its CRC32C is Python code
(about 9 ms per 100 KB picture) and a write error dies in its thread. Hand-written only in that
it builds the ``Event`` records and names the file as TensorFlow does.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from typing import Any

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.util import tensor_util

__all__ = ["EventWriter", "histogram_buckets"]

#: histogram buckets (what tf.summary.histogram uses by default)
BUCKETS = 30
#: tells this process's event files apart when two open in one second
_SERIAL = itertools.count()


def _metadata(module: Any, description: str | None) -> summary_pb2.SummaryMetadata:
    return module.create_summary_metadata(display_name=None, description=description)


def histogram_buckets(values: np.ndarray, buckets: int = BUCKETS) -> np.ndarray:
    """``(buckets, 3)`` float64 rows ``[left, right, count]`` over ``values``'s range: the
    tensor ``tf.summary.histogram`` writes (equal-width buckets; one value: all in the last)."""
    data = np.asarray(values, np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        return np.zeros((buckets, 3))
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        counts = np.zeros(buckets)
        counts[-1] = data.size
        return np.stack([np.full(buckets, lo), np.full(buckets, hi), counts], axis=1)
    counts, edges = np.histogram(data, bins=buckets, range=(lo, hi))
    return np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)


class EventWriter:
    """One event file in ``log_dir`` (created when missing): each record is appended when it
    is written; ``flush`` hands them to the file system, ``close`` ends the file. Safe to use
    from several threads.

    Args:
        log_dir: the folder (any path ``tf.io.gfile`` takes).

    Raises:
        OSError: the folder or the file cannot be created, or (later) a record not written.
    """

    def __init__(self, log_dir: str) -> None:
        tf.io.gfile.makedirs(log_dir)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_SERIAL)}.keras_audit")
        self.path = os.path.join(log_dir, name)
        self._lock = threading.Lock()
        self._file = tf.io.TFRecordWriter(self.path)
        self._record(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _record(self, event: event_pb2.Event) -> None:
        with self._lock:
            self._file.write(event.SerializeToString())

    def _add(self, tag: str, tensor: Any, metadata: summary_pb2.SummaryMetadata,
             step: int) -> None:
        value = summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)
        self._record(event_pb2.Event(wall_time=time.time(), step=int(step),
                                     summary=summary_pb2.Summary(value=[value])))

    def scalar(self, tag: str, value: float, step: int, description: str | None = None) -> None:
        """A float32 scalar (the Scalars dashboard)."""
        self._add(tag, tensor_util.make_tensor_proto(np.float32(value)),
                  _metadata(scalar_metadata, description), step)

    def text(self, tag: str, text: str, step: int, description: str | None = None) -> None:
        """A Markdown string (the Text dashboard)."""
        self._add(tag, tensor_util.make_tensor_proto(text.encode("utf-8"), dtype=np.object_),
                  _metadata(text_metadata, description), step)

    def histogram(self, tag: str, values: np.ndarray, step: int,
                  description: str | None = None, buckets: int = BUCKETS) -> None:
        """A histogram of ``values`` (the Histograms and Distributions dashboards)."""
        self._add(tag, tensor_util.make_tensor_proto(histogram_buckets(values, buckets),
                                                     dtype=np.float64),
                  _metadata(histogram_metadata, description), step)

    def image(self, tag: str, encoded: bytes, width: int, height: int, step: int,
              description: str | None = None) -> None:
        """One encoded picture (PNG or JPEG; TensorBoard tells them by their bytes), as the
        ``[width, height, bytes]`` string tensor ``tf.summary.image`` writes."""
        tensor = tensor_util.make_tensor_proto(
            np.array([str(width).encode(), str(height).encode(), encoded], dtype=object),
            dtype=np.object_)
        self._add(tag, tensor, _metadata(image_metadata, description), step)

    def tensor(self, tag: str, tensor: np.ndarray, step: int, metadata: Any) -> None:
        """Any tensor with a plugin's ``SummaryMetadata`` (PR curves, Custom Scalars)."""
        meta = metadata if isinstance(metadata, summary_pb2.SummaryMetadata) else \
            summary_pb2.SummaryMetadata.FromString(metadata.SerializeToString())
        array = np.asarray(tensor)
        proto = tensor_util.make_tensor_proto(array, dtype=np.object_) \
            if array.dtype == object else tensor_util.make_tensor_proto(array)
        self._add(tag, proto, meta, step)

    def flush(self) -> None:
        """Hand the records written so far to the file system."""
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._file.close()
