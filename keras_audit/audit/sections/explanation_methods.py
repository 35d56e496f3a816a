"""The engine's explanation methods as the report names them (one vocabulary: the engine's)."""

from __future__ import annotations

import keras

from keras_audit.explain import registry


def method_title(method: str) -> str:
    """The display title of a method name (``"gradcam"`` -> ``"Grad-CAM"``); unknown names are
    shown as given."""
    try:
        return registry.title(method)
    except ValueError:
        return method


def build_explainer(method: str, model: keras.Model):
    """The engine's explainer for ``method`` on ``model`` (ValueError if it cannot explain it)."""
    return registry.get(method)(model)


def refusal(method: str, model: keras.Model) -> str | None:
    """Why the engine's ``method`` cannot explain ``model`` (its ValueError's message), or None
    when it can."""
    try:
        build_explainer(method, model)
    except ValueError as exc:
        return str(exc)
    return None
