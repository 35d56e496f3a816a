"""Shared helpers for the report, command-line and browser tests: small settings and readers."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
from pathlib import Path

import numpy as np

#: a class name that must come out escaped in the HTML
SCRIPT_NAME = "<script>alert(1)</script>"

#: reduced settings that keep one audit of a tiny model to a few seconds
FAST_OPTIONS = {
    "performance": {"n_bootstrap": 50, "latency_repeats": 2},
    "gallery": {"per_group": 4},
    "shap": {"max_samples": 4},
    "lime": {"num_samples": 200, "max_samples": 2},
    "tabular": {"n_repeats": 2},
    "sanity": {"steps": 8},
    "pruning": {"sparsities": (0.0, 0.5, 0.9), "per_layer_sparsities": (0.0, 0.5),
                "drift_samples": 8},
}

#: values that depend on the clock, excluded from the determinism comparison
CLOCK_KEYS = (("provenance", "timestamp"), ("environment", "timings"))


def without_clock(content: dict) -> dict:
    """The report content without the timestamp and the wall-clock timings."""
    c = copy.deepcopy(content)
    for section, key in CLOCK_KEYS:
        c[section].pop(key, None)
    return c


def read_json(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "report.json").read_text(encoding="utf-8"))


_ATTR = re.compile(r"""\b(src|href|action|poster|srcset)\s*=\s*["']([^"']*)["']""", re.I)


def urls(html: str) -> list[tuple[str, str]]:
    """Every (attribute, value) of src/href-like attributes in ``html``."""
    return _ATTR.findall(html)


def img_sources(html: str) -> list[str]:
    return re.findall(r"""<img\b[^>]*\bsrc\s*=\s*["']([^"']*)["']""", html, re.I)


def decode_data_uri(uri: str) -> np.ndarray:
    """Decode a PNG data URI with Pillow; raises when it is not a valid image."""
    from PIL import Image

    assert uri.startswith("data:image/png;base64,"), uri[:40]
    raw = base64.b64decode(uri.split(",", 1)[1], validate=True)
    Image.open(io.BytesIO(raw)).verify()  # checks the file's structure and checksums
    img = Image.open(io.BytesIO(raw))
    img.load()
    return np.asarray(img)
