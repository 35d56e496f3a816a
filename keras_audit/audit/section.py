"""What one report section builder returns, and the guarded step every analysis runs in.

A builder is ``build(ctx: AuditContext, options: dict) -> Section``: it reads the frozen
context, runs its analyses inside ``section.step(...)`` (a failure is recorded in the section
and as an ``error`` finding, never fatal to the audit), and returns its JSON content, tables,
figures and findings. The runner assembles the sections in the table's order.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keras_audit.audit.progress import _no_bar

if TYPE_CHECKING:
    import pandas as pd

    from keras_audit.audit.context import AuditContext

SEVERITIES = ("error", "warning", "info")


@dataclass
class Section:
    """One section's output.

    Attributes:
        key: the report.json key (and HTML anchor) the content goes under.
        content: the section's JSON content (plain types after ``jsonable``).
        tables: ``{name: DataFrame}`` written as ``tables/<name>.csv`` and shown in the HTML.
        figures: ``{"<section>.<name>": (PNG bytes, title)}``.
        findings: dicts with ``severity`` (error, warning, info), ``section`` and ``text``.
        galleries: image explanations of chosen samples (HTML only).
        timings: seconds per step.
        latency: clock-dependent measurements the runner moves into ``environment``.
    """

    key: str
    content: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    galleries: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    progress: Callable[..., Any] = _no_bar

    def finding(self, severity: str, text: str, section: str | None = None) -> None:
        """Record a finding about this section (or about ``section``)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}; got {severity!r}")
        self.findings.append({"severity": severity, "section": section or self.key,
                              "text": text})

    def add_figure(self, name: str, fig: Any, title: str | None = None) -> str:
        """Encode a matplotlib figure (or uint8 image) as PNG under ``<key>.<name>``."""
        from keras_audit.render.figures import png_bytes

        key = f"{self.key}.{name}"
        self.figures[key] = (png_bytes(fig), title or name.replace("_", " "))
        return key

    @contextmanager
    def step(self, name: str, part: dict, total: int = 1) -> Iterator[Any]:
        """Time a step, show a bar, and turn a failure into ``part = {"status": "failed"}``.

        Args:
            name: the step's name (progress bar, timings, the failure finding).
            part: the dict in ``content`` this step fills; on failure it is replaced by the
                status and the error message.
            total: units of progress the step reports through the yielded bar.
        """
        bar = self.progress(desc=name, total=total)
        t0 = time.perf_counter()
        try:
            yield bar
            part.setdefault("status", "ok")
            left = total - int(getattr(bar, "n", total))
            if left > 0:  # steps that cannot count their own progress finish in one go
                bar.update(left)
        except Exception as exc:  # a failing analysis is reported, not fatal to the audit
            msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            part.clear()
            part.update({"status": "failed", "error": msg})
            self.finding("error", f"{name} could not run: {msg}")
            warnings.warn(f"keras_audit report: {name} failed: {msg}", RuntimeWarning,
                          stacklevel=3)
        finally:
            bar.close()
            self.timings[name] = time.perf_counter() - t0


def requested(ctx: AuditContext, check: str, part: dict) -> bool:
    """Whether ``check`` was asked for; if not, ``part`` says so (``"not requested"``)."""
    if check in ctx.checks:
        return True
    part["status"] = "not requested"
    return False


def new_section(key: str, ctx: AuditContext) -> Section:
    """An empty section that shows progress the way the context asks."""
    return Section(key, progress=ctx.progress)
