"""The explanation methods the callbacks draw, by the names their tags use.

Both tables are views of the engine's one table, ``keras_audit.explain.registry``.
"""

from __future__ import annotations

from keras_audit.explain import registry

#: the CAM methods ``GradCAMCallback`` draws (Score-CAM is left out: one forward pass per
#: channel is too slow for every epoch)
CAM_METHODS = {name: registry.get(name) for name in registry.names("cam") if name != "scorecam"}
#: the gradient and relevance methods ``SaliencyCallback`` draws ("saliency" is the report's
#: alias of "vanilla"; the callbacks' tags use "vanilla")
SALIENCY_METHODS = {name: registry.get(name)
                    for name in registry.names("gradient") + registry.names("relevance")
                    if name != "saliency"}
