"""keras_audit.callbacks"""
