"""The explanation methods the callbacks draw, by the names their tags use.

Both tables are views of the engine's one table, ``keras_audit.explain.METHODS``.
"""

from __future__ import annotations

from keras_audit.explain import METHODS

#: the CAM methods ``GradCAMCallback`` draws
CAM_METHODS = {name: METHODS[name] for name in ("gradcam", "gradcam++")}
#: the gradient methods ``SaliencyCallback`` draws
SALIENCY_METHODS = {name: METHODS[name] for name in
                    ("vanilla", "smoothgrad", "integrated_gradients", "gradient_input")}
