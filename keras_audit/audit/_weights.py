"""Weight fingerprints and a guard that puts a model's weights back exactly as they were.

Analyses that edit weights in place (pruning impact, the randomisation sanity test) run inside
``preserved_weights(model)``; ``weights_hash(model)`` lets callers and tests prove that nothing
changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import keras
import numpy as np


def _variables(model: keras.Model) -> list:
    """Every weight of the model (trainable and not, nested models included), each once."""
    seen: set[int] = set()
    out = []
    for v in model.weights:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def weights_hash(model: keras.Model) -> str:
    """SHA-256 over every weight of ``model``: its path, dtype, shape and raw bytes, in order.

    Two calls give the same digest exactly when every weight holds the same bits (NaNs
    included), so it proves bit-exact restoration.

    Args:
        model: a built Keras model.

    Returns:
        The hex digest (64 characters).
    """
    h = hashlib.sha256()
    for v in _variables(model):
        a = np.ascontiguousarray(v.numpy())
        h.update(f"{v.path}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class WeightSnapshot:
    """Copies of a model's weights, taken once, that can be written back exactly.

    Attributes:
        variables: the model's weight variables.
        values: a NumPy copy of each, in the same order.
    """

    def __init__(self, model: keras.Model) -> None:
        self.variables = _variables(model)
        self.values = [np.array(v.numpy(), copy=True) for v in self.variables]
        self._index = {id(v): i for i, v in enumerate(self.variables)}

    def original(self, variable) -> np.ndarray:
        """The saved value of one of the model's variables (do not modify it)."""
        return self.values[self._index[id(variable)]]

    def restore(self, variables=None) -> None:
        """Write the saved values back into ``variables`` (all of them when ``None``).

        A ``KeyboardInterrupt`` that arrives while restoring is held until every variable has
        been written back, then raised.
        """
        todo = self.variables if variables is None else list(variables)
        interrupted: BaseException | None = None
        for v in todo:
            while True:
                try:
                    v.assign(self.values[self._index[id(v)]])
                    break
                except KeyboardInterrupt as exc:  # finish restoring first, re-raise after
                    interrupted = exc
        if interrupted is not None:
            raise interrupted

    def matches(self) -> bool:
        """Whether every variable holds exactly (bit for bit) its saved value."""
        return all(
            np.ascontiguousarray(v.numpy()).tobytes() == a.tobytes()
            for v, a in zip(self.variables, self.values)
        )


@contextmanager
def preserved_weights(model: keras.Model, verify: bool = True) -> Iterator[WeightSnapshot]:
    """Snapshot every weight of ``model`` on entry and restore it bit-exactly on exit.

    The weights are restored on a normal exit, on an exception and on ``KeyboardInterrupt``.
    Inside the block, edit weights freely (``variable.assign``); ``snapshot.original(v)``
    gives a variable's saved value.

    Args:
        model: a built Keras model.
        verify: after restoring on a normal exit, check that every weight is bit-identical to
            the snapshot.

    Yields:
        The ``WeightSnapshot``.

    Raises:
        RuntimeError: ``verify`` is on and a weight could not be restored exactly (for
            instance, a variable was replaced rather than assigned inside the block).

    Example::

        with preserved_weights(model) as snap:
            layer.kernel.assign(np.zeros_like(snap.original(layer.kernel)))
            ...
        # model's weights are exactly what they were
    """
    snapshot = WeightSnapshot(model)
    ok = False
    try:
        yield snapshot
        ok = True
    finally:
        snapshot.restore()
    if ok and verify and not snapshot.matches():
        raise RuntimeError(
            f"model {model.name!r}: weights were not restored exactly after the block"
        )
