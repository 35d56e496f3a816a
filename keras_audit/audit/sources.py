"""``DataSource``: audit data read from disk in batches, never loaded whole.

``DataSource.from_path`` reads the forms users keep held-out data in: ``.npz`` archives (one
file or a glob of shards), a folder of images in class subfolders (the layout of Keras's
``image_dataset_from_directory``) and ``.csv`` / ``.parquet`` tables with a label column. It
checks the data's shape and labels from headers only (no TensorFlow, no pixel data), so bad
input is a one-line ``ValueError`` before any work, and then yields ``(x, y)`` NumPy batches.

Memory: an ``.npz`` member stored uncompressed (``np.savez``) is memory-mapped, so a batch
costs only its own rows; a compressed member (``np.savez_compressed``) is read one shard at
a time. Images are decoded per batch; tables are read in chunks.
"""

from __future__ import annotations

import glob
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the image files a folder source reads (what Keras's image_dataset_from_directory reads)
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: the forms ``from_path`` takes, for error messages
FORMS = ("an .npz file or a glob of .npz shards", "a folder of images in class subfolders",
         "a .csv or .parquet table (with target=)")


def _read_header(f) -> tuple[tuple, bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` header at ``f``'s position."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _npz_member(path: str, key: str) -> np.ndarray:
    """The array ``key`` of an ``.npz``: memory-mapped when stored uncompressed, else read.

    Hand-written: ``np.load(mmap_mode=...)`` ignores ``mmap_mode`` for ``.npz`` archives; an
    uncompressed zip member is a plain ``.npy`` at a known offset, so it maps directly.
    """
    name = key + ".npy"
    with zipfile.ZipFile(path) as zf:
        if name not in zf.namelist():
            raise ValueError(f"{path} has no array {key!r}; arrays: "
                             f"{sorted(n[:-4] for n in zf.namelist())}")
        info = zf.getinfo(name)
        stored = info.compress_type == zipfile.ZIP_STORED
    if stored:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + \
                int.from_bytes(local[28:30], "little")
            f.seek(start)
            shape, fortran, dtype = _read_header(f)
            offset = f.tell()
        if dtype.hasobject:
            raise ValueError(f"array {key!r} in {path} holds Python objects; store numbers")
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")
    with np.load(path, allow_pickle=False) as archive:
        return archive[key]


def _npz_header(path: str, key: str) -> tuple[tuple, np.dtype]:
    """Shape and dtype of member ``key`` without reading its data."""
    with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as f:
        shape, _, dtype = _read_header(f)
    return shape, dtype


@dataclass
class DataSource:
    """Audit data on disk, read in ``(x, y)`` batches.

    Build one with ``DataSource.from_path``. ``audit.run(model, source)`` streams it.

    Attributes:
        kind: ``"npz"``, ``"images"`` or ``"table"``.
        n: the number of samples.
        input_shape: the shape of one sample (without the batch axis).
        class_names: class names (the subfolder names, or the archive's ``class_names``),
            or None.
        feature_names: the table's feature columns, or None.
        batch_size: the rows per yielded batch.
    """

    kind: str
    n: int
    input_shape: tuple
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    batch_size: int = 256
    _parts: list = field(default_factory=list, repr=False)   # what the reader iterates
    _options: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_path(cls, path: str | os.PathLike, target: str | None = None,
                  image_size: Sequence[int] | None = None, batch_size: int = 256,
                  x_key: str = "x", y_key: str = "y") -> DataSource:
        """Open audit data at ``path`` (checked from headers; no data is read).

        Args:
            path: an ``.npz`` file, a glob of ``.npz`` shards (``"test/*.npz"``, read in
                sorted order), a folder with one subfolder of images per class (class ids
                follow the sorted folder names), or a ``.csv`` / ``.parquet`` table.
            target: the label column of a table (required for tables).
            image_size: ``(height, width)`` images are resized to (bilinear); needed when the
                folder's images differ in size.
            batch_size: rows per batch.
            x_key, y_key: the array names in ``.npz`` archives.

        Returns:
            A ``DataSource``.

        Raises:
            ValueError: a path that matches nothing or none of the forms, shards whose
                samples differ in shape, a folder without images, images of mixed sizes
                without ``image_size``, a table without the ``target`` column (the message
                lists the columns), or ``target``/``image_size`` that does not apply.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        text = os.fspath(path)
        if any(c in text for c in "*?["):
            files = sorted(glob.glob(text))
            if not files:
                raise ValueError(f"no file matches {text!r}")
            if not all(f.endswith(".npz") for f in files):
                raise ValueError(f"the glob {text!r} matches files that are not .npz shards")
            return cls._npz(files, x_key, y_key, batch_size, target, image_size)
        p = Path(text)
        if not p.exists():
            raise ValueError(f"data not found: {text}")
        if p.is_dir():
            if target is not None:
                raise ValueError("target= applies to tables; an image folder's labels are its "
                                 "subfolders")
            return cls._images(p, image_size, batch_size)
        if image_size is not None:
            raise ValueError("image_size= applies to image folders only")
        if p.suffix == ".npz":
            return cls._npz([text], x_key, y_key, batch_size, target, image_size)
        if p.suffix in (".csv", ".parquet"):
            return cls._table(p, target, batch_size)
        raise ValueError(f"{text} is none of the data forms: {'; '.join(FORMS)}")

    # -- the forms ---------------------------------------------------------------------------
    @classmethod
    def _npz(cls, files, x_key, y_key, batch_size, target, image_size) -> DataSource:
        if target is not None or image_size is not None:
            raise ValueError("target= and image_size= do not apply to .npz data")
        shape, counts, names = None, [], None
        for f in files:
            try:
                with zipfile.ZipFile(f) as zf:
                    members = [n[:-4] for n in zf.namelist()]
            except (zipfile.BadZipFile, OSError) as exc:
                raise ValueError(f"{f} is not an .npz archive: {exc}") from None
            for key in (x_key, y_key):
                if key not in members:
                    raise ValueError(f"{f} has no array {key!r}; arrays: {sorted(members)}")
            xs, xdt = _npz_header(f, x_key)
            ys, _ = _npz_header(f, y_key)
            if xdt.kind not in "biuf":
                raise ValueError(f"array {x_key!r} in {f} has dtype {xdt}; it must be numeric")
            if not xs or ys[:1] != xs[:1]:
                raise ValueError(f"{f}: {x_key!r} has shape {xs} but {y_key!r} has {ys}")
            if shape is not None and tuple(xs[1:]) != shape:
                raise ValueError(f"shard {f} has samples of shape {tuple(xs[1:])}, the first "
                                 f"shard {shape}")
            shape = tuple(xs[1:])
            counts.append(int(xs[0]))
            if names is None and "class_names" in members:
                with np.load(f, allow_pickle=False) as a:
                    names = [str(v) for v in a["class_names"].tolist()]
        return cls("npz", int(sum(counts)), shape, class_names=names, batch_size=batch_size,
                   _parts=list(zip(files, counts)), _options={"x": x_key, "y": y_key})

    @classmethod
    def _images(cls, folder: Path, image_size, batch_size) -> DataSource:
        from PIL import Image

        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        files, labels = [], []
        for i, c in enumerate(classes):
            found = sorted(f for f in (folder / c).iterdir()
                           if f.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [i] * len(found)
        if not files:
            raise ValueError(f"{folder} has no images in class subfolders (expected "
                             f"{folder}/<class>/<image>{{{','.join(IMAGE_SUFFIXES)}}})")
        if image_size is not None:
            size = tuple(int(v) for v in image_size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"image_size must be (height, width); got {image_size!r}")
        sizes, modes = set(), set()
        for f in files:  # headers only: PIL reads the size without decoding pixels
            with Image.open(f) as im:
                sizes.add((im.height, im.width))
                modes.add(im.mode)
        if image_size is None:
            if len(sizes) > 1:
                raise ValueError(f"the images in {folder} have {len(sizes)} different sizes "
                                 f"(e.g. {sorted(sizes)[:2]}); give image_size (--image-size "
                                 "HxW) to resize them")
            size = sizes.pop()
        channels = 1 if modes <= {"L", "1", "I", "F"} else 3
        return cls("images", len(files), (*size, channels), class_names=classes,
                   batch_size=batch_size, _parts=list(zip(files, labels)),
                   _options={"resize": image_size is not None})

    @classmethod
    def _table(cls, path: Path, target, batch_size) -> DataSource:
        if target is None:
            raise ValueError(f"{path} is a table: give target= (--target) naming its label "
                             "column")
        if path.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise ValueError("reading .parquet needs the pyarrow package: pip install "
                                 "'keras-audit[parquet]'") from None
            meta = pq.ParquetFile(path)
            columns, n = list(meta.schema_arrow.names), int(meta.metadata.num_rows)
        else:
            import pandas as pd

            columns = list(pd.read_csv(path, nrows=0).columns)
            with open(path, "rb") as f:
                n = max(0, sum(1 for _ in f) - 1)
        if target not in columns:
            raise ValueError(f"{path} has no column {target!r} (target); columns: {columns}")
        features = [c for c in columns if c != target]
        if not features or n == 0:
            raise ValueError(f"{path} has no feature columns or no rows")
        return cls("table", n, (len(features),), feature_names=features,
                   batch_size=batch_size, _parts=[str(path)], _options={"target": target})

    # -- reading ---------------------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)`` NumPy batches of ``batch_size`` rows in a fixed order.

        Raises:
            ValueError: a table whose feature columns are not numeric.
        """
        if self.kind == "npz":
            yield from self._npz_batches()
        elif self.kind == "images":
            yield from self._image_batches()
        else:
            yield from self._table_batches()

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.batches()

    def _npz_batches(self):
        b = self.batch_size
        carry: list[tuple[np.ndarray, np.ndarray]] = []
        held = 0
        for f, _ in self._parts:
            x, y = _npz_member(f, self._options["x"]), _npz_member(f, self._options["y"])
            for i in range(0, len(x), b):
                # np.array copies only this slice out of the map
                carry.append((np.array(x[i:i + b]), np.array(y[i:i + b])))
                held += len(carry[-1][0])
                if held >= b:
                    xs = np.concatenate([c[0] for c in carry])
                    ys = np.concatenate([c[1] for c in carry])
                    yield xs[:b], ys[:b]
                    carry = [(xs[b:], ys[b:])] if len(xs) > b else []
                    held = len(xs) - b
            del x, y
        if held:
            yield (np.concatenate([c[0] for c in carry]), np.concatenate([c[1] for c in carry]))

    def _image_batches(self):
        from PIL import Image

        h, w, c = self.input_shape
        for i in range(0, self.n, self.batch_size):
            part = self._parts[i:i + self.batch_size]
            xs = np.empty((len(part), h, w, c), np.float32)
            for j, (f, _) in enumerate(part):
                with Image.open(f) as im:
                    im = im.convert("L" if c == 1 else "RGB")
                    if (im.height, im.width) != (h, w):
                        im = im.resize((w, h), Image.BILINEAR)
                    xs[j] = np.asarray(im, np.float32).reshape(h, w, c)
            yield xs, np.asarray([lab for _, lab in part], np.int64)

    def _table_batches(self):
        import pandas as pd

        target, path = self._options["target"], self._parts[0]
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            chunks = (b.to_pandas() for b in
                      pq.ParquetFile(path).iter_batches(batch_size=self.batch_size))
        else:
            chunks = pd.read_csv(path, chunksize=self.batch_size)
        for df in chunks:
            feats = df[self.feature_names]
            bad = [c for c in feats.columns if feats[c].dtype.kind not in "biuf"]
            if bad:
                raise ValueError(f"{path}: feature columns {bad} are not numeric")
            yield feats.to_numpy(np.float32), df[target].to_numpy()

    def dataset(self):
        """The batches as a ``tf.data.Dataset`` of ``(x, y)`` (imports TensorFlow)."""
        import tensorflow as tf

        first_x, first_y = next(iter(self.batches()))
        sig = (tf.TensorSpec((None, *first_x.shape[1:]), tf.as_dtype(first_x.dtype)),
               tf.TensorSpec((None, *first_y.shape[1:]), tf.as_dtype(first_y.dtype)))
        return tf.data.Dataset.from_generator(self.batches, output_signature=sig)
