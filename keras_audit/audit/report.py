"""The compliance report: run the audit analyses on one model and assemble what they return.

``run(model, x, y, ...)`` validates everything first, then runs the requested checks, each
inside its own guarded step (a failing analysis is recorded in the report, never silently
dropped), and writes into ``out_dir``:

- ``report.html``: one self-contained page (images as data URIs, CSS inline, no network),
  rendered by Jinja2 with autoescaping on, readable on screen and in print;
- ``report.json``: the same content, machine-readable (schema: ``docs/report_schema.md``);
- ``tables/<name>.csv``: one CSV per table.

The sections follow Model Cards, the EU AI Act (Annex IV, Article 13) and NIST AI RMF "Measure":
provenance, model details, intended use / limitations / risks, data, performance,
explanations, explanation quality, pruning impact and a blank sign-off.

Determinism: the same model, data, seed and settings give the same ``report.json`` apart from
``provenance.timestamp`` and ``environment.timings`` (wall-clock measurements: latency and
step durations). The report id is derived from the hashes, the seed and the settings.
The model's weights are never left changed: the whole audit runs inside
``preserved_weights`` and the weights hash is compared before and after.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd

from keras_audit.audit._labels import as_label_array, label_spec, read_outputs
from keras_audit.audit._weights import preserved_weights, weights_hash
from keras_audit.explain.forward import CompiledForward, check_batch

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike

#: version of the report.json layout (docs/report_schema.md)
SCHEMA_VERSION = "1.0"
#: the analyses ``run`` can do (keras_audit.cli keeps an identical copy: it must not import TF)
CHECKS = ("performance", "shap", "lime", "pruning", "sanity")
DEFAULT_CHECKS = CHECKS
#: report.json top-level keys, in order
TOP_LEVEL_KEYS = ("schema_version", "provenance", "model", "data", "environment", "card",
                  "performance", "explanations", "quality", "pruning", "findings", "sign_off")
#: (anchor, heading) of the report's sections, in order
SECTIONS = (
    ("provenance", "Provenance"),
    ("model", "Model details"),
    ("card", "Intended use, limitations and risks"),
    ("data", "Data"),
    ("performance", "Performance"),
    ("explanations", "Explanations"),
    ("quality", "Explanation quality"),
    ("pruning", "Pruning impact"),
    ("sign_off", "Sign-off"),
)
#: explanation samples when ``samples`` is None
DEFAULT_SAMPLES = 32
#: per-analysis settings; ``run(options=...)`` overrides them key by key
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "performance": {"n_bootstrap": 200, "latency_repeats": 5, "batch_size": 256},
    "gallery": {"per_group": 8, "methods": ("gradcam", "saliency")},
    "shap": {"method": "auto", "max_samples": 8, "background_size": None, "max_evals": None},
    "lime": {"num_samples": 1000, "max_samples": 4},
    "tabular": {"n_repeats": 5, "max_depth": 3},
    "sanity": {"methods": None, "steps": 20, "max_layers": None},
    "pruning": {"sparsities": tuple(round(0.1 * i, 1) for i in range(10)),
                "per_layer_sparsities": (0.0, 0.25, 0.5, 0.75, 0.9),
                "method": "magnitude", "per_layer": True, "drift": True,
                "drift_samples": 16},
}
#: findings thresholds (documented in docs/report_schema.md)
RECALL_GAP = 0.05          # a class whose recall is this far below accuracy is flagged
ECE_WARNING = 0.05         # calibration error above this is flagged
PRUNING_DROP_POINTS = 5.0  # the first global sparsity costing this many accuracy points
DRIFT_WARNING = 0.5        # Grad-CAM Spearman vs dense below this is flagged
SHAP_TOLERANCE = 1e-2      # shap's own additivity tolerance, for exact explainers
SHAP_APPROXIMATE = ("gradient",)  # expected gradients: additive only up to sampling error
SHAP_APPROXIMATE_TOLERANCE = 0.1
FIDELITY_WARNING = 0.9     # surrogate-tree agreement below this is flagged
SMALL_DATA = 100           # fewer audited samples than this is flagged
LIME_SCORE_WARNING = 0.3   # mean R² of LIME's local surrogates below this is flagged

METHOD_TITLES = {
    "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
    "saliency": "Saliency", "vanilla": "Saliency", "smoothgrad": "SmoothGrad",
    "integrated_gradients": "Integrated Gradients", "gradient_input": "Gradient×Input",
}


class AuditInputError(ValueError):
    """Bad input to ``run``, found before any analysis ran (the command exits 2 on it)."""


# -- JSON helpers ---------------------------------------------------------------------------------

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


# -- inputs ---------------------------------------------------------------------------------------

def load_card(card: dict | str | os.PathLike | None) -> dict:
    """A model card as a plain dict.

    Args:
        card: ``None`` (empty card), a dict, or the path of a YAML file (a mapping).
            Recognised keys (all optional): ``owners``, ``version``, ``licence`` (or
            ``license``), ``citation``, ``description``, ``intended_use``,
            ``out_of_scope_uses``, ``limitations``, ``risks``, ``ethical_considerations``;
            any other key is shown as given.

    Returns:
        The card with JSON-able values.

    Raises:
        AuditInputError (a ValueError): a missing or unreadable file, invalid YAML, or a card
            that is not a mapping.
    """
    if card is None:
        return {}
    if isinstance(card, str | os.PathLike):
        import yaml

        path = Path(card)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AuditInputError(f"card file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditInputError(f"card {path} could not be read: {exc}") from None
        except yaml.YAMLError as exc:
            raise AuditInputError(f"card {path} is not valid YAML: {exc}") from None
        card = {} if loaded is None else loaded
    if not isinstance(card, dict):
        raise AuditInputError(f"card must be a dict, a YAML file path or None; got "
                              f"{type(card).__name__}")
    return jsonable(card)


def _check_checks(checks) -> tuple[str, ...]:
    if isinstance(checks, str):
        checks = (checks,)
    try:
        names = list(checks)
    except TypeError:
        raise AuditInputError(f"checks must be a sequence of names from {list(CHECKS)}; got "
                              f"{checks!r}") from None
    unknown = [c for c in names if c not in CHECKS]
    if unknown or not names:
        raise AuditInputError(f"unknown check(s) {unknown or names}; valid checks: "
                              f"{list(CHECKS)}")
    return tuple(dict.fromkeys(names))


def _merge_options(options: dict | None) -> dict:
    merged = copy.deepcopy(DEFAULT_OPTIONS)
    if options is None:
        return merged
    if not isinstance(options, dict):
        raise AuditInputError(f"options must be a dict like {{'lime': {{'num_samples': 300}}}}; "
                              f"got {type(options).__name__}")
    for key, value in options.items():
        if key not in merged:
            raise AuditInputError(f"unknown options group {key!r}; groups: {list(merged)}")
        if not isinstance(value, dict):
            raise AuditInputError(f"options[{key!r}] must be a dict; got {value!r}")
        bad = [k for k in value if k not in merged[key]]
        if bad:
            raise AuditInputError(f"unknown option(s) {bad} for {key!r}; valid: "
                                  f"{list(merged[key])}")
        merged[key].update(value)
    return merged


def _class_names(class_names, spec) -> list[str]:
    """The checked class names (the same rules as ``performance``), as ``AuditInputError``; a
    regression model takes none."""
    from keras_audit.audit.performance import _class_names as checked_names

    if spec.task == "regression" and class_names is not None:
        raise AuditInputError("class_names was given but the model is a regression model")
    try:
        return checked_names(class_names, spec)
    except ValueError as exc:
        raise AuditInputError(str(exc)) from None


def _noop_progress(**_kwargs):
    return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_factory(progress) -> Callable[..., Any]:
    if progress is None or progress is False:
        return _noop_progress
    if progress is True:
        import sys
        from functools import partial

        from tqdm import tqdm

        return partial(tqdm, file=sys.stderr, leave=True)
    if callable(progress):
        return progress
    raise AuditInputError(f"progress must be None, True/False or a callable like tqdm.tqdm; "
                          f"got {progress!r}")


def _array_hash(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _data_kind(x: np.ndarray) -> str:
    if x.ndim == 4:
        return "image"
    if x.ndim == 2:
        return "tabular"
    return "sequence"


# -- the report object --------------------------------------------------------------------------

class Report:
    """A finished audit: the JSON content, the tables and the figures, ready to write.

    Attributes:
        content: the report as plain JSON types (what ``report.json`` holds), keys as in
            ``TOP_LEVEL_KEYS``.
        tables: ``{name: DataFrame}``, one CSV each (``tables/<name>.csv``).
        figures: ``{"<section>.<name>": PNG bytes}``, embedded in the HTML.
        figure_titles: ``{"<section>.<name>": title}``.
        galleries: image explanations of chosen samples, per group (HTML only; their
            selection and configuration are in ``content["explanations"]["gallery"]``).
    """

    def __init__(self, content: dict, tables: dict[str, pd.DataFrame],
                 figures: dict[str, bytes] | None = None,
                 figure_titles: dict[str, str] | None = None,
                 galleries: list[dict] | None = None) -> None:
        self.content = content
        self.tables = tables
        self.figures = figures or {}
        self.figure_titles = figure_titles or {}
        self.galleries = galleries or []

    # -- reading ---------------------------------------------------------------------------------
    @property
    def findings(self) -> list[dict]:
        """The automatic findings: dicts with ``severity``, ``section`` and ``text``."""
        return self.content.get("findings", [])

    def to_dict(self) -> dict:
        """A deep copy of the JSON content."""
        return copy.deepcopy(self.content)

    def summary_lines(self) -> list[str]:
        """A few plain-text lines for a terminal: the headline metric and the warnings."""
        lines = []
        perf = self.content.get("performance", {})
        if perf.get("status") == "ok" and perf.get("accuracy") is not None:
            ci = perf.get("accuracy_ci95")
            ci_txt = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
            lines.append(f"accuracy {perf['accuracy']:.3f}{ci_txt} on "
                         f"{self.content['data']['n_samples']} samples")
        for f in self.findings:
            if f["severity"] in ("warning", "error"):
                lines.append(f"{f['severity']}: {f['text']}")
        return lines

    # -- writing ---------------------------------------------------------------------------------
    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON text (strict: no NaN); also written to ``path`` when given."""
        text = json.dumps(self.content, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_html(self, path: str | os.PathLike | None = None) -> str:
        """The report as one self-contained HTML page; also written to ``path`` when given."""
        import base64

        import jinja2

        env = jinja2.Environment(
            loader=jinja2.PackageLoader("keras_audit.audit", "templates"),
            autoescape=True, trim_blocks=True, lstrip_blocks=True,
            undefined=jinja2.Undefined)
        env.filters["num"] = _fmt
        env.filters["pct"] = _pct
        env.filters["label"] = lambda k: str(k).replace("_", " ")
        env.filters["shape"] = lambda v: "(" + ", ".join(
            "None" if d is None else str(d) for d in v) + ("," if len(v) == 1 else "") + ")"
        figures = {}
        for key, png in self.figures.items():
            section, name = key.split(".", 1)
            figures.setdefault(section, []).append({
                "name": name, "title": self.figure_titles.get(key, name.replace("_", " ")),
                "uri": "data:image/png;base64," + base64.b64encode(png).decode("ascii")})
        tables = {name: _table_view(df) for name, df in self.tables.items()}
        galleries = [{**g, "items": [{**item, "images": [
            (label, "data:image/png;base64," + base64.b64encode(png).decode("ascii"))
            for label, png in item["images"]]} for item in g["items"]]}
            for g in self.galleries]
        html = env.get_template("report.html").render(
            r=self.content, sections=SECTIONS, figures=figures, tables=tables,
            galleries=galleries, method_titles=METHOD_TITLES)
        if path is not None:
            Path(path).write_text(html, encoding="utf-8")
        return html

    def to_csv(self, folder: str | os.PathLike) -> list[Path]:
        """Write one CSV per table into ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, df in self.tables.items():
            p = folder / f"{name}.csv"
            keep_index = not isinstance(df.index, pd.RangeIndex) or df.index.name is not None
            df.to_csv(p, index=keep_index)
            paths.append(p)
        return paths

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``report.html``, ``report.json`` and ``tables/*.csv`` into ``out_dir``.

        CSV files left in ``out_dir/tables`` by an earlier report are removed first, so the
        folder holds exactly this report's tables.

        Returns:
            ``{"html": path, "json": path, "tables": folder}``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for stale in (out / "tables").glob("*.csv"):
            stale.unlink()
        self.to_json(out / "report.json")
        self.to_html(out / "report.html")
        self.to_csv(out / "tables")
        return {"html": out / "report.html", "json": out / "report.json",
                "tables": out / "tables"}


def _fmt(v: Any, digits: int = 4) -> str:
    """A number for display: 4 decimals (or 3 significant digits when tiny or huge), ints as
    ints, None/NaN as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        if not math.isfinite(v):
            return "–"
        if v == 0 or 1e-3 <= abs(v) < 1e3:
            return f"{v:.{digits}f}"
        return f"{v:.{max(1, digits - 1)}g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(i, digits) for i in v) + "]"
    return str(v)


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * float(v):.1f}%"


#: columns left out of the HTML tables (still in the CSV and JSON): per-repeat raw values
_HTML_HIDDEN = re.compile(r"^importance_\d+$")


def _table_view(df: pd.DataFrame, max_rows: int = 200) -> dict:
    """Columns and formatted cells for the template (the index too when it is named)."""
    frame = df
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        frame = df.reset_index()
    frame = frame[[c for c in frame.columns if not _HTML_HIDDEN.match(str(c))]]
    rows = [[_fmt(v) for v in row] for row in frame.head(max_rows).itertuples(index=False)]
    return {"columns": [str(c) for c in frame.columns], "rows": rows,
            "truncated": max(0, len(frame) - max_rows)}


# -- the audit ----------------------------------------------------------------------------------

class _Audit:
    """State shared by the steps of one ``run`` (validated inputs, results so far)."""

    def __init__(self, model, x, y, class_names, background, checks, out_dir, seed, card,
                 samples, progress, feature_names, options) -> None:
        self.checks = _check_checks(checks)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise AuditInputError(f"seed must be an integer >= 0; got {seed!r}")
        self.seed = int(seed)
        if samples is not None and (isinstance(samples, bool) or not isinstance(
                samples, int | np.integer) or samples < 1):
            raise AuditInputError(f"samples must be a positive integer or None; got {samples!r}")
        self.options = _merge_options(options)
        self.card = load_card(card)
        self.progress = _progress_factory(progress)
        if not isinstance(model, keras.Model):
            raise AuditInputError(f"model must be a keras.Model; got {type(model).__name__}")
        self.model = model
        try:
            self.x = check_batch(model, x)
            if self.x.dtype.kind not in "biuf":
                raise ValueError(f"x must be numeric; got dtype {self.x.dtype}")
            self.y = as_label_array(y, len(self.x))
            self.forward = CompiledForward(model, batch_size=int(
                self.options["performance"]["batch_size"]))
            first = self.forward(self.x[:1])
            self.spec = label_spec(self.y, first.shape[1:])
            self.background = (None if background is None
                               else check_batch(model, background, "background"))
        except AuditInputError:
            raise
        except ValueError as exc:
            raise AuditInputError(str(exc)) from None
        self.names = _class_names(class_names, self.spec)
        self.kind = _data_kind(self.x)
        n_features = self.x.shape[1] if self.kind == "tabular" else None
        if feature_names is not None:
            if self.kind != "tabular":
                raise AuditInputError("feature_names applies to tabular data (N, F) only")
            feature_names = [str(f) for f in feature_names]
            if len(feature_names) != n_features:
                raise AuditInputError(f"feature_names has {len(feature_names)} names but x has "
                                      f"{n_features} features")
        elif self.kind == "tabular":
            feature_names = [f"x{i}" for i in range(n_features)]
        self.feature_names = feature_names
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AuditInputError(f"out_dir {self.out_dir} cannot be created: {exc}") from None
        n = len(self.x)
        self.n_explain = min(n, int(samples) if samples is not None else DEFAULT_SAMPLES)
        self.samples_requested = None if samples is None else int(samples)

        # results
        self.tables: dict[str, pd.DataFrame] = {}
        self.figures: dict[str, bytes] = {}
        self.figure_titles: dict[str, str] = {}
        self.galleries: list[dict] = []
        self.timings: dict[str, float] = {}
        self.findings: list[dict] = []
        self.content: dict[str, Any] = {}
        self.latency: dict[str, float] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def add_figure(self, section: str, name: str, fig, title: str | None = None) -> None:
        from keras_audit.render.figures import png_bytes

        key = f"{section}.{name}"
        self.figures[key] = png_bytes(fig)
        self.figure_titles[key] = title or name.replace("_", " ")

    def finding(self, severity: str, section: str, text: str) -> None:
        self.findings.append({"severity": severity, "section": section, "text": text})

    @contextmanager
    def step(self, name: str, section: dict, total: int = 1, where: str = "explanations"):
        """Time a step, show a bar, and turn a failure into a recorded 'failed' status.

        ``where`` is the report section a failure finding belongs to.
        """
        bar = self.progress(desc=name, total=total)
        t0 = time.perf_counter()
        try:
            yield bar
            section.setdefault("status", "ok")
            left = total - int(getattr(bar, "n", total))
            if left > 0:  # steps that cannot count their own progress finish in one go
                bar.update(left)
        except Exception as exc:  # a failing analysis is reported, not fatal to the audit
            msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            section.clear()
            section.update({"status": "failed", "error": msg})
            self.finding("error", where, f"{name} could not run: {msg}")
            warnings.warn(f"keras_audit report: {name} failed: {msg}", RuntimeWarning,
                          stacklevel=3)
        finally:
            bar.close()
            self.timings[name] = time.perf_counter() - t0

    def class_name(self, i: int) -> str:
        return self.names[int(i)] if 0 <= int(i) < len(self.names) else str(i)

    # -- steps -----------------------------------------------------------------------------------
    def predictions(self) -> None:
        self.raw = self.forward(self.x)
        self.out = read_outputs(self.raw, self.spec)
        self.pred = np.asarray(self.out.y_pred)
        self.classifier = self.spec.task != "regression"
        self.confidence = (self.out.probs.max(axis=1) if self.out.probs is not None
                           else np.full(len(self.x), np.nan))
        self.explain_idx = self._pick_explained()
        self.x_explain = self.x[self.explain_idx].astype(np.float32, copy=False)
        self.targets_explain = (self.pred[self.explain_idx].astype(np.int64)
                                if self.classifier else np.zeros(len(self.explain_idx), np.int64))

    def _pick_explained(self) -> np.ndarray:
        """``n_explain`` sample indices: class-balanced round robin, seeded, deterministic."""
        rng = np.random.default_rng(self.seed)
        n = len(self.x)
        if not self.classifier:
            return np.sort(rng.permutation(n)[: self.n_explain])
        y = self.spec.y_true
        pools = [list(rng.permutation(np.flatnonzero(y == c))) for c in range(self.spec.n_classes)]
        out: list[int] = []
        while len(out) < self.n_explain and any(pools):
            for pool in pools:
                if pool and len(out) < self.n_explain:
                    out.append(int(pool.pop(0)))
        return np.asarray(out, np.int64)

    def background_set(self, size: int) -> tuple[np.ndarray, str]:
        if self.background is not None:
            return self.background, "given"
        rng = np.random.default_rng(self.seed + 1)
        rest = np.setdiff1d(np.arange(len(self.x)), self.explain_idx)
        pool = rest if len(rest) else np.arange(len(self.x))
        pick = np.sort(rng.permutation(pool)[: min(size, len(pool))])
        source = ("drawn from x (seeded), disjoint from the explained samples" if len(rest)
                  else "drawn from x (seeded)")
        return self.x[pick].astype(np.float32, copy=False), source

    def provenance(self) -> None:
        import keras_audit

        self.hash_before = weights_hash(self.model)
        x_hash, y_hash = _array_hash(self.x), _array_hash(self.y)
        data_hash = hashlib.sha256(f"{x_hash}|{y_hash}".encode()).hexdigest()
        settings = {"checks": list(self.checks), "samples": self.samples_requested,
                    "options": jsonable(self.options)}
        background = None if self.background is None else _array_hash(self.background)
        # the id names the content: same weights, data, seed, settings and card -> same id
        fingerprint = json.dumps({"weights": self.hash_before, "data": data_hash,
                                  "background": background, "seed": self.seed,
                                  "settings": settings, "card": self.card,
                                  "class_names": self.names,
                                  "feature_names": self.feature_names}, sort_keys=True)
        report_id = "KA-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16].upper()
        self.content["provenance"] = {
            "report_id": report_id,
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": f"keras_audit {keras_audit.__version__}",
            "seed": self.seed,
            "checks": list(self.checks),
            "samples": self.n_explain,
            "weights_sha256": self.hash_before,
            "data_sha256": data_hash,
            "x_sha256": x_hash,
            "y_sha256": y_hash,
            "background_sha256": background,
            "settings": settings["options"],
        }

    def model_details(self) -> None:
        m = self.model
        layers = _layer_table(m)
        self.tables["model_layers"] = layers
        params = int(sum(int(np.prod(v.shape)) for v in m.weights))
        trainable = int(sum(int(np.prod(v.shape)) for v in m.trainable_weights))
        out_shape = list(self.raw.shape[1:])
        last = _last_activation(m)
        fmt = {
            "classification": f"{self.spec.n_classes} class scores per sample",
            "binary": "one score per sample (positive-class probability)",
            "regression": f"{self.spec.n_classes} regression output(s) per sample",
        }[self.spec.task]
        if self.classifier:
            fmt += {"none": " (probabilities)", "softmax": " (logits; softmax applied by the "
                    "audit)", "sigmoid": " (logit; sigmoid applied by the audit)",
                    "renormalised": " (non-negative scores, renormalised by the audit)"
                    }[self.out.transform]
        card = self.card
        self.content["model"] = {
            "name": m.name,
            "class": type(m).__name__,
            "parameters": params,
            "trainable_parameters": trainable,
            "non_trainable_parameters": params - trainable,
            "size_bytes": int(sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                                  for v in m.weights)),
            "n_layers": len(layers),
            "input_shape": [None, *self.forward.input_shape],
            "input_dtype": str(self.x.dtype),
            "output_shape": [None, *out_shape],
            "output_activation": last,
            "output_format": fmt,
            "task": self.spec.task,
            "n_classes": int(self.spec.n_classes) if self.classifier else None,
            "class_names": self.names if self.classifier else None,
            "feature_names": self.feature_names,
            "layers": records(layers),
            "owners": card.get("owners"),
            "version": card.get("version"),
            "licence": card.get("licence", card.get("license")),
            "citation": card.get("citation"),
            "description": card.get("description"),
        }

    def data_section(self) -> None:
        x = self.x
        xf = x.astype(np.float64, copy=False)
        data = {
            "kind": self.kind,
            "n_samples": int(len(x)),
            "x_shape": list(x.shape),
            "x_dtype": str(x.dtype),
            "x_min": float(np.nanmin(xf)), "x_max": float(np.nanmax(xf)),
            "x_mean": float(np.nanmean(xf)), "x_std": float(np.nanstd(xf)),
            "y_shape": list(self.y.shape),
            "y_format": ("one-hot" if self.spec.one_hot else
                         {"classification": "class ids", "binary": "binary labels {0, 1}",
                          "regression": "regression targets"}[self.spec.task]),
            "explained_samples": {"count": int(len(self.explain_idx)),
                                  "indices": self.explain_idx.tolist(),
                                  "selection": ("class-balanced round robin, seeded" if
                                                self.classifier else "seeded random")},
        }
        if self.classifier:
            counts = np.bincount(self.spec.y_true, minlength=self.spec.n_classes)
            balance = pd.DataFrame({"class": self.names, "count": counts.astype(int),
                                    "share": counts / max(1, counts.sum())})
            self.tables["data_class_balance"] = balance
            data["class_balance"] = records(balance)
            present = counts[counts > 0]
            ratio = float(present.max() / present.min()) if len(present) else None
            data["imbalance_ratio"] = ratio
            if ratio is not None and ratio > 3:
                self.finding("warning", "data", f"the classes are imbalanced: the largest has "
                             f"{ratio:.1f}x the samples of the smallest")
            missing = [self.names[i] for i in range(len(counts)) if counts[i] == 0]
            if missing:
                self.finding("warning", "data", f"no audited sample has class "
                             f"{', '.join(missing)}: its performance is not measured")
        if len(x) < SMALL_DATA:
            self.finding("warning", "data", f"only {len(x)} samples were audited: the "
                         "confidence intervals are wide")
        self.content["data"] = data

    def performance(self) -> None:
        sec: dict[str, Any] = {}
        self.content["performance"] = sec
        if "performance" not in self.checks:
            sec["status"] = "not requested"
            return
        from keras_audit.audit.performance import performance

        opts = self.options["performance"]
        with self.step("performance", sec, where="performance"):
            res = performance(self.model, self.x, self.y, class_names=self.names,
                              n_bootstrap=int(opts["n_bootstrap"]), seed=self.seed,
                              latency_repeats=int(opts["latency_repeats"]),
                              forward=self.forward)
            metrics = dict(res.metrics)
            for k in [k for k in metrics if k.startswith("latency_")]:
                self.latency[k] = metrics.pop(k)  # clock-dependent: kept in environment
            sec.update({"status": "ok", "task": res.task, **metrics})
            sec["tables"] = {}
            for name, df in res.tables.items():
                if name == "latency":
                    self.tables["performance_latency"] = df
                    continue
                self.tables[f"performance_{name}"] = df
                sec["tables"][name] = records(df)
            titles = {"confusion_matrix": "Confusion matrix",
                      "reliability_diagram": "Reliability diagram (calibration)",
                      "roc_curves": "ROC curves (one-vs-rest)"}
            for name, fig in res.figures.items():
                self.add_figure("performance", name, fig, titles.get(name))
            sec["figures"] = list(res.figures)
            self._performance_findings(sec, res)

    def _performance_findings(self, sec: dict, res) -> None:
        if res.task == "regression":
            self.finding("info", "performance", f"MAE {sec['mae']:.4g}, RMSE {sec['rmse']:.4g}"
                         + (f", R² {sec['r2']:.3f}" if sec.get("r2") is not None else ""))
            return
        acc = sec["accuracy"]
        ci = sec.get("accuracy_ci95")
        self.finding("info", "performance", f"accuracy is {acc:.3f}"
                     + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
                     + f" on {sec['n_samples']} samples")
        per_class = res.tables.get("per_class")
        if per_class is not None:
            for row in per_class.to_dict(orient="records"):
                if row["support"] > 0 and row["recall"] < acc - RECALL_GAP:
                    self.finding("warning", "performance",
                                 f"recall of class {row['class']} is {row['recall']:.2f} "
                                 f"(overall accuracy {acc:.2f})")
        ece = sec.get("ece")
        if ece is not None and ece > ECE_WARNING:
            self.finding("warning", "performance", f"the model is miscalibrated: expected "
                         f"calibration error {ece:.3f} (above {ECE_WARNING})")

    # explanations ------------------------------------------------------------------------------
    def explanations(self) -> None:
        sec: dict[str, Any] = {"kind": self.kind, "targets": "the model's predicted class"
                               if self.classifier else "output 0"}
        self.content["explanations"] = sec
        wanted = [c for c in ("shap", "lime", "sanity") if c in self.checks]
        if not wanted:
            sec["status"] = "not requested"
            return
        sec["status"] = "ok"
        if "shap" in self.checks or "lime" in self.checks:
            if self.kind == "image":
                sec["gallery"] = {}
                with self.step("gallery", sec["gallery"],
                               total=len(self.options["gallery"]["methods"])) as bar:
                    self._gallery(sec["gallery"], bar)
            elif self.kind == "tabular":
                sec["permutation_importance"] = {}
                with self.step("permutation importance", sec["permutation_importance"]):
                    self._permutation(sec["permutation_importance"])
                sec["surrogate_tree"] = {}
                with self.step("surrogate tree", sec["surrogate_tree"]):
                    self._surrogate(sec["surrogate_tree"])
        else:
            sec["gallery"] = {"status": "not requested"}
        sec["shap"] = {}
        if "shap" in self.checks:
            with self.step("shap", sec["shap"]):
                self._shap(sec["shap"])
        else:
            sec["shap"]["status"] = "not requested"
        sec["lime"] = {}
        if "lime" in self.checks and self.kind == "sequence":
            sec["lime"] = {"status": "skipped", "reason": "LIME explains images (N, H, W, C) "
                           "and tables (N, F); this input is neither"}
        elif "lime" in self.checks:
            n = min(len(self.explain_idx), int(self.options["lime"]["max_samples"]))
            with self.step("lime", sec["lime"], total=n) as bar:
                self._lime(sec["lime"], n, bar)
        else:
            sec["lime"]["status"] = "not requested"

    def _gallery(self, sec: dict, bar) -> None:
        from keras_audit.explain import METHODS
        from keras_audit.render.figures import png_bytes
        from keras_audit.render.images import overlay, to_uint8_images

        opts = self.options["gallery"]
        per = int(opts["per_group"])
        rng = np.random.default_rng(self.seed + 2)
        if self.classifier:
            right = np.flatnonzero(self.pred == self.spec.y_true)
            wrong = np.flatnonzero(self.pred != self.spec.y_true)
            # correct: class-balanced (seeded); incorrect: the most confident mistakes first
            pools = [list(rng.permutation(right[self.spec.y_true[right] == c]))
                     for c in range(self.spec.n_classes)]
            correct: list[int] = []
            while len(correct) < per and any(pools):
                for pool in pools:
                    if pool and len(correct) < per:
                        correct.append(int(pool.pop(0)))
            order = np.argsort(-self.confidence[wrong], kind="stable")
            incorrect = [int(i) for i in wrong[order][:per]]
            groups = [("correct", "Correctly classified", correct),
                      ("incorrect", "Misclassified", incorrect)]
        else:
            groups = [("samples", "Samples", [int(i) for i in self.explain_idx[:per]])]
        idx = np.asarray([i for _, _, g in groups for i in g], np.int64)
        sec["groups"] = {key: [int(i) for i in g] for key, _, g in groups}
        sec["methods"] = {}
        if len(idx) == 0:
            sec["status"] = "ok"
            return
        xs = self.x[idx].astype(np.float32, copy=False)
        targets = self.pred[idx].astype(np.int64) if self.classifier else None
        maps: dict[str, np.ndarray] = {}
        for method in opts["methods"]:
            try:
                explainer = METHODS[method](self.model)
            except ValueError as exc:
                sec["methods"][method] = {"status": "skipped", "reason": str(exc)}
                self.finding("info", "explanations", f"{METHOD_TITLES.get(method, method)} "
                             f"gallery skipped: {exc}")
                bar.update(1)
                continue
            maps[method] = explainer(xs, targets)
            sec["methods"][method] = {"status": "ok", **_explainer_config(method, explainer)}
            bar.update(1)
        images = to_uint8_images(xs)
        tiles = {i: {"input": png_bytes(images[k])} for k, i in enumerate(idx)}
        for method, m in maps.items():
            over = overlay(images, m)
            for k, i in enumerate(idx):
                tiles[i][method] = png_bytes(over[k])
        sec["samples"] = []
        for key, title, group in groups:
            items = []
            for i in group:
                info = {"index": int(i), "group": key}
                if self.classifier:
                    info.update(true=self.class_name(self.spec.y_true[i]),
                                predicted=self.class_name(self.pred[i]),
                                confidence=float(self.confidence[i]))
                sec["samples"].append(info)
                items.append({**info, "images": [("input", tiles[i]["input"])] + [
                    (METHOD_TITLES.get(m, m), tiles[i][m]) for m in maps]})
            self.galleries.append({"key": key, "title": title, "items": items})
        sec["status"] = "ok"

    def _shap(self, sec: dict) -> None:
        shap_values = _analysis("shap_values", "shap_values")
        opts = self.options["shap"]
        n = min(len(self.explain_idx), int(opts["max_samples"]))
        size = opts["background_size"] or (16 if self.kind == "image" else 50)
        bg, source = self.background_set(int(size))
        xs = self.x_explain[:n]
        # shap names the model's outputs: one sigmoid unit is the positive class's score
        outputs = [self.names[1]] if self.spec.task == "binary" else self.names
        kwargs: dict[str, Any] = {"seed": self.seed, "class_names": outputs}
        if self.kind == "tabular":
            kwargs["feature_names"] = self.feature_names
        elif self.classifier:
            # images: explain the predicted class only, as the other image explanations do
            kwargs["targets"] = self.targets_explain[:n]
        # expected gradients is a sampling estimate whose additivity error shrinks like
        # 1/sqrt(samples): on the demo CNN, 1000 samples gave 0.12-0.15 and 4000 gave 0.03
        # (about 3 s more); exact tabular explainers keep their default
        max_evals = opts["max_evals"] or (4000 if self.kind == "image" else None)
        if max_evals is not None:
            kwargs["max_evals"] = int(max_evals)
        kwargs = _accepted(shap_values, kwargs)
        res = shap_values(self.model, xs, bg, method=opts["method"], **kwargs)
        sec["details"] = jsonable(getattr(res, "details", {}) or {})
        values = np.asarray(res.values)
        err = float(np.max(np.abs(np.asarray(res.additivity_error))))
        sec.update({"method": res.method, "samples": int(n), "sample_indices":
                    self.explain_idx[:n].tolist(), "background_size": int(len(bg)),
                    "background_source": source, "values_shape": list(values.shape),
                    "additivity_error": err})
        if self.kind == "tabular":
            imp = np.abs(values).mean(axis=0)  # (F, outputs)
            if imp.ndim == 1:
                imp = imp[:, None]
            cols = (outputs if imp.shape[1] == len(outputs)
                    else [f"output_{i}" for i in range(imp.shape[1])])
            table = pd.DataFrame(imp, columns=[f"mean_abs_shap[{c}]" for c in cols])
            table.insert(0, "feature", self.feature_names)
            table["mean_abs_shap"] = imp.mean(axis=1)
            table = table.sort_values("mean_abs_shap", ascending=False, kind="stable")
            table = table.reset_index(drop=True)
            self.tables["shap_importance"] = table
            sec["importance"] = records(table)
        else:
            # mean |SHAP| per output: which classes the explained samples' evidence concerns
            per_out = np.abs(values).reshape(n, -1, values.shape[-1]).sum(axis=1).mean(axis=0)
            sec["mean_abs_per_output"] = per_out.tolist()
        names = {}
        for name, fig in (res.figures or {}).items():
            key = name if name.startswith("shap") else f"shap_{name}"
            names[key] = name
            self.add_figure("explanations", key, fig, f"SHAP: {name.replace('_', ' ')}")
        sec["figures"] = list(names)
        approximate = res.method in SHAP_APPROXIMATE
        limit = SHAP_APPROXIMATE_TOLERANCE if approximate else SHAP_TOLERANCE
        sec["additivity_tolerance"] = limit
        what = (f"SHAP ({res.method}, a sampling estimate)" if approximate
                else f"SHAP ({res.method})")
        if err > limit:
            self.finding("warning", "explanations", f"{what}: additivity error {err:.2g} is "
                         f"above {limit}: the values do not sum to the model's outputs")
        else:
            self.finding("info", "explanations", f"{what}: the values sum to the model's "
                         f"outputs within {err:.2g} (tolerance {limit})")

    def _lime(self, sec: dict, n: int, bar) -> None:
        lime_explanations = _analysis("lime_analysis", "lime_explanations")
        opts = self.options["lime"]
        xs = self.x_explain[:n]
        kwargs = {"seed": self.seed, "random_state": self.seed, "class_names": self.names,
                  "targets": self.targets_explain[:n]}
        if self.kind == "tabular":
            train, _ = self.background_set(500)
            kwargs.update(training_data=train, feature_names=self.feature_names)
        kwargs = _accepted(lime_explanations, kwargs)
        res = lime_explanations(self.model, xs, num_samples=int(opts["num_samples"]),
                                         kind="auto", **kwargs)
        bar.update(n)
        summary = _lime_summary(res)
        sec.update({"num_samples": int(opts["num_samples"]), "samples": int(n),
                    "sample_indices": self.explain_idx[:n].tolist(), **summary["config"]})
        if summary["table"] is not None:
            table = summary["table"]
            if "sample" in table.columns and "index" not in table.columns:
                table = table.copy()  # the position among the explained samples -> x's index
                table.insert(0, "index", self.explain_idx[:n][table["sample"].to_numpy()])
            summary["table"] = table
            self.tables["lime_explanations"] = table
            sec["explanations"] = records(summary["table"])
        for name, fig in (getattr(res, "figures", None) or {}).items():
            self.add_figure("explanations", f"lime_{name}", fig, f"LIME: {name.replace('_', ' ')}")
        sec["figures"] = [f"lime_{k}" for k in (getattr(res, "figures", None) or {})]
        score = summary["mean_score"]
        if score is not None:
            sec["mean_score"] = score
            if score < LIME_SCORE_WARNING:
                self.finding("warning", "explanations", f"LIME's local linear surrogates "
                             f"explain little of the model's behaviour (mean R² {score:.2f}, "
                             f"below {LIME_SCORE_WARNING}): read its weights with care")

    def _permutation(self, sec: dict) -> None:
        permutation_importance = _analysis("tabular", "permutation_importance")
        opts = self.options["tabular"]
        kwargs = _accepted(permutation_importance, {
            "feature_names": self.feature_names, "n_repeats": int(opts["n_repeats"]),
            "seed": self.seed, "random_state": self.seed})
        table = permutation_importance(self.model, self.x, self.y, **kwargs)
        self.tables["permutation_importance"] = table
        sec.update({"n_repeats": int(opts["n_repeats"]), "importance": records(table)})
        fig = _bar_figure(table)
        if fig is not None:
            self.add_figure("explanations", "permutation_importance", fig,
                            "Permutation importance (drop in score when a feature is shuffled)")

    def _surrogate(self, sec: dict) -> None:
        surrogate_tree = _analysis("tabular", "surrogate_tree")
        opts = self.options["tabular"]
        kwargs = _accepted(surrogate_tree, {
            "feature_names": self.feature_names, "max_depth": int(opts["max_depth"]),
            "class_names": self.names, "seed": self.seed, "random_state": self.seed})
        res = surrogate_tree(self.model, self.x, **kwargs)
        fidelity = float(res.fidelity)
        sec.update({"max_depth": int(opts["max_depth"]), "fidelity": fidelity,
                    "rules": str(res.rules)})
        if getattr(res, "figure", None) is not None:
            self.add_figure("explanations", "surrogate_tree", res.figure,
                            f"Surrogate decision tree (fidelity {fidelity:.3f})")
        sev = "warning" if fidelity < FIDELITY_WARNING else "info"
        sec["fidelity_measure"] = ("R² against the model's predictions" if not self.classifier
                                   else "share of rows where the tree predicts the model's class")
        if self.classifier:
            text = (f"a depth-{opts['max_depth']} surrogate tree agrees with the model on "
                    f"{100 * fidelity:.1f}% of the samples")
        else:
            text = (f"a depth-{opts['max_depth']} surrogate tree reproduces the model's "
                    f"predictions with R² {fidelity:.3f}")
        self.finding(sev, "explanations", text)

    # quality -------------------------------------------------------------------------------------
    def quality(self) -> None:
        sec: dict[str, Any] = {}
        self.content["quality"] = sec
        if "sanity" not in self.checks:
            sec["status"] = "not requested"
            return
        from keras_audit.audit.quality import (
            SANITY_THRESHOLD,
            faithfulness,
            faithfulness_figure,
            sanity,
            sanity_figure,
        )

        opts = self.options["sanity"]
        methods = list(opts["methods"] or self._default_quality_methods())
        sec["status"] = "ok"
        sec["methods"] = methods
        sec["samples"] = int(len(self.explain_idx))
        sec["sanity"] = {}
        with self.step("sanity", sec["sanity"], total=len(methods), where="quality") as bar:
            parts = []
            for m in methods:
                parts.append(sanity(self.model, self.x_explain, targets=self.targets_explain,
                                    methods=(m,), seed=self.seed,
                                    max_layers=opts["max_layers"]))
                bar.update(1)
            table = pd.concat(parts, ignore_index=True)
            table.attrs["threshold"] = parts[0].attrs.get("threshold", SANITY_THRESHOLD)
            self.tables["quality_sanity"] = table
            thr = float(table.attrs["threshold"])
            verdicts = {}
            for m, g in table.groupby("method", sort=False):
                final = float(g.sort_values("step")["spearman"].iloc[-1])
                verdicts[m] = {"passed": bool(g["passed"].iloc[0]), "final_spearman": final,
                               "layers_randomised": int(g["step"].max())}
                title = METHOD_TITLES.get(m, m)
                if verdicts[m]["passed"]:
                    self.finding("info", "quality", f"{title} passed the randomisation test "
                                 f"(Spearman {final:.2f} after randomising the model, "
                                 f"threshold {thr})")
                else:
                    self.finding("warning", "quality", f"{title} failed the randomisation "
                                 f"test: its maps keep Spearman {final:.2f} with the trained "
                                 f"model's after randomising the weights (threshold {thr})")
            sec["sanity"].update({"status": "ok", "threshold": thr, "verdicts": verdicts,
                                  "rows": records(table),
                                  "protocol": "cascading model-parameter randomisation "
                                  "(Adebayo et al. 2018), top layer first"})
            self.add_figure("quality", "sanity", sanity_figure(table),
                            "Model-parameter randomisation test")
        sec["faithfulness"] = {}
        steps = int(opts["steps"])
        with self.step("faithfulness", sec["faithfulness"], total=len(methods),
                       where="quality") as bar:
            parts = []
            for m in methods:
                parts.append(faithfulness(self.model, self.x_explain,
                                          targets=self.targets_explain, methods=(m,),
                                          steps=steps, seed=self.seed))
                bar.update(1)
            table = pd.concat(parts, ignore_index=True)
            self.tables["quality_faithfulness"] = table
            sec["faithfulness"].update({"status": "ok", "steps": steps, "rows": records(table),
                                        "protocol": "deletion/insertion AUC (RISE), against "
                                        "a random pixel order"})
            self.add_figure("quality", "faithfulness", faithfulness_figure(table),
                            "Deletion and insertion AUC")
            for row in table.itertuples(index=False):
                title = METHOD_TITLES.get(row.method, row.method)
                if row.deletion_auc >= row.random_deletion_auc:
                    self.finding("warning", "quality", f"{title}: deletion AUC "
                                 f"{row.deletion_auc:.3f} is not below the random-order "
                                 f"baseline {row.random_deletion_auc:.3f}")

    def _default_quality_methods(self) -> list[str]:
        if self.kind == "image":
            from keras_audit.explain import GradCAM

            try:
                GradCAM(self.model)
                return ["gradcam", "saliency", "smoothgrad"]
            except ValueError:
                return ["saliency", "smoothgrad", "integrated_gradients"]
        return ["saliency", "gradient_input", "integrated_gradients"]

    # pruning -----------------------------------------------------------------------------------
    def pruning(self) -> None:
        sec: dict[str, Any] = {}
        self.content["pruning"] = sec
        if "pruning" not in self.checks:
            sec["status"] = "not requested"
            return
        from keras_audit.audit.pruning import (
            prunable_kernels,
            pruning_figures,
            pruning_impact,
            pruning_summary,
        )

        opts = self.options["pruning"]
        layers = list(dict.fromkeys(k.layer_path for k in prunable_kernels(self.model)))
        total = 1 + (len(layers) if opts["per_layer"] else 0)
        with self.step("pruning", sec, total=total, where="pruning") as bar:
            summary = pruning_summary(self.model)
            self.tables["pruning_summary"] = summary
            drift = bool(opts["drift"]) and self.kind == "image" and self._has_cam()
            common = {"method": opts["method"], "seed": self.seed, "forward": self.forward}
            glob = pruning_impact(self.model, self.x, self.y, sparsities=opts["sparsities"],
                                  scope="global", drift=drift,
                                  drift_samples=min(int(opts["drift_samples"]),
                                                    len(self.x)), **common)
            bar.update(1)
            self.tables["pruning_global"] = glob
            parts = [glob]
            per_layer = None
            if opts["per_layer"]:
                rows = []
                for path in layers:
                    rows.append(pruning_impact(self.model, self.x, self.y,
                                               sparsities=opts["per_layer_sparsities"],
                                               scope="per_layer", layers=[path], **common))
                    bar.update(1)
                per_layer = pd.concat(rows, ignore_index=True)
                self.tables["pruning_per_layer"] = per_layer
                parts.append(per_layer)
            both = pd.concat(parts, ignore_index=True)
            both.attrs.update(glob.attrs)
            metric = "loss" if self.spec.task == "regression" else "accuracy"
            titles = {"accuracy_vs_sparsity": f"{metric.capitalize()} against sparsity (global "
                      "and per layer)",
                      "delta_accuracy_heatmap": f"Δ {metric} per layer and sparsity",
                      "explanation_drift": "Explanation drift: Grad-CAM Spearman, pruned vs "
                      "dense"}
            figures = pruning_figures(both)  # drift (global sweep only) skips per-layer rows
            for name, fig in figures.items():
                self.add_figure("pruning", name, fig, titles.get(name))
            sec.update({
                "status": "ok", "method": opts["method"], "task": glob.attrs.get("task"),
                "dense_accuracy": glob.attrs.get("dense_accuracy"),
                "dense_loss": glob.attrs.get("dense_loss"),
                "loss": glob.attrs.get("loss_name"),
                "sparsities": list(opts["sparsities"]),
                "per_layer_sparsities": list(opts["per_layer_sparsities"])
                if opts["per_layer"] else None,
                "drift": drift,
                "drift_samples": min(int(opts["drift_samples"]), len(self.x)) if drift else None,
                "summary": records(summary),
                "totals": dict(summary.attrs),
                "global": records(glob),
                "per_layer": records(per_layer) if per_layer is not None else None,
            })
            self._pruning_findings(glob, per_layer)

    def _has_cam(self) -> bool:
        from keras_audit.explain import GradCAM

        try:
            GradCAM(self.model)
            return True
        except ValueError:
            return False

    def _pruning_findings(self, glob: pd.DataFrame, per_layer: pd.DataFrame | None) -> None:
        if glob.attrs.get("task") == "regression" or glob["accuracy"].isna().all():
            return
        g = glob.sort_values("sparsity")
        drop = -100.0 * g["delta_accuracy"].to_numpy()
        levels = g["sparsity"].to_numpy()
        bad = np.flatnonzero(drop >= PRUNING_DROP_POINTS)
        safe = [s for s, d in zip(levels, drop) if d <= 1.0]
        if len(bad):
            i = bad[0]
            self.finding("warning", "pruning", f"accuracy drops {drop[i]:.0f} points at "
                         f"{100 * levels[i]:.0f}% global sparsity")
        if safe and max(safe) > 0:
            # the largest level such that every level up to it stays within one point
            ok = 0.0
            for s, d in zip(levels, drop):
                if d > 1.0:
                    break
                ok = s
            if ok > 0:
                self.finding("info", "pruning", f"accuracy stays within 1 point of the dense "
                             f"model up to {100 * ok:.0f}% global sparsity")
        if "drift_spearman" in g.columns:
            low = g[g["drift_spearman"] < DRIFT_WARNING]
            if len(low):
                row = low.iloc[0]
                self.finding("warning", "pruning", f"Grad-CAM explanations drift at "
                             f"{100 * row.sparsity:.0f}% global sparsity (Spearman "
                             f"{row.drift_spearman:.2f} against the dense model)")
        if per_layer is not None and len(per_layer):
            mid = per_layer[per_layer["sparsity"] > 0]
            if len(mid):
                levels_pl = np.unique(mid["sparsity"].to_numpy())
                level = 0.5 if 0.5 in levels_pl else float(levels_pl[len(levels_pl) // 2])
                at = mid[mid["sparsity"] == level]
                worst = at.loc[at["delta_accuracy"].idxmin()]
                if -worst.delta_accuracy * 100 >= 1.0:
                    self.finding("info", "pruning", f"the most sensitive layer is "
                                 f"{worst.layer}: pruning it alone to {100 * level:.0f}% "
                                 f"costs {-100 * worst.delta_accuracy:.0f} accuracy points")

    # assembling --------------------------------------------------------------------------------
    def finish(self) -> Report:
        hash_after = weights_hash(self.model)
        if hash_after != self.hash_before:  # preserved_weights restores; this proves it
            raise RuntimeError("the audit changed the model's weights (hash mismatch); "
                               "please report this bug")
        self.content["provenance"]["weights_sha256_after"] = hash_after
        self.content["environment"] = {
            "versions": _versions(),
            "hardware": _hardware(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "timings": {"latency": self.latency,
                        "steps_s": {k: v for k, v in self.timings.items()}},
        }
        order = {"error": 0, "warning": 1, "info": 2}
        findings = sorted(enumerate(self.findings),
                          key=lambda t: (order.get(t[1]["severity"], 3), t[0]))
        self.content["findings"] = [f for _, f in findings]
        self.tables["findings"] = pd.DataFrame(self.content["findings"],
                                               columns=["severity", "section", "text"])
        self.content["card"] = self.card
        self.content["sign_off"] = {"reviewer": None, "role": None, "date": None,
                                    "decision": None, "findings": None, "signature": None}
        content = {k: self.content.get(k) for k in TOP_LEVEL_KEYS if k != "schema_version"}
        content = {"schema_version": SCHEMA_VERSION, **jsonable(content)}
        return Report(content, self.tables, self.figures, self.figure_titles, self.galleries)


def _analysis(module: str, name: str):
    """``keras_audit.audit.<module>.<name>``, imported when first needed (shap and lime are
    slow to import, and a module named like its function is shadowed by the package export)."""
    import importlib

    return getattr(importlib.import_module(f"keras_audit.audit.{module}"), name)


def _accepted(fn, kwargs: dict) -> dict:
    """The subset of ``kwargs`` that ``fn`` accepts (the analyses differ in their options)."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _explainer_config(method: str, explainer) -> dict:
    cfg = {"class": type(explainer).__name__, "title": METHOD_TITLES.get(method, method)}
    for attr in ("layer_name", "normalize", "num_samples", "noise", "steps"):
        value = getattr(explainer, attr, None)
        if value is not None and isinstance(value, bool | int | float | str):
            cfg[attr.replace("layer_name", "layer")] = value
    return cfg


def _lime_summary(res) -> dict:
    """What a LimeResult holds, as a table and a config dict (fields read defensively)."""
    config = {}
    for attr in ("kind", "segmentation", "n_segments", "kernel_width", "feature_selection"):
        value = getattr(res, attr, None)
        if isinstance(value, str | int | float | bool):
            config[attr] = value
        elif isinstance(value, dict):
            config[attr] = jsonable(value)
    segs = getattr(res, "segments_per_image", None)
    if segs is not None:
        config["segments_per_image"] = [int(v) for v in np.asarray(segs).ravel()]
    scores = getattr(res, "scores", None)
    if scores is None:
        scores = getattr(res, "score", None)
    table = None
    for attr in ("table", "weights_table"):
        value = getattr(res, attr, None)
        if isinstance(value, pd.DataFrame):
            table = value
            break
    if table is None and scores is not None:
        table = pd.DataFrame({"sample": np.arange(len(np.atleast_1d(scores))),
                              "score": np.atleast_1d(np.asarray(scores, float))})
    mean = None
    if scores is not None and np.size(scores):
        finite = np.asarray(scores, float)[np.isfinite(np.asarray(scores, float))]
        mean = float(finite.mean()) if finite.size else None
    return {"config": config, "table": table, "mean_score": mean}


def _bar_figure(table: pd.DataFrame):
    """Horizontal bars of a permutation-importance table (mean ± std), top 20 features."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = [c for c in table.columns if "mean" in c]
    if "feature" not in table.columns or not cols:
        return None
    t = table.sort_values(cols[0], ascending=False, kind="stable").head(20).iloc[::-1]
    std_cols = [c for c in table.columns if "std" in c]
    fig = Figure(figsize=(6, 0.25 * len(t) + 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(t["feature"].astype(str), t[cols[0]], xerr=t[std_cols[0]] if std_cols else None,
            color="tab:blue", alpha=0.8)
    ax.set_xlabel(cols[0].replace("_", " "))
    ax.tick_params(axis="y", labelsize=7)
    return fig


def _layer_table(model: keras.Model) -> pd.DataFrame:
    """One row per layer (nested models' layers included): path, type, output shape, params."""
    shapes = {}
    try:
        from keras_audit.explain import list_layers

        shapes = {i.path: i.output_shape for i in list_layers(model)}
    except Exception:  # a subclassed model without a readable graph: shapes stay unknown
        shapes = {}
    rows = []

    def walk(container, prefix: str) -> None:
        for layer in getattr(container, "layers", []):
            path = prefix + layer.name
            shape = shapes.get(path)
            rows.append({"layer": path, "type": type(layer).__name__,
                         "output_shape": "" if shape is None else str(tuple(shape)),
                         "parameters": int(sum(int(np.prod(w.shape)) for w in layer.weights)),
                         "activation": _activation_name(layer)})
            if isinstance(layer, keras.Model):
                walk(layer, path + "/")

    walk(model, "")
    return pd.DataFrame(rows, columns=["layer", "type", "output_shape", "parameters",
                                       "activation"])


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    if act is None:
        return ""
    return getattr(act, "__name__", None) or type(act).__name__


def _last_activation(model: keras.Model) -> str:
    layer = model
    while isinstance(layer, keras.Model) and getattr(layer, "layers", None):
        layer = layer.layers[-1]
    return _activation_name(layer) or type(layer).__name__


def _versions() -> dict:
    import importlib.metadata as md

    import keras_audit

    out = {"keras_audit": keras_audit.__version__, "python": platform.python_version(),
           "keras": keras.__version__}  # the Keras actually imported
    for name in ("tensorflow", "shap", "lime", "numpy", "scikit-learn", "pandas", "matplotlib",
                 "jinja2"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _hardware() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory = None
    try:
        import tensorflow as tf

        devices = sorted(f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices())
    except Exception:  # device listing is informative only
        devices = []
    return {"machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "memory_gb": memory, "devices": devices, "system": platform.system()}


# -- the public entry point ------------------------------------------------------------------------

def run(model: keras.Model, x: tf.Tensor | ArrayLike, y: tf.Tensor | ArrayLike,
        class_names: Sequence[str] | None = None,
        background: tf.Tensor | ArrayLike | None = None,
        checks: Sequence[str] = DEFAULT_CHECKS, out_dir: str | os.PathLike | None = "audit_report",
        seed: int = 0, card: dict | str | os.PathLike | None = None, samples: int | None = None,
        progress: bool | Callable[..., Any] | None = None, *,
        feature_names: Sequence[str] | None = None,
        options: dict | None = None) -> Report:
    """Audit ``model`` on ``(x, y)`` and write the compliance report into ``out_dir``.

    Args:
        model: a trained, built single-input Keras model (classifier or regressor). Its
            weights are never left changed (checked by hash before and after).
        x: the audit inputs: images ``(N, H, W, C)``, tables ``(N, F)`` or sequences.
        y: labels: class ids ``(N,)``, one-hot ``(N, C)``, ``{0, 1}`` for one sigmoid unit, or
            regression targets.
        class_names: one name per class (default ``"0"``, ``"1"``, ...).
        background: SHAP background samples (and LIME tabular training statistics); ``None``
            draws them from ``x`` (seeded, disjoint from the explained samples).
        checks: analyses to run, from ``CHECKS``: ``"performance"``, ``"shap"``, ``"lime"``
            (each also brings the model-level explanations: Grad-CAM and saliency galleries
            for images; permutation importance and a surrogate tree for tables),
            ``"pruning"`` and ``"sanity"`` (the randomisation test and deletion/insertion
            AUCs). Provenance, model details, card, data and sign-off are always there.
        out_dir: the folder for ``report.html``, ``report.json`` and ``tables/*.csv``;
            ``None`` writes nothing (use the returned ``Report``).
        seed: seeds every random choice (sample selection, bootstrap, SHAP/LIME, pruning).
        card: the model card: a dict, a YAML file path or ``None`` (see ``load_card``).
        samples: how many samples the explanation analyses use (default 32, class-balanced);
            performance and pruning always use all of ``x``.
        progress: ``None`` (silent), ``True`` (tqdm bars on stderr) or a factory called as
            ``progress(desc=..., total=...)`` that returns a bar with ``update(n)`` and
            ``close()`` (e.g. ``tqdm.tqdm``): one bar per step.
        feature_names: names of the columns of tabular ``x``.
        options: per-analysis settings overriding ``DEFAULT_OPTIONS`` group by group, e.g.
            ``{"pruning": {"sparsities": (0, 0.5, 0.9)}, "lime": {"num_samples": 300}}``.

    Returns:
        The ``Report`` (``to_html``, ``to_json``, ``tables``, ``content``).

    Raises:
        AuditInputError (a ValueError), before any analysis runs: an unknown check (the message
            lists the valid ones), ``x`` the model cannot take, ``y`` that does not match ``x``
            or the model's output, wrong ``class_names``/``feature_names``, a bad ``card``,
            ``seed``, ``samples`` or ``options``, or an ``out_dir`` that cannot be created.
        RuntimeError: the weights changed during the audit (a bug; never expected).

    An analysis that fails while running is recorded in its section (``status: "failed"``
    with the error) and as an ``error`` finding, and the audit goes on.
    """
    audit = _Audit(model, x, y, class_names, background, checks, out_dir, seed, card, samples,
                   progress, feature_names, options)
    with preserved_weights(model, verify=True):
        audit.predictions()
        audit.provenance()
        audit.model_details()
        audit.data_section()
        audit.performance()
        audit.explanations()
        audit.quality()
        audit.pruning()
    report = audit.finish()
    if audit.out_dir is not None:
        report.save(audit.out_dir)
    return report
