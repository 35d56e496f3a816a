"""The one table of explanation methods: name -> explainer class, human title and family.

The engine, the callbacks, the report and the command all read method names here, the way
Keras keeps one ``get()`` per family of objects::

    from keras_audit.explain import registry
    registry.get("gradcam++")          # -> GradCAMPlusPlus
    registry.title("gradient_input")   # -> "Gradient×Input"
    registry.names("cam")              # -> ["gradcam", "gradcam++", "scorecam"]

Families: ``"cam"`` (class activation maps: read an inner layer with spatial axes),
``"gradient"`` (gradients with respect to the inputs, or an ``Embedding``'s output) and
``"relevance"`` (layer-wise relevance propagation: input-resolution maps like the gradient
methods, computed by a rule per layer, so only for models of the layers LRP has rules for).
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_audit.explain.base import Explainer
from keras_audit.explain.cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from keras_audit.explain.gradients import GradientInput, IntegratedGradients, Saliency, SmoothGrad
from keras_audit.explain.lrp import LRP


@dataclass(frozen=True)
class Method:
    """One entry of the table.

    Attributes:
        name: the name callers use (``"gradcam"``).
        explainer: the explainer class.
        title: the name people read (``"Grad-CAM"``).
        family: one of ``FAMILIES``.
    """

    name: str
    explainer: type[Explainer]
    title: str
    family: str


#: every method, in the order they are listed; "vanilla" and "saliency" are the same method
TABLE: tuple[Method, ...] = (
    Method("gradcam", GradCAM, "Grad-CAM", "cam"),
    Method("gradcam++", GradCAMPlusPlus, "Grad-CAM++", "cam"),
    Method("scorecam", ScoreCAM, "Score-CAM", "cam"),
    Method("vanilla", Saliency, "Saliency", "gradient"),
    Method("saliency", Saliency, "Saliency", "gradient"),
    Method("smoothgrad", SmoothGrad, "SmoothGrad", "gradient"),
    Method("integrated_gradients", IntegratedGradients, "Integrated Gradients", "gradient"),
    Method("gradient_input", GradientInput, "Gradient×Input", "gradient"),
    Method("lrp", LRP, "LRP", "relevance"),
)

FAMILIES = ("cam", "gradient", "relevance")
_BY_NAME = {m.name: m for m in TABLE}


def entry(name: str) -> Method:
    """The table's entry for ``name``.

    Raises:
        ValueError: ``name`` is not a method; the message lists the choices.
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(f"unknown explanation method {name!r}; choices: {names()}")
    return _BY_NAME[name]


def get(name: str) -> type[Explainer]:
    """The explainer class for a method name (``"gradcam"`` -> ``GradCAM``).

    Raises:
        ValueError: ``name`` is not a method; the message lists the choices.
    """
    return entry(name).explainer


def title(name: str) -> str:
    """The human title of a method (``"integrated_gradients"`` -> ``"Integrated Gradients"``).

    Raises:
        ValueError: ``name`` is not a method; the message lists the choices.
    """
    return entry(name).title


def family(name: str) -> str:
    """The family of a method: ``"cam"``, ``"gradient"`` or ``"relevance"``.

    Raises:
        ValueError: ``name`` is not a method; the message lists the choices.
    """
    return entry(name).family


def names(family: str | None = None) -> list[str]:
    """Method names in table order, all or those of one family.

    Raises:
        ValueError: ``family`` is not one of ``FAMILIES``.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}; choices: {list(FAMILIES)}")
    return [m.name for m in TABLE if family is None or m.family == family]


def methods(family: str | None = None) -> dict[str, type[Explainer]]:
    """``{name: explainer class}`` in table order (``explain.METHODS`` is ``methods()``)."""
    return {n: get(n) for n in names(family)}


def titles() -> dict[str, str]:
    """``{name: title}`` for every method (what the report's ``METHOD_TITLES`` held)."""
    return {m.name: m.title for m in TABLE}
