"""Fonts and caption layout for the NumPy/Pillow drawing path (no matplotlib import)."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
from typing import Any

import numpy as np

__all__ = ["draw_text", "font", "line_height", "text_mask", "text_width", "wrap"]

ELLIPSIS = "\u2026"
# a FreeType face is not safe to use from two threads at once; all rasterising and measuring
# goes through this lock (results are cached, so it is rarely taken)
_FREETYPE = threading.RLock()


@functools.lru_cache(maxsize=16)
def font(size: int = 11, bold: bool = False) -> Any:
    """A Pillow FreeType font: matplotlib's bundled DejaVu Sans, else Pillow's default font.

    The DejaVu file is found through the installed matplotlib package without importing it.
    """
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        path = os.path.join(spec.submodule_search_locations[0], "mpl-data", "fonts", "ttf", name)
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=8192)
def text_width(fnt: Any, text: str) -> float:
    """Advance width of ``text`` in pixels (cached: captions repeat every epoch)."""
    with _FREETYPE:
        return float(fnt.getlength(text))


@functools.lru_cache(maxsize=64)
def line_height(fnt: Any) -> int:
    """Pixels from one baseline to the next."""
    with _FREETYPE:
        ascent, descent = fnt.getmetrics()
    return int(ascent + descent + 1)


def _truncate(fnt: Any, text: str, width: float) -> str:
    if text_width(fnt, text) <= width:
        return text
    while text and text_width(fnt, text + ELLIPSIS) > width:
        text = text[:-1]
    return text.rstrip() + ELLIPSIS


def wrap(text: str, fnt: Any, width: float, max_lines: int = 2) -> tuple[list[str], bool]:
    """Break ``text`` into lines no wider than ``width`` pixels.

    Explicit newlines are kept; double spaces (as in ``"true: cat  pred: dog"``) are the
    preferred break points, then single spaces. Lines beyond ``max_lines`` are dropped and the
    last kept line ends in an ellipsis; so does any line still too wide.

    Returns:
        ``(lines, fits)``: ``fits`` is False when anything had to be cut.
    """
    lines: list[str] = []
    for para in str(text).split("\n"):
        phrases = [p.strip() for p in para.split("  ") if p.strip()]
        current = ""
        for phrase in phrases:
            candidate = f"{current}  {phrase}" if current else phrase
            if text_width(fnt, candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
                current = ""
            if text_width(fnt, phrase) <= width:
                current = phrase
                continue
            for word in phrase.split(" "):
                candidate = f"{current} {word}" if current else word
                if not current or text_width(fnt, candidate) <= width:
                    current = candidate
                else:
                    lines.append(current)
                    current = word
        lines.append(current)
    fits = len(lines) <= max_lines and all(text_width(fnt, ln) <= width for ln in lines)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1] + ELLIPSIS
    return [_truncate(fnt, ln, width) for ln in lines], fits


@functools.lru_cache(maxsize=4096)
def _render(fnt: Any, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    picture = Image.new("L", (max(1, math.ceil(text_width(fnt, text)) + 2), line_height(fnt)), 0)
    with _FREETYPE:
        ImageDraw.Draw(picture).text((0, 0), text, fill=255, font=fnt)
    mask = np.array(picture)
    mask.flags.writeable = False
    return mask


@functools.lru_cache(maxsize=4096)
def text_mask(fnt: Any, text: str) -> np.ndarray:
    """Anti-aliased coverage of one line of text: read-only ``uint8`` ``(line_height, width)``.

    Built from cached word masks: captions change every epoch (a new score) but their words
    mostly repeat, and rasterising a word costs ~0.1 ms while placing a cached one is ~free.
    """
    words = text.split(" ")
    if len(words) == 1:
        return _render(fnt, text)
    # summed advances give the whole line's positions (measured: no kerning across spaces)
    space = text_width(fnt, " ")
    starts, x = [], 0.0
    for word in words:
        starts.append(int(round(x)))
        x += text_width(fnt, word) + space
    mask = np.zeros((line_height(fnt), max(1, math.ceil(x - space) + 2)), np.uint8)
    for word, start in zip(words, starts):
        if word:
            piece = _render(fnt, word)[:, : mask.shape[1] - start]
            view = mask[:, start:start + piece.shape[1]]
            np.maximum(view, piece, out=view)
    mask.flags.writeable = False
    return mask


def draw_text(canvas: np.ndarray, top: int, left: int, text: str, fnt: Any,
              ink: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Blend ``text`` into an RGB ``uint8`` canvas in place, top-left at (top, left), clipped."""
    if not text:
        return
    mask = text_mask(fnt, text)
    height, width = canvas.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + mask.shape[0], height), min(left + mask.shape[1], width)
    if y1 <= y0 or x1 <= x0:
        return
    cover = mask[y0 - top:y1 - top, x0 - left:x1 - left, None].astype(np.uint16)
    region = canvas[y0:y1, x0:x1]
    blended = region * (255 - cover) + np.asarray(ink, np.uint16) * cover + 127
    region[...] = (blended // 255).astype(np.uint8)
