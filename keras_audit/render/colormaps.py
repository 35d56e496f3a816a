"""One colormap per technique, shared by the TensorBoard callbacks and the report.

A technique's maps look the same wherever they are drawn: Grad-CAM in ``jet`` (the convention
of the Grad-CAM paper and of most tools), gradient and relevance maps in ``inferno`` (a
perceptually uniform map: dark is "no attribution", bright is "most"), activations in
``viridis``, confusion matrices in ``Blues``.
"""

from __future__ import annotations

__all__ = ["TECHNIQUE_COLORMAPS", "technique_colormap"]

#: technique or method name (as tags and the report name them) -> matplotlib colormap name
TECHNIQUE_COLORMAPS: dict[str, str] = {
    "gradcam": "jet",
    "gradcam++": "jet",
    "scorecam": "jet",
    "saliency": "inferno",
    "vanilla": "inferno",
    "smoothgrad": "inferno",
    "integrated_gradients": "inferno",
    "gradient_input": "inferno",
    "lrp": "inferno",
    "activations": "viridis",
    "attention": "viridis",
    "confusion": "Blues",
}


def technique_colormap(name: str) -> str:
    """The colormap that ``name``'s maps are drawn with everywhere.

    Args:
        name: a technique or method name (``"gradcam"``, ``"saliency"``, ``"smoothgrad"``,
            ``"saliency/smoothgrad"``...); for a ``"<technique>/<method>"`` tag the method is
            looked up first.

    Returns:
        A matplotlib colormap name.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    key = str(name).lower()
    for part in reversed(key.split("/")):
        if part in TECHNIQUE_COLORMAPS:
            return TECHNIQUE_COLORMAPS[part]
    raise ValueError(f"no colormap for technique {name!r}; known: {sorted(TECHNIQUE_COLORMAPS)}")
