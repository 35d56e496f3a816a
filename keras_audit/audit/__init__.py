"""keras_audit.audit"""
