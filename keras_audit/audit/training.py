"""Training details from a Keras ``History``: the per-epoch curves, the epochs run, the best
epoch, and the optimizer and loss the model was compiled with."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from keras_audit.audit.catalog import AuditInputError


def check_history(history: Any) -> dict[str, list[float]] | None:
    """``history`` as ``{metric: [value per epoch]}``, or None.

    Args:
        history: a ``keras.callbacks.History`` (what ``fit`` returns), its ``.history`` dict,
            or None.

    Raises:
        AuditInputError: not a History or a dict of equally long lists of numbers.
    """
    if history is None:
        return None
    raw = getattr(history, "history", history)
    if not isinstance(raw, Mapping) or not raw:
        raise AuditInputError("history must be a keras History (what fit returns) or its "
                              f".history dict {{metric: [one value per epoch]}}; got "
                              f"{type(history).__name__}")
    out: dict[str, list[float]] = {}
    for name, values in raw.items():
        try:
            vals = [float(v) for v in values]
        except (TypeError, ValueError):
            raise AuditInputError(f"history[{name!r}] must be a list of numbers, one per "
                                  f"epoch; got {values!r:.80}") from None
        out[str(name)] = vals
    lengths = {len(v) for v in out.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise AuditInputError(f"every history entry must have one value per epoch (the same "
                              f"non-zero length); got lengths "
                              f"{ {k: len(v) for k, v in out.items()} }")
    return out


def best_epoch(history: Mapping[str, list[float]]) -> tuple[int, str]:
    """``(1-based epoch, key)``: the lowest ``val_loss``, else the lowest ``loss``, else the
    last epoch."""
    for key in ("val_loss", "loss"):
        vals = history.get(key)
        if vals and any(math.isfinite(v) for v in vals):
            finite = [v if math.isfinite(v) else math.inf for v in vals]
            return finite.index(min(finite)) + 1, key
    return len(next(iter(history.values()))), "last epoch"


def compiled_with(model: Any) -> dict:
    """The optimizer (class and learning rate) and loss of a compiled model."""
    out: dict[str, Any] = {"optimizer": None, "learning_rate": None, "loss": None}
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        out["optimizer"] = type(opt).__name__
        try:
            lr = opt.learning_rate
            out["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        except (AttributeError, TypeError, ValueError):  # a schedule: no single rate
            out["learning_rate"] = None
    loss = getattr(model, "loss", None)
    if loss is not None:
        out["loss"] = loss if isinstance(loss, str) else getattr(
            loss, "name", getattr(loss, "__name__", type(loss).__name__))
    return out
