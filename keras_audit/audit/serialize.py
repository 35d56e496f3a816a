"""Plain-JSON conversion for report content: stable floats, strict JSON, content hashes."""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _round(v: float) -> float | None:
    """Six significant digits (absorbs float noise across runs); NaN/inf become None."""
    if not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


def jsonable(obj: Any) -> Any:
    """``obj`` made of plain JSON types: NumPy scalars/arrays, tuples, DataFrames, Paths converted.

    Floats are rounded to six significant digits and NaN/inf become ``None``, so the JSON is
    strict and stable across runs.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | np.integer) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, float | np.floating):
        return _round(float(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return records(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=str) if isinstance(obj, set | frozenset) else obj
        return [jsonable(v) for v in items]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, _dt.date | _dt.datetime):
        return obj.isoformat()
    return str(obj)


def records(df: pd.DataFrame) -> list[dict]:
    """A DataFrame as a list of row dicts (a named index becomes the first column)."""
    frame = df
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        frame = df.reset_index()
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    return [jsonable(row) for row in frame.to_dict(orient="records")]


def array_hash(a: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()
