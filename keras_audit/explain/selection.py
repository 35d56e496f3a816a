"""Choosing what to explain: predicted classes from scores, and class-balanced sample orders.

One copy of each, for the callbacks and the audit (which had one each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def predicted_classes(scores: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Class ids from a model's outputs: argmax, or a threshold for one unit.

    Args:
        scores: ``(N, C)`` scores with ``C > 1`` (argmax over the last axis), or ``(N, 1)`` /
            ``(N,)`` for one sigmoid unit (class 1 where the score exceeds ``threshold``).
        threshold: the one-unit cut: 0.5 for probabilities, 0.0 for logits.

    Returns:
        ``(N,)`` int64 class ids.

    Raises:
        ValueError: ``scores`` is not 1-D or 2-D.
    """
    s = np.asarray(scores)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores must be (N,) or (N, classes); got shape {s.shape}")
    if s.ndim == 1 or s.shape[1] == 1:
        return (s.reshape(len(s)) > threshold).astype(np.int64)
    return s.argmax(axis=1).astype(np.int64)


def balanced_order(y: ArrayLike | int | None, n: int | None = None, seed: int = 0,
                   n_pool: int | None = None) -> np.ndarray:
    """A deterministic order over a pool of samples in which every prefix is class-balanced.

    Each class's indices are shuffled with ``seed``; the order takes one from each class in
    turn (classes in ascending order) until every class is used up. Without labels it is a
    seeded permutation of the pool.

    Args:
        y: ``(N,)`` class ids or ``(N, C)`` one-hot labels; an ``int`` (the pool size) or
            ``None`` (with ``n_pool``) for unlabelled data.
        n: how many indices to return (the first ``n`` of the order); ``None`` for all.
        seed: seeds the shuffles; the same seed gives the same order.
        n_pool: the pool size when ``y`` is ``None``.

    Returns:
        int64 indices into the pool.

    Raises:
        ValueError: no labels and no pool size, or ``n`` is negative.
    """
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 0):
        raise ValueError(f"n must be a non-negative integer or None; got {n!r}")
    rng = np.random.default_rng(seed)
    if y is None or isinstance(y, int | np.integer):
        pool = n_pool if y is None else int(y)
        if pool is None:
            raise ValueError("balanced_order needs labels y or the pool size n_pool")
        return rng.permutation(pool).astype(np.int64)[:n]
    labels = np.asarray(y)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    width = max((len(p) for p in per_class), default=0)
    order = [p[k] for k in range(width) for p in per_class if k < len(p)]
    return np.asarray(order, np.int64)[:n]
