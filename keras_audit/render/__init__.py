"""keras_audit.render"""
