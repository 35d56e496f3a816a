"""``engine="ray"``: the streamed forward passes run as Ray tasks on a cluster's workers.

The driver reads the data's batches (as ``streaming.Stream`` does) and submits one Ray task
per batch; each task runs the model on its batch and returns the outputs, which the driver
takes back in submission order, so the per-sample outputs are merged in the data's order.
Labels and group labels never leave the driver. Every forward pass of the model over the data
goes this way: the performance pass of the context and each pruning level (the pruned
weights are shipped with the pass). The robustness section's corruption passes (corruption
and model compiled together) run in the driver process over the batches this stream reads,
and the report's robustness section says so (``engine_note``).

Each worker process loads the model once (from its ``.keras`` path when the worker can read
it, else from the ``.keras`` bytes shipped once through Ray's object store) and keeps it in
this module's cache; a pass only ships the current weights, once, as one object.

Scheduling, placement and retries are Ray's: tasks carry ``max_retries``, so a worker that
dies mid-pass has its task re-run elsewhere and the report is unchanged. Only the number of
batches in flight is bounded here (Ray's ``ray.wait`` back-pressure pattern), which keeps the
driver's memory to a window of batches.

The cluster: ``RAY_ADDRESS`` (e.g. ``ray://head:10001`` or ``auto``) connects to an existing
one; without it a local cluster of ``LOCAL_CPUS`` workers starts and is shut down after the
audit. The workers must be able to import ``keras_audit`` (installed on the cluster's nodes,
or shipped by a ``runtime_env``: call ``ray.init(runtime_env=...)`` yourself before
``audit.run``; an already-initialised Ray is used as it is and left running).
"""

from __future__ import annotations

import collections
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from keras_audit._extras import check_installed
from keras_audit.audit.streaming import Stream

#: CPUs of the local cluster started when ``RAY_ADDRESS`` is not set (bounded: shared hosts)
LOCAL_CPUS = 2
#: task attempts after a worker dies (Ray re-runs the task; application errors are not retried)
MAX_RETRIES = 3
#: batches in flight per worker CPU: enough to keep workers busy, bounded for driver memory
WINDOW_PER_CPU = 2

#: this worker process's models: key -> [model, CompiledForward by output, weights key]
_WORKER_MODELS: dict[str, list] = {}


def check_ray() -> None:
    """Raise before any work when Ray is not installed.

    Raises:
        ImportError: ``ray`` cannot be found; the message says ``pip install
            'keras-audit[ray]'``.
    """
    check_installed("ray", "ray", feature='audit.run(..., engine="ray")')


def model_payload(model: Any, path: str | os.PathLike | None) -> tuple[bytes, str | None]:
    """The ``.keras`` bytes workers load the model from, and the path they may read instead.

    Args:
        model: the built ``keras.Model`` the driver audits.
        path: the ``.keras`` file it was loaded from, or None (the model is saved to bytes).

    Returns:
        ``(bytes, absolute path or None)``.
    """
    if path is not None:
        p = Path(path).resolve()
        return p.read_bytes(), str(p)
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "model.keras"
        model.save(file)
        return file.read_bytes(), None


def _worker_model(key: str, path: str | None, blob_ref) -> list:
    """This worker's cached model: loaded on the first task that needs it, then reused."""
    entry = _WORKER_MODELS.get(key)
    if entry is not None:
        return entry
    import keras
    import ray

    if path is not None and Path(path).is_file():
        model = keras.saving.load_model(path, safe_mode=True)
    else:  # the path is not visible from this node: the bytes shipped through the object store
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "model.keras"
            file.write_bytes(ray.get(blob_ref))
            model = keras.saving.load_model(file, safe_mode=True)
    entry = [model, {}, None]
    _WORKER_MODELS[key] = entry
    return entry


def _forward_batch(key: str, path: str | None, blob_ref: list, weights_key: str,
                   weights_ref: list, output: Any, batch_size: int, x: np.ndarray) -> np.ndarray:
    """The Ray task: the model's outputs on one batch (refs come wrapped in lists so Ray
    passes them unresolved and each worker fetches them once, not with every task)."""
    import ray

    from keras_audit.explain.forward import CompiledForward

    entry = _worker_model(key, path, blob_ref[0])
    model, forwards = entry[0], entry[1]
    if entry[2] != weights_key:  # a new pass (e.g. a pruning level): its weights, set once
        model.set_weights(ray.get(weights_ref[0]))
        entry[2] = weights_key
    fwd = forwards.get((output, batch_size))
    if fwd is None:
        fwd = forwards[(output, batch_size)] = CompiledForward(model, output=output,
                                                               batch_size=batch_size)
    return fwd(x)


class RayCluster:
    """Ray, connected or started: ``RAY_ADDRESS`` if set, else a local bounded cluster.

    An already-initialised Ray (``ray.init`` called by the user) is used as it is and left
    running; a cluster this object started is shut down by ``close``.
    """

    def __init__(self) -> None:
        check_ray()
        import ray

        self.started = False
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=LOCAL_CPUS, **kwargs)
            self.started = True
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.task = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(_forward_batch)

    def close(self) -> None:
        """Shut Ray down if this object started it."""
        import ray

        if self.started and ray.is_initialized():
            ray.shutdown()
            self.started = False


class RayStream(Stream):
    """A ``Stream`` whose forward passes run as Ray tasks (one per batch).

    Args:
        data: a ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, groups)`` batches, or a
            ``DataSource``.
        model: the driver's ``keras.Model`` (its current weights are shipped with each pass).
        cluster: the ``RayCluster`` the tasks run on.
        path: the model's ``.keras`` file, or None.

    Raises:
        AuditInputError: what ``Stream`` raises.
    """

    engine = "ray"

    def __init__(self, data: Any, model: Any, cluster: RayCluster,
                 path: str | os.PathLike | None = None) -> None:
        import ray

        super().__init__(data, None)
        self.cluster = cluster
        blob, self.path = model_payload(model, path)
        self.key = hashlib.sha256(blob).hexdigest()
        self.blob_ref = ray.put(blob)

    def _forward_batches(self, forward) -> Iterator[tuple[np.ndarray, np.ndarray, dict | None]]:
        import ray

        weights_ref = ray.put(forward.model.get_weights())
        weights_key = uuid.uuid4().hex
        window = WINDOW_PER_CPU * self.cluster.cpus
        pending: collections.deque = collections.deque()
        for x, y, g in self.batches():
            ref = self.cluster.task.remote(self.key, self.path, [self.blob_ref], weights_key,
                                           [weights_ref], forward._output, forward.batch_size,
                                           np.asarray(x))
            pending.append((ref, y, g))
            if len(pending) >= window:  # back-pressure: the oldest first keeps the data's order
                ref0, y0, g0 = pending.popleft()
                yield _get(ref0), y0, g0
        while pending:
            ref0, y0, g0 = pending.popleft()
            yield _get(ref0), y0, g0


def _get(ref) -> np.ndarray:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:  # retries exhausted or the task itself failed
        raise RuntimeError(f"a Ray task of the audit's forward pass failed: {exc}") from exc
