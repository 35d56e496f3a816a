"""The attribution engine: compiled, batched, reusable explainers for Keras 3 models.

Build an explainer once per model, then call it on batches::

    from keras_audit.explain import GradCAM
    cam = GradCAM(model, layer=None)
    maps = cam(x, targets=None)      # (N, H, W) float32 in [0, 1]

The engine returns arrays; it knows nothing of pictures, TensorBoard or reports.

Method names live in one table, ``keras_audit.explain.registry`` (``get``, ``title``,
``names``); ``METHODS`` is derived from it. Shared helpers for the other layers: ``list_layers``
(the one layer walker), ``GraphTap`` (run a model's live layers and read or replace inner
outputs), ``predicted_classes`` and ``balanced_order``.
"""

from keras_audit.explain import registry
from keras_audit.explain._graph import GraphTap, LayerInfo, has_generated_name
from keras_audit.explain.activations import Activations
from keras_audit.explain.attention import (
    AttentionScores,
    attention_rollout,
    patch_grid,
    rollout_maps,
)
from keras_audit.explain.base import (
    Explainer,
    MapSpec,
    list_layers,
    map_specs,
    normalize_maps,
    resolve_layer,
)
from keras_audit.explain.cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from keras_audit.explain.forward import (
    CompiledForward,
    InputSpec,
    check_inputs,
    model_inputs,
    output_names,
    select_output,
)
from keras_audit.explain.gradients import (
    GradientInput,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from keras_audit.explain.lrp import LRP
from keras_audit.explain.maximize import ActivationMaximizer
from keras_audit.explain.metrics import (
    DeletionInsertion,
    blurred_canvas,
    deletion_insertion,
    spearman_per_sample,
)
from keras_audit.explain.selection import balanced_order, predicted_classes

#: method name -> explainer class, as the callbacks and the audit name them (from the registry)
METHODS = registry.methods()

__all__ = [
    "METHODS", "Activations", "AttentionScores", "CompiledForward", "DeletionInsertion",
    "Explainer", "GradCAM", "GradCAMPlusPlus", "GradientInput", "GraphTap", "InputSpec",
    "IntegratedGradients", "LayerInfo", "MapSpec", "Saliency", "ScoreCAM", "SmoothGrad",
    "attention_rollout", "balanced_order", "blurred_canvas", "check_inputs",
    "deletion_insertion", "has_generated_name", "list_layers", "resolve_layer", "map_specs", "model_inputs",
    "normalize_maps", "output_names", "patch_grid", "predicted_classes", "registry",
    "rollout_maps", "select_output", "spearman_per_sample",
]
__all__ += ["ActivationMaximizer"]  # the activation-maximisation engine
__all__ += ["LRP"]  # layer-wise relevance propagation
