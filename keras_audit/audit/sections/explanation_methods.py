"""The engine's explanation methods as the report names them (one vocabulary: the engine's)."""

from __future__ import annotations

import keras

_TITLES = {
    "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
    "saliency": "Saliency", "vanilla": "Saliency", "smoothgrad": "SmoothGrad",
    "integrated_gradients": "Integrated Gradients", "gradient_input": "Gradient×Input",
}


def method_title(method: str) -> str:
    """The display title of a method name (``"gradcam"`` -> ``"Grad-CAM"``)."""
    return _TITLES.get(method, method)


def build_explainer(method: str, model: keras.Model):
    """The engine's explainer for ``method`` on ``model`` (ValueError if it cannot explain it)."""
    from keras_audit.explain import METHODS

    return METHODS[method](model)


def has_cam_layer(model: keras.Model) -> bool:
    """True when Grad-CAM can explain ``model`` (it has a layer with spatial axes)."""
    try:
        build_explainer("gradcam", model)
        return True
    except ValueError:
        return False
