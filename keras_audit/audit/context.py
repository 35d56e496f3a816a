"""The audit's frozen context: every input validated once, and what all sections share.

``build_context`` checks everything before any analysis runs (an ``AuditInputError`` names the
problem), runs the one forward pass every section reads (the predictions), and picks the
explained samples. Sections never change it: it is a frozen dataclass.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit.audit._labels import (
    LabelSpec,
    Outputs,
    as_label_array,
    class_names_for,
    label_spec,
    read_outputs,
)
from keras_audit.audit._views import (
    OutputHead,
    explained_input,
    explained_view,
    held_values,
    output_index,
    probe_outputs,
    split_labels,
)
from keras_audit.audit._weights import weights_hash
from keras_audit.audit.card import load_card
from keras_audit.audit.catalog import DEFAULT_SAMPLES, AuditInputError, check_checks
from keras_audit.audit.comparison import load_baseline
from keras_audit.audit.groups import check_groups
from keras_audit.audit.policy import load_policy
from keras_audit.audit.progress import progress_factory
from keras_audit.audit.training import check_history
from keras_audit.explain import balanced_order
from keras_audit.explain.forward import (
    CompiledForward,
    InputSpec,
    check_batch,
    check_inputs,
    model_inputs,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass(frozen=True)
class AuditContext:
    """What every report section reads; built and validated once by ``build_context``.

    Attributes:
        model: the audited model.
        x, y: the audit inputs and labels (NumPy).
        spec: what the labels say about the task (``LabelSpec``).
        kind: ``"image"`` ``(N, H, W, C)``, ``"tabular"`` ``(N, F)`` or ``"sequence"``.
        names: one name per class (or per regression output).
        feature_names: column names for tabular data, else None.
        forward: the compiled forward pass every analysis shares.
        outputs: the model's outputs on ``x`` read against ``spec`` (probabilities, classes).
        explain_idx: indices of the explained samples (class-balanced, seeded).
        background: the SHAP/LIME background the caller gave, or None.
        checks, options, seed, card, samples_requested: the caller's settings, validated.
        weights_sha256: the weights' hash before any analysis ran.
        progress: the progress-bar factory.
        inputs: every model input (NumPy, ``model.inputs`` order); ``x`` is the explained one.
        input_specs: the model's inputs (name, shape, dtype).
        explained_input: the index of the input the explanations explain.
        held: the reference value each other input is held at in the explanations.
        explained_model: the model of the explained input alone and the explained output
            alone (the model itself for one input and one output; see ``_views``).
        heads: every output of the model with its labels (``OutputHead``).
        output: the index of the explained and evaluated output.
        policy: the caller's criteria (``policy.Criterion``), or None for the default policy.
        groups: ``{attribute: (N,) group labels}`` for the per-group section, or None.
        baseline: the model being replaced (checked against ``x``), or None.
        history: the training history ``{metric: [value per epoch]}``, or None.
        reference, reference_y: reference data (e.g. the training inputs) and its labels: the
            shift section compares ``x`` with it, the example-based explanations take
            examples from it; None when not given.
        cross_validation: the caller's ``cross_validate`` result (a ``CVResult``) for the
            cross-validation section, or None.
        stream: for streamed data (a ``tf.data.Dataset`` or ``DataSource``), the
            ``streaming.StreamInfo``: ``x``, ``y`` and ``outputs`` then hold only the drawn
            samples (explained first, then the background), ``explain_idx`` indexes them, and
            the sections that need every sample (performance, pruning,
            robustness) stream the data.
    """

    model: keras.Model
    x: np.ndarray
    y: np.ndarray
    spec: LabelSpec
    kind: str
    names: list[str]
    feature_names: list[str] | None
    forward: CompiledForward
    outputs: Outputs
    explain_idx: np.ndarray
    background: np.ndarray | None
    checks: tuple[str, ...]
    options: dict[str, dict[str, Any]]
    seed: int
    card: dict
    samples_requested: int | None
    weights_sha256: str
    progress: Callable[..., Any]
    inputs: tuple[np.ndarray, ...] = ()
    input_specs: tuple[InputSpec, ...] = ()
    explained_input: int = 0
    held: dict[str, np.ndarray] | None = None
    explained_model: keras.Model | None = None
    heads: tuple[OutputHead, ...] = ()
    output: int = 0
    policy: tuple | None = None   # the caller's acceptance criteria (None: the default policy)
    groups: dict[str, np.ndarray] | None = None   # attribute -> (N,) group labels (strings)
    baseline: keras.Model | None = None   # the model being replaced, for the comparison
    history: dict[str, list[float]] | None = None   # metric -> value per epoch, from fit
    reference: np.ndarray | None = None  # the training inputs: shift, examples
    reference_y: np.ndarray | None = None
    cross_validation: Any = None   # a cross_validation.CVResult, from run(cross_validation=)
    # streamed data (``streaming.StreamInfo``): x holds the drawn samples, the full data streams
    stream: Any = None

    # -- derived views -----------------------------------------------------------------------------
    @functools.cached_property
    def cam_refusal(self) -> str | None:
        """Why Grad-CAM cannot explain ``view`` (the engine's message), or None when it can.

        Computed once per audit: the gallery, the quality and pruning sections and the default
        policy all ask, and each question builds (probes) an explainer.
        """
        from keras_audit.audit.sections.explanation_methods import refusal

        return refusal("gradcam", self.view)

    @property
    def model_x(self) -> np.ndarray | list[np.ndarray]:
        """``x`` as the model takes it: the array, or one array per input for several."""
        return list(self.inputs) if len(self.inputs) > 1 else self.x

    @property
    def view(self) -> keras.Model:
        """The model the explanations run on (``explained_model``, else ``model``)."""
        return self.explained_model if self.explained_model is not None else self.model

    @property
    def multi_input(self) -> bool:
        """True when the model has several inputs."""
        return len(self.inputs) > 1

    @property
    def output_name(self) -> str:
        """The explained output's name."""
        return self.heads[self.output].name if self.heads else "output_0"

    @property
    def classifier(self) -> bool:
        """True for classification and binary tasks."""
        return self.spec.task != "regression"

    @property
    def pred(self) -> np.ndarray:
        """Predicted class ids (classifiers) or predictions (regression)."""
        return np.asarray(self.outputs.y_pred)

    @property
    def confidence(self) -> np.ndarray:
        """The top class probability per sample (NaN for regression)."""
        if self.outputs.probs is None:
            return np.full(len(self.x), np.nan)
        return self.outputs.probs.max(axis=1)

    @property
    def explained_indices(self) -> np.ndarray:
        """The explained samples' indices into the audited data (also when streamed)."""
        return self.explain_idx if self.stream is None else self.stream.explain_index

    @property
    def n_samples(self) -> int:
        """How many samples the audit covers (every sample of streamed data)."""
        return len(self.x) if self.stream is None else int(self.stream.n)

    def per_sample(self) -> tuple[LabelSpec, Outputs, dict[str, np.ndarray] | None]:
        """Labels, outputs and group labels of every audited sample: the context's own, or
        for streamed data those of the streamed pass (not only the drawn samples)."""
        if self.stream is None:
            return self.spec, self.outputs, self.groups
        return (self.stream.spec, read_outputs(self.stream.raw, self.stream.spec),
                self.stream.groups)

    @property
    def x_explain(self) -> np.ndarray:
        """The explained samples, float32."""
        return self.x[self.explain_idx].astype(np.float32, copy=False)

    @property
    def targets_explain(self) -> np.ndarray:
        """The class each explained sample is explained for: its predicted class (or 0)."""
        if self.classifier:
            return self.pred[self.explain_idx].astype(np.int64)
        return np.zeros(len(self.explain_idx), np.int64)

    def class_name(self, i: int) -> str:
        """The display name of class ``i``."""
        return self.names[int(i)] if 0 <= int(i) < len(self.names) else str(i)

    def background_set(self, size: int) -> tuple[np.ndarray, str]:
        """The background for SHAP/LIME and where it came from.

        The caller's background when given; else ``size`` samples of ``x`` (seeded), disjoint
        from the explained samples when there are others.
        """
        if self.background is not None:
            return self.background, "given"
        if self.stream is not None:  # the same rows as on arrays, gathered while streaming
            order = self.stream.background_order
            pick = np.sort(order[: min(size, len(order))])
            source = ("drawn from x (seeded), disjoint from the explained samples"
                      if self.stream.n > len(self.explain_idx) else "drawn from x (seeded)")
            return self.x[self.stream.rows(pick)].astype(np.float32, copy=False), source
        rng = np.random.default_rng(self.seed + 1)
        rest = np.setdiff1d(np.arange(len(self.x)), self.explain_idx)
        pool = rest if len(rest) else np.arange(len(self.x))
        pick = np.sort(rng.permutation(pool)[: min(size, len(pool))])
        source = ("drawn from x (seeded), disjoint from the explained samples" if len(rest)
                  else "drawn from x (seeded)")
        return self.x[pick].astype(np.float32, copy=False), source


def data_kind(x: np.ndarray, spec: InputSpec | None = None) -> str:
    """``"image"`` for ``(N, H, W, C)``, ``"tabular"`` for ``(N, F)``, else ``"sequence"``.

    Integer ``(N, T)`` input other than uint8 that the model declares (token ids for an
    ``Embedding``) is a sequence, not a table.
    """
    if x.ndim == 4:
        return "image"
    if x.ndim == 2:
        if spec is not None and spec.integer and spec.dtype not in ("uint8", "bool"):
            return "sequence"
        return "tabular"
    return "sequence"


def merge_options(defaults: dict[str, dict[str, Any]],
                  options: dict | None) -> dict[str, dict[str, Any]]:
    """``defaults`` overridden group by group by ``options``.

    Raises:
        AuditInputError: options not a dict, an unknown group or an unknown key in a group.
    """
    merged = copy.deepcopy(defaults)
    if options is None:
        return merged
    if not isinstance(options, dict):
        raise AuditInputError(f"options must be a dict like {{'lime': {{'num_samples': 300}}}}; "
                              f"got {type(options).__name__}")
    for key, value in options.items():
        if key not in merged:
            raise AuditInputError(f"unknown options group {key!r}; groups: {list(merged)}")
        if not isinstance(value, dict):
            raise AuditInputError(f"options[{key!r}] must be a dict; got {value!r}")
        bad = [k for k in value if k not in merged[key]]
        if bad:
            raise AuditInputError(f"unknown option(s) {bad} for {key!r}; valid: "
                                  f"{list(merged[key])}")
        merged[key].update(value)
    return merged


def _count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise AuditInputError(f"{what} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def build_context(model: keras.Model, x: ArrayLike, y: ArrayLike, *,
                  defaults: dict[str, dict[str, Any]],
                  class_names: Sequence[str] | dict | None = None,
                  background: ArrayLike | None = None,
                  checks: Sequence[str] = (), seed: int = 0,
                  card: dict | str | os.PathLike | None = None, samples: int | None = None,
                  progress: bool | Callable[..., Any] | None = None,
                  feature_names: Sequence[str] | None = None,
                  options: dict | None = None,
                  output: int | str | None = None, policy: Any = None,
                  groups: Any = None, baseline: Any = None,
                  history: Any = None, reference: ArrayLike | None = None,
                  reference_y: ArrayLike | None = None,
                  cross_validation: Any = None) -> AuditContext:
    """Validate the inputs of ``run`` and build the context (one forward pass over ``x``).

    Raises:
        AuditInputError: every input problem ``run`` documents, before any analysis runs.
    """
    checks = check_checks(checks)
    seed = _count(seed, "seed", 0)
    if samples is not None:
        samples = _count(samples, "samples (a positive integer or None)", 1)
    merged = merge_options(defaults, options)
    criteria = load_policy(policy)
    epochs = check_history(history)
    check_cross_validation(cross_validation)
    card_dict = load_card(card)
    bars = progress_factory(progress)
    if not isinstance(model, keras.Model):
        raise AuditInputError(f"model must be a keras.Model; got {type(model).__name__}")
    try:
        specs = model_inputs(model)
        arrays = _inputs(model, x, specs)
        primary = explained_input(specs)
        xa = arrays[primary]
        for a in arrays:
            if a.dtype.kind not in "biuf":
                raise ValueError(f"x must be numeric; got dtype {a.dtype}")
        names_out = probe_outputs(model, arrays)
        out_idx = output_index(output, names_out)
        heads = []
        for h in split_labels(y, names_out, out_idx):
            what = "y" if len(names_out) == 1 else f"y[{h.name!r}]"
            heads.append(OutputHead(h.name, h.index, None if h.y is None else
                                    as_label_array(h.y, len(xa), what)))
        ya = heads[out_idx].y
        forward = CompiledForward(model, output=out_idx if len(names_out) > 1 else None,
                                  batch_size=int(merged["performance"]["batch_size"]))
        model_x = arrays if len(arrays) > 1 else xa
        first = forward([a[:1] for a in arrays] if len(arrays) > 1 else xa[:1])
        spec = label_spec(ya, first.shape[1:])
        bg = None if background is None else _background(model, background, specs, primary)
        group_labels = check_groups(groups, len(xa))
        base = load_baseline(baseline, model, model_x)
        ref, ref_y = _reference(model, reference, reference_y, checks)
        if "shift" in checks and ref is None:
            raise AuditInputError("the shift check needs reference= (e.g. the training "
                                  "inputs) to compare the audit data with")
        if spec.task == "regression" and class_names is not None:
            raise AuditInputError("class_names was given but the model is a regression model")
        names = class_names_for(class_names, spec)
        held = held_values(specs, arrays, primary)
        view = explained_view(model, specs, primary, out_idx, held, len(names_out))
    except AuditInputError:
        raise
    except ValueError as exc:
        raise AuditInputError(str(exc)) from None
    kind = data_kind(xa, specs[primary])
    features = _feature_names(feature_names, kind, xa)
    n_explain = min(len(xa), samples if samples is not None else DEFAULT_SAMPLES)
    outputs = read_outputs(forward(model_x), spec)
    if spec.task == "regression":
        explain_idx = np.sort(balanced_order(None, n_explain, seed=seed, n_pool=len(xa)))
    else:
        explain_idx = balanced_order(spec.y_true, n_explain, seed=seed)
    return AuditContext(model=model, x=xa, y=ya, spec=spec, kind=kind, names=names,
                        feature_names=features, forward=forward, outputs=outputs,
                        explain_idx=explain_idx, background=bg, checks=checks, options=merged,
                        seed=seed, card=card_dict, samples_requested=samples,
                        weights_sha256=weights_hash(model), progress=bars,
                        inputs=tuple(arrays), input_specs=tuple(specs), explained_input=primary,
                        held=held, explained_model=None if view is model else view,
                        heads=tuple(heads), output=out_idx, policy=criteria,
                        groups=group_labels, baseline=base, history=epochs, reference=ref,
                        reference_y=ref_y, cross_validation=cross_validation)


def check_cross_validation(cv: object) -> None:
    """Check ``run(cross_validation=...)``: a ``CVResult`` or None.

    Raises:
        AuditInputError: anything else (the message names the type expected and how to get
            one).
    """
    from keras_audit.audit.cross_validation import CVResult

    if cv is not None and not isinstance(cv, CVResult):
        raise AuditInputError("cross_validation must be a CVResult (what "
                              "audit.cross_validate(build_model, x, y) returns) or None; got "
                              f"{type(cv).__name__}")


def _inputs(model: keras.Model, x, specs: list[InputSpec], what: str = "x") -> list[np.ndarray]:
    """One array per model input; a single input keeps ``check_batch``'s reading of ``x``."""
    one_list = isinstance(x, list | tuple) and len(x) == 1 and isinstance(
        x[0], np.ndarray | tf.Tensor)
    if len(specs) == 1 and not isinstance(x, Mapping) and not one_list:
        return [check_batch(model, x, what)]
    return check_inputs(model, x, specs, what)


def _background(model: keras.Model, background, specs: list[InputSpec],
                primary: int) -> np.ndarray:
    """The background of the explained input: an array of it, or every input (as ``x``)."""
    if len(specs) > 1 and not isinstance(background, Mapping | list | tuple):
        s = specs[primary]
        bg = np.asarray(background)
        if bg.ndim != len(s.shape) + 1 or any(
                e is not None and e != g for e, g in zip(s.shape, bg.shape[1:])):
            raise ValueError(f"background must be samples of the explained input {s.name!r} "
                             f"{(None, *s.shape)} (or every input, as x); got {bg.shape}")
        return bg
    return _inputs(model, background, specs, "background")[primary]


def _reference(model, reference, reference_y, checks):
    if reference is None:
        if "examples" in checks:
            raise AuditInputError("the 'examples' check needs reference data to take examples "
                                  "from: run(..., reference=x_train, reference_y=y_train)")
        if reference_y is not None:
            raise AuditInputError("reference_y was given without reference")
        return None, None
    ref = check_batch(model, reference, "reference")
    ref_y = None if reference_y is None else as_label_array(reference_y, len(ref), "reference_y")
    return ref, ref_y


def _feature_names(feature_names, kind: str, x: np.ndarray) -> list[str] | None:
    if feature_names is None:
        return [f"x{i}" for i in range(x.shape[1])] if kind == "tabular" else None
    if kind != "tabular":
        raise AuditInputError("feature_names applies to tabular data (N, F) only")
    names = [str(f) for f in feature_names]
    if len(names) != x.shape[1]:
        raise AuditInputError(f"feature_names has {len(names)} names but x has "
                              f"{x.shape[1]} features")
    return names


def out_dir_path(out_dir: str | os.PathLike | None) -> Path | None:
    """``out_dir`` as a created folder, or None.

    Raises:
        AuditInputError: the folder cannot be created.
    """
    if out_dir is None:
        return None
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditInputError(f"out_dir {path} cannot be created: {exc}") from None
    return path
