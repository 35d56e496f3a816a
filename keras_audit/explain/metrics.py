"""Explanation-quality measures shared by the callbacks and the audit: deletion/insertion AUC
(the RISE protocol, Petsiuk et al. 2018) and per-map Spearman rank correlation.

Hand-written: Quantus, the usual library for these, pins Keras 2.
"""

from __future__ import annotations

import keras
import numpy as np
from scipy.stats import rankdata

from keras_audit.explain.forward import CompiledForward, check_batch


def spearman_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between ``a[i]`` and ``b[i]`` for each sample.

    Returns:
        ``(N,)`` float array; NaN where a map is constant (no ranking to compare).

    Raises:
        ValueError: the two batches differ in shape.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape; got {a.shape} and {b.shape}")
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def _blur(x: np.ndarray) -> np.ndarray:
    """A strong blur of each image (the insertion canvas in RISE)."""
    from scipy.ndimage import gaussian_filter

    if x.ndim < 3:
        return np.broadcast_to(x.mean(axis=0, keepdims=True), x.shape).copy()
    sigma = [0] + [max(1.0, s / 8) for s in x.shape[1:-1]] + [0]
    return gaussian_filter(x, sigma=sigma)


def deletion_insertion(model: keras.Model, x, maps, targets=None, steps: int = 20,
                       seed: int = 0, output: int | str | None = None,
                       batch_size: int = 256, forward: CompiledForward | None = None
                       ) -> dict[str, np.ndarray]:
    """Deletion and insertion AUC of saliency maps, with a random-order baseline.

    Deletion replaces the most salient positions first by zeros and tracks the target's
    probability; a faithful map makes it fall fast (low AUC). Insertion starts from a blurred
    copy and restores the most salient positions first (high AUC is good). The random baseline
    does the same in a random order. ``steps`` + 1 points per curve, trapezoid AUC on [0, 1].

    Args:
        model: the model the maps explain.
        x: the batch, (N, H, W, C) images, (N, T, F) sequences or (N, F) tables.
        maps: one map per sample over the positions: (N, H, W), (N, T) or (N, F).
        targets: the class whose probability is tracked; ``None`` = the predicted class.
        steps: points on each curve after the first.
        seed: seeds the random order.
        forward: a ``CompiledForward`` to reuse (callbacks pass theirs to avoid rebuilding).

    Returns:
        ``{"deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"}``,
        each an ``(N,)`` array.

    Raises:
        ValueError: maps do not match x, or steps < 1.
    """
    x = check_batch(model, x).astype(np.float32, copy=False)
    maps = np.asarray(maps, np.float32)
    positions = x.shape[1:-1] if x.ndim >= 3 else x.shape[1:]
    if maps.shape != (len(x), *positions):
        raise ValueError(f"maps must have shape {(len(x), *positions)} for x of shape "
                         f"{x.shape}; got {maps.shape}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    fwd = forward or CompiledForward(model, output=output, batch_size=batch_size)
    probs = fwd(x)
    n, p = len(x), int(np.prod(positions))
    if targets is None:
        t = (probs[:, 0] > 0.5).astype(int) if probs.shape[-1] == 1 else probs.argmax(-1)
    else:
        t = np.broadcast_to(np.asarray(targets, int), (n,))
    rng = np.random.default_rng(seed)
    order_sal = np.argsort(-np.nan_to_num(maps.reshape(n, p), nan=0.0), axis=1, kind="stable")
    order_rnd = np.argsort(rng.random((n, p)), axis=1)
    blurred = _blur(x)
    zeros = np.zeros_like(x)
    counts = np.round(np.linspace(0, p, steps + 1)).astype(int)
    out = {}
    for name, order in (("", order_sal), ("random_", order_rnd)):
        # rank[i, pos] = when position pos is changed for sample i
        rank = np.empty_like(order)
        rank[np.arange(n)[:, None], order] = np.arange(p)[None, :]
        rank = rank.reshape(n, *positions)
        for kind, start, end in (("deletion", x, zeros), ("insertion", blurred, x)):
            curve = np.empty((n, steps + 1), np.float32)
            for s, c in enumerate(counts):
                changed = rank < c
                if x.ndim >= 3:
                    changed = changed[..., None]
                imgs = np.where(changed, end, start)
                pr = fwd(imgs)
                curve[:, s] = _target_prob(pr, t)
            out[f"{name}{kind}_auc"] = np.trapezoid(curve, dx=1.0 / steps, axis=1)
    return out


def _target_prob(probs: np.ndarray, t: np.ndarray) -> np.ndarray:
    if probs.shape[-1] == 1:
        return np.where(t == 1, probs[:, 0], 1.0 - probs[:, 0])
    return probs[np.arange(len(t)), t]
