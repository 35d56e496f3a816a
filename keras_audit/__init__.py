"""keras_audit: explain Keras 3 models during training and audit them afterwards.

``pip install keras-audit`` gives the engine (``keras_audit.explain``), the pictures
(``keras_audit.render``) and the TensorBoard callbacks (``keras_audit.callbacks``);
``pip install 'keras-audit[audit]'`` adds what ``keras_audit.audit`` and the ``keras-audit``
command need (shap, lime, scikit-image, pandas, jinja2, pyyaml, tqdm).
"""

# The only place the version is written: pyproject.toml reads it (tool.setuptools.dynamic).
__version__ = "0.1.0"
