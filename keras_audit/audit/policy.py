"""Acceptance criteria and the verdict: a policy read and checked before any work, evaluated
on the finished report.json content.

A policy is a list of criteria (or ``{"criteria": [...]}``, or a YAML file holding either).
Each criterion names a metric by its dotted path into report.json (list items by their
index: ``performance.accuracy_ci95.0``), one bound (``min``, ``max`` or ``equals``) and a
severity (``fail`` or ``warn``, default ``fail``)::

    criteria:
      - {name: accuracy, metric: performance.accuracy, min: 0.90, severity: fail}
      - {name: calibration, metric: performance.ece, max: 0.05, severity: warn}

Light on purpose (no NumPy, no TensorFlow): the command validates ``--policy`` with it before
the model is loaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_audit.audit.catalog import AuditInputError

#: the keys a criterion may have
CRITERION_KEYS = ("name", "metric", "min", "max", "equals", "severity")
#: the keys a policy mapping may have
POLICY_KEYS = ("criteria",)
#: bounds, in the order they are looked for
COMPARISONS = ("min", "max", "equals")
#: criterion severities: a broken ``fail`` criterion fails the audit, a ``warn`` one warns
CRITERION_SEVERITIES = ("fail", "warn")
#: criterion statuses, as they appear in ``Report.criteria``
STATUSES = ("pass", "warn", "fail", "missing")
#: the verdicts, best first
VERDICTS = ("pass", "warn", "fail")
#: the columns of ``Report.criteria`` (and of ``tables/criteria.csv``)
CRITERIA_COLUMNS = ("criterion", "metric", "value", "threshold", "comparison", "severity",
                    "status", "section", "note")


@dataclass(frozen=True)
class Criterion:
    """One acceptance criterion.

    Attributes:
        name: how the summary calls it.
        metric: the dotted path into report.json.
        comparison: ``"min"``, ``"max"`` or ``"equals"``.
        threshold: the bound.
        severity: ``"fail"`` or ``"warn"``.
    """

    name: str
    metric: str
    comparison: str
    threshold: Any
    severity: str = "fail"

    def to_dict(self) -> dict:
        """The criterion as written in a policy file."""
        return {"name": self.name, "metric": self.metric, self.comparison: self.threshold,
                "severity": self.severity}


def load_policy(policy: Sequence | Mapping | str | os.PathLike | None
                ) -> tuple[Criterion, ...] | None:
    """Read and check a policy; ``None`` stays ``None`` (the default policy applies).

    Args:
        policy: a list of criterion dicts (or ``Criterion``), a dict ``{"criteria": [...]}``,
            or the path of a YAML file holding either.

    Returns:
        The criteria, in the policy's order, or ``None``.

    Raises:
        AuditInputError: a missing or unreadable file, an unknown key (policy or criterion),
            a criterion without ``metric`` or with zero or several bounds, a bound that is not
            a finite number (``min``/``max``) or a number, string or boolean (``equals``), an
            unknown severity, or no criteria at all.
    """
    if policy is None:
        return None
    if isinstance(policy, str | os.PathLike):
        policy = _read_yaml(Path(policy))
    if isinstance(policy, Mapping):
        unknown = [k for k in policy if k not in POLICY_KEYS]
        if unknown:
            raise AuditInputError(f"unknown policy key(s) {unknown}; a policy has: "
                                  f"{list(POLICY_KEYS)}")
        if "criteria" not in policy:
            raise AuditInputError("the policy has no 'criteria' list")
        policy = policy["criteria"]
    if isinstance(policy, str | bytes) or not isinstance(policy, Sequence):
        raise AuditInputError("policy must be a list of criteria, a dict {'criteria': [...]} "
                              f"or a YAML file path; got {type(policy).__name__}")
    if not policy:
        raise AuditInputError("the policy has no criteria")
    return tuple(_criterion(item, i) for i, item in enumerate(policy))


def _read_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise AuditInputError(f"policy file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        text = " ".join(str(exc).split())
        raise AuditInputError(f"policy file {path} could not be read as YAML: {text}") from None


def _criterion(item: object, i: int) -> Criterion:
    where = f"policy criterion {i + 1}"
    if isinstance(item, Criterion):  # already checked (e.g. by the command)
        item = item.to_dict()
    if not isinstance(item, Mapping):
        raise AuditInputError(f"{where} must be a mapping like {{name: accuracy, metric: "
                              f"performance.accuracy, min: 0.9, severity: fail}}; got {item!r}")
    unknown = [k for k in item if k not in CRITERION_KEYS]
    if unknown:
        raise AuditInputError(f"unknown key(s) {unknown} in {where}; valid keys: "
                              f"{list(CRITERION_KEYS)}")
    metric = item.get("metric")
    if not isinstance(metric, str) or not metric or any(not p for p in metric.split(".")):
        raise AuditInputError(f"{where} needs 'metric', a dotted path into report.json such as "
                              f"'performance.accuracy'; got {metric!r}")
    bounds = [k for k in COMPARISONS if k in item]
    if len(bounds) != 1:
        raise AuditInputError(f"{where} ({metric}) needs exactly one bound of {list(COMPARISONS)}; "
                              f"got {bounds or 'none'}")
    comparison = bounds[0]
    threshold = item[comparison]
    if comparison in ("min", "max"):
        if (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                or not math.isfinite(threshold)):
            raise AuditInputError(f"{where} ({metric}): '{comparison}' must be a finite number; "
                                  f"got {threshold!r}")
    elif not isinstance(threshold, bool | int | float | str) or (
            isinstance(threshold, float) and not math.isfinite(threshold)):
        raise AuditInputError(f"{where} ({metric}): 'equals' must be a number, a string or a "
                              f"boolean; got {threshold!r}")
    severity = item.get("severity", "fail")
    if severity not in CRITERION_SEVERITIES:
        raise AuditInputError(f"{where} ({metric}): severity must be one of "
                              f"{list(CRITERION_SEVERITIES)}; got {severity!r}")
    name = item.get("name", metric)
    if not isinstance(name, str) or not name.strip():
        raise AuditInputError(f"{where}: 'name' must be a non-empty string; got {name!r}")
    return Criterion(name=name, metric=metric, comparison=comparison, threshold=threshold,
                     severity=severity)


def resolve(content: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path into JSON content: ``(found, value)``.

    Mapping keys are matched as written; list items by an integer index.
    """
    node = content
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and \
                -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def evaluate(criteria: Sequence[Criterion], content: Mapping,
             sections: Sequence[str] = ()) -> tuple[str, list[dict]]:
    """Check each criterion against the report's JSON content.

    Args:
        criteria: the policy.
        content: the report.json content.
        sections: the report's section keys (a criterion links to its metric's section).

    Returns:
        ``(verdict, rows)``: ``"fail"`` when a ``fail`` criterion is broken or missing,
        ``"warn"`` when a ``warn`` one is, else ``"pass"``; one row per criterion with the
        ``CRITERIA_COLUMNS``. A metric the report lacks (or that is null, NaN or not a
        number where a bound needs one) is status ``missing``, never skipped.
    """
    rows = []
    for c in criteria:
        found, value = resolve(content, c.metric)
        top = c.metric.split(".", 1)[0]
        note = ""
        if not found or value is None:
            status, note = "missing", "the report has no value at this path"
            value = None
        elif c.comparison in ("min", "max") and not _number(value):
            status, note = "missing", f"not a number ({type(value).__name__})"
            value = value if isinstance(value, str | int | float | bool) else None
        else:
            if c.comparison == "min":
                ok = value >= c.threshold
            elif c.comparison == "max":
                ok = value <= c.threshold
            else:
                ok = value == c.threshold and isinstance(value, bool) == isinstance(
                    c.threshold, bool)
            status = "pass" if ok else c.severity
        rows.append({"criterion": c.name, "metric": c.metric, "value": value,
                     "threshold": c.threshold, "comparison": c.comparison,
                     "severity": c.severity, "status": status,
                     "section": top if top in sections else None, "note": note})
    broken = {r["severity"] for r in rows if r["status"] != "pass"}
    verdict = "fail" if "fail" in broken else "warn" if "warn" in broken else "pass"
    return verdict, rows
