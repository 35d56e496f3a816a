"""The finished report: its JSON content, tables and figures, written as HTML, JSON and CSV.

``report.html`` is one self-contained page (images as data URIs, CSS inline, no network),
rendered by Jinja2 with autoescaping on: a frame (``templates/report.html``) and one template
per section (``templates/sections/<key>.html``), in the order of the section table.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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

    # -- notebooks -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        model = (self.content.get("model") or {}).get("name", "?")
        crit = self.content.get("criteria") or []
        return (f"<Report {model}: verdict {self.verdict}, {len(crit)} criteria "
                f"({len(self.failing_criteria())} not met), {len(self.findings)} findings>")

    def _repr_html_(self) -> str:
        """A notebook's view: the verdict and the criteria table (values escaped)."""
        from html import escape

        model = escape(str((self.content.get("model") or {}).get("name", "?")))
        sym = {"min": "≥", "max": "≤", "equals": "="}
        rows = "".join(
            f"<tr><td>{escape(str(c['criterion']))}</td><td><code>{escape(c['metric'])}</code>"
            f"</td><td>{escape(_fmt(c['value'], 6))}</td><td>{sym.get(c['comparison'], '')} "
            f"{escape(_fmt(c['threshold'], 6))}</td><td>{escape(c['severity'])}</td>"
            f"<td><b>{escape(c['status'])}</b></td></tr>"
            for c in self.content.get("criteria") or [])
        return (f"<div><p>Audit report <b>{model}</b>: verdict <b>{escape(str(self.verdict))}"
                f"</b>, {len(self.findings)} findings</p><table><thead><tr><th>criterion</th>"
                "<th>metric</th><th>value</th><th>bound</th><th>severity</th><th>status</th>"
                f"</tr></thead><tbody>{rows}</tbody></table></div>")

    # -- reading ---------------------------------------------------------------------------------
    @property
    def findings(self) -> list[dict]:
        """The automatic findings: dicts with ``severity``, ``section`` and ``text``."""
        return self.content.get("findings", [])

    @property
    def verdict(self) -> str | None:
        """``"pass"``, ``"warn"`` or ``"fail"``: the policy's verdict on this report."""
        return self.content.get("verdict")

    @property
    def criteria(self) -> pd.DataFrame:
        """One row per acceptance criterion: criterion, metric, value, threshold, comparison,
        severity, status (pass, warn, fail, missing), section (its evidence), note."""
        from keras_audit.audit.policy import CRITERIA_COLUMNS

        return pd.DataFrame(self.content.get("criteria") or [], columns=list(CRITERIA_COLUMNS))

    def failing_criteria(self) -> list[dict]:
        """The criteria that are not met (broken or missing), in the policy's order."""
        return [c for c in self.content.get("criteria") or [] if c["status"] != "pass"]

    def to_dict(self) -> dict:
        """A deep copy of the JSON content."""
        return copy.deepcopy(self.content)

    def summary_lines(self) -> list[str]:
        """A few plain-text lines for a terminal: the headline metric, the warnings, and last
        the verdict with the criteria not met."""
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
        if self.verdict is not None:
            failing = [f"{c['criterion']} ({c['status']})" for c in self.failing_criteria()]
            lines.append(f"verdict: {self.verdict}" + (f"; criteria not met: "
                                                       f"{', '.join(failing)}" if failing
                                                       else "; every criterion met"))
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
        env.filters["against"] = _against
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
        from keras_audit.audit.sections import SECTIONS
        from keras_audit.audit.sections.explanation_methods import method_title

        html = env.get_template("report.html").render(
            r=self.content, sections=SECTIONS, figures=figures, tables=tables,
            galleries=galleries, method_title=method_title)
        if path is not None:
            Path(path).write_text(html, encoding="utf-8")
        return html

    def to_model_card(self, path: str | os.PathLike | None = None) -> str:
        """A Hugging Face style model card (README.md): YAML front matter with ``model-index``
        results, then the card's sections, the evaluation, groups, comparison and verdict.

        Args:
            path: where to write it (e.g. ``"README.md"``); ``None`` only returns the text.

        Returns:
            The Markdown text.
        """
        from keras_audit.audit.model_card import model_card_text

        text = model_card_text(self.content)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

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


def _against(v: Any, bound: Any) -> str:
    """A value shown next to its bound: 4 decimals, more when 4 would make it read as the
    bound itself (0.05004 against 0.05, not 0.0500)."""
    number = isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
    if not number or not isinstance(bound, int | float) or isinstance(bound, bool):
        return _fmt(v)
    for digits in range(4, 10):
        text = _fmt(v, digits)
        if v == bound or text == "–" or float(text) != float(bound):
            return text
    return repr(v)


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
