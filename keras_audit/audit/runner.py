"""``audit.run``: build the context, call the sections in the table's order, assemble, write.

The order is the section table's (``keras_audit.audit.sections.TABLE``); each section reads
only the frozen context, so none depends on another having run. The whole audit runs inside
``preserved_weights`` and the weights' hash is compared before and after.

Determinism: the same model, data, seed and settings give the same ``report.json`` apart from
``provenance.timestamp`` and ``environment.timings`` (wall-clock measurements).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
import pandas as pd

from keras_audit.audit._weights import preserved_weights, weights_hash
from keras_audit.audit.catalog import (
    DEFAULT_CHECKS,
    SCHEMA_VERSION,
    TOP_LEVEL_KEYS,
    AuditInputError,
)
from keras_audit.audit.context import (
    AuditContext,
    build_context,
    check_cross_validation,
    out_dir_path,
)
from keras_audit.audit.document import Report
from keras_audit.audit.environment import environment
from keras_audit.audit.gate import verdict_of
from keras_audit.audit.policy import CRITERIA_COLUMNS
from keras_audit.audit.section import Section
from keras_audit.audit.sections import DEFAULT_OPTIONS, TABLE
from keras_audit.audit.serialize import jsonable
from keras_audit.audit.streaming import build_stream_context, is_stream

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike

    from keras_audit.audit.cross_validation import CVResult
    from keras_audit.audit.sources import DataSource

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
#: where the forward passes over the data run (``run(..., engine=)``)
ENGINES = ("local", "ray")


def run(model: keras.Model | str | os.PathLike, x: tf.Tensor | ArrayLike | tf.data.Dataset | DataSource,
        y: tf.Tensor | ArrayLike | None = None,
        class_names: Sequence[str] | dict[int, str] | None = None,
        background: tf.Tensor | ArrayLike | None = None,
        checks: Sequence[str] = DEFAULT_CHECKS, out_dir: str | os.PathLike | None = "audit_report",
        seed: int = 0, card: dict | str | os.PathLike | None = None, samples: int | None = None,
        progress: bool | Callable[..., Any] | None = None, *,
        feature_names: Sequence[str] | None = None,
        options: dict | None = None, output: int | str | None = None,
        policy: Any = None, groups: Any = None,
        baseline: keras.Model | str | os.PathLike | None = None,
        history: Any = None,
        reference: tf.Tensor | ArrayLike | None = None,
        reference_y: tf.Tensor | ArrayLike | None = None,
        strategy: tf.distribute.Strategy | None = None,
        engine: str = "local", cross_validation: CVResult | None = None) -> Report:
    """Audit ``model`` on ``(x, y)`` and write the compliance report into ``out_dir``.

    Args:
        model: a trained, built Keras model (classifier or regressor; Sequential, functional
            or subclassed; one or several inputs and outputs), or the path of a ``.keras``
            file (loaded in safe mode). Its weights are never left changed (checked by hash
            before and after).
        x: the audit data: a ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, groups)``
            batches, or a ``DataSource`` (``y`` omitted), which streams (see below); or the
            audit inputs as arrays: images ``(N, H, W, C)``, tables ``(N, F)`` or sequences (token
            ids ``(N, T)`` for an ``Embedding``); for several inputs a list in
            ``model.inputs`` order or a dict keyed by input name (a dict also for one input).
            The explanations explain one input, the first image input (else the first), with
            the others held at their mean over ``x`` (median for integer inputs); the report
            says which (``explanations.explained_input`` and ``held_fixed``).
        y: labels: class ids ``(N,)``, one-hot ``(N, C)``, ``{0, 1}`` for one sigmoid unit, or
            regression targets; for several outputs a dict keyed by output name or a list in
            output order, as Keras's ``fit`` takes them. Omitted for streamed data.
        class_names: one name per class, as a list in class-id order or a dict
            ``{class id: name}`` (default ``"0"``, ``"1"``, ...).
        background: SHAP background samples (and LIME tabular training statistics); ``None``
            draws them from ``x`` (seeded, disjoint from the explained samples).
        checks: analyses to run, from ``CHECKS``: ``"performance"``, ``"shap"``, ``"lime"``
            (each also brings the model-level explanations: Grad-CAM and saliency galleries
            for images; permutation importance and a surrogate tree for tables),
            ``"pruning"`` and ``"sanity"`` (the randomisation test and deletion/insertion
            AUCs); on request also ``"robustness"`` (corruptions), ``"adversarial"`` (FGSM
            and PGD), ``"shift"`` (needs ``reference``), ``"examples"`` (nearest references,
            prototypes and a t-SNE/PCA embedding figure; needs ``reference``) and
            ``"counterfactuals"``. Provenance, model details, card, data and sign-off are
            always there.
        out_dir: the folder for ``report.html``, ``report.json`` and ``tables/*.csv``;
            ``None`` writes nothing (use the returned ``Report``).
        seed: seeds every random choice (sample selection, bootstrap, SHAP/LIME, pruning).
        card: the model card: a dict, a YAML file path or ``None`` (see ``load_card``).
        samples: how many samples the explanation analyses use (default 32, class-balanced);
            performance and pruning always use all of ``x``.
        progress: ``None`` (silent), ``True`` (tqdm bars on stderr) or a factory called as
            ``progress(desc=..., total=...)`` that returns a bar with ``update(n)`` and
            ``close()`` (e.g. ``tqdm.tqdm``): one bar per step.
        feature_names: names of the columns of tabular ``x``.
        options: per-analysis settings overriding ``DEFAULT_OPTIONS`` group by group, e.g.
            ``{"pruning": {"sparsities": (0, 0.5, 0.9)}, "lime": {"num_samples": 300}}``.
        output: for a multi-output model, the output (index or name) that is explained and
            evaluated (``None``: the first); ``class_names`` name its classes. The
            performance section also evaluates every labelled output
            (``performance.outputs.<name>``).
        policy: the acceptance criteria (see ``keras_audit.audit.policy``): a list of
            criteria, a dict ``{"criteria": [...]}`` or a YAML file path; each bounds a
            dotted path into report.json (``min``, ``max`` or ``equals``) with severity
            ``fail`` or ``warn``. ``None`` applies the default policy (the report's fixed
            thresholds, as warnings). The result is ``Report.verdict`` and ``Report.criteria``.
        groups: ``{attribute: (N,) labels}`` or a pandas DataFrame (one column per
            attribute): the per-group section (metrics with bootstrap CIs per group, and
            ``min``, ``max``, ``max_difference``, ``min_ratio`` across groups, as fairlearn's
            MetricFrame defines them), e.g. ``groups.site.min.accuracy`` in a policy.
        baseline: the model this one replaces (a ``keras.Model`` or a ``.keras`` path,
            loaded in safe mode): both on the same data, ``comparison.delta.<metric>``
            (candidate minus baseline) with paired-bootstrap CIs, McNemar's exact test, the
            flipped predictions, and per-group deltas with ``groups``.
        history: the ``keras.callbacks.History`` that ``fit`` returned (or its ``.history``
            dict): the training-details section (curves, epochs run, best epoch); the
            optimizer and loss are read from the compiled model either way.
        reference: reference data, e.g. the training inputs: the ``"shift"`` check compares
            ``x`` with it, the ``"examples"`` check takes each sample's nearest references and
            the class prototypes from it, the ``"counterfactuals"`` check bounds its search by
            its value range. Required by shift and examples.
        reference_y: the labels of ``reference`` (default: the model's predictions on it).
        strategy: a ``tf.distribute`` strategy (e.g. ``MirroredStrategy``) the forward
            passes over the data run under; arrays are then streamed as a dataset. The
            report is the same as without it.
        engine: ``"local"`` (this process) or ``"ray"``: the forward passes over the data
            (performance and every pruning level) run as Ray tasks, one per batch, on the
            cluster that ``RAY_ADDRESS`` names (else a local one of 2 CPUs, shut down
            afterwards; a Ray already initialised is used as it is). Each worker loads the
            model once (from ``model``'s path when it can read it, else from ``.keras``
            bytes); a worker lost mid-pass has its task retried by Ray. Arrays are streamed
            as a dataset. Needs ``pip install 'keras-audit[ray]'``; the report is the same.
        cross_validation: what ``audit.cross_validate(build_model, x, y)`` returned (a
            ``CVResult``): the cross-validation section (per-fold metrics, mean, std and
            confidence interval per metric, figures), e.g. ``cross_validation.mean.accuracy``
            in a policy. ``None``: the section says how to add it.

    Streamed data (a dataset or a ``DataSource``) never sits in memory whole: memory is
    bounded by one batch and the per-sample outputs. Performance and every pruning level
    stream every sample; the explained samples and the SHAP/LIME background are drawn while
    streaming (the same seeded, class-balanced draw as on arrays) and held as small arrays
    that the other sections run on (see ``keras_audit.audit.streaming``). ``groups`` come
    from ``(x, y, groups)`` batches; ``baseline`` needs arrays; single-input models only.

    Returns:
        The ``Report`` (``to_html``, ``to_json``, ``tables``, ``content``).

    Raises:
        AuditInputError (a ValueError), before any analysis runs: an unknown check (the message
            lists the valid ones), ``x`` the model cannot take, ``y`` that does not match ``x``
            or the model's output, wrong ``class_names``/``feature_names``, a bad ``card``,
            ``seed``, ``samples``, ``options``, ``policy``, ``groups``, ``baseline``,
            ``history``, ``cross_validation`` (not a ``CVResult``) or ``reference``, the
            ``"shift"`` check without ``reference``, an unknown ``output``, labels that do not
            match the outputs, or an ``out_dir`` that cannot be created.
        ImportError: ``engine="ray"`` without Ray installed (the message says
            ``pip install 'keras-audit[ray]'``).
        RuntimeError: the weights changed during the audit (a bug; never expected), or a
            Ray task failed beyond its retries.

    An analysis that fails while running is recorded in its section (``status: "failed"``
    with the error) and as an ``error`` finding, and the audit goes on.
    """
    if engine not in ENGINES:
        raise AuditInputError(f"unknown engine {engine!r}; choices: {list(ENGINES)}")
    check_cross_validation(cross_validation)  # before a model loads or a stream is read
    model, model_path = _model_of(model)
    cluster = None
    if engine == "ray":
        from keras_audit.audit import ray_engine

        ray_engine.check_ray()  # before any work: the ImportError names the extra
        if strategy is not None:
            raise AuditInputError("strategy= and engine='ray' exclude each other: Ray places "
                                  "the forward passes; give one of them")
        if not is_stream(x):
            x, y = _as_dataset(x, y, options), None
        # before the cluster starts: the source's names, read before it is wrapped
        class_names, feature_names = _stream_names(x, y, class_names, feature_names)
        cluster = ray_engine.RayCluster()
        try:
            x = ray_engine.RayStream(x, model, cluster, model_path)
        except BaseException:
            cluster.close()
            raise
    try:
        return _run(model, x, y, class_names, background, checks, out_dir, seed, card,
                    samples, progress, feature_names=feature_names, options=options,
                    output=output, policy=policy, groups=groups, baseline=baseline,
                    history=history, reference=reference, reference_y=reference_y,
                    strategy=strategy, cross_validation=cross_validation)
    finally:
        if cluster is not None:
            cluster.close()


def _stream_names(data, y, class_names, feature_names):
    """The class and feature names for streamed ``data`` (the caller's, else the source's).

    Raises:
        AuditInputError: ``y`` was given too (streamed data yields its own labels).
    """
    if y is not None:
        raise AuditInputError("y is given but the data streams (a dataset or DataSource "
                              "yields its own labels); omit y")
    if class_names is None and getattr(data, "class_names", None):
        class_names = data.class_names
    if feature_names is None and getattr(data, "feature_names", None):
        feature_names = data.feature_names
    return class_names, feature_names


def _model_of(model):
    """The model, and its ``.keras`` path when given as one (loaded in safe mode)."""
    if not isinstance(model, str | os.PathLike):
        return model, None
    from pathlib import Path

    path = Path(model)
    if not path.is_file():
        raise AuditInputError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(path, safe_mode=True), path
    except Exception as exc:  # Keras raises many types for unreadable files
        text = " ".join(str(exc).split())
        raise AuditInputError(f"could not load the model {path}: {text}") from None


def _run(model, x, y, class_names, background, checks, out_dir, seed, card, samples, progress,
         *, feature_names, options, output, policy, groups, baseline, history, reference,
         reference_y, strategy, cross_validation) -> Report:
    """``run`` once the engine is set up: the context, the sections, the report."""
    if strategy is not None and not is_stream(x):
        x = _as_dataset(x, y, options)  # the strategy splits dataset batches over devices
        y = None
    if is_stream(x):
        class_names, feature_names = _stream_names(x, y, class_names, feature_names)
        ctx = build_stream_context(model, x, defaults=DEFAULT_OPTIONS, strategy=strategy,
                                   class_names=class_names, background=background,
                                   checks=checks, seed=seed, card=card, samples=samples,
                                   progress=progress, feature_names=feature_names,
                                   options=options, output=output, policy=policy,
                                   groups=groups, baseline=baseline, history=history,
                                   reference=reference, reference_y=reference_y,
                                   cross_validation=cross_validation)
    else:
        if y is None:
            raise AuditInputError("y (the labels) is required when x is arrays")
        ctx = build_context(model, x, y, defaults=DEFAULT_OPTIONS, class_names=class_names,
                            background=background, checks=checks, seed=seed, card=card,
                            samples=samples, progress=progress, feature_names=feature_names,
                            options=options, output=output, policy=policy, groups=groups,
                            baseline=baseline, history=history, reference=reference,
                            reference_y=reference_y, cross_validation=cross_validation)
    folder = out_dir_path(out_dir)
    with preserved_weights(model, verify=True):
        sections = [module.build(ctx, ctx.options) for module in TABLE]
    report = assemble(ctx, sections)
    if folder is not None:
        report.save(folder)
    return report


def _as_dataset(x, y, options):
    """Arrays as a batched ``tf.data.Dataset`` of ``(x, y)`` (for ``strategy=``)."""
    import numpy as np
    import tensorflow as tf

    if y is None:
        raise AuditInputError("y (the labels) is required when x is arrays")
    if isinstance(x, list | tuple | dict):
        raise AuditInputError("strategy= supports single-input models (x one array)")
    batch = int(((options or {}).get("performance") or {}).get(
        "batch_size", DEFAULT_OPTIONS["performance"]["batch_size"]))
    return tf.data.Dataset.from_tensor_slices((np.asarray(x), np.asarray(y))).batch(batch)


def assemble(ctx: AuditContext, sections: Sequence[Section]) -> Report:
    """The ``Report`` from the sections' outputs: content in ``TOP_LEVEL_KEYS`` order, the
    findings sorted by severity, the environment with every step's timing.

    Raises:
        RuntimeError: the weights changed during the audit (a bug; never expected).
    """
    hash_after = weights_hash(ctx.model)
    if hash_after != ctx.weights_sha256:  # preserved_weights restores; this proves it
        raise RuntimeError("the audit changed the model's weights (hash mismatch); please "
                           "report this bug")
    content: dict[str, Any] = {}
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, bytes] = {}
    titles: dict[str, str] = {}
    galleries: list[dict] = []
    findings: list[dict] = []
    timings: dict[str, float] = {}
    latency: dict[str, float] = {}
    for sec in sections:
        content[sec.key] = sec.content
        tables.update(sec.tables)
        for key, (png, title) in sec.figures.items():
            figures[key], titles[key] = png, title
        galleries.extend(sec.galleries)
        findings.extend(sec.findings)
        timings.update(sec.timings)
        latency.update(sec.latency)
    content["provenance"]["weights_sha256_after"] = hash_after
    content["environment"] = environment(timings, latency)
    ranked = sorted(enumerate(findings),
                    key=lambda t: (_SEVERITY_ORDER.get(t[1]["severity"], 3), t[0]))
    content["findings"] = [f for _, f in ranked]
    tables["findings"] = pd.DataFrame(content["findings"], columns=["severity", "section",
                                                                    "text"])
    ordered = {k: content.get(k) for k in TOP_LEVEL_KEYS if k != "schema_version"}
    ordered.update({k: v for k, v in content.items() if k not in ordered})
    final = {"schema_version": SCHEMA_VERSION, **jsonable(ordered)}
    # the criteria read the finished JSON, so they bound exactly what report.json says
    verdict, rows, source = verdict_of(ctx, final, tuple(sec.key for sec in sections))
    final["verdict"], final["criteria"] = verdict, rows  # placeholders: keys keep their order
    final["provenance"]["policy"] = source
    tables["criteria"] = pd.DataFrame(rows, columns=list(CRITERIA_COLUMNS))
    return Report(final, tables, figures, titles, galleries)
