"""Reading what a TensorBoard user sees: event files through TensorBoard's own reader, and the
real ``tensorboard`` server started on 127.0.0.1 (shared by the callback tests)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_events(log_dir: str) -> dict:
    """Every summary under ``log_dir`` (one run), read by TensorBoard's own reader.

    Returns ``{"images": {tag: [(step, picture uint8 (H, W, 3), (w, h) declared)]},
    "scalars": {tag: [(step, value)]}}``, and for the other plugins ``"text"`` (``{tag:
    [(step, str)]}``), ``"pr_curves"``, ``"histograms"`` (``{tag: [(step, array)]}``) and
    ``"descriptions"`` (``{tag: description}``). TF2 writes every summary as a tensor summary,
    which ``EventAccumulator`` lists under ``tensors``; the plugin name tells them apart.
    """
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    out: dict = {"images": {}, "scalars": {}, "text": {}, "pr_curves": {}, "histograms": {},
                 "descriptions": {}, "other": {}}
    for tag in acc.Tags()["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        for ev in acc.Tensors(tag):
            value = tf.make_ndarray(ev.tensor_proto)
            if plugin == "images":
                assert len(value) == 3, f"{tag}: one image per record expected, got {len(value)}"
                picture = np.asarray(Image.open(io.BytesIO(value[2])).convert("RGB"))
                out["images"].setdefault(tag, []).append(
                    (ev.step, picture, (int(value[0]), int(value[1]))))
            elif plugin == "scalars":
                out["scalars"].setdefault(tag, []).append((ev.step, float(value)))
            elif plugin == "text":
                text = value.item() if value.ndim == 0 else value.ravel()[0]
                out["text"].setdefault(tag, []).append((ev.step, text.decode("utf-8")))
            elif plugin in ("pr_curves", "histograms"):
                out[plugin].setdefault(tag, []).append((ev.step, value))
            else:
                out["other"].setdefault(tag, []).append((ev.step, value))
        out["descriptions"][tag] = acc.SummaryMetadata(tag).summary_description
    for tag in acc.Tags()["images"]:  # legacy image records, should there be any
        out["images"].setdefault(tag, []).extend(
            (e.step, None, (e.width, e.height)) for e in acc.Images(tag))
    return out


def encoded_images(log_dir: str) -> dict:
    """The image records under ``log_dir`` (one run) as TensorBoard's reader gives them, not
    decoded: ``{tag: [(step, encoded bytes, (w, h) declared)]}``."""
    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    out: dict = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "images":
            continue
        for ev in acc.Tensors(tag):
            value = tf.make_ndarray(ev.tensor_proto)
            out.setdefault(tag, []).append((ev.step, bytes(value[2]),
                                            (int(value[0]), int(value[1]))))
    return out


def images_and_scalars(log_dir: str) -> tuple[dict, dict]:
    """``read_events`` in a shorter form: ``({tag: [(step, picture)]}, {tag: {step: value}})``."""
    ev = read_events(log_dir)
    images = {tag: [(step, pic) for step, pic, _ in recs] for tag, recs in ev["images"].items()}
    scalars = {tag: dict(recs) for tag, recs in ev["scalars"].items()}
    return images, scalars


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10.0) -> bytes:
    """The body of a GET request."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


@contextlib.contextmanager
def tensorboard_server(log_dir, ready: Callable[[str], bool], timeout: float = 90.0
                       ) -> Iterator[str]:
    """Start the real ``tensorboard`` on 127.0.0.1 against ``log_dir`` and yield its base URL
    once ``ready(base)`` is true (the server loads runs in the background). Raises
    ``AssertionError`` when the server exits or is not ready in time; stops it on exit."""
    exe = Path(sys.executable).with_name("tensorboard")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tensorboard.main"]
    port = free_port()
    proc = subprocess.Popen(cmd + ["--logdir", str(log_dir), "--host", "127.0.0.1",
                                   "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"tensorboard exited: {proc.stderr.read()[-2000:]}"
            try:
                if ready(base):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError,
                    json.JSONDecodeError):
                pass
            assert time.monotonic() < deadline, f"tensorboard not ready within {timeout:.0f} s"
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
