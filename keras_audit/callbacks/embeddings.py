"""EmbeddingCallback: a layer's features for fixed samples, to the TensorBoard Projector.

Keras 3's own ``TensorBoard(embeddings_freq=...)`` saves weights but writes no projector config
(keras-team/keras#20210), so the Projector tab stays empty. This callback writes everything the
Projector reads, into ``log_dir`` (the run TensorBoard calls ``"."`` when ``--logdir`` is that
folder): a checkpoint of the embedding tensor, ``projector_config.pbtxt``, ``metadata.tsv`` and
a sprite of the inputs. It also logs a 2-D PCA scatter and the silhouette score per logged epoch,
so the evolution shows in the Images and Scalars tabs.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_audit import render
from keras_audit.callbacks.base import DEFAULT_MAX_BYTES_PER_EPOCH, ExplanationCallback
from keras_audit.callbacks.layers import model_layers, output_width
from keras_audit.callbacks.predictions import predicted_classes
from keras_audit.explain import Activations, LayerInfo, resolve_layer
from keras_audit.explain.forward import select_output
from keras_audit.render.sprites import sprite_images, thumbnail_size, tile_sprite

if TYPE_CHECKING:
    from keras_audit.callbacks.samples import ValidationData

#: file names written into ``log_dir`` (fixed, so TensorBoard's projector finds them)
CONFIG_FILE = "projector_config.pbtxt"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
CHECKPOINT_NAME = "embeddings"
#: layers that are the identity at inference: the embedding is the layer that feeds them
_IDENTITY_AT_INFERENCE = (
    keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
    keras.layers.AlphaDropout, keras.layers.ActivityRegularization,
)


def _feeding_layer(layer, by_layer: dict[int, Any]):
    """The LayerInfo of the layer whose output ``layer`` reads, or None when unknown.

    Uses ``layer.input`` (Keras's public property; it raises for a layer called more than once
    or never connected) and the producing operation recorded on the symbolic tensor.
    """
    try:
        tensor = layer.input
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(tensor, list | tuple) and len(tensor) == 1:
        tensor = tensor[0]
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None)
    return by_layer.get(id(op)) if op is not None else None


def default_embedding_layer(model: keras.Model,
                            infos: list[LayerInfo] | None = None) -> LayerInfo:
    """The input to the classifier head: the layer that feeds the model's last ``Dense`` layer.

    Dropout-like layers (the identity at inference) are skipped back to the layer that feeds
    them, so the tag names a layer that computes something.

    Args:
        model: a built model.
        infos: its layers as ``keras_audit.explain.list_layers`` gives them (listed when
            ``None``).

    Returns:
        the ``LayerInfo`` of that layer (see ``keras_audit.explain.list_layers``).

    Raises:
        ValueError: the model has no ``Dense`` layer, or its last ``Dense`` layer reads the model
            input directly; the message lists the layers to choose from.
    """
    infos = model_layers(model) if infos is None else infos
    leaves = [i for i in infos if not isinstance(i.layer, keras.Model)]
    choices = [i.path for i in infos]
    dense = [k for k, i in enumerate(leaves) if isinstance(i.layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(
            f"model {model.name!r} has no Dense classifier head to take the embedding from; "
            f"name the layer with layer=. Choices: {choices}"
        )
    by_layer = {id(i.layer): i for i in infos}
    k = dense[-1]
    info = _feeding_layer(leaves[k].layer, by_layer)
    if info is None:  # Sequential, or a head inside a nested model: the layer called before it
        info = leaves[k - 1] if k > 0 else None
    while info is not None and isinstance(info.layer, _IDENTITY_AT_INFERENCE):
        before = _feeding_layer(info.layer, by_layer)
        if before is None:
            pos = leaves.index(info) if info in leaves else 0
            before = leaves[pos - 1] if pos > 0 else None
        info = before
    if info is None:
        raise ValueError(
            f"the classifier head {leaves[k].path!r} of model {model.name!r} reads the model "
            f"input directly, so there is no learned embedding to show; name a layer with "
            f"layer=. Choices: {choices}"
        )
    return info


def pca_2d(features: np.ndarray, previous: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project features on their first two principal components (scikit-learn's PCA).

    Args:
        features: ``(N, D)``.
        previous: the components ``(2, D)`` of the previous call, if any: each component's sign
            is flipped to agree with it, so the scatter does not mirror between epochs.

    Returns:
        ``(points (N, 2), components (2, D), explained variance ratio (2,))``. With fewer than
        two features or samples, the missing coordinates are zeros.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(features, np.float64)
    k = min(2, x.shape[0], x.shape[1])
    comps = np.zeros((2, x.shape[1]))
    ratio = np.zeros(2)
    points = np.zeros((x.shape[0], 2))
    if k >= 1 and np.ptp(x, axis=0).max() > 0:
        pca = PCA(n_components=k, svd_solver="full").fit(x)
        comps[:k] = pca.components_
        ratio[:k] = pca.explained_variance_ratio_
        if previous is not None and previous.shape == comps.shape:
            signs = np.where(np.sum(comps * previous, axis=1) < 0, -1.0, 1.0)
            comps *= signs[:, None]
        points = (x - pca.mean_) @ comps.T
    return points.astype(np.float32), comps, ratio


def silhouette(features: np.ndarray, labels: np.ndarray) -> float | None:
    """scikit-learn's silhouette score of the full embedding (Euclidean), or None.

    ``None`` when the labels hold fewer than two classes, or every sample is its own class:
    the score is undefined there.
    """
    from sklearn.metrics import silhouette_score

    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels > len(labels) - 1:
        return None
    return float(silhouette_score(np.asarray(features, np.float64), labels, metric="euclidean"))


def sprite_image(images: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Tile images into the square sprite the projector expects (row-major, no gaps).

    Args:
        images: ``(N, H, W, C)`` (C = 1, 3 or 4; other channel counts use the first) or
            ``(N, H, W)``, any numeric range (each image is scaled to 0..255 on its own).

    Returns:
        ``(sprite uint8 (rows*h, cols*w, 3), (h, w))``: thumbnails shrink (area averaging) so a
        side stays within 64 px and the sprite within the projector's 8192 px.
    """
    x = sprite_images(images)
    n, h, w = x.shape[:3]
    size = thumbnail_size(n, h, w)
    if size != (h, w):  # TensorFlow's area resize: the thumbnails the projector always showed
        x = tf.image.resize(x, size, method="area").numpy()
    return tile_sprite(x), size


def _is_image_batch(x: np.ndarray) -> bool:
    """Whether a batch is images ``(N, H, W, C)`` with 1, 3 or 4 channels (a sprite is drawn)."""
    return x.ndim == 4 and x.shape[-1] in (1, 3, 4)


class EmbeddingCallback(ExplanationCallback):
    """Logs a layer's features for fixed validation samples to the TensorBoard Projector.

    Every logged epoch it writes into ``log_dir``:

    - a checkpoint ``embeddings-<epoch>`` holding the ``(num_samples, D)`` embedding (the latest
      epoch; older ones are removed) and the ``checkpoint`` state file that points to it;
    - ``projector_config.pbtxt`` naming that tensor, ``metadata.tsv`` and the sprite;
    - ``metadata.tsv``: one row per sample, the true and predicted class under a header
      (``label``, ``predicted``), or the predicted class alone (no header) without labels;
    - ``sprite.png`` (image inputs only, written once): the samples as thumbnails;
    - the image ``embeddings/<layer>``: the samples on the embedding's first two principal
      components, coloured by true class (predicted class without labels);
    - the scalar ``embeddings/<layer>/silhouette``: scikit-learn's silhouette score of the
      full-dimensional embedding (Euclidean) by true class (predicted without labels);
      skipped when fewer than two classes are present.

    Open the Projector tab with ``tensorboard --logdir <log_dir>`` to run PCA, t-SNE or UMAP.
    Use one ``EmbeddingCallback`` per ``log_dir``: the projector files have fixed names.

    Args:
        validation_data: ``(x, y)``, ``x`` alone, or a ``tf.data.Dataset`` of ``(x, y)``.
        log_dir: the folder of the run.
        layer: the layer (name or ``"nested/name"`` path) whose output is the embedding;
            ``None`` takes the input to the classifier head (the layer feeding the last
            ``Dense`` layer, past any dropout). Outputs with more than two axes are flattened.
        num_samples: how many validation samples (class-balanced, fixed).
        freq: log on epochs 0, freq, 2*freq, ... and always the last.
        strict: ``False`` turns a logging failure into one warning; ``True`` raises.
        class_names: names for the class ids in ``metadata.tsv`` and the scatter's legend.
        seed: seeds the choice of samples.
        max_bytes_per_epoch: the size budget of the pictures per logged epoch (default
            200 KB; ``None``: none), as ``ExplanationCallback`` describes.

    Example:
        ```python
        model.fit(x, y, epochs=10,
                  callbacks=[EmbeddingCallback((x_val, y_val), "logs/run1")])
        ```

    Raises:
        ValueError: bad arguments (on construction); in ``on_train_begin``, before the first
            batch: an unknown layer (the message lists the choices), a model without a
            ``Dense`` head when ``layer`` is ``None``, or data that does not fit the model.
    """

    technique = "embeddings"

    def __init__(self, validation_data: ValidationData, log_dir: str, layer: str | None = None,
                 num_samples: int = 500, freq: int = 1, strict: bool = False,
                 class_names: list[str] | None = None, seed: int = 0,
                 max_bytes_per_epoch: int | None = DEFAULT_MAX_BYTES_PER_EPOCH) -> None:
        super().__init__(validation_data, log_dir, num_samples=num_samples, freq=freq,
                         strict=strict, class_names=class_names, seed=seed,
                         max_bytes_per_epoch=max_bytes_per_epoch)
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a layer name (str) or None; got {layer!r}")
        self.layer = layer
        self.layer_path: str | None = None
        self.tensor_name: str | None = None
        self.silhouettes: dict[int, float] = {}
        self.last_embedding: np.ndarray | None = None
        self._reader: Activations | None = None
        self._variable: tf.Variable | None = None
        self._manager: tf.train.CheckpointManager | None = None
        self._components: np.ndarray | None = None
        self._sprite_done = False
        self._thumb: tuple[int, int] | None = None
        self._attr = ""

    # -- hooks ------------------------------------------------------------------------------------
    def _setup(self) -> None:
        if self.layer is None:
            info = default_embedding_layer(self.model, self.model_layers())
        else:
            info = resolve_layer(self.model_layers(), self.layer)
        self.layer_path = info.path
        self._reader = Activations(self.model, [info.path])
        attr = re.sub(r"\W", "_", info.path)
        self.tensor_name = f"{attr}/.ATTRIBUTES/VARIABLE_VALUE"
        self._attr = attr
        self._variable = None
        self._manager = None
        self._components = None
        self._sprite_done = False
        self.silhouettes = {}
        self.check_class_names(output_width(self.model))

    def _compute(self, epoch: int) -> dict:
        out = self._reader(self.samples.x)
        features = np.asarray(out[self.layer_path], np.float32)
        features = features.reshape(len(features), -1)
        outputs = out["__output__"]
        outputs = select_output(outputs, None, self.model)  # the first output
        return {"features": features, "predicted": predicted_classes(outputs)[0]}

    def _write(self, payload: dict, step: int) -> None:
        features, predicted = payload["features"], payload["predicted"]
        self.check_finite(features, f"embeddings of {self.layer_path!r}", step)
        tf.io.gfile.makedirs(self.log_dir)
        self._write_checkpoint(features, step)
        self._write_metadata(predicted)
        if not self._sprite_done:
            self._write_sprite()
            self._sprite_done = True
        self._write_config(features.shape)
        labels = self.samples.y if self.samples.y is not None else predicted
        points, self._components, ratio = pca_2d(features, self._components)
        names = [self.class_name(c) for c in range(int(labels.max()) + 1)]
        picture = render.scatter_2d(
            points, labels, class_names=names,
            title=f"{self.layer_path} epoch {step}: PCA "
                  f"({100 * ratio[0]:.0f}% + {100 * ratio[1]:.0f}% of variance)")
        self.write_image(f"embeddings/{self.layer_path}", picture, step)
        score = silhouette(features, labels)
        if score is not None:
            self.silhouettes[step] = score
            self.write_scalar(f"embeddings/{self.layer_path}/silhouette", score, step,
                              "Silhouette score of the embeddings grouped by class (-1..1, "
                              "Euclidean, full dimension). Higher is better: classes form "
                              "separate clusters.")
        self.last_embedding = features

    def trace_counts(self) -> dict[str, int]:
        """Tracings of the compiled feature reader (one per input shape)."""
        return {} if self._reader is None else {"embeddings": self._reader.trace_count}

    # -- projector files ----------------------------------------------------------------------------
    def _write_checkpoint(self, features: np.ndarray, step: int) -> None:
        if self._variable is None or tuple(self._variable.shape) != features.shape:
            self._variable = tf.Variable(features, trainable=False, name=self._attr)
            checkpoint = tf.train.Checkpoint(**{self._attr: self._variable})
            self._manager = tf.train.CheckpointManager(
                checkpoint, self.log_dir, max_to_keep=1, checkpoint_name=CHECKPOINT_NAME)
        else:
            self._variable.assign(features)
        self._manager.save(checkpoint_number=step)

    def _write_metadata(self, predicted: np.ndarray) -> None:
        y = self.samples.y
        if y is None:  # one column: the projector wants no header then
            lines = [self._tsv(self.class_name(p)) for p in predicted]
        else:
            lines = ["label\tpredicted"] + [
                f"{self._tsv(self.class_name(t))}\t{self._tsv(self.class_name(p))}"
                for t, p in zip(y, predicted)
            ]
        _atomic_write(os.path.join(self.log_dir, METADATA_FILE), "\n".join(lines) + "\n")

    @staticmethod
    def _tsv(text: str) -> str:
        return re.sub(r"[\t\r\n]", " ", text)

    def _write_sprite(self) -> None:
        x = self.samples.x
        if not _is_image_batch(x):
            self._thumb = None
            return
        sprite, self._thumb = sprite_image(x)
        data = render.png_bytes(sprite)
        with tf.io.gfile.GFile(os.path.join(self.log_dir, SPRITE_FILE), "wb") as f:
            f.write(data)

    def _write_config(self, shape: tuple) -> None:
        from google.protobuf import text_format
        from tensorboard.plugins.projector import ProjectorConfig

        config = ProjectorConfig()
        emb = config.embeddings.add()
        emb.tensor_name = self.tensor_name
        emb.tensor_shape.extend([int(shape[0]), int(shape[1])])
        emb.metadata_path = METADATA_FILE  # relative: resolved against the config's folder
        if self._thumb is not None:
            emb.sprite.image_path = SPRITE_FILE
            emb.sprite.single_image_dim.extend([self._thumb[1], self._thumb[0]])  # width, height
        # model_checkpoint_path is left empty on purpose: the plugin then finds the newest
        # checkpoint through the state file in this folder, which keeps log_dir relocatable.
        _atomic_write(os.path.join(self.log_dir, CONFIG_FILE), text_format.MessageToString(config))


def _atomic_write(path: str, text: str) -> None:
    """Write a text file through a temporary name, so TensorBoard never reads half of it."""
    tmp = f"{path}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
