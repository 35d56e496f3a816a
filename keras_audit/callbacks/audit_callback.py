"""AuditCallback: several explanation callbacks as one, sharing samples, writers and a worker."""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any

import keras

from keras_audit.callbacks.base import ExplanationCallback, NothingToExplain
from keras_audit.callbacks.session import Session

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData

#: technique name -> "module:class". Adding a technique is one line here.
TECHNIQUES: dict[str, str] = {
    "gradcam": "keras_audit.callbacks.gradcam:GradCAMCallback",
    "saliency": "keras_audit.callbacks.saliency:SaliencyCallback",
    "activations": "keras_audit.callbacks.activation_maps:ActivationMapsCallback",
    "filters": "keras_audit.callbacks.filters:FilterCallback",
    "embeddings": "keras_audit.callbacks.embeddings:EmbeddingCallback",
    "attention": "keras_audit.callbacks.attention:AttentionMapsCallback",
    "evaluation": "keras_audit.callbacks.evaluation:EvaluationCallback",
}
DEFAULT_INCLUDE = ("gradcam", "saliency", "activations", "filters", "evaluation")


def technique_class(name: str) -> type:
    """The callback class registered under ``name`` in ``TECHNIQUES``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
    """
    if name not in TECHNIQUES:
        raise ValueError(f"unknown technique {name!r}; valid names: {sorted(TECHNIQUES)}")
    # explicit imports (no importlib): a technique's module loads only when it is used
    if name == "gradcam":
        from keras_audit.callbacks.gradcam import GradCAMCallback as cls
    elif name == "saliency":
        from keras_audit.callbacks.saliency import SaliencyCallback as cls
    elif name == "activations":
        from keras_audit.callbacks.activation_maps import ActivationMapsCallback as cls
    elif name == "filters":
        from keras_audit.callbacks.filters import FilterCallback as cls
    elif name == "embeddings":
        from keras_audit.callbacks.embeddings import EmbeddingCallback as cls
    elif name == "attention":
        from keras_audit.callbacks.attention import AttentionMapsCallback as cls
    else:
        from keras_audit.callbacks.evaluation import EvaluationCallback as cls
    assert f"{cls.__module__}:{cls.__name__}" == TECHNIQUES[name]  # the table says the same
    return cls


class AuditCallback(keras.callbacks.Callback):
    """Several explanation callbacks as one: one sample choice, one worker, one warning.

    Builds one callback per name in ``include`` (see ``TECHNIQUES``) with ``validation_data``,
    ``log_dir`` and whichever of ``shared_options`` each accepts, plus its own entry of
    ``options``. The members read the validation data once, share one prediction pass per
    logged epoch and one event file, and a logging failure is reported once for all of them.

    Like ``keras.callbacks.CallbackList``, it is the one owner of what the members share: it
    opens one ``Session`` per ``fit()`` (worker, writers, caches), hands it to the members, and
    closes it after their ``on_train_end``; the members only use it.

    With the defaults, a logged epoch writes ``gradcam/<layer>`` and ``saliency/vanilla`` and,
    for at most 4 convolution layers spread over the model (the first, the last and evenly
    spaced ones between), ``activations/<layer>`` and ``filters/<layer>``: at most 10 pictures
    whatever the depth of the model.

    With the default ``include`` (this module's ``DEFAULT_INCLUDE`` itself), a technique that
    has nothing to draw on the model is left out, with one ``UserWarning`` and its reason in
    ``skipped``, instead of refusing the model: ``filters`` on a model without 2-D convolutions
    (text and sequence models: Conv1D kernels are not drawn), ``activations`` on a model without
    4-D convolution outputs, ``gradcam`` on a model without a layer with spatial axes (an MLP)
    or a subclassed model (its layers cannot be read). A technique named in ``include``
    explicitly raises ``ValueError`` for these instead.

    Args:
        validation_data: ``(x, y)``, ``x`` alone or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        log_dir: folder for the event files.
        include: technique names: ``"gradcam"``, ``"saliency"``, ``"activations"``,
            ``"filters"``, ``"embeddings"``, ``"attention"``.
        options: per-technique keyword arguments, e.g. ``{"gradcam": {"layer": "conv2"},
            "filters": {"mode": "maximize"}}``. A list of methods builds one member per method:
            ``{"saliency": {"method": ["vanilla", "smoothgrad"]}}`` (members
            ``"saliency/vanilla"`` and ``"saliency/smoothgrad"`` in ``callbacks``).
        **shared_options: keyword arguments given to every member that accepts them, e.g.
            ``freq=2, strict=True, class_names=names, num_samples=8``; ``output=`` (several
            outputs: the one explained) and ``vocabulary=`` (text models: token strings) too.

    Attributes:
        callbacks: ``{name: callback}`` in ``include`` order (``"<name>/<method>"`` for each of
            a list of methods).
        skipped: ``{name: reason}`` of the default techniques left out in the last ``fit()``.
        session: the ``Session`` of the current (or last) ``fit()``; ``None`` before one.

    Example:
        ```python
        audit = AuditCallback((x_val, y_val), "logs/run1", class_names=names, freq=2)
        model.fit(x, y, epochs=10, callbacks=[audit])
        ```

    Raises:
        ValueError: an unknown technique name or option (the message lists the valid ones),
            or a member's own argument errors; in ``on_train_begin``, any member's
            configuration error, before the first batch.
    """

    def __init__(self, validation_data: ValidationData | None, log_dir: str,
                 include: tuple[str, ...] | list[str] = DEFAULT_INCLUDE,
                 options: dict[str, dict] | None = None, **shared_options: Any) -> None:
        super().__init__()
        self._optional = include is DEFAULT_INCLUDE  # defaults: leave out what cannot apply
        if isinstance(include, str):
            include = (include,)
        include = list(include)
        unknown = [n for n in include if n not in TECHNIQUES]
        if unknown or not include:
            raise ValueError(f"unknown technique(s) {unknown} in include; valid names: "
                             f"{sorted(TECHNIQUES)}")
        if len(set(include)) != len(include):
            raise ValueError(f"include names a technique twice: {include}")
        options = dict(options or {})
        stray = sorted(set(options) - set(include))
        if stray:
            raise ValueError(f"options for technique(s) {stray} that are not included; "
                             f"included: {include}")
        classes = {name: technique_class(name) for name in include}
        accepted = {name: _parameters(cls) for name, cls in classes.items()}
        orphan = sorted(k for k in shared_options
                        if not any(k in acc for acc in accepted.values()))
        if orphan:
            valid = sorted(set().union(*accepted.values()) - {"validation_data", "log_dir"})
            raise ValueError(f"no included technique takes option(s) {orphan}; valid: {valid}")
        for name, opts in options.items():
            if not isinstance(opts, dict):
                raise ValueError(f"options[{name!r}] must be a dict of keyword arguments; got "
                                 f"{type(opts).__name__}")
            bad = sorted(set(opts) - accepted[name])
            if bad:
                valid = sorted(accepted[name] - {"validation_data", "log_dir"})
                raise ValueError(f"unknown option(s) {bad} for technique {name!r}; valid: "
                                 f"{valid}")
        self.session: Session | None = None
        self.callbacks: dict[str, keras.callbacks.Callback] = {}
        for name, cls in classes.items():
            kwargs = {k: v for k, v in shared_options.items() if k in accepted[name]}
            kwargs.update(options.get(name, {}))
            if "validation_data" in accepted[name]:
                kwargs["validation_data"] = validation_data
            methods = kwargs.get("method")
            if isinstance(methods, list | tuple):  # one member per method: "saliency/smoothgrad"
                if not methods or len(set(methods)) != len(methods):
                    raise ValueError(f"options[{name!r}]['method'] must list distinct methods; "
                                     f"got {methods!r}")
                for method in methods:
                    key = name if len(methods) == 1 else f"{name}/{method}"
                    self.callbacks[key] = cls(log_dir=log_dir, **{**kwargs, "method": method})
                continue
            self.callbacks[name] = cls(log_dir=log_dir, **kwargs)
        self.log_dir = log_dir
        self.skipped: dict[str, str] = {}
        self._active: dict[str, keras.callbacks.Callback] = dict(self.callbacks)
        self._last_epoch: int | None = None

    @property
    def _explained(self) -> list[ExplanationCallback]:
        return [cb for cb in self._active.values() if isinstance(cb, ExplanationCallback)]

    # -- forward every hook that Keras calls outside the batch loop -------------------------------
    def set_model(self, model: keras.Model) -> None:
        """Give the model to every member."""
        super().set_model(model)
        for cb in self.callbacks.values():
            cb.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        """Give the training parameters (``epochs``) to every member."""
        super().set_params(params)
        for cb in self.callbacks.values():
            cb.set_params(params)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Set every member up; the first configuration error raises ValueError."""
        self.session = Session()  # a fresh worker and writers for every fit()
        self._last_epoch = None
        self._active = dict(self.callbacks)
        self.skipped = {}
        for cb in self._explained:
            cb.share_session(self.session)
        for name, cb in self.callbacks.items():
            try:
                cb.on_train_begin(logs)
            except NothingToExplain as exc:
                if not self._optional:
                    raise
                self.skipped[name] = str(exc)
                del self._active[name]
        if self.skipped:
            warnings.warn(
                "AuditCallback leaves out " + "; ".join(
                    f"{name!r} ({reason})" for name, reason in self.skipped.items())
                + ". Name the techniques in include= to be told by a ValueError instead.",
                UserWarning, stacklevel=2)
        if not self._active:
            raise ValueError("AuditCallback: none of the default techniques applies to model "
                             f"{self.model.name!r}: {self.skipped}")
        self.session.start_warm(self.model)  # every member's tracing, on the worker, during epoch 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Forwarded to every member."""
        for cb in self._active.values():
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Every member logs its scheduled epochs."""
        self._last_epoch = epoch
        for cb in self._active.values():
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Members finish, then the shared worker is drained and the writers are closed."""
        for cb in self._active.values():
            cb.on_train_end(logs)
        if self.session is None:
            return
        try:
            self.session.close()
        except Exception as exc:  # reported once, as the members report theirs
            explained = self._explained
            if not explained:
                raise
            explained[0].report_failure(exc, self._last_epoch)
        self.session.deliver_errors()

    def trace_counts(self) -> dict[str, int]:
        """Every member's tracing counts, keyed ``"<technique>/<computation>"``."""
        out = {}
        for name, cb in self.callbacks.items():
            for key, value in getattr(cb, "trace_counts", dict)().items():
                out[f"{name}/{key}"] = value
        return out


def _parameters(cls) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p != "self"}
