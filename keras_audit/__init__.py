"""keras_audit: explain Keras 3 models during training and audit them afterwards."""
__version__ = "0.1.0"
