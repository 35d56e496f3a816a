"""Adversarial robustness: accuracy under FGSM and PGD against epsilon (``adversarial``)."""

from __future__ import annotations

import numpy as np

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section
from keras_audit.audit.serialize import records

KEY = "adversarial"
TITLE = "Adversarial robustness"
OPTIONS = {"adversarial": {"epsilons": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255),
                           "attacks": ("fgsm", "pgd"), "steps": 10, "batch_size": 256,
                           "max_samples": 512}}

ADVERSARIAL_DROP_POINTS = 20.0  # the strongest attack at the largest epsilon costing this much


def build(ctx: AuditContext, options: dict) -> Section:
    """The attacks on (a seeded subset of) the audit data, the curve and the findings."""
    sec = new_section(KEY, ctx)
    if KEY not in ctx.checks:
        sec.content["status"] = "not requested"
        return sec
    with sec.step("adversarial", sec.content):
        _adversarial(ctx, options[KEY], sec)
    return sec


def _adversarial(ctx: AuditContext, opts: dict, sec: Section) -> None:
    from keras_audit.audit.adversarial_analysis import (
        adversarial,
        adversarial_figure,
        epsilon_key,
    )

    n = min(len(ctx.x), int(opts["max_samples"]))
    # attacks cost steps x forward+backward per epsilon: a seeded subset bounds the time
    idx = np.sort(np.random.default_rng(ctx.seed + 2).permutation(len(ctx.x))[:n])
    table = adversarial(ctx.model, ctx.x[idx], ctx.y[idx], epsilons=opts["epsilons"],
                        attack=tuple(opts["attacks"]), steps=int(opts["steps"]),
                        batch_size=int(opts["batch_size"]), seed=ctx.seed, forward=ctx.forward)
    sec.tables["adversarial"] = table
    metric = "accuracy" if ctx.classifier else "loss"
    sec.add_figure("accuracy_vs_epsilon", adversarial_figure(table),
                   f"{metric.capitalize()} against the attack budget ε")
    per_eps = {}
    for eps, g in table.groupby("epsilon", sort=True):
        by_attack = {r.attack: {"accuracy": r.accuracy, "loss": r.loss} for r in g.itertuples()}
        # the strongest attack at this epsilon is what a policy bounds
        strongest = g.loc[g["loss"].idxmax()] if not ctx.classifier else \
            g.loc[g["accuracy"].idxmin()]
        per_eps[epsilon_key(float(eps))] = {
            "epsilon": float(eps), "accuracy": strongest.accuracy,
            "delta_accuracy": strongest.delta_accuracy, "loss": strongest.loss,
            "attack": strongest.attack, "by_attack": by_attack}
    sec.content.update({
        "status": "ok", "task": table.attrs["task"], "n_samples": n,
        "attacks": list(opts["attacks"]), "steps": table.attrs["steps"],
        "step_size": table.attrs["step_size"], "value_range": table.attrs["value_range"],
        "clean_accuracy": table.attrs["clean_accuracy"],
        "clean_loss": table.attrs["clean_loss"], **per_eps, "rows": records(table)})
    if ctx.classifier:
        top = max(per_eps.values(), key=lambda v: v["epsilon"])
        drop = -100.0 * top["delta_accuracy"]
        text = (f"{top['attack'].upper()} at ε = {epsilon_key(top['epsilon'])} of the input "
                f"range brings accuracy from {table.attrs['clean_accuracy']:.2f} to "
                f"{top['accuracy']:.2f}")
        sec.finding("warning" if drop >= ADVERSARIAL_DROP_POINTS else "info", text)
