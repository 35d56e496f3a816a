"""Keras callbacks that log explanations to TensorBoard during ``fit()``.

```python
from keras_audit.callbacks import AuditCallback
model.fit(x, y, epochs=10, callbacks=[AuditCallback((x_val, y_val), "logs/run1")])
```

Each callback explains a fixed set of validation samples on scheduled epochs: the compiled
work runs on the training thread, drawing and writing on one background worker, and
everything is flushed by ``on_train_end``. Only the chief of a ``tf.distribute`` cluster writes.

Modules: ``base`` (ExplanationCallback), ``attribution`` (maps over the inputs), ``samples``
(reading validation data, choosing samples), ``session`` (worker, writers, error mailbox),
``distribute`` (the chief, building unbuilt models), ``layers`` (which layers are drawn),
``methods`` and ``predictions`` (method tables, predicted classes), then one module per
technique and ``audit_callback`` (the bundle).
"""

from keras_audit.callbacks.activation_maps import ActivationMapsCallback
from keras_audit.callbacks.attribution import AttributionCallback
from keras_audit.callbacks.audit_callback import TECHNIQUES, AuditCallback
from keras_audit.callbacks.base import ExplanationCallback, ExplanationLoggingWarning
from keras_audit.callbacks.distribute import is_chief
from keras_audit.callbacks.evaluation import EvaluationCallback
from keras_audit.callbacks.filters import ActivationMaximizer, FilterCallback
from keras_audit.callbacks.gradcam import DeletionInsertion, GradCAMCallback
from keras_audit.callbacks.saliency import SaliencyCallback
from keras_audit.callbacks.samples import Samples, select_samples
from keras_audit.callbacks.session import Session


def __getattr__(name: str):
    # the embedding and attention callbacks import their own dependencies only when used
    if name == "EmbeddingCallback":
        from keras_audit.callbacks.embeddings import EmbeddingCallback

        return EmbeddingCallback
    if name == "AttentionMapsCallback":
        from keras_audit.callbacks.attention import AttentionMapsCallback

        return AttentionMapsCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TECHNIQUES", "ActivationMapsCallback", "ActivationMaximizer", "AttentionMapsCallback",
    "AttributionCallback", "AuditCallback", "DeletionInsertion", "EmbeddingCallback",
    "EvaluationCallback", "ExplanationCallback", "ExplanationLoggingWarning", "FilterCallback", "GradCAMCallback",
    "SaliencyCallback", "Samples", "Session", "is_chief", "select_samples",
]
