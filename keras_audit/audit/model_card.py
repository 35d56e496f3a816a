"""A Hugging Face style model card (``README.md``) from a finished report.

YAML front matter with ``model-index`` evaluation results (the Hub's format: one result per
task and dataset, a list of ``{type, name, value}`` metrics), then Markdown: the card's
intended use, limitations and risks, the evaluation, the groups, the comparison with the
baseline, and the verdict against the acceptance criteria. Every number is read from the
report's JSON content, so the card says what report.json says.
"""

from __future__ import annotations

import math
from typing import Any

#: report metrics that become model-index metrics: (key in performance, Hub type, name)
_INDEX_METRICS = {
    "classification": (("accuracy", "accuracy", "Accuracy"), ("macro_f1", "f1", "Macro F1"),
                       ("roc_auc_macro", "roc_auc", "ROC-AUC (macro, one-vs-rest)"),
                       ("ece", "ece", "Expected calibration error")),
    "regression": (("mae", "mae", "MAE"), ("rmse", "rmse", "RMSE"), ("r2", "r2", "R²")),
}
_TASK_TYPES = {("image", True): "image-classification", ("tabular", True):
               "tabular-classification", ("tabular", False): "tabular-regression",
               ("image", False): "image-regression"}
_CARD_SECTIONS = (("intended_use", "Intended use"), ("out_of_scope_uses", "Out-of-scope uses"),
                  ("limitations", "Limitations"), ("risks", "Risks"),
                  ("ethical_considerations", "Ethical considerations"))


def model_card_text(content: dict) -> str:
    """The model card of a report's JSON content, as README.md text."""
    import yaml

    model = content.get("model") or {}
    perf = content.get("performance") or {}
    card = content.get("card") or {}
    data = content.get("data") or {}
    prov = content.get("provenance") or {}
    classifier = perf.get("task") != "regression"
    task_type = _TASK_TYPES.get((data.get("kind"), classifier),
                                "other" if classifier else "regression")
    metrics = []
    if perf.get("status") == "ok":
        for key, kind, name in _INDEX_METRICS["classification" if classifier else "regression"]:
            v = perf.get(key)
            if _finite(v):
                metrics.append({"type": kind, "name": name, "value": float(v)})
    front: dict[str, Any] = {"library_name": "keras", "tags": ["keras", "keras-audit"]}
    licence = card.get("licence") or card.get("license")
    if isinstance(licence, str):
        front["license"] = licence.lower()
    front["model-index"] = [{"name": str(model.get("name", "model")), "results": [{
        "task": {"type": task_type},
        "dataset": {"type": "audit-data", "name": f"audit data ({data.get('n_samples')} "
                    f"samples, data SHA-256 {str(prov.get('data_sha256', ''))[:12]})"},
        "metrics": metrics}]}]
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---",
             "", f"# Model card: {model.get('name', 'model')}", ""]
    if card.get("description"):
        lines += [str(card["description"]), ""]
    for key, title in _CARD_SECTIONS:
        lines += [f"## {title}", "", _text(card.get(key)) or "_Not stated in the model card._",
                  ""]
    lines += _evaluation(perf, data)
    lines += _groups(content.get("groups") or {})
    lines += _comparison(content.get("comparison") or {})
    lines += _verdict(content)
    lines += ["## Provenance", "",
              f"Report {prov.get('report_id')} ({prov.get('generator')}, "
              f"{prov.get('timestamp')}); weights SHA-256 `{prov.get('weights_sha256')}`.", ""]
    return "\n".join(lines)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _cell(v: Any) -> str:
    """A Markdown table cell: a '|' in a name would split it."""
    return str(v).replace("|", "\\|").replace("\n", " ")


def _num(v: Any) -> str:
    return f"{v:.4f}" if _finite(v) else "–"


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return "\n".join(f"- {_text(i)}" for i in v)
    if isinstance(v, dict):
        return "\n".join(f"- **{k}**: {_text(i)}" for k, i in v.items())
    return str(v).strip()


def _evaluation(perf: dict, data: dict) -> list[str]:
    out = ["## Evaluation", ""]
    if perf.get("status") != "ok":
        return out + ["_Performance was not measured._", ""]
    out += [f"On {data.get('n_samples')} audit samples (95% bootstrap intervals).", "",
            "| metric | value | 95% CI |", "|---|---|---|"]
    keys = (("accuracy", "macro_f1", "ece") if perf.get("task") != "regression"
            else ("mae", "rmse", "r2"))
    for k in keys:
        ci = perf.get(f"{k}_ci95")
        out.append(f"| {k} | {_num(perf.get(k))} | "
                   f"{f'{_num(ci[0])} – {_num(ci[1])}' if ci else '–'} |")
    return out + [""]


def _groups(g: dict) -> list[str]:
    out = ["## Performance per group", ""]
    if g.get("status") != "ok":
        return out + [f"_{g.get('note', 'No groups were given.')}_", ""]
    head = g["headline"]
    for attr in g["attributes"]:
        a = g[attr]
        out += [f"### {attr}", "", f"| group | n | {head} | 95% CI |", "|---|---|---|---|"]
        for r in a["groups"]:
            ci = r.get(f"{head}_ci95") or [None, None]
            out.append(f"| {_cell(r['group'])} | {r['n']} | {_num(r[head])} | {_num(ci[0])} – "
                       f"{_num(ci[1])} |")
        out += ["", f"Largest difference {_num(a['max_difference'][head])}, smallest ratio "
                f"{_num(a['min_ratio'][head])} (groups with at least {g['min_group_size']} "
                "samples).", ""]
    return out


def _comparison(c: dict) -> list[str]:
    if c.get("status") != "ok":
        return []
    out = ["## Comparison with the baseline", "", "| metric | candidate | baseline | delta |",
           "|---|---|---|---|"]
    for m, d in c["delta"].items():
        out.append(f"| {m} | {_num(c['candidate'][m])} | {_num(c['baseline'][m])} | "
                   f"{_num(d)} |")
    if c.get("mcnemar"):
        out += ["", f"McNemar's exact test p = {c['mcnemar']['p_value']:.4g}; "
                f"{c['flips']['count']} predictions flip."]
    return out + [""]


def _verdict(content: dict) -> list[str]:
    out = ["## Acceptance criteria", "", f"Verdict: **{content.get('verdict')}**.", ""]
    crit = content.get("criteria") or []
    if crit:
        sym = {"min": "≥", "max": "≤", "equals": "="}
        out += ["| criterion | metric | value | bound | severity | status |",
                "|---|---|---|---|---|---|"]
        for c in crit:
            value = _num(c["value"]) if _finite(c["value"]) else str(c["value"])
            out.append(f"| {_cell(c['criterion'])} | `{c['metric']}` | {value} | "
                       f"{sym[c['comparison']]} {c['threshold']} | {c['severity']} | "
                       f"{c['status']} |")
    return out + [""]
