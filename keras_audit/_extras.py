"""Optional dependencies: one clear ImportError that names the extra to install."""

from __future__ import annotations

#: top-level modules the ``audit`` extra brings (``pip install 'keras-audit[audit]'``)
AUDIT_MODULES = frozenset({"pandas", "sklearn", "shap", "lime", "skimage", "jinja2", "yaml",
                           "tqdm", "scipy", "numba"})


def missing_extra(exc: ModuleNotFoundError, feature: str, extra: str = "audit") -> ImportError:
    """The ImportError to raise when ``feature`` failed to import because of ``exc``.

    Args:
        exc: the ModuleNotFoundError the import raised.
        feature: what the user asked for, e.g. ``"keras_audit.audit.shap_values"``.
        extra: the optional-dependency group that provides the missing module.

    Returns:
        An ImportError naming the feature, the missing module and the install command when the
        module belongs to the extra; ``exc`` itself otherwise (a real bug, not a missing extra).
    """
    root = (exc.name or "").split(".")[0]
    if root not in AUDIT_MODULES:
        return exc
    return ImportError(f"{feature} needs the optional '{extra}' dependencies ({root} is not "
                       f"installed): pip install 'keras-audit[{extra}]'")
