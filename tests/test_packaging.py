"""Packaging says what it needs: declared dependencies against the imports, the extras' error
message, one version string, and the Makefile's lint target.

The full proof, a fresh venv with ``pip install .`` and no extras, is ``.ci/minimal_install``
(minutes: it installs TensorFlow). Here the same promise is checked in seconds by blocking the
audit-only modules in a subprocess.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import keras_audit
from keras_audit import _extras
from keras_audit._extras import EXTRA_MODULES, EXTRAS, check_installed, install_command

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
AUDIT_COMMAND = "pip install 'keras-audit[audit]'"

#: what a plain ``pip install keras-audit`` must import on its own
CORE = ("explain", "render", "callbacks", "datasets.py", "_checks.py", "_extras.py",
        "__init__.py")
#: dev tools that are run, never imported
DEV_TOOLS = {"ruff", "pytest-timeout"}


def requirements(names: list[str]) -> dict[str, Requirement]:
    """``{canonical distribution name: Requirement}``, self-references (``keras-audit[x]``) left out."""
    reqs = (Requirement(r) for r in names)
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != "keras-audit"}


BASE = requirements(PROJECT["dependencies"])
EXTRA_REQS = {name: requirements(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}


def third_party_imports(paths: list[Path], local: set[str]) -> dict[str, set[str]]:
    """``{top-level module: {files importing it}}`` over ``paths``, nested imports included;
    the standard library, keras_audit itself and the ``local`` helper modules left out."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"keras_audit", *local}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()  # scans every installed distribution: once


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide a top-level module (``PIL`` -> ``pillow``)."""
    return {canonicalize_name(d) for d in _module_distributions().get(module, [])}


def py_files(*parts: str) -> list[Path]:
    """The Python files of folders or single files under ROOT."""
    out: list[Path] = []
    for part in parts:
        p = ROOT / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def undeclared(paths: list[Path], declared: set[str], local: set[str] = frozenset()) -> dict:
    """Imports of ``paths`` that no distribution in ``declared`` provides."""
    return {m: sorted(files) for m, files in third_party_imports(paths, set(local)).items()
            if not distributions_of(m) & declared}


# -- declared dependencies against what the code imports ----------------------------------------

def test_core_imports_only_base_dependencies():
    # the engine, the pictures and the callbacks must run from a plain install
    missing = undeclared(py_files(*(f"keras_audit/{c}" for c in CORE)), set(BASE))
    assert not missing, f"imported by the core but not in [project.dependencies]: {missing}"


def test_audit_and_command_imports_are_in_base_or_audit_extra():
    # the counterfactuals module may also use its own extra (DiCE), found before it is imported
    declared = (set(BASE) | set(EXTRA_REQS["audit"]) | set(EXTRA_REQS["counterfactuals"])
                | set(EXTRA_REQS["parquet"]) | set(EXTRA_REQS["ray"]))
    missing = undeclared(py_files("keras_audit/audit", "keras_audit/cli.py"), declared)
    assert not missing, f"imported by the audit or the command but not declared: {missing}"


def test_tests_benchmarks_and_examples_imports_are_in_dev_extra():
    declared = (set(BASE) | set(EXTRA_REQS["audit"]) | set(EXTRA_REQS["counterfactuals"])
                | set(EXTRA_REQS["parquet"]) | set(EXTRA_REQS["ray"]) | set(EXTRA_REQS["dev"]))
    paths = py_files("tests", "benchmarks", "examples")
    local = {p.stem for p in paths}  # helper modules such as _tb, _reference, demo
    missing = undeclared(paths, declared, local)
    assert not missing, f"imported by tests/benchmarks/examples but not in [dev]: {missing}"


def test_every_declared_dependency_is_imported():
    # a declared package nothing imports (opencv-python-headless was one) costs every user
    imported = set()
    for module in third_party_imports(py_files("keras_audit", "tests", "benchmarks", "examples"),
                                      {p.stem for p in py_files("tests", "benchmarks", "examples")}):
        imported |= distributions_of(module)
    declared = set(BASE) | set().union(*map(set, EXTRA_REQS.values()))
    unused = sorted(declared - imported - DEV_TOOLS)
    assert not unused, f"declared but never imported: {unused}"


def test_audit_modules_are_exactly_the_audit_extra():
    # EXTRA_MODULES drives the ImportError; it must name what [audit] installs, no more or less
    provided = set().union(*(distributions_of(m) for m in EXTRA_MODULES["audit"]))
    assert provided & set(EXTRA_REQS["audit"]) == set(EXTRA_REQS["audit"])
    for module in EXTRA_MODULES["audit"]:
        assert distributions_of(module) & set(EXTRA_REQS["audit"]), module


def test_extras_are_the_declared_ones():
    assert set(EXTRAS) == set(PROJECT["optional-dependencies"])
    # all = every user-facing extra, dev = all + the developer tools
    assert PROJECT["optional-dependencies"]["all"] == [
        "keras-audit[audit,counterfactuals,parquet]"]
    assert "keras-audit[all]" in PROJECT["optional-dependencies"]["dev"]
    # ray stays out of all (a cluster engine, ~100 MB); the suite tests it, so dev has it
    assert "keras-audit[ray]" in PROJECT["optional-dependencies"]["dev"]


def test_installed_versions_satisfy_the_declared_bounds():
    # the environment the suite runs in is a witness that every bound can be met together
    declared = {**BASE, **{k: v for reqs in EXTRA_REQS.values() for k, v in reqs.items()}}
    wrong = {name: (metadata.version(name), str(req.specifier))
             for name, req in declared.items()
             if not req.specifier.contains(metadata.version(name), prereleases=True)}
    assert not wrong, f"installed versions outside the declared bounds: {wrong}"


def test_numpy_bound_matches_trapezoid_use():
    # np.trapezoid exists from NumPy 2.0; np.trapz is gone in 2.x
    sources = "".join(p.read_text(encoding="utf-8") for p in py_files("keras_audit"))
    spec = BASE["numpy"].specifier
    if "np.trapezoid" in sources:
        assert not spec.contains("1.26.4"), f"np.trapezoid needs numpy>=2, declared {spec}"


# -- one version string -------------------------------------------------------------------------

def test_version_is_written_once():
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "keras_audit.__version__"}
    Version(keras_audit.__version__)  # PEP 440, or InvalidVersion
    writers = [str(p.relative_to(ROOT)) for p in py_files("keras_audit")
               if re.search(r"^__version__\s*=", p.read_text(encoding="utf-8"), re.M)]
    assert writers == ["keras_audit/__init__.py"]
    assert metadata.version("keras-audit") == keras_audit.__version__


# -- _extras: one ImportError that says what to install -----------------------------------------

@pytest.mark.parametrize("args, kwargs, match", [
    (("nope", "json"), {"feature": "f"}, r"unknown extra 'nope'; keras-audit's extras are "
                                          r"\['audit', 'counterfactuals', 'parquet', 'ray', 'all', 'dev'\]"),
    (("dev",), {"feature": "f"}, "name at least one module"),
    (("audit", "json"), {"feature": ""}, "feature must say what needs the modules"),
])
def test_check_installed_refuses_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_installed(*args, **kwargs)


def test_check_installed_finds_without_importing(monkeypatch):
    monkeypatch.delitem(sys.modules, "shap", raising=False)
    check_installed("audit", "shap", "json", feature="f")
    assert "shap" not in sys.modules  # found, not imported (it costs seconds)
    check_installed("audit", feature="f")  # every module of EXTRA_MODULES["audit"]


def test_check_installed_defaults_to_the_extras_modules(monkeypatch):
    for name in ("pandas", "yaml"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError) as info:
        check_installed("audit", feature="keras_audit.audit")
    assert str(info.value) == ("keras_audit.audit needs the 'audit' extra of keras-audit: "
                               f"pandas, yaml are not installed. Install it with: {AUDIT_COMMAND}")


def test_check_installed_refuses_submodules_and_unknown_extras():
    with pytest.raises(ValueError, match=r"top-level names only, got \['lime.lime_image'\]"):
        check_installed("audit", "lime.lime_image", feature="f")
    with pytest.raises(ValueError, match="unknown extra 'dev2'"):
        check_installed("dev2", feature="f")
    with pytest.raises(ValueError, match="name at least one module"):
        check_installed("dev", feature="f")  # dev has no EXTRA_MODULES entry


def test_install_command_is_quoted_for_the_shell():
    assert install_command("audit") == AUDIT_COMMAND
    assert _extras.install_command("all") == "pip install 'keras-audit[all]'"


# -- a plain install, simulated: the audit-only modules blocked in a fresh interpreter ----------

BLOCKED_RUN = textwrap.dedent("""
    import importlib.abc, json, sys, tempfile

    class Absent(importlib.abc.MetaPathFinder):
        # as if the [audit] extra were not installed; not sys.modules[name] = None, which
        # libraries that look for an already imported pandas (scikit-learn) take for pandas
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    import keras, numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import keras_audit.datasets, keras_audit.explain, keras_audit.render
    from keras_audit.callbacks import AuditCallback

    rng = np.random.default_rng(0)
    x = rng.random((16, 12, 12, 3), dtype=np.float32)
    y = np.arange(16) % 2
    model = keras.Sequential([keras.Input((12, 12, 3)),
                              keras.layers.Conv2D(2, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(name="gap"),
                              keras.layers.Dense(2, activation="softmax", name="head")])
    model.compile("adam", "sparse_categorical_crossentropy")
    out = {{}}
    with tempfile.TemporaryDirectory() as d:
        cb = AuditCallback((x[:4], y[:4]), d, num_samples=4,
                           include=("gradcam", "saliency", "activations", "filters",
                                    "embeddings"), options={{"embeddings": {{"layer": "gap"}}}})
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
        acc = EventAccumulator(d, size_guidance={{"tensors": 0}})
        acc.Reload()
        out["images"] = sorted(t for t in acc.Tags()["tensors"]
                               if acc.SummaryMetadata(t).plugin_data.plugin_name == "images")
    from keras_audit import audit  # light: its names load on first use
    from keras_audit.audit.catalog import CHECKS  # what the command validates against
    out["checks"] = list(CHECKS)
    try:
        audit.shap_values
        out["audit"] = "imported"
    except ImportError as exc:
        out["audit"] = str(exc)
    out["loaded"] = sorted(n for n in {blocked!r} if n in sys.modules)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def without_audit_extra() -> dict:
    """What a fresh interpreter without the [audit] modules does: fit with the callbacks,
    then ``import keras_audit.audit``."""
    blocked = (*EXTRA_MODULES["audit"], "numba")
    done = subprocess.run([sys.executable, "-c", BLOCKED_RUN.format(blocked=blocked)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_callbacks_run_without_the_audit_extra(without_audit_extra):
    assert without_audit_extra["images"] == [
        "activations/conv", "embeddings/gap", "filters/conv", "gradcam/conv", "saliency/vanilla"]
    assert without_audit_extra["loaded"] == []


def test_audit_without_its_extra_names_the_install_command(without_audit_extra):
    assert without_audit_extra["audit"].startswith(
        "keras_audit.audit.shap_values needs the 'audit' extra")
    assert without_audit_extra["checks"] == [
        "performance", "shap", "lime", "pruning", "sanity", "robustness", "adversarial", "shift",
        "examples", "counterfactuals", "lrp"]
    assert AUDIT_COMMAND in without_audit_extra["audit"]


# -- make lint ----------------------------------------------------------------------------------

def make_dry_run(target: str) -> list[str]:
    """The commands ``make -n target`` would run, one per line."""
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_make_lint_runs_ruff_and_make_test_runs_lint():
    ruff = ".venv/bin/ruff check keras_audit tests benchmarks examples"
    assert ruff in make_dry_run("lint")
    test_lines = make_dry_run("test")
    assert ruff in test_lines
    assert test_lines.index(ruff) < next(i for i, line in enumerate(test_lines) if "pytest" in line)
