"""The ``keras-audit`` command.

::

    keras-audit report MODEL.keras --data DATA --out DIR [--x-key x] [--y-key y]
                [--target COLUMN] [--image-size HxW]
                [--class-names a,b,c] [--checks performance,shap,lime,pruning,sanity]
                [--samples N] [--seed S] [--card card.yaml] [--policy policy.yaml]
                [--groups-key g1,g2] [--baseline OLD.keras] [--history history.json]
                [--model-card] [--reference TRAIN.npz]
                [--quiet] [--unsafe]
    keras-audit --version

DATA is an ``.npz`` archive (loaded as arrays), a quoted glob of ``.npz`` shards, a folder of
images in class subfolders, or a ``.csv`` / ``.parquet`` table (with ``--target``); all but the
single archive stream (``keras_audit.audit.DataSource``), so they need not fit in memory.

Exit status: 0 when the verdict is pass or warn, 1 when it is fail, 2 on bad input.

Every check that needs no TensorFlow (arguments, files, the arrays, the card) runs before
TensorFlow is imported, so bad input is refused in well under a second. Bad input exits with
status 2 and one line on stderr, never a traceback. The model is loaded with Keras's safe mode
on: a model holding a ``Lambda`` layer (arbitrary Python code) is refused unless ``--unsafe``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from keras_audit import __version__
from keras_audit.audit.catalog import CHECKS, DEFAULT_CHECKS

if TYPE_CHECKING:
    import numpy as np

PROG = "keras-audit"

#: exit statuses of ``keras-audit report``
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

_REPORT_EPILOG = f"""\
exit status:
  {EXIT_OK}  the report was written and the verdict is pass or warn
  {EXIT_FAIL}  the report was written and the verdict is fail (a 'fail' criterion is broken
     or its metric is missing)
  {EXIT_USAGE}  bad input (arguments, files, arrays, card or policy); nothing is written

examples:
  # audit with the default policy (the report's fixed thresholds, as warnings)
  {PROG} report model.keras --data test.npz --out audit_report --card card.yaml

  # gate a release: exit 1 (fail) when accuracy is below 0.9, with policy.yaml holding
  #   criteria:
  #     - {{name: accuracy, metric: performance.accuracy, min: 0.9, severity: fail}}
  {PROG} report model.keras --data test.npz --out audit_report --policy policy.yaml \\
      || echo "blocked: the verdict is fail"
"""


class UsageError(Exception):
    """Bad input from the command line: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (no usage block) and exits with status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"{PROG}: error: {message} (see '{PROG} --help')", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``keras-audit`` (sub-command ``report``)."""
    parser = _Parser(prog=PROG, description="Audit a trained Keras 3 model and write a "
                     "compliance report (report.html, report.json, CSV tables).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    rep = sub.add_parser("report", help="audit MODEL on DATA and write the report into --out",
                         description="Audit MODEL on the arrays in DATA and write report.html, "
                         "report.json and one CSV per table into --out, with a verdict "
                         "against the acceptance criteria (--policy).",
                         epilog=_REPORT_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("model", metavar="MODEL", help="a saved Keras model (.keras)")
    rep.add_argument("--data", required=True, metavar="DATA",
                     help="a NumPy .npz archive with the inputs and labels (loaded with "
                     "allow_pickle=False); optional arrays 'class_names' and 'feature_names'. "
                     "Streamed instead of loaded: a quoted glob of .npz shards ('test/*.npz'), "
                     "a folder of images in class subfolders, or a .csv/.parquet table "
                     "(--target)")
    rep.add_argument("--target", default=None, metavar="COLUMN",
                     help="the label column of a .csv/.parquet --data table")
    rep.add_argument("--image-size", default=None, type=_image_size, metavar="HxW",
                     help="resize the images of a --data folder to HxW (needed when their "
                     "sizes differ)")
    rep.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    rep.add_argument("--x-key", default="x", help="name of the inputs array (default: x)")
    rep.add_argument("--y-key", default="y", help="name of the labels array (default: y)")
    rep.add_argument("--class-names", default=None, metavar="A,B,C",
                     help="comma-separated class names in class-id order, or id=name pairs "
                     "(0=cat,1=dog) (default: the archive's 'class_names' array, else 0, 1, ...)")
    rep.add_argument("--checks", default=",".join(DEFAULT_CHECKS), metavar="LIST",
                     help=f"comma-separated analyses to run, from {','.join(CHECKS)} "
                     f"(default: {','.join(DEFAULT_CHECKS)}; shift and examples need --reference)")
    rep.add_argument("--reference", default=None, metavar="TRAIN.npz",
                     help="reference (training) data for the shift and examples checks: an "
                     ".npz archive with an array named like --x-key and, optionally, its labels "
                     "named like --y-key (the examples check shows them; default: the model's "
                     "predictions on the reference)")
    rep.add_argument("--samples", type=_positive_int, default=None, metavar="N",
                     help="how many samples the explanation analyses use (default: 32)")
    rep.add_argument("--seed", type=_non_negative_int, default=0, metavar="S",
                     help="seed for every random choice (default: 0)")
    rep.add_argument("--card", default=None, metavar="card.yaml",
                     help="a YAML model card: owners, version, licence, citation, intended_use, "
                     "limitations, risks, ...")
    rep.add_argument("--policy", default=None, metavar="policy.yaml",
                     help="acceptance criteria (YAML): criteria: [{name, metric: a dotted "
                     "path into report.json, min|max|equals, severity: fail|warn}]; default: "
                     "the report's fixed thresholds, as warnings")
    rep.add_argument("--groups-key", default=None, metavar="G1,G2",
                     help="comma-separated names of arrays in DATA holding one group label per "
                     "sample (e.g. site,sex): the per-group section (metrics with CIs per "
                     "group and their spread)")
    rep.add_argument("--baseline", default=None, metavar="OLD.keras",
                     help="the model this one replaces: both on the same data, paired deltas "
                     "with CIs, McNemar's test, the flipped predictions")
    rep.add_argument("--history", default=None, metavar="history.json",
                     help="the training history as JSON {metric: [value per epoch]} (e.g. "
                     "json.dump(model.fit(...).history, f)): the training-details section")
    rep.add_argument("--model-card", action="store_true",
                     help="also write a Hugging Face style model card, README.md, into --out")
    rep.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    rep.add_argument("--unsafe", action="store_true",
                     help="load the model with Keras's safe mode off (allows Lambda layers: "
                     "only for files you trust)")
    return parser


def _int_at_least(minimum: int, need: str) -> Callable[[str], int]:
    """An argparse ``type`` that reads an integer of at least ``minimum`` (``need`` says so)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}")
        return value

    return parse


def _image_size(text: str) -> tuple[int, int]:
    """``--image-size``: ``"64x48"`` (height x width) or ``"64"`` (square)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 64x64), got {text!r}")
    h = int(parts[0])
    return h, int(parts[-1])


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0 pass or warn, 1 fail, 2 bad input).

    Args:
        argv: the arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _report(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- the report command ---------------------------------------------------------------------------

def parse_checks(text: str) -> tuple[str, ...]:
    """``"performance,shap"`` -> ``("performance", "shap")``; UsageError names unknown checks."""
    names = [c.strip() for c in text.replace(" ", ",").split(",") if c.strip()]
    unknown = [c for c in names if c not in CHECKS]
    if unknown or not names:
        raise UsageError(f"unknown check(s) {unknown or [text]}; valid checks: "
                         f"{','.join(CHECKS)}")
    return tuple(dict.fromkeys(names))


def parse_class_names(text: str) -> list[str] | dict[int, str]:
    """``--class-names``: ``"a,b,c"`` (class-id order) or ``"0=a,1=b"`` (a dict id -> name).

    Raises:
        UsageError: an empty name, or id=name pairs mixed with plain names or with an id that
            is not an integer.
    """
    parts = [c.strip() for c in text.split(",")]
    if any(not c for c in parts):
        raise UsageError(f"--class-names has an empty name: {text!r}")
    pairs = [p.partition("=") for p in parts]
    if not any(sep for _, sep, _ in pairs):
        return parts
    names: dict[int, str] = {}
    for key, sep, name in pairs:
        if not sep or not key.strip().lstrip("-").isdigit() or not name.strip():
            raise UsageError(f"--class-names mixes names and id=name pairs or has a bad pair "
                             f"{key + sep + name!r}: give 'a,b,c' or '0=a,1=b'")
        names[int(key)] = name.strip()
    return names
def open_source(args):
    """The streamed ``DataSource`` that ``--data`` names, or None for one ``.npz`` archive
    (loaded as arrays, as before).

    Raises:
        UsageError: a form the source refuses (no images, a missing target column, mixed
            image sizes without --image-size, ...) or --target/--image-size that do not apply.
    """
    text = args.data
    p = Path(text)
    streamed = (any(c in text for c in "*?[") or p.is_dir()
                or p.suffix in (".csv", ".parquet"))
    if not streamed:
        if args.target is not None or args.image_size is not None:
            raise UsageError("--target and --image-size apply to a table or an image folder "
                             "given as --data")
        return None
    from keras_audit.audit.sources import DataSource

    try:
        return DataSource.from_path(text, target=args.target, image_size=args.image_size,
                                    x_key=args.x_key, y_key=args.y_key)
    except ValueError as exc:
        raise UsageError(f"--data: {_first_line(exc)}") from None


def _keras_file(path: str, what: str) -> Path:
    """An existing model file; a ``.keras`` one must be a zip archive."""
    p = _existing_file(path, what)
    if p.suffix == ".keras":
        import zipfile

        if not zipfile.is_zipfile(p):
            raise UsageError(f"{p} is not a Keras .keras archive (a zip file); save "
                             "the model with model.save('name.keras')")
    return p


def _existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} file not found: {path}")
    if not p.is_file():
        raise UsageError(f"{what} is not a file: {path}")
    return p


def load_arrays(path: Path, x_key: str, y_key: str
                ) -> tuple[np.ndarray, np.ndarray, list[str] | None, list[str] | None]:
    """Read ``x``, ``y`` and the optional name arrays from an ``.npz`` archive, pickles refused.

    Returns:
        ``(x, y, class_names or None, feature_names or None)``.

    Raises:
        UsageError: not an .npz archive, a missing key, an object (pickled) array, a
            non-numeric array, or x and y of different lengths.
    """
    import numpy as np

    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UsageError(f"{path} holds pickled data, which keras-audit does not load "
                             "(allow_pickle=False); save plain arrays with np.savez") from None
        raise UsageError(f"{path} is not a NumPy .npz archive: {_first_line(exc)}") from None
    except (OSError, EOFError) as exc:
        raise UsageError(f"{path} could not be read as a NumPy .npz archive: "
                         f"{_first_line(exc)}") from None
    if not hasattr(archive, "files"):
        raise UsageError(f"{path} holds a single array; give an .npz archive with arrays "
                         f"'{x_key}' and '{y_key}' (np.savez(path, {x_key}=x, {y_key}=y))")
    with archive:
        arrays = {}
        for key, required in ((x_key, True), (y_key, True), ("class_names", False),
                              ("feature_names", False)):
            if key not in archive.files:
                if required:
                    raise UsageError(f"{path} has no array {key!r}; arrays in the archive: "
                                     f"{sorted(archive.files)} (choose with --x-key/--y-key)")
                continue
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                    raise UsageError(f"array {key!r} in {path} holds Python objects (a "
                                     "pickled/object array), which keras-audit does not load; "
                                     "store numbers (or fixed-width strings for names)") from None
                raise UsageError(f"array {key!r} in {path} could not be read: "
                                 f"{_first_line(exc)}") from None
            except (OSError, EOFError) as exc:
                raise UsageError(f"array {key!r} in {path} could not be read: "
                                 f"{_first_line(exc)}") from None
    x, y = arrays[x_key], arrays[y_key]
    for key, a in ((x_key, x), (y_key, y)):
        if a.dtype.kind not in "biuf":
            raise UsageError(f"array {key!r} in {path} has dtype {a.dtype}; it must be numeric")
        if a.ndim == 0:
            raise UsageError(f"array {key!r} in {path} is a scalar; it must have one row per "
                             "sample")
    if len(y) != len(x):
        raise UsageError(f"y does not match x: {x_key!r} has {len(x)} samples but {y_key!r} has "
                         f"{len(y)}")
    names = {}
    for key in ("class_names", "feature_names"):
        if key in arrays:
            a = arrays[key]
            if a.dtype.kind not in "US" or a.ndim != 1:
                raise UsageError(f"array {key!r} in {path} must be a 1-D array of strings; got "
                                 f"dtype {a.dtype} and shape {a.shape}")
            names[key] = [str(v) for v in a.tolist()]
    return x, y, names.get("class_names"), names.get("feature_names")


def load_groups(path: Path, keys: str, n: int) -> dict:
    """The group arrays ``--groups-key`` names, read from the same archive (pickles refused).

    Raises:
        UsageError: an empty or missing key, an object array, or an array that is not one
            label per sample.
    """
    import numpy as np

    names = [k.strip() for k in keys.split(",") if k.strip()]
    if not names:
        raise UsageError(f"--groups-key names no array: {keys!r}")
    out = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in names:
            if key not in archive.files:
                raise UsageError(f"{path} has no array {key!r} (--groups-key); arrays in the "
                                 f"archive: {sorted(archive.files)}")
            try:
                a = archive[key]
            except ValueError:
                raise UsageError(f"array {key!r} in {path} holds Python objects (a pickled/"
                                 "object array); store group labels as numbers or fixed-width "
                                 "strings") from None
            if a.ndim != 1 or len(a) != n:
                raise UsageError(f"group array {key!r} must have one label per sample, shape "
                                 f"({n},); got {a.shape}")
            out[key] = a
    return out
def load_reference(path: Path, x_key: str, y_key: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """The reference inputs and, when the archive holds them, their labels.

    Reads array ``x_key`` of an ``.npz`` archive (pickles refused) and, when ``y_key`` is given
    and present, array ``y_key`` as the reference's labels (one per reference sample): the
    ``examples`` check shows them beside each example; without them it uses the model's
    predictions on the reference.

    Raises:
        UsageError: not an .npz archive, no such array, a non-numeric array, or labels whose
            length differs from the inputs'.
    """
    import numpy as np

    ref_y = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if x_key not in archive.files:
                raise UsageError(f"{path} has no array {x_key!r}; arrays in the archive: "
                                 f"{sorted(archive.files)} (choose with --x-key)")
            ref = archive[x_key]
            if y_key is not None and y_key in archive.files:
                ref_y = archive[y_key]
    except UsageError:
        raise
    except (ValueError, OSError, EOFError, AttributeError) as exc:
        raise UsageError(f"--reference {path} could not be read as a NumPy .npz archive of "
                         f"plain arrays: {_first_line(exc)}") from None
    if ref.dtype.kind not in "biuf" or ref.ndim == 0:
        raise UsageError(f"array {x_key!r} in {path} must be a numeric batch; got dtype "
                         f"{ref.dtype} and shape {ref.shape}")
    if ref_y is not None:
        if ref_y.dtype.kind not in "biuf" or ref_y.ndim == 0 or len(ref_y) != len(ref):
            raise UsageError(f"array {y_key!r} in {path} must hold one numeric label per "
                             f"reference sample ({len(ref)}); got dtype {ref_y.dtype} and "
                             f"shape {ref_y.shape}")
    return ref, ref_y


def load_card(path: Path) -> dict:
    """Read a YAML model card with the library's reader; UsageError when it cannot be used."""
    from keras_audit.audit.card import load_card as read_card
    from keras_audit.audit.catalog import AuditInputError

    try:
        return read_card(path)
    except AuditInputError as exc:
        raise UsageError(str(exc)) from None


def load_history(path: Path) -> dict:
    """Read a training history saved as JSON and check it; UsageError when it is bad."""
    import json

    from keras_audit.audit.catalog import AuditInputError
    from keras_audit.audit.training import check_history

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"history file {path} is not JSON: {_first_line(exc)}") from None
    try:
        return check_history(raw)
    except AuditInputError as exc:
        raise UsageError(f"history file {path}: {exc}") from None


def load_policy(path: Path):
    """Read and check a policy file with the library's reader; UsageError when it is bad."""
    from keras_audit.audit.catalog import AuditInputError
    from keras_audit.audit.policy import load_policy as read_policy

    try:
        return read_policy(path)
    except AuditInputError as exc:
        raise UsageError(str(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


@contextlib.contextmanager
def _native_stderr_to(path: str):
    """Send file descriptor 2 to ``path`` while Python's ``sys.stderr`` keeps the terminal.

    TensorFlow's C++ start-up messages ("oneDNN custom operations", "cuInit") are written
    straight to descriptor 2; they would break the one-line error contract. Python-level
    output (tqdm, warnings, error lines, tracebacks) still reaches the terminal.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor (e.g. captured stderr)
        yield
        return
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    old_stderr = sys.stderr
    sink = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(sink, 2)
        sys.stderr = terminal
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)
        terminal.close()


def _report(args) -> int:
    """``keras-audit report``: validate everything cheap, then load the model and run the audit."""
    from keras_audit._extras import check_installed

    try:  # finds the audit's packages without importing them
        check_installed("audit", feature="keras-audit report")
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    checks = parse_checks(args.checks)
    model_path = _keras_file(args.model, "model")
    source = open_source(args)
    data_path = None if source is not None else _existing_file(args.data, "data")
    baseline_path = _keras_file(args.baseline, "baseline model") if args.baseline else None
    card = load_card(_existing_file(args.card, "card")) if args.card else None
    policy = load_policy(_existing_file(args.policy, "policy")) if args.policy else None
    history = load_history(_existing_file(args.history, "history")) if args.history else None
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    if source is not None:
        if args.groups_key:
            raise UsageError("--groups-key reads arrays of one .npz archive; streamed --data "
                             "has no group arrays")
        x, y, archive_names, feature_names, groups = source, None, None, None, None
    else:
        x, y, archive_names, feature_names = load_arrays(data_path, args.x_key, args.y_key)
        groups = load_groups(data_path, args.groups_key, len(x)) if args.groups_key else None
    reference = reference_y = None
    if args.reference:
        reference, reference_y = load_reference(_existing_file(args.reference, "reference"),
                                                args.x_key, args.y_key)
    else:
        for check, what in (("shift", "the training inputs"),
                            ("examples", "the inputs to take examples from")):
            if check in checks:
                raise UsageError(f"the {check} check needs --reference TRAIN.npz ({what})")
    class_names = archive_names
    if args.class_names is not None:
        class_names = parse_class_names(args.class_names)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.NamedTemporaryFile(prefix="keras-audit-", suffix=".log", delete=False) as log:
        native_log = log.name
    try:
        with _native_stderr_to(native_log):
            return _audit(args, model_path, x, y, class_names, feature_names, card, checks,
                          out_dir, policy, groups, baseline_path, history, reference,
                          reference_y)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(native_log)


def _load_model(path: Path, unsafe: bool):
    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as exc:  # Keras raises many types for unreadable files
        text = _first_line(exc)
        if "Lambda" in text and ("safe_mode" in text or "unsafe" in text):
            raise UsageError(f"{path} contains a Lambda layer (arbitrary Python code), which "
                             "safe mode refuses; pass --unsafe only if you trust the file") from None
        raise UsageError(f"could not load the model {path}: {text}") from None


def _audit(args, model_path: Path, x, y, class_names, feature_names, card, checks,
           out_dir: Path, policy=None, groups=None, baseline_path: Path | None = None,
           history=None, reference=None, reference_y=None) -> int:
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from keras_audit.audit.report import AuditInputError, run

    model = _load_model(model_path, args.unsafe)
    baseline = _load_model(baseline_path, args.unsafe) if baseline_path else None
    progress = None
    if not args.quiet:
        from functools import partial

        from tqdm import tqdm

        progress = partial(tqdm, file=sys.stderr, leave=True, dynamic_ncols=True,
                           bar_format="{desc:<28}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                           "[{elapsed}<{remaining}]")
    try:
        report = run(model, x, y, class_names=class_names, checks=checks, out_dir=out_dir,
                     seed=args.seed, card=card, samples=args.samples, progress=progress,
                     feature_names=feature_names, policy=policy, groups=groups,
                     baseline=baseline, history=history, reference=reference,
                     reference_y=reference_y)
    except AuditInputError as exc:
        raise UsageError(_first_line(exc)) from None
    html = out_dir / "report.html"
    if args.model_card:
        report.to_model_card(out_dir / "README.md")
    if not args.quiet:
        for line in report.summary_lines():
            print(line)
    print(f"report: {html}")
    return EXIT_FAIL if report.verdict == "fail" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
