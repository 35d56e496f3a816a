"""keras_audit.render: pictures from arrays (colormaps, overlays, labelled grids, figures).

Two paths:

- the fast path (NumPy + Pillow, a cached colormap lookup table; no matplotlib figure), used by
  the training callbacks every epoch: :func:`to_uint8_images`, :func:`colorize`, :func:`overlay`,
  :func:`grid`, :func:`explanation_grid`, :func:`image_grid`, :func:`filter_grid`,
  :func:`channel_grid`, :func:`colorbar`, :func:`caption`;
- figures (``matplotlib.figure.Figure`` + Agg, never pyplot; matplotlib imported on first use),
  used by the report and the slower callbacks: :func:`scatter_2d`, :func:`heatmap`,
  :func:`figure_to_array`, :func:`png_bytes`, :func:`data_uri`.

This package draws only: it knows nothing of TensorBoard, Keras training or reports.

Example::

    from keras_audit import render
    maps = GradCAM(model)(x)                                   # (N, H, W) in [0, 1]
    texts = render.captions(true=y, pred=pred, confidence=conf, class_names=names)
    picture = render.explanation_grid(x, maps, captions=texts)  # uint8 (Hg, Wg, 3)
    html_img = render.data_uri(picture)
"""

from keras_audit.render.colormaps import TECHNIQUE_COLORMAPS, technique_colormap
from keras_audit.render.confusion import confusion_image
from keras_audit.render.figures import data_uri, figure_to_array, heatmap, png_bytes, scatter_2d
from keras_audit.render.grids import (
    caption,
    captions,
    channel_grid,
    colorbar,
    explanation_grid,
    filter_grid,
    grid,
    image_grid,
    strongest_channels,
    upscale_factor,
)
from keras_audit.render.images import (
    colorize,
    colormap_lut,
    normalize_per_sample,
    overlay,
    resize_maps,
    to_uint8_images,
)

__all__ = [
    "TECHNIQUE_COLORMAPS",
    "caption",
    "captions",
    "channel_grid",
    "colorbar",
    "colorize",
    "colormap_lut",
    "confusion_image",
    "data_uri",
    "explanation_grid",
    "figure_to_array",
    "filter_grid",
    "grid",
    "heatmap",
    "image_grid",
    "normalize_per_sample",
    "overlay",
    "png_bytes",
    "resize_maps",
    "scatter_2d",
    "strongest_channels",
    "technique_colormap",
    "to_uint8_images",
    "upscale_factor",
]
