"""Distribution shift: the audit data against the reference (training) data (``shift``)."""

from __future__ import annotations

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section

KEY = "shift"
TITLE = "Distribution shift"
OPTIONS = {"shift": {"layer": None, "permutations": 500, "max_samples": 1000,
                     "batch_size": 256}}

SHIFT_P_VALUE = 0.01   # an MMD p-value below this is a shift
SHIFT_AUROC = 0.75     # a domain classifier above this separates the sets


def build(ctx: AuditContext, options: dict) -> Section:
    """MMD, domain classifier, KS (tables) and OOD scores; figures and findings."""
    sec = new_section(KEY, ctx)
    if KEY not in ctx.checks:
        sec.content["status"] = "not requested"
        return sec
    with sec.step("shift", sec.content):
        _shift(ctx, options[KEY], sec)
    return sec


def _shift(ctx: AuditContext, opts: dict, sec: Section) -> None:
    from keras_audit.audit.shift_analysis import shift, shift_figures

    result = shift(ctx.model, ctx.reference, ctx.x, layer=opts["layer"], seed=ctx.seed,
                   permutations=int(opts["permutations"]),
                   max_samples=int(opts["max_samples"]), batch_size=int(opts["batch_size"]))
    names = ctx.feature_names
    if result.ks is not None:
        ks = result.ks.copy()
        if names:
            ks["feature"] = [names[int(f)] for f in ks["feature"]]
        result.ks = ks
        sec.tables["shift_ks"] = ks
    titles = {"ood_histograms": "OOD scores of the reference and audit samples",
              "ks_features": "Largest per-feature KS statistics"}
    for name, fig in shift_figures(result).items():
        sec.add_figure(name, fig, titles.get(name))
    summary = result.summary()
    sec.content.update({"status": "ok", **summary,
                        "n_reference": int(len(ctx.reference)), "n_audit": int(len(ctx.x))})
    _findings(sec, result)


def _findings(sec: Section, result) -> None:
    p, auroc = result.mmd["p_value"], result.auroc
    if p < SHIFT_P_VALUE or auroc > SHIFT_AUROC:
        sec.finding("warning", f"the audit data differ from the reference data (MMD p = "
                    f"{p:.3g} on the {result.layer} embeddings; a classifier tells them apart "
                    f"with AUROC {auroc:.2f})")
    else:
        sec.finding("info", f"no shift detected between reference and audit data (MMD p = "
                    f"{p:.3g}, domain-classifier AUROC {auroc:.2f})")
    if result.ks is not None:
        alpha = 0.01 / len(result.ks)  # Bonferroni over the features
        moved = result.ks[result.ks["p_value"] < alpha]
        if len(moved):
            top = ", ".join(str(f) for f in moved["feature"].head(5))
            sec.finding("warning", f"{len(moved)} feature(s) shifted (KS, Bonferroni "
                        f"p < {alpha:.2g}): {top}")
