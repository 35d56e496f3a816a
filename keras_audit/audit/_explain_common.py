"""Helpers shared by the SHAP, LIME and tabular analyses: figures, targets, names, outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np


@contextlib.contextmanager
def pyplot_figure(size: tuple[float, float]) -> Iterator:
    """A figure for code that draws through pyplot (shap's plots), closed on exit.

    Yields the Figure; on exit it is removed from pyplot's registry (so nothing leaks into a
    user's ``plt.show()``) and given its own Agg canvas, so it can still be saved.
    """
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plt.figure(figsize=size, layout="constrained")
    try:
        yield fig
    finally:
        plt.close(fig)
        FigureCanvasAgg(fig)


def get_forward(model, forward, batch_size: int):
    """``forward`` if it is a ``CompiledForward`` of ``model``, else a new one.

    Raises:
        ValueError: ``forward`` was built on another model.
    """
    from keras_audit.explain.forward import CompiledForward

    if forward is None:
        return CompiledForward(model, batch_size=batch_size)
    if not isinstance(forward, CompiledForward) or forward.model is not model:
        raise ValueError("forward must be a CompiledForward built on this same model")
    return forward


def as_2d_outputs(out: np.ndarray) -> np.ndarray:
    """Model outputs as ``(N, K)``: a ``(N,)`` output becomes one column.

    Raises:
        ValueError: the outputs are not one score vector per sample.
    """
    out = np.asarray(out)
    if out.ndim == 1:
        return out[:, None]
    if out.ndim != 2:
        raise ValueError(f"the model's output has shape {(None, *out.shape[1:])}; these "
                         "analyses explain one score vector per sample: (N,) or (N, K)")
    return out


def resolve_targets(targets, n: int, n_outputs: int) -> np.ndarray | None:
    """Check ``targets`` and return them as ``(N,)`` int64, or ``None`` (explain everything).

    ``targets``: ``None``, an ``int`` (the same output for every sample) or ``(N,)`` ints.

    Raises:
        ValueError: a target out of ``[0, n_outputs)``, a wrong length, or non-integers.
    """
    if targets is None:
        return None
    if hasattr(targets, "numpy"):
        targets = targets.numpy()
    t = np.asarray(targets)
    if t.dtype == bool or t.dtype.kind not in "iuf" or (
            t.dtype.kind == "f" and not np.all(np.mod(t, 1) == 0)):
        raise ValueError(f"targets must be None, an int or {n} ints (one output index per "
                         f"sample); got {targets!r:.80}")
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise ValueError(f"targets must be None, an int or an array of shape ({n},); got shape "
                         f"{t.shape}")
    t = t.astype(np.int64)
    bad = sorted({int(v) for v in t if not 0 <= v < n_outputs})
    if bad:
        raise ValueError(f"target(s) {bad[:10]} out of range; the model has {n_outputs} "
                         f"output(s): indices 0..{n_outputs - 1}")
    return t


def check_names(names: Sequence[str] | None, n: int, what: str) -> list[str] | None:
    """``names`` as a list of ``n`` strings, or None.

    Raises:
        ValueError: the count differs from ``n``.
    """
    if names is None:
        return None
    if isinstance(names, str):
        raise ValueError(f"{what} must be a sequence of {n} strings, not one string")
    names = [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"{what} has {len(names)} entries; expected {n}")
    return names


def check_choice(value, choices: Sequence[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``; ValueError listing them otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choices: {list(choices)}")
    return value


def class_label(k: int, class_names: Sequence[str] | None) -> str:
    """A class's display name."""
    if class_names is not None and 0 <= k < len(class_names):
        return str(class_names[k])
    return f"class {k}"
