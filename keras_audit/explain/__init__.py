"""The attribution engine: compiled, batched, reusable explainers for Keras 3 models.

Build an explainer once per model, then call it on batches::

    from keras_audit.explain import GradCAM
    cam = GradCAM(model, layer=None)
    maps = cam(x, targets=None)      # (N, H, W) float32 in [0, 1]

The engine returns arrays; it knows nothing of pictures, TensorBoard or reports.
"""

from keras_audit.explain._graph import LayerInfo
from keras_audit.explain.activations import Activations
from keras_audit.explain.attention import (
    AttentionScores,
    attention_rollout,
    patch_grid,
    rollout_maps,
)
from keras_audit.explain.base import Explainer, list_layers, normalize_maps
from keras_audit.explain.cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from keras_audit.explain.forward import CompiledForward
from keras_audit.explain.gradients import (
    GradientInput,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from keras_audit.explain.maximize import ActivationMaximizer
from keras_audit.explain.metrics import (
    DeletionInsertion,
    blurred_canvas,
    deletion_insertion,
    spearman_per_sample,
)

#: method name -> explainer class, as the callbacks and the audit name them
METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "scorecam": ScoreCAM,
    "vanilla": Saliency,
    "saliency": Saliency,
    "smoothgrad": SmoothGrad,
    "integrated_gradients": IntegratedGradients,
    "gradient_input": GradientInput,
}

__all__ = [
    "METHODS", "Activations", "AttentionScores", "CompiledForward", "DeletionInsertion",
    "Explainer", "GradCAM", "GradCAMPlusPlus", "GradientInput", "IntegratedGradients",
    "LayerInfo", "Saliency", "ScoreCAM", "SmoothGrad", "attention_rollout", "blurred_canvas",
    "deletion_insertion", "list_layers", "normalize_maps", "patch_grid", "rollout_maps",
    "spearman_per_sample",
]
__all__ += ["ActivationMaximizer"]  # the activation-maximisation engine
