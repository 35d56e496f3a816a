"""The base class of the explanation callbacks: fixed samples, the schedule, failures, the chief.

A subclass fills in three hooks and inherits the rest::

    class MyCallback(ExplanationCallback):
        technique = "mine"                     # tag prefix

        def _setup(self):                      # on_train_begin, after the samples are chosen
            self.explainer = ...               # raise ValueError for configuration errors

        def _compute(self, epoch):             # training thread, logged epochs only
            return {"maps": self.explainer(self.samples.x)}   # NumPy payload, no pictures

        def _write(self, payload, step):       # worker thread: draw and write
            self.write_image(f"mine/{name}", picture, step)

The training thread only runs the compiled computations and copies their results to NumPy;
drawing, encoding (PNG, or JPEG where smaller, within ``max_bytes_per_epoch``) and writing run
on the session's background worker
(``keras_audit.callbacks.session``), which ``on_train_end`` drains before it flushes and closes
the writers. Batch hooks are never overridden: Keras never stops for these callbacks between
batches (and keeps asynchronous dispatch where its backend has it).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_audit import render
from keras_audit._checks import positive_int
from keras_audit.callbacks.budget import DEFAULT_MAX_BYTES_PER_EPOCH, Picture, encode_epoch
from keras_audit.callbacks.distribute import ensure_built, is_chief, warm_up_allowed
from keras_audit.callbacks.predictions import predicted_classes
from keras_audit.callbacks.samples import Samples, balanced_order, select_samples
from keras_audit.callbacks.scalars import LAYOUTS
from keras_audit.callbacks.session import Session
from keras_audit.render.png import png_fast

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData
    from keras_audit.explain import LayerInfo

#: the smallest side tiles are drawn at (inputs are upscaled by an integer factor to reach it)
MIN_TILE = 64
#: the width TensorBoard's Images dashboard shows a picture at by default (its card, measured:
#: 346 px in Chromium at 1400 px wide; pictures wider than that are shrunk to fit)
CARD_WIDTH = 335
#: the caption font size of the pictures laid out for the card (shown unshrunk: read as 13 px)
CARD_FONT = 13

__all__ = [  # the names this module has always offered (several now live next to it)
    "CARD_FONT", "CARD_WIDTH", "DEFAULT_MAX_BYTES_PER_EPOCH", "MIN_TILE", "ExplanationCallback",
    "ExplanationLoggingWarning", "NothingToExplain",
    "Samples", "balanced_order", "ensure_built", "is_chief", "png_fast", "select_samples",
]


_log = logging.getLogger(__name__)


class ExplanationLoggingWarning(RuntimeWarning):
    """A logging failure that did not stop training (``strict=False``)."""


class NothingToExplain(ValueError):
    """The model has nothing this technique draws (e.g. no 2-D convolution for filters, a
    subclassed model for Grad-CAM). A ``ValueError`` for a callback used alone; a bundle
    (``AuditCallback`` with its default ``include``) leaves the technique out instead."""


def class_name_list(class_names: Any) -> list[str] | None:
    """``class_names`` as a list: a sequence of names, or a dict of class id -> name.

    Raises:
        ValueError: a dict whose keys are not the ids 0..K-1, or a single string.
    """
    if class_names is None:
        return None
    if isinstance(class_names, str):
        raise ValueError(f"class_names must be a list of names or a dict of id -> name; got "
                         f"the string {class_names!r}")
    if isinstance(class_names, dict):
        keys = sorted(class_names, key=lambda k: (not isinstance(k, int | np.integer), k))
        if [k for k in keys if isinstance(k, bool) or not isinstance(k, int | np.integer)] \
                or [int(k) for k in keys] != list(range(len(keys))):
            raise ValueError(f"class_names as a dict must map the class ids 0..K-1 to names; "
                             f"got keys {keys}")
        return [str(class_names[k]) for k in keys]
    return [str(c) for c in class_names]


class ExplanationCallback(keras.callbacks.Callback):
    """Base class: fixed samples, the ``freq`` schedule, lazy writers, failures, the chief.

    Args:
        validation_data: ``(x, y)``, ``x`` alone (targets are then the predicted classes), or a
            ``tf.data.Dataset`` of ``(x, y)`` batches; ``None`` for callbacks that need no data
            (``FilterCallback``).
        log_dir: folder for the event files (it may be shared with
            ``keras.callbacks.TensorBoard``).
        num_samples: how many validation samples to show; chosen once in ``on_train_begin``,
            class-balanced when labels are given, deterministic (``seed``).
        freq: log on epochs 0, freq, 2*freq, ... and always on the last epoch.
        strict: ``False``: a failure while logging (unwritable folder, full disk, NaN maps) is
            reported once as an ``ExplanationLoggingWarning`` and training goes on. ``True``:
            it raises, and drawing runs on the training thread so it raises at the epoch that
            failed.
        class_names: names for the class ids in captions (a list, or a dict of id -> name);
            ``None`` shows the ids.
        targets: the class each explanation is for: ``None`` (the true class when labels are
            given, else the predicted one), ``"true"``, ``"predicted"``, or an ``int``.
        seed: seeds the choice of samples.
        output: for a model with several outputs, the one explained and captioned (index or
            name); ``None``: the first. Its labels (``y`` as Keras takes them: a dict by output
            name or a list in output order) balance the samples.
        max_bytes_per_epoch: the size budget of this callback's pictures per logged epoch, in
            encoded bytes (default 200 KB; ``None``: no budget). Pictures are PNG, or JPEG
            (quality 85, no chroma subsampling) where that is smaller for photo-like ones. An
            epoch over the budget is encoded again at a lower JPEG quality with 4:2:0 chroma
            (80, 70, 55: ``budget.DEGRADATION``), then at 3/4 and 1/2 of the size, until it
            fits; if even that does not, it is written anyway and one warning is logged
            (``logging``, naming the technique and the size). No picture is ever dropped.

    Attributes:
        samples: the chosen ``Samples`` (after ``on_train_begin``).
        logged_epochs: epochs whose explanations were computed and handed to the writer.
        epoch_end_seconds: training-thread time of each logged epoch's work.
        write_seconds: worker CPU time (drawing, encoding, writing) of each logged epoch (CPU,
            not wall time: the worker runs at a lower priority and waits for training).
        failures: the logging failures seen (``strict=False``).
        picture_bytes: ``{epoch: encoded bytes}`` of the pictures written per logged epoch.

    Raises:
        ValueError: on construction for bad arguments; in ``on_train_begin`` (before the first
            batch) for data or layers that do not fit the model.
    """

    #: tag prefix of the technique ("gradcam", "saliency", ...)
    technique = "explanation"
    #: whether the callback explains validation samples
    needs_data = True
    #: whether the callback registered Custom Scalars charts (``scalars.LAYOUTS``) in
    #: ``_setup``: its first logged epoch then writes the folder's layout
    charts = False

    def __init__(self, validation_data: ValidationData | None, log_dir: str,
                 num_samples: int = 16, freq: int = 1, strict: bool = False,
                 class_names: list[str] | None = None,
                 targets: int | str | None = None, seed: int = 0,
                 output: int | str | None = None,
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        super().__init__()
        if self.needs_data and validation_data is None:
            raise ValueError(f"{type(self).__name__} needs validation_data: (x, y), x alone, "
                             "or a tf.data.Dataset of (x, y) batches")
        if not isinstance(log_dir, str | bytes) and not hasattr(log_dir, "__fspath__"):
            raise ValueError(f"log_dir must be a path; got {log_dir!r}")
        positive_int(num_samples, "num_samples")
        positive_int(freq, "freq")
        if max_bytes_per_epoch is not None:
            positive_int(max_bytes_per_epoch, "max_bytes_per_epoch")
        if targets is not None and not (
            targets in ("true", "predicted")
            or (isinstance(targets, int | np.integer) and not isinstance(targets, bool)
                and targets >= 0)
        ):
            raise ValueError(
                f"targets must be None, 'true', 'predicted' or a class index (int >= 0); got "
                f"{targets!r}"
            )
        class_names = class_name_list(class_names)
        if output is not None and (isinstance(output, bool)
                                   or not isinstance(output, int | str)):
            raise ValueError(f"output must be an output's index or name, or None; got {output!r}")
        self.output = output
        self.validation_data = validation_data
        self.log_dir = str(log_dir.__fspath__() if hasattr(log_dir, "__fspath__") else log_dir)
        self.num_samples = int(num_samples)
        self.freq = int(freq)
        self.strict = bool(strict)
        self.class_names = class_names
        self.targets = targets
        self.seed = int(seed)
        self.samples: Samples | None = None
        self.logged_epochs: list[int] = []
        self.epoch_end_seconds: list[float] = []
        self.write_seconds: list[float] = []
        self.failures: list[BaseException] = []
        self.max_bytes_per_epoch = None if max_bytes_per_epoch is None \
            else int(max_bytes_per_epoch)
        self.picture_bytes: dict[int, int] = {}
        self._pictures: list[Picture] | None = None  # collected during _write, then encoded
        self._over_budget_warned = False
        self._session: Session | None = None
        self._shared = False  # True: a bundle owns the session and closes it
        self._chief = True
        self._last_epoch: int | None = None
        self._attempted: set[int] = set()
        self._deferred = False
        self._target_ids: np.ndarray | None = None

    # -- hooks for subclasses --------------------------------------------------------------------
    def _setup(self) -> None:
        """Build explainers once (training thread); raise ValueError for configuration errors."""

    def _warm(self) -> None:
        """Call the compiled work once on the samples' real shapes and throw the results away
        (the session's warm-up thread, while the first epoch trains), so ``_compute`` at the first logged
        epoch finds its traces ready. Only when ``_compute`` would make the same calls."""

    def _compute(self, epoch: int) -> Any:
        """Run the compiled work for a logged epoch and return NumPy results (training thread)."""
        return None

    def _write(self, payload: Any, step: int) -> None:
        """Draw and write one logged epoch's results (worker thread)."""

    def trace_counts(self) -> dict[str, int]:
        """How many times each compiled computation of this callback has been traced."""
        return {}

    # -- Keras hooks ------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Choose the samples and build everything; configuration errors raise ValueError here."""
        if not self._shared:  # a standalone callback: a fresh worker and writers every fit()
            self._session = Session(max_samples=self.num_samples)
        self._chief = is_chief(self.model)
        self.logged_epochs, self.epoch_end_seconds, self.write_seconds = [], [], []
        self.failures = []
        self.picture_bytes = {}
        self._over_budget_warned = False
        self._last_epoch = None
        self._attempted = set()
        self._deferred = not ensure_built(self.model, self.validation_data)
        if self._deferred and not self.needs_data:
            return  # no data to build the model from: set up once fit() has built it
        if self.needs_data:
            self.samples = self._session.samples(self.validation_data, self.num_samples,
                                                 self.model, self.seed, self.output)
        self._setup()
        self._deferred = False
        if self._chief and self.should_log(0) and warm_up_allowed(self.model):
            self._session.warm(self._warm)
            if not self._shared:  # AuditCallback starts them once all its members are set up
                self._session.start_warm(self.model)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Log on scheduled epochs (chief only): compiled work here, drawing on the worker."""
        self._last_epoch = epoch
        self._session.deliver_errors()
        if self._deferred:  # a model fit() built on its first batch (FilterCallback alone)
            self._setup()
            self._deferred = False
        if self._chief and self.should_log(epoch):
            self._log(epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Log the final epoch if an early stop skipped it, then drain, flush and close."""
        if self._chief and self._last_epoch is not None \
                and self._last_epoch not in self._attempted:
            self._log(self._last_epoch)
        if not self._shared:
            try:
                self._session.close()
            except Exception as exc:
                self.report_failure(exc, self._last_epoch)
        self._session.deliver_errors()

    # -- machinery ---------------------------------------------------------------------------------
    def should_log(self, epoch: int) -> bool:
        """Whether ``epoch`` is logged: every ``freq``-th from 0, and the last (``params``)."""
        if epoch % self.freq == 0:
            return True
        epochs = (self.params or {}).get("epochs")
        return epochs is not None and epoch == int(epochs) - 1

    def _log(self, epoch: int) -> None:
        self._attempted.add(epoch)
        t0 = time.perf_counter()
        try:
            self._session.wait_warm()  # the traces the first epoch prepared
            payload = self._compute(epoch)
        except Exception as exc:
            self.report_failure(exc, epoch)
            return
        finally:
            self.epoch_end_seconds.append(time.perf_counter() - t0)
        self.logged_epochs.append(epoch)

        def task():
            t = time.thread_time()
            try:
                if self.charts:  # the Custom Scalars layout, before the scalars it draws
                    self._session.write_layout(self.log_dir, LAYOUTS.layout(self.log_dir),
                                               epoch)
                self._pictures = []
                try:
                    self._write(payload, epoch)
                finally:  # the pictures drawn before a failure are written too
                    pictures, self._pictures = self._pictures, None
                    self._write_pictures(pictures, epoch)
                self._session.flush(self.log_dir)  # visible in TensorBoard while training
            finally:
                self.write_seconds.append(time.thread_time() - t)

        try:
            self._session.submit(task, on_error=lambda exc: self.report_failure(exc, epoch),
                                 synchronous=self.strict)
        except Exception as exc:
            self.report_failure(exc, epoch)
        self.epoch_end_seconds[-1] = time.perf_counter() - t0

    def report_failure(self, exc: BaseException, epoch: int | None) -> None:
        """A logging failure: raise when strict, else warn once per session and go on.

        Args:
            exc: what failed.
            epoch: the epoch being logged (``None``: unknown).

        Raises:
            Exception: ``exc`` itself when ``strict``.
        """
        if self.strict:
            raise exc
        self.failures.append(exc)
        if self._session is not None and not self._session.first_warning():
            return
        warnings.warn(
            f"{type(self).__name__} could not log epoch {epoch} to {self.log_dir!r}: "
            f"{type(exc).__name__}: {exc}. Training goes on; further logging failures of this "
            "run are not reported (strict=True raises instead).",
            ExplanationLoggingWarning, stacklevel=2,
        )

    # -- helpers for subclasses ----------------------------------------------------------------------
    def write_image(self, tag: str, image: np.ndarray, step: int, photo: bool = False) -> None:
        """Write one uint8 ``(H, W, 3)`` picture under ``tag`` at ``step`` (worker thread).

        Inside ``_write`` the pictures are collected and encoded together when it returns,
        within ``max_bytes_per_epoch``; elsewhere the picture is encoded and written now.

        Args:
            tag: the picture's tag.
            image: the picture.
            step: the epoch.
            photo: photo-like content (inputs, heatmap overlays, activation maps): JPEG when
                that is smaller than the PNG. ``False`` (flat graphics): PNG, exact, unless
                the budget forces JPEG.
        """
        picture = Picture(tag, np.asarray(image, np.uint8), bool(photo))
        if self._pictures is not None:
            self._pictures.append(picture)
        else:
            self._write_pictures([picture], step)

    def _write_pictures(self, pictures: list[Picture], step: int) -> None:
        if not pictures:
            return
        done = encode_epoch(pictures, self.max_bytes_per_epoch)
        for e in done.pictures:
            self._session.write_encoded(self.log_dir, e.tag, e.data, e.width, e.height, step)
        self.picture_bytes[step] = self.picture_bytes.get(step, 0) + done.nbytes
        if not done.fits and not self._over_budget_warned:
            self._over_budget_warned = True
            quality, scale = done.step
            _log.warning(
                "%s (%s): the pictures of epoch %d take %d bytes, over max_bytes_per_epoch="
                "%d even as JPEG quality %d at %g of their size; they are written anyway. "
                "Show fewer samples or channels, or raise max_bytes_per_epoch (None: no "
                "budget). Not repeated for this run.",
                type(self).__name__, self.technique, step, done.nbytes,
                self.max_bytes_per_epoch, quality, scale)

    def write_scalar(self, tag: str, value: float, step: int,
                     description: str | None = None) -> None:
        """Write one scalar under ``tag`` at ``step`` (worker thread), with its description."""
        self._session.write_scalar(self.log_dir, tag, value, step, description)

    def write_text(self, tag: str, text: str, step: int, description: str | None = None) -> None:
        """Write Markdown ``text`` under ``tag`` at ``step`` (worker thread)."""
        self._session.write_text(self.log_dir, tag, text, step, description)

    def model_layers(self) -> list[LayerInfo]:
        """The model's readable layers (nested ones included), listed once per ``fit()`` and
        shared by a bundle's members."""
        return self._session.model_layers(self.model)

    def predictions(self, epoch: int) -> np.ndarray:
        """The model's outputs (probabilities) on the samples this epoch, shared by a bundle."""
        return self._session.predict(self.model, self.samples, epoch, self.output)

    def resolve_targets(self, n_classes: int, task: str = "classification") -> np.ndarray | None:
        """The class ids to explain per sample, or ``None`` for the predicted classes.

        Raises:
            ValueError: a label or the ``targets`` class is out of the model's range.
        """
        y = self.samples.y
        mode = self.targets
        if mode is None:
            mode = "true" if y is not None else "predicted"
        if mode == "predicted":
            return None
        if mode == "true":
            if y is None:
                raise ValueError(f"{type(self).__name__}: targets='true' needs labels in "
                                 "validation_data; give (x, y) or use targets='predicted'")
            t = y
        else:
            t = np.full(len(self.samples.x), int(mode), np.int64)
        hi = 1 if task in ("binary", "regression") else n_classes - 1
        bad = sorted({int(v) for v in np.unique(t) if not 0 <= v <= hi})
        if bad:
            raise ValueError(
                f"{type(self).__name__}: class id(s) {bad} are out of range for the model's "
                f"output ({n_classes} unit(s): valid ids 0..{hi})"
            )
        return t.astype(np.int32)

    def check_class_names(self, n_classes: int) -> None:
        """Raise ValueError when ``class_names`` does not name every output class."""
        if self.class_names is None:
            return
        need = max(n_classes, 2)
        if len(self.class_names) < need:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but the model has {need} "
                f"classes; give one name per class"
            )

    def captions(self, probs: np.ndarray) -> list[str]:
        """Per-sample captions from ``render.captions``: ``"true: cat  pred: dog (0.93)"``
        (without the true class when the data had no labels)."""
        pred, conf = predicted_classes(probs)
        return render.captions(true=self.samples.y, pred=pred, confidence=conf,
                               class_names=self.class_names)

    def class_name(self, k: int) -> str:
        """The name of class ``k`` (its id when no ``class_names`` were given)."""
        k = int(k)
        if self.class_names is not None and 0 <= k < len(self.class_names):
            return self.class_names[k]
        return str(k)

    def check_finite(self, arr: np.ndarray, what: str, epoch: int) -> None:
        """Raise ``FloatingPointError`` when ``arr`` holds NaN or inf (a logging failure)."""
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(f"{what} at epoch {epoch} contain NaN or inf")

    def share_session(self, session: Session) -> None:
        """Use a session that a bundle (``AuditCallback``) owns: it closes it, not this callback.

        Call before ``on_train_begin`` of every ``fit()``.
        """
        self._session = session
        self._shared = True
        if self.needs_data:
            session.reserve_samples(self.num_samples)


def __getattr__(name: str):
    # AttributionCallback builds on this module: imported on first use, for the old path
    if name == "AttributionCallback":
        from keras_audit.callbacks.attribution import AttributionCallback

        return AttributionCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
