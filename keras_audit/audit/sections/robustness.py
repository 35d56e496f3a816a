"""Robustness to corrupted inputs: accuracy against severity per corruption, and how far the
explanations of the explained samples move (``robustness``)."""

from __future__ import annotations

import math

import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.serialize import records

KEY = "robustness"
TITLE = "Robustness to corruptions"
OPTIONS = {"robustness": {"corruptions": None, "severities": (1, 2, 3, 4, 5),
                          "stability": True, "batch_size": 256}}

DROP_POINTS = 5.0        # an accuracy drop of this many points under a corruption is flagged
STABILITY_WARNING = 0.5  # explanations whose Spearman vs clean falls below this are flagged


def build(ctx: AuditContext, options: dict) -> Section:
    """The corruption sweep, its curves and findings."""
    sec = new_section(KEY, ctx)
    if KEY not in ctx.checks:
        sec.content["status"] = "not requested"
        return sec
    with sec.step("robustness", sec.content):
        _robustness(ctx, options[KEY], sec)
    return sec


def _robustness(ctx: AuditContext, opts: dict, sec: Section) -> None:
    from keras_audit.audit.robustness_analysis import robustness, robustness_figures, worst_case

    common = {"corruptions": opts["corruptions"], "severities": opts["severities"],
              "stability": bool(opts["stability"]), "batch_size": int(opts["batch_size"]),
              "seed": ctx.seed, "forward": ctx.forward}
    if ctx.stream is None:
        table = robustness(ctx.model, ctx.x, ctx.y, stability_index=ctx.explain_idx, **common)
        sec.content["measured_on"] = f"every sample ({len(ctx.x)}), held as arrays"
    else:  # every level streams every sample; the stability explains the drawn samples
        stream = ctx.stream.stream
        table = robustness(ctx.model, ctx.x_explain, ctx.stream.y,
                           stability_index=ctx.stream.explain_index, stream=stream,
                           clean_outputs=ctx.stream.raw, **common)
        sec.content["measured_on"] = (
            f"every sample ({table.attrs['n_samples']}), streamed in chunks of "
            f"{int(opts['batch_size'])}; "
            + ("the value range" if ctx.kind == "image" else "the feature means and stds")
            + " from a pass over every sample; the stability on the explained samples")
        if stream.engine != "local" or stream.strategy is not None:
            where = "Ray workers" if stream.engine == "ray" else "the distribution strategy"
            sec.content["engine_note"] = (
                f"the corruption passes ran in this process over the streamed batches, not "
                f"on {where} (which ran the performance and pruning passes); the numbers "
                "are the same")
    sec.tables["robustness"] = table
    titles = {"accuracy_vs_severity": ("Accuracy" if ctx.classifier else "Loss")
              + " against corruption severity",
              "stability_vs_severity": "Explanation stability: Spearman of the maps, "
              "corrupted vs clean"}
    for name, fig in robustness_figures(table).items():
        sec.add_figure(name, fig, titles.get(name))
    worst = worst_case(table)
    sec.content.update({
        "status": "ok", "task": table.attrs["task"], "kind": table.attrs["kind"],
        "corruptions": list(table["corruption"].unique()),
        "severities": sorted({int(s) for s in table["severity"]}),
        "clean_accuracy": table.attrs["clean_accuracy"],
        "clean_loss": table.attrs["clean_loss"], "loss": table.attrs["loss_name"],
        "value_range": table.attrs["value_range"], "explainer": table.attrs["explainer"],
        "stability_samples": table.attrs["stability_samples"],
        "n_samples": table.attrs["n_samples"], "streamed": table.attrs["streamed"],
        "worst": worst, "rows": records(table),
    })
    _findings(sec, table, worst)


def _findings(sec: Section, table: pd.DataFrame, worst: dict) -> None:
    explainer = {"gradcam": "Grad-CAM", "saliency": "saliency"}.get(
        table.attrs.get("explainer"), "")
    if table.attrs["task"] == "regression":
        sec.finding("info", f"the loss rises most under {worst['corruption']} at severity "
                    f"{worst['severity']}: {worst['loss']:.3g} against "
                    f"{table.attrs['clean_loss']:.3g} on clean data")
        return
    drop = -100.0 * worst["delta_accuracy"]
    rho = worst.get("explanation_spearman")
    keep = (f"; the {explainer} maps keep a rank correlation of {rho:.2f}"
            if rho is not None and not math.isnan(rho) else "")
    text = (f"accuracy drops {drop:.0f} points under {worst['corruption']} at severity "
            f"{worst['severity']}{keep}")
    if drop >= DROP_POINTS:
        sec.finding("warning", text)
    else:
        sec.finding("info", f"accuracy stays within {DROP_POINTS:.0f} points under every "
                    f"corruption (worst: {text})")
    if "explanation_spearman" in table:
        low = table[table["explanation_spearman"] < STABILITY_WARNING]
        if len(low):
            row = low.sort_values(["severity", "explanation_spearman"]).iloc[0]
            sec.finding("warning", f"{explainer} explanations are unstable under "
                        f"{row.corruption} from severity {int(row.severity)} (Spearman "
                        f"{row.explanation_spearman:.2f} against the clean maps)")
