"""What the demo's event files cost per logged epoch, per technique (tag prefix).

    .venv/bin/python benchmarks/bench_event_size.py [--epochs 3] [--budget BYTES] [--defaults]

Trains ``examples/demo.py``'s CNN with the demo's own callback set (``demo_callbacks``: Keras's
TensorBoard and the AuditCallback with the demo's options) for a few epochs into a temporary
folder (``--defaults``: ``AuditCallback`` with its default techniques and options instead), then
reads the event files back with TensorBoard's own readers:

- pictures: ``EventAccumulator`` (the reader TensorBoard's dashboards use), the encoded bytes of
  every image record summed per technique and divided by the logged epochs, with the formats
  (PNG / JPEG) and the largest picture;
- every record: ``RawEventFileLoader``, each record's bytes on disk (with its 16 bytes of
  framing) attributed to its tag's first component (scalars, text, PR curves included), split
  into the first epoch (layouts, the graph) and the mean of the later ones.

It prints the total per logged epoch and projects the demo's 40 epochs (the log folder as
``du -b`` counts it after these epochs, plus the later epochs' mean for each further epoch),
against 31.7 MB (the issue's filing) and 17.7 MB (commit 1645925). Target: at most half of
31.7 MB, every technique logged every epoch, each technique at most ``--budget`` bytes of
pictures per epoch (default: the callbacks' ``DEFAULT_MAX_BYTES_PER_EPOCH``).
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import demo  # noqa: E402  (examples/demo.py: build_cnn, digits_splits, demo_callbacks)
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tensorboard.backend.event_processing import event_file_loader  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.compat.proto import event_pb2  # noqa: E402

from keras_audit.callbacks import AuditCallback  # noqa: E402
from keras_audit.callbacks.base import DEFAULT_MAX_BYTES_PER_EPOCH  # noqa: E402

#: the demo's 40 epochs, at the issue's filing and at commit 1645925 (bytes, du -b)
FILED_BYTES = 31.7e6
BEFORE_BYTES = 17.7e6
DEMO_EPOCHS = 40


def folder_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (what ``du -b`` adds up, without the folders)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def image_bytes(log_dir: Path) -> dict:
    """``{technique: {"bytes": total, "count": n, "formats": Counter, "largest": (w, h)}}`` of the
    image records under ``log_dir`` (one run), read by ``EventAccumulator``."""
    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    out: dict = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "images":
            continue
        entry = out.setdefault(tag.split("/")[0], {"bytes": 0, "count": 0,
                                                   "formats": collections.Counter(),
                                                   "largest": (0, 0)})
        for ev in acc.Tensors(tag):
            value = tf.make_ndarray(ev.tensor_proto)
            for data in value[2:]:
                picture = Image.open(io.BytesIO(data))
                entry["bytes"] += len(data)
                entry["count"] += 1
                entry["formats"][picture.format] += 1
                entry["largest"] = max(entry["largest"], picture.size, key=lambda s: s[0] * s[1])
    return out


def record_bytes(log_dir: Path) -> dict:
    """``{(technique, step): bytes on disk}`` of every event record of every event file under
    ``log_dir`` (Keras's ``train``/``validation`` runs included), read by TensorBoard's
    ``RawEventFileLoader``. Records without a summary (file version, graph) count as
    ``"(graph, header)"``."""
    out: dict = collections.Counter()
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        run = path.parent.relative_to(log_dir).as_posix()
        for raw in event_file_loader.RawEventFileLoader(str(path)).Load():
            event = event_pb2.Event.FromString(raw)
            size = len(raw) + 16  # length, its CRC, data, its CRC
            tags = [v.tag for v in event.summary.value]
            if not tags:
                key = "(graph, header)"
            elif run != ".":
                key = f"keras TensorBoard ({run})"
            else:
                key = tags[0].split("/")[0]
            out[(key, event.step)] += size
    return out


def main() -> None:
    """Train the demo's set for ``--epochs``, print bytes per technique per epoch and the
    40-epoch projection."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs to train (all logged)")
    ap.add_argument("--budget", type=int, default=DEFAULT_MAX_BYTES_PER_EPOCH,
                    help="bytes of pictures per technique per epoch to check against")
    ap.add_argument("--defaults", action="store_true",
                    help="AuditCallback with its defaults instead of the demo's set")
    args = ap.parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first epoch also holds the layouts)")

    (x_train, y_train), (x_val, y_val), _ = demo.digits_splits()
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "digits_cnn"
        model = demo.build_cnn()
        if args.defaults:
            callbacks = [AuditCallback((x_val, y_val), str(log_dir),
                                       class_names=demo.CLASS_NAMES)]
        else:
            callbacks = demo.demo_callbacks(str(log_dir), (x_val, y_val))
        model.fit(x_train, y_train, epochs=args.epochs, batch_size=64,
                  validation_data=(x_val, y_val), callbacks=callbacks, verbose=0)
        members = [cb for audit in callbacks if isinstance(audit, AuditCallback)
                   for cb in audit.callbacks.values()]
        worker_ms = sum(sum(cb.write_seconds[1:]) for cb in members) / (args.epochs - 1) * 1e3
        images = image_bytes(log_dir)
        records = record_bytes(log_dir)
        on_disk = folder_bytes(log_dir)
        audit_file = sum(f.stat().st_size for f in log_dir.glob("events.out.tfevents.*"))

    n = args.epochs
    what = "AuditCallback's defaults" if args.defaults else "demo callback set"
    print(f"{what} on the demo's CNN, {n} epochs (all logged); pictures via "
          f"EventAccumulator, records via RawEventFileLoader\n")
    print(f"{'technique':<28}{'pictures/epoch':>15}{'KB/epoch':>10}{'formats':>18}"
          f"{'largest':>11}{'budget':>8}")
    over = []
    for tech, e in sorted(images.items()):
        per = e["bytes"] / n / 1e3
        fmts = " ".join(f"{k}:{v}" for k, v in sorted(e["formats"].items()))
        ok = e["bytes"] / n <= args.budget
        over += [] if ok else [tech]
        print(f"{tech:<28}{e['count'] / n:>15.1f}{per:>10.1f}{fmts:>18}"
              f"{'x'.join(map(str, e['largest'])):>11}{'ok' if ok else 'OVER':>8}")
    total_img = sum(e["bytes"] for e in images.values()) / n
    print(f"{'all pictures':<28}{'':>15}{total_img / 1e3:>10.1f}")

    print(f"\n{'records on disk, by prefix':<36}{'epoch 0 KB':>12}{'later, KB/epoch':>17}")
    keys = sorted({k for k, _ in records})
    later_total = 0.0
    first_total = 0
    for key in keys:
        first = sum(b for (k, s), b in records.items() if k == key and s == 0)
        later = sum(b for (k, s), b in records.items() if k == key and s > 0) / (n - 1)
        first_total += first
        later_total += later
        print(f"{key:<36}{first / 1e3:>12.1f}{later / 1e3:>17.1f}")
    print(f"{'all records':<36}{first_total / 1e3:>12.1f}{later_total / 1e3:>17.1f}")

    projected = on_disk + (DEMO_EPOCHS - n) * later_total
    print(f"\nAuditCallback's event file after {n} epochs: {audit_file / 1e3:.1f} KB; the log "
          f"folder (du -b): {on_disk / 1e3:.1f} KB")
    line = f"projected for {DEMO_EPOCHS} epochs: {projected / 1e6:.2f} MB"
    if not args.defaults:  # the figures below are the demo's
        line += (f" = {projected / FILED_BYTES:.2f}x the issue's {FILED_BYTES / 1e6:.1f} MB "
                 f"(target <= 0.50x), {projected / BEFORE_BYTES:.2f}x the "
                 f"{BEFORE_BYTES / 1e6:.1f} MB of commit 1645925")
    print(line)
    print(f"techniques over the {args.budget / 1e3:.0f} KB budget: {over or 'none'}")
    print(f"background worker (drawing, encoding, writing), CPU per epoch after the first: "
          f"{worker_ms:.0f} ms")


if __name__ == "__main__":
    main()
