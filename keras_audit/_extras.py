"""Optional dependencies: one clear ``ImportError`` that says which ``pip install`` to run.

``pip install keras-audit`` gives the engine, the renderer and the callbacks. The audit, its
report and the ``keras-audit report`` command need the ``audit`` extra (shap, lime,
scikit-image, pandas, jinja2, pyyaml, tqdm). Code that needs an extra asks for it here::

    from keras_audit._extras import check_installed, require

    # at the top of keras_audit/audit/__init__.py: cheap, imports nothing
    check_installed("audit", feature="keras_audit.audit")  # every module of EXTRA_MODULES

"""

from __future__ import annotations

import importlib.util

#: the extras declared in pyproject.toml ([project.optional-dependencies]); a test keeps them equal
EXTRAS = ("audit", "counterfactuals", "parquet", "ray", "all", "dev")

#: the top-level modules each user-facing extra provides (a test checks them against pyproject)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "audit": ("shap", "lime", "skimage", "pandas", "jinja2", "yaml", "tqdm", "fairlearn",
              "statsmodels"),
    "counterfactuals": ("dice_ml",),
    "parquet": ("pyarrow",),
    "ray": ("ray",),
}


def install_command(extra: str) -> str:
    """The shell command that installs ``extra``, e.g. ``pip install 'keras-audit[audit]'``.

    Args:
        extra: one of ``EXTRAS``.

    Returns:
        The command, quoted for a POSIX shell (brackets are glob characters there).

    Raises:
        ValueError: ``extra`` is not one of ``EXTRAS``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; keras-audit's extras are {list(EXTRAS)}")
    return f"pip install 'keras-audit[{extra}]'"


def _findable(name: str) -> bool:
    # find_spec is None for an absent module and for one blocked by sys.modules[name] = None;
    # a finder may also refuse by raising (an import hook that hides a package)
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def _error(extra: str, feature: str, missing: list[str], broken: list[str]) -> ImportError:
    parts = []
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        parts.append(f"{', '.join(missing)} {verb} not installed")
    if broken:
        parts.append(f"{'; '.join(broken)}")
    command = install_command(extra)
    return ImportError(f"{feature} needs the '{extra}' extra of keras-audit: "
                       f"{'; and '.join(parts)}. Install it with: {command}",
                       name=(missing or [None])[0])


def _check_arguments(extra: str, modules: tuple[str, ...], feature: str) -> None:
    install_command(extra)  # validates extra
    if not modules:
        raise ValueError("name at least one module to import")
    if not feature:
        raise ValueError("feature must say what needs the modules, e.g. 'audit.shap_values'")


def check_installed(extra: str, *modules: str, feature: str) -> None:
    """Check that top-level modules are installed, without importing them.

    For a package's ``__init__``: finding a module costs microseconds where importing shap
    costs seconds.

    Args:
        extra: the keras-audit extra that provides the modules (one of ``EXTRAS``).
        *modules: top-level import names (``"shap"``, ``"yaml"``, ``"skimage"``); none: every
            module of ``EXTRA_MODULES[extra]``.
        feature: what needs them (``"keras_audit.audit"``, ``"keras-audit report"``).

    Raises:
        ImportError: one or more modules cannot be found (all named in one message, with
            ``feature`` and ``pip install 'keras-audit[<extra>]'``).
        ValueError: ``extra`` is unknown, no module is named and ``extra`` has no
            ``EXTRA_MODULES`` entry, ``feature`` is empty, or a name is dotted (finding a
            submodule imports its parent).
    """
    modules = modules or EXTRA_MODULES.get(extra, ())
    _check_arguments(extra, modules, feature)
    dotted = [m for m in modules if "." in m]
    if dotted:
        raise ValueError(f"check_installed takes top-level names only, got {dotted}; "
                         "check the top-level package")
    missing = [m for m in modules if not _findable(m)]
    if missing:
        raise _error(extra, feature, missing, [])
