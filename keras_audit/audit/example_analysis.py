"""Example-based explanations: the reference samples a model sees as closest to each input.

Distances are taken in the penultimate embedding (the input of the classifier head) with
scikit-learn's ``NearestNeighbors``. Each class's prototype is the medoid of its reference
embeddings. For a misclassified sample, the nearest references of the predicted class and of
the true class show side by side why the model confused them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_audit.audit.result import AnalysisResult
from keras_audit.explain import (
    Activations,
    LayerInfo,
    list_layers,
    predicted_classes,
    resolve_layer,
)
from keras_audit.explain.forward import check_batch

if TYPE_CHECKING:
    import tensorflow as tf
    from numpy.typing import ArrayLike

#: layers that are the identity at inference: the embedding is the layer that feeds them
_IDENTITY = (keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
             keras.layers.GaussianNoise, keras.layers.GaussianDropout, keras.layers.AlphaDropout,
             keras.layers.ActivityRegularization)
#: samples per chunk of the embedding pass and of the medoid's pairwise distances
_CHUNK = 256


@dataclass(repr=False)
class ExamplesResult(AnalysisResult):
    """What ``examples`` found.

    Attributes:
        layer: the path of the embedding layer.
        indices: ``(N, k)`` indices into ``reference`` of each sample's nearest references,
            nearest first.
        distances: ``(N, k)`` Euclidean distances in the embedding, ascending per row.
        labels: ``(N, k)`` the classes of those references (``reference_y`` when given, else
            the model's predictions on ``reference``).
        predicted: ``(N,)`` the model's classes for ``x``.
        embedding: ``(N, D)`` the embedding of ``x``.
        reference_classes: ``(R,)`` the class of every reference sample.
        prototypes: ``{class id: reference index}``, the medoid of each class present.
        misclassified: indices into ``x`` of the samples whose prediction differs from ``y``
            (empty without ``y``).
        nearest_predicted, nearest_true: ``(M, k')`` per misclassified sample, the nearest
            references of its predicted class and of its true class (``k' = min(k, class
            size)``; -1 pads a class with fewer references).
        distances_predicted, distances_true: their distances (NaN where padded).
        metrics: ``k``, ``embedding_dim``, ``n_reference``, ``label_agreement`` (the share of
            samples whose nearest reference has the predicted class), ``n_misclassified``.
        tables: ``neighbours`` (one row per sample and rank), ``prototypes``,
            ``misclassified`` (both nearest references per misclassified sample).
        figures: ``neighbours`` (the samples and their nearest references), ``prototypes``
            (images only) and ``misclassified`` (when there are any).
    """

    layer: str
    indices: np.ndarray
    distances: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    embedding: np.ndarray
    reference_classes: np.ndarray
    prototypes: dict[int, int] = field(default_factory=dict)
    misclassified: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    nearest_predicted: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    nearest_true: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    distances_predicted: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    distances_true: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def embedding_layer(model: keras.Model, infos: list[LayerInfo] | None = None) -> LayerInfo:
    """The penultimate embedding: the layer whose output feeds the model's last ``Dense`` layer.

    Dropout-like layers (the identity at inference) are skipped back to the layer before them.
    The same rule as ``EmbeddingCallback``'s default; written again here because the audit
    never imports the callbacks.

    Raises:
        ValueError: the model has no ``Dense`` layer, or its last one reads the input directly;
            the message lists the layers to choose from.
    """
    infos = list_layers(model) if infos is None else infos
    leaves = [i for i in infos if not isinstance(i.layer, keras.Model)]
    choices = [i.path for i in infos]
    dense = [k for k, i in enumerate(leaves) if isinstance(i.layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(f"model {model.name!r} has no Dense classifier head to take the "
                         f"embedding from; name the layer with layer=. Choices: {choices}")
    by_layer = {id(i.layer): i for i in leaves}
    pos = dense[-1]
    info = _feeding(leaves[pos].layer, by_layer)
    if info is None:  # Sequential, or a head inside a nested model: the layer called before
        info = leaves[pos - 1] if pos > 0 else None
    while info is not None and isinstance(info.layer, _IDENTITY):
        before = _feeding(info.layer, by_layer)
        if before is None:
            k = leaves.index(info)
            before = leaves[k - 1] if k > 0 else None
        info = before
    if info is None:
        raise ValueError(f"the classifier head {leaves[pos].path!r} of model {model.name!r} "
                         "reads the input directly, so there is no learned embedding; name a "
                         f"layer with layer=. Choices: {choices}")
    return info


def _feeding(layer, by_layer: dict[int, LayerInfo]) -> LayerInfo | None:
    try:
        tensor = layer.input  # raises for a layer called more than once or never connected
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(tensor, list | tuple) and len(tensor) == 1:
        tensor = tensor[0]
    op = getattr(getattr(tensor, "_keras_history", None), "operation", None)
    return by_layer.get(id(op)) if op is not None else None


def embed(model: keras.Model, x: np.ndarray, layer: str | None = None,
          batch_size: int = _CHUNK) -> tuple[np.ndarray, np.ndarray, str]:
    """The embedding ``(N, D)`` (flattened), the model's outputs and the layer's path.

    One compiled pass (``Activations``) gives both the layer's output and the predictions.

    Raises:
        ValueError: an unknown ``layer`` (the message lists the choices), or no default one.
    """
    infos = list_layers(model)
    info = embedding_layer(model, infos) if layer is None else resolve_layer(infos, layer)
    reader = Activations(model, [info.path])
    return (*_embed(reader, info.path, x, batch_size), info.path)


def _embed(reader: Activations, path: str, x: np.ndarray,
           batch_size: int = _CHUNK) -> tuple[np.ndarray, np.ndarray]:
    feats, outs = [], []
    for i in range(0, len(x), batch_size):
        part = x[i:i + batch_size]
        got = reader(part)
        feats.append(np.asarray(got[path], np.float32).reshape(len(part), -1))
        out = got["__output__"]
        outs.append(np.asarray(out[0] if isinstance(out, list | tuple) else out))
    return np.concatenate(feats), np.concatenate(outs)


def _classes(outputs: np.ndarray) -> np.ndarray:
    # one unit: probabilities cut at 0.5, logits (outside [0, 1]) at 0
    flat = outputs.reshape(len(outputs), -1)
    thr = 0.5 if flat.min() >= 0 and flat.max() <= 1 else 0.0
    return predicted_classes(flat, threshold=thr)


def _labels(y: ArrayLike | None, n: int, what: str) -> np.ndarray | None:
    if y is None:
        return None
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] > 1:  # one-hot
        a = a.argmax(axis=1)
    a = a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a
    if a.ndim != 1 or len(a) != n:
        raise ValueError(f"{what} must hold one class id per sample ({n}) or be one-hot; got "
                         f"shape {np.shape(y)}")
    if a.dtype.kind == "f" and not np.all(a == np.round(a)):
        raise ValueError(f"{what} must be integer class ids; got non-integer values (examples "
                         "explains classifiers)")
    return a.astype(np.int64)


def medoid(points: np.ndarray) -> int:
    """The index of the point with the least summed Euclidean distance to the others.

    Distances are computed in chunks (scikit-learn's ``pairwise_distances_chunked``), so the
    memory stays ``O(chunk x n)``.
    """
    from sklearn.metrics import pairwise_distances_chunked

    sums = np.concatenate([d.sum(axis=1) for d in pairwise_distances_chunked(points)])
    return int(np.argmin(sums))


def examples(model: keras.Model, x: tf.Tensor | ArrayLike, reference: tf.Tensor | ArrayLike,
             reference_y: ArrayLike | None = None, layer: str | None = None, k: int = 5, *,
             y: ArrayLike | None = None, class_names: list[str] | None = None,
             figures: bool = True) -> ExamplesResult:
    """The nearest reference samples of each input in the model's penultimate embedding.

    Args:
        model: a built Keras classifier (single input).
        x: the samples to explain.
        reference: the samples to take examples from (typically the training set).
        reference_y: class ids (or one-hot) of ``reference``; ``None`` uses the model's
            predictions on it.
        layer: the embedding layer's name or path; ``None`` takes the input of the last
            ``Dense`` layer (the penultimate embedding).
        k: neighbours per sample (at most ``len(reference)``).
        y: class ids (or one-hot) of ``x``; with them, misclassified samples get the nearest
            references of both their predicted and their true class.
        class_names: names for the figures' titles (default the class ids).
        figures: draw the figures.

    Returns:
        An ``ExamplesResult``.

    Raises:
        ValueError: before any work: ``x`` or ``reference`` the model cannot take, ``k`` not
            an integer in ``1..len(reference)``, labels of the wrong length or not class ids,
            an unknown ``layer`` (the message lists the choices).
    """
    from sklearn.neighbors import NearestNeighbors

    xa = check_batch(model, x).astype(np.float32, copy=False)
    ref = check_batch(model, reference, "reference").astype(np.float32, copy=False)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= len(ref):
        raise ValueError(f"k must be an integer in 1..{len(ref)} (the reference size); got {k!r}")
    ref_y = _labels(reference_y, len(ref), "reference_y")
    y_true = _labels(y, len(xa), "y")
    infos = list_layers(model)
    path = (embedding_layer(model, infos) if layer is None else resolve_layer(infos, layer)).path

    reader = Activations(model, [path])  # built once: both passes share one trace
    emb, out = _embed(reader, path, xa)
    ref_emb, ref_out = _embed(reader, path, ref)
    pred = _classes(out)
    ref_cls = ref_y if ref_y is not None else _classes(ref_out)
    nn = NearestNeighbors(n_neighbors=int(k)).fit(ref_emb)
    dist, idx = nn.kneighbors(emb)
    res = ExamplesResult(layer=path, indices=idx.astype(np.int64), distances=dist,
                         labels=ref_cls[idx], predicted=pred, embedding=emb,
                         reference_classes=ref_cls)
    by_class = {int(c): np.flatnonzero(ref_cls == c) for c in np.unique(ref_cls)}
    res.prototypes = {c: int(members[medoid(ref_emb[members])]) for c, members in
                      by_class.items()}
    if y_true is not None:
        _contrast(res, emb, ref_emb, by_class, y_true, int(k))
    res.metrics = {"k": int(k), "layer": path, "embedding_dim": int(emb.shape[1]),
                   "n_samples": int(len(xa)), "n_reference": int(len(ref)),
                   "reference_labels": "given" if ref_y is not None else "predicted",
                   "label_agreement": float(np.mean(res.labels[:, 0] == pred)),
                   "n_misclassified": int(len(res.misclassified)) if y_true is not None
                   else None}
    res.tables = _tables(res, y_true)
    if figures:
        from keras_audit.audit.examples_plots import examples_figures

        res.figures = examples_figures(res, xa, ref, y_true, class_names)
    return res


def _contrast(res: ExamplesResult, emb: np.ndarray, ref_emb: np.ndarray,
              by_class: dict[int, np.ndarray], y_true: np.ndarray, k: int) -> None:
    from sklearn.neighbors import NearestNeighbors

    wrong = np.flatnonzero(res.predicted != y_true)
    width = min(k, max((len(m) for m in by_class.values()), default=1))
    near = {"pred": np.full((len(wrong), width), -1, np.int64),
            "true": np.full((len(wrong), width), -1, np.int64)}
    dists = {"pred": np.full((len(wrong), width), np.nan),
             "true": np.full((len(wrong), width), np.nan)}
    index = {c: NearestNeighbors(n_neighbors=min(width, len(m))).fit(ref_emb[m])
             for c, m in by_class.items()}
    for row, i in enumerate(wrong):
        for which, cls in (("pred", int(res.predicted[i])), ("true", int(y_true[i]))):
            if cls not in index:  # the class has no reference sample
                continue
            d, j = index[cls].kneighbors(emb[i:i + 1])
            near[which][row, :j.shape[1]] = by_class[cls][j[0]]
            dists[which][row, :j.shape[1]] = d[0]
    res.misclassified = wrong.astype(np.int64)
    res.nearest_predicted, res.nearest_true = near["pred"], near["true"]
    res.distances_predicted, res.distances_true = dists["pred"], dists["true"]


def _tables(res: ExamplesResult, y_true: np.ndarray | None) -> dict:
    import pandas as pd

    n, k = res.indices.shape
    neighbours = pd.DataFrame({
        "sample": np.repeat(np.arange(n), k), "rank": np.tile(np.arange(1, k + 1), n),
        "reference": res.indices.ravel(), "distance": res.distances.ravel(),
        "reference_class": res.labels.ravel(), "predicted": np.repeat(res.predicted, k)})
    counts = {c: int(np.sum(res.reference_classes == c)) for c in res.prototypes}
    protos = pd.DataFrame({"class": list(res.prototypes), "reference": list(res.prototypes.values()),
                           "class_size": [counts[c] for c in res.prototypes]})
    tables = {"neighbours": neighbours, "prototypes": protos}
    if y_true is not None:
        m = res.misclassified
        tables["misclassified"] = pd.DataFrame({
            "sample": m, "true": y_true[m], "predicted": res.predicted[m],
            "nearest_of_predicted": res.nearest_predicted[:, 0] if len(m) else [],
            "distance_predicted": res.distances_predicted[:, 0] if len(m) else [],
            "nearest_of_true": res.nearest_true[:, 0] if len(m) else [],
            "distance_true": res.distances_true[:, 0] if len(m) else []})
    return tables
