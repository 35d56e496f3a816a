"""Token ids as text: the ``vocabulary=`` option of the callbacks that draw token heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class Vocabulary:
    """The strings of token ids.

    Args:
        vocabulary: a list (or tuple) whose entry ``i`` is the string of id ``i`` (as
            ``keras.layers.TextVectorization.get_vocabulary()`` returns), a dict of id -> string,
            or a dict of string -> id (a tokenizer's ``word_index``); ``None`` shows the ids.

    Raises:
        ValueError: anything else, an empty vocabulary, entries that are not strings, ids that
            are not non-negative integers, or a string -> id dict that gives one id twice.
    """

    def __init__(self, vocabulary: Sequence[str] | Mapping[Any, Any] | None) -> None:
        self.table: dict[int, str] | None = None
        if vocabulary is None:
            return
        if isinstance(vocabulary, str | bytes) or not isinstance(vocabulary, list | tuple
                                                                   | Mapping):
            raise ValueError(
                "vocabulary must be a list of strings (entry i is the string of token id i) or "
                f"a dict of id -> string (or string -> id); got {type(vocabulary).__name__}"
            )
        if not vocabulary:
            raise ValueError("vocabulary is empty; give one string per token id")
        if isinstance(vocabulary, Mapping):
            items = list(vocabulary.items())
            if all(isinstance(k, str) for k, _ in items):  # string -> id: turn it around
                items = [(v, k) for k, v in items]
            table = {}
            for k, v in items:
                if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
                    raise ValueError(f"vocabulary ids must be non-negative integers; got {k!r}")
                if not isinstance(v, str):
                    raise ValueError(f"vocabulary entry of id {k} must be a string; got {v!r}")
                if int(k) in table:
                    raise ValueError(f"vocabulary gives id {int(k)} twice: "
                                     f"{table[int(k)]!r} and {v!r}")
                table[int(k)] = v
        else:
            bad = [i for i, v in enumerate(vocabulary) if not isinstance(v, str)]
            if bad:
                raise ValueError(f"vocabulary entries must be strings; entry {bad[0]} is "
                                 f"{vocabulary[bad[0]]!r}")
            table = dict(enumerate(vocabulary))
        self.table = table

    def check(self, ids: np.ndarray, what: str = "the validation samples") -> None:
        """Raise ValueError when ``ids`` holds ids the vocabulary has no string for."""
        if self.table is None:
            return
        unknown = sorted({int(v) for v in np.unique(ids)} - set(self.table))
        if unknown:
            size = len(self.table)
            dense = set(self.table) == set(range(size))
            scope = f"ids 0..{size - 1}" if dense else f"{size} ids"
            raise ValueError(
                f"vocabulary has {size} entries ({scope}) but {what} hold token id(s) "
                f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''} beyond it; give the "
                "vocabulary the model's ids were made with"
            )

    def labels(self, ids: np.ndarray) -> list[list[str]]:
        """One list of strings per sample (the ids themselves without a vocabulary)."""
        if self.table is None:
            return [[str(int(v)) for v in row] for row in np.asarray(ids)]
        return [[self.table[int(v)] for v in row] for row in np.asarray(ids)]
