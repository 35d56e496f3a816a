"""The software and hardware the audit ran on (report.json ``environment``)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

import keras

#: distributions whose versions the report records
PACKAGES = ("tensorflow", "shap", "lime", "numpy", "scikit-learn", "pandas", "matplotlib",
            "jinja2")


def versions() -> dict:
    """Versions of keras_audit, Python, the imported Keras and the analysis packages."""
    import keras_audit

    out = {"keras_audit": keras_audit.__version__, "python": platform.python_version(),
           "keras": keras.__version__}  # the Keras actually imported
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    """CPU, memory, TensorFlow's devices and the operating system."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory = None
    try:
        import tensorflow as tf

        devices = sorted(f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices())
    except Exception:  # device listing is informative only
        devices = []
    return {"machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "memory_gb": memory, "devices": devices, "system": platform.system()}


def environment(timings: dict[str, float], latency: dict[str, float]) -> dict:
    """The ``environment`` block: versions, hardware, platform and the measured timings."""
    return {
        "versions": versions(),
        "hardware": hardware(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timings": {"latency": latency, "steps_s": dict(timings)},
    }
