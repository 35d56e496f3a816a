"""Matplotlib figures (scatter plots, annotated heatmaps) and PNG encoding.

Figures are made with ``matplotlib.figure.Figure`` and drawn by ``FigureCanvasAgg``: no pyplot,
so no global figure registry, no GUI backend and safe to use from several threads. Matplotlib is
imported inside the functions that need it (pyplot alone costs 0.4 s at import).
"""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_audit.render.images import as_array, colormap_lut

__all__ = ["data_uri", "figure_to_array", "heatmap", "new_figure", "png_bytes", "scatter_2d"]


def _is_figure(obj: Any) -> bool:
    return hasattr(obj, "savefig") and hasattr(obj, "canvas")


def _close(fig: Any) -> None:
    # A Figure made without pyplot is freed by garbage collection; one made with pyplot must
    # leave pyplot's registry. Never import pyplot just for this.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)


def _agg_canvas(fig: Any) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        canvas = FigureCanvasAgg(fig)
    return canvas


def figure_to_array(fig: Any, close: bool = True) -> np.ndarray:
    """Draw a matplotlib Figure with Agg and return its pixels.

    Args:
        fig: a ``matplotlib.figure.Figure``.
        close: release the figure from pyplot afterwards (when pyplot made it).

    Returns:
        ``np.uint8`` ``(H, W, 3)`` (size = figure inches x dpi).

    Raises:
        ValueError: ``fig`` is not a matplotlib Figure.
    """
    if not _is_figure(fig):
        raise ValueError(f"expected a matplotlib Figure; got {type(fig).__name__}")
    canvas = _agg_canvas(fig)
    canvas.draw()
    pixels = np.array(canvas.buffer_rgba())[..., :3]
    if close:
        _close(fig)
    return np.ascontiguousarray(pixels)


def _check_image(img: Any) -> np.ndarray:
    arr = as_array(img, "image")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ValueError(
            "png_bytes takes a uint8 image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) or a "
            f"matplotlib Figure; got dtype {arr.dtype}, shape {arr.shape} "
            "(convert float images with render.to_uint8_images first)")
    return np.ascontiguousarray(arr)


def png_bytes(img_or_figure: Any, compress_level: int = 6) -> bytes:
    """Encode a picture as PNG.

    Args:
        img_or_figure: a ``uint8`` image ``(H, W)``, ``(H, W, 1|3|4)``, or a matplotlib Figure
            (saved at its own dpi, then released from pyplot if pyplot made it).
        compress_level: zlib level 0..9 for arrays (1 is fastest).

    Returns:
        The PNG file's bytes; decoding them gives back the array exactly.

    Raises:
        ValueError: anything else (e.g. a float array).
    """
    buf = io.BytesIO()
    if _is_figure(img_or_figure):
        _agg_canvas(img_or_figure).print_png(buf)
        _close(img_or_figure)
        return buf.getvalue()
    arr = _check_image(img_or_figure)
    if not 0 <= int(compress_level) <= 9:
        raise ValueError(f"compress_level must be 0..9; got {compress_level}")
    from PIL import Image

    Image.fromarray(arr).save(buf, format="PNG", compress_level=int(compress_level))
    return buf.getvalue()


def data_uri(img_or_figure: Any) -> str:
    """``"data:image/png;base64,..."`` for embedding a picture in HTML (see :func:`png_bytes`)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(img_or_figure)).decode("ascii")


def _label(ax: Any, title: str | None, xlabel: str | None, ylabel: str | None) -> None:
    # the same title and axis-label sizes on every figure
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)


def new_figure(size: tuple[float, float], dpi: int | None = None) -> Any:
    """A ``matplotlib.figure.Figure`` on its own Agg canvas (no pyplot, no global state).

    Args:
        size: ``(width, height)`` in inches.
        dpi: dots per inch; ``None`` is Matplotlib's default.

    Returns:
        The Figure, laid out with ``layout="constrained"``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    _agg_canvas(fig)
    return fig


def _palette(n_classes: int) -> np.ndarray:
    import matplotlib

    if n_classes <= 10:
        return matplotlib.colormaps["tab10"](np.arange(10))
    if n_classes <= 20:
        return matplotlib.colormaps["tab20"](np.arange(20))
    return matplotlib.colormaps["turbo"](np.linspace(0.05, 0.95, n_classes))


def scatter_2d(points: Any, labels: Any = None, class_names: Sequence[str] | None = None,
               title: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
               size: tuple[float, float] = (5.0, 4.2), dpi: int = 100) -> np.ndarray:
    """A 2-D scatter plot coloured by class (e.g. a PCA projection of embeddings).

    Args:
        points: ``(N, 2)`` coordinates.
        labels: ``(N,)`` class per point (integer indices or strings), or None for one colour.
            Integer class ``c`` always gets the same colour, whichever classes are present.
        class_names: names for integer classes, shown in the legend (up to 20 classes).
        title, xlabel, ylabel: text for the axes.
        size, dpi: figure size in inches and resolution.

    Returns:
        ``np.uint8`` ``(H, W, 3)`` image (``size * dpi`` pixels).

    Raises:
        ValueError: points not ``(N, 2)`` / non-finite, labels of another length, a class
        index outside ``class_names``.
    """
    pts = as_array(points, "points")
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.dtype.kind not in "biuf":
        raise ValueError(f"points must be numeric (N, 2); got shape {pts.shape}, dtype {pts.dtype}")
    pts = pts.astype(np.float64)
    if not np.isfinite(pts).all():
        raise ValueError("points contain NaN or inf")
    lab = np.zeros(len(pts), np.int64) if labels is None else as_array(labels, "labels").reshape(-1)
    if len(lab) != len(pts):
        raise ValueError(f"got {len(lab)} labels for {len(pts)} points")
    classes = np.unique(lab)
    numeric = lab.dtype.kind in "biuf"
    if numeric and class_names is not None and len(classes):
        bad = [int(c) for c in classes if not 0 <= int(c) < len(class_names)]
        if bad:
            raise ValueError(f"labels {bad} are out of range for {len(class_names)} class_names "
                             f"(valid: 0..{len(class_names) - 1})")
    n_colors = int(classes.max()) + 1 if numeric and len(classes) and classes.min() >= 0 else len(classes)
    colors = _palette(n_colors)

    fig = new_figure(size, dpi)
    ax = fig.add_subplot()
    for j, c in enumerate(classes):
        mask = lab == c
        slot = int(c) if numeric and n_colors > int(c) >= 0 else j
        name = (str(class_names[int(c)]) if numeric and class_names is not None else str(c))
        ax.scatter(pts[mask, 0], pts[mask, 1], s=14, color=colors[slot % len(colors)],
                   alpha=0.85, edgecolors="none", label=name)
    if labels is not None and len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, frameon=False, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0))
    _label(ax, title, xlabel, ylabel)
    ax.tick_params(labelsize=7)
    return figure_to_array(fig)


def heatmap(matrix: Any, row_labels: Sequence[str] | None = None,
            col_labels: Sequence[str] | None = None, title: str | None = None,
            cmap: str = "viridis", annotate: bool = True, fmt: str | None = None,
            vmin: float | None = None, vmax: float | None = None, xlabel: str | None = None,
            ylabel: str | None = None, colorbar: bool = True, max_annotated: int = 400) -> Any:
    """An annotated heatmap figure (attention maps, confusion matrices, layer x sparsity tables).

    Args:
        matrix: 2-D numbers ``(rows, cols)``; NaN cells are drawn light grey and left blank.
        row_labels, col_labels: tick labels (None: indices). Empty strings skip a tick label.
        title, xlabel, ylabel: text for the axes.
        cmap: colormap name.
        annotate: write each value in its cell (only up to ``max_annotated`` cells), in black or
            white, whichever reads better on the cell colour.
        fmt: format spec for the values; default ``"d"`` when all values are whole numbers,
            else ``".2f"``.
        vmin, vmax: colour range (default: the data's finite range).
        colorbar: draw a colour bar.

    Returns:
        A ``matplotlib.figure.Figure`` with an Agg canvas (pass it to :func:`png_bytes`,
        :func:`data_uri`, :func:`figure_to_array` or :func:`grid`).

    Raises:
        ValueError: not 2-D/numeric, label counts that do not match, unknown colormap.
    """
    m = as_array(matrix, "matrix")
    if m.ndim != 2 or m.dtype.kind not in "biuf" or 0 in m.shape:
        raise ValueError(f"matrix must be a non-empty numeric 2-D array; got shape {m.shape}, dtype {m.dtype}")
    m = m.astype(np.float64)
    rows, cols = m.shape
    for name, labels, n in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries for {n} {name.split('_')[0]}s")
    lut = colormap_lut(cmap)  # validates the name
    import matplotlib

    colormap = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")
    finite = m[np.isfinite(m)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1.0

    width = float(np.clip(1.6 + 0.42 * cols + (0.8 if colorbar else 0.0), 3.0, 14.0))
    height = float(np.clip(1.2 + 0.36 * rows, 2.4, 12.0))
    fig = new_figure((width, height), 100)
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap=colormap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    rl = [str(i) for i in range(rows)] if row_labels is None else [str(s) for s in row_labels]
    cl = [str(i) for i in range(cols)] if col_labels is None else [str(s) for s in col_labels]
    ax.set_yticks(range(rows), labels=rl, fontsize=7)
    rotate = max((len(s) for s in cl), default=0) > 3
    ax.set_xticks(range(cols), labels=cl, fontsize=7, rotation=45 if rotate else 0,
                  ha="right" if rotate else "center")
    if annotate and m.size <= max_annotated:
        if fmt is None:
            fmt = "d" if finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 1e9 else ".2f"
        levels = np.clip((m - lo) / (hi - lo), 0, 1)
        size = 7 if m.size <= 100 else 5
        for r in range(rows):
            for c in range(cols):
                if not np.isfinite(m[r, c]):
                    continue
                red, green, blue = lut[min(int(levels[r, c] * (len(lut) - 1)), len(lut) - 2)] / 255.0
                ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
                value = int(round(m[r, c])) if fmt.endswith("d") else m[r, c]
                ax.text(c, r, format(value, fmt), ha="center", va="center", fontsize=size, color=ink)
    if colorbar:
        fig.colorbar(image, ax=ax, shrink=0.85).ax.tick_params(labelsize=7)
    _label(ax, title, xlabel, ylabel)
    return fig
