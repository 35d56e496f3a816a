"""Compiled objects (attacks, corruption sweeps, forward passes) kept per model, so a repeated
call on the same model (a sweep over settings, a report after a notebook run) traces nothing."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable

import keras


class ModelCache:
    """The ``size`` most recently used ``(model, key) -> object`` entries.

    Each entry holds its model alive until it is pushed out; an entry whose model has gone
    (its id reused by another model) is rebuilt.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict = OrderedDict()

    def get(self, model: keras.Model, key: tuple, build: Callable[[], object]) -> object:
        """The object ``build()`` made for ``model`` and ``key``, built on first use."""
        full = (id(model), *key)
        hit = self._entries.get(full)
        if hit is not None and hit[0]() is model:
            self._entries.move_to_end(full)
            return hit[1]
        value = build()
        self._entries[full] = (weakref.ref(model), value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry (the next call traces again)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
