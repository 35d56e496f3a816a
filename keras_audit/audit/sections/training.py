"""Section: training details (``run(history=...)``): loss and metrics per epoch (train and
validation), the epochs run, the best epoch, and the optimizer and loss of the compiled model."""

from __future__ import annotations

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section

KEY = "training"
TITLE = "Training details"
OPTIONS: dict[str, dict] = {}

NO_HISTORY = ("no training history was given (run(history=model.fit(...)) or --history "
              "history.json): the curves and the best epoch are not shown")


def build(ctx: AuditContext, options: dict) -> Section:
    """The curves, the best epoch and the compile settings."""
    from keras_audit.audit.training import best_epoch, compiled_with

    sec = new_section(KEY, ctx)
    c = sec.content
    c["compiled"] = compiled_with(ctx.model)
    if not ctx.history:
        c.update({"status": "no history", "note": NO_HISTORY})
        return sec
    h = ctx.history
    best, on = best_epoch(h)
    epochs = len(next(iter(h.values())))
    c.update({"status": "ok", "epochs": epochs, "best_epoch": best, "best_on": on,
              "metrics": list(h), "history": h,
              "at_best": {k: v[best - 1] for k, v in h.items()},
              "final": {k: v[-1] for k, v in h.items()}})
    with sec.step("training curves", c):
        sec.add_figure("curves", _curves(h, best), "Loss and metrics per epoch")
    if on == "val_loss" and best < epochs:
        sec.finding("info", f"validation loss was lowest at epoch {best} of {epochs} "
                    f"({h['val_loss'][best - 1]:.4g}; {h['val_loss'][-1]:.4g} at the end)")
    return sec


def _curves(h: dict, best: int):
    from keras_audit.render.figures import new_figure

    bases = [k for k in h if not k.startswith("val_")]
    bases += [k[4:] for k in h if k.startswith("val_") and k[4:] not in h]
    fig = new_figure((3.2 * len(bases) + 0.4, 2.8))
    axes = fig.subplots(1, len(bases), squeeze=False)[0]
    for ax, name in zip(axes, bases, strict=True):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if key in h:
                ax.plot(range(1, len(h[key]) + 1), h[key], style, marker="o", markersize=3,
                        label="validation" if key.startswith("val_") else "train")
        ax.axvline(best, color="#9a5b00", linewidth=1, label=f"best epoch {best}")
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return fig
