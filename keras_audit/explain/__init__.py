"""keras_audit.explain"""
