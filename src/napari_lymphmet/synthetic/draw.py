"""Drawing a laid-out synthetic slide at full resolution: class textures blended at roughened borders, artefacts.

Pure: layout arrays and textures in, an RGB tile out (thread-safe, any order).
"""

from __future__ import annotations

import numpy as np

from .spec import FOLD, GLASS, LAYOUT_STEP, PEN
from .textures import _Texture

__all__ = ["draw_region"]


def _bilinear_weights(start: int, n: int, first: int, size: int) -> np.ndarray:
    """``(n, size) float32``: level-0 px ``start..start+n`` from layout px ``first..first+size``."""
    f = (np.arange(start, start + n, dtype=np.float32) + 0.5) / LAYOUT_STEP - 0.5 - first
    i = np.clip(np.floor(f).astype(int), 0, size - 2)
    t = np.clip(f - i, 0, 1)
    weights = np.zeros((n, size), np.float32)
    rows = np.arange(n)
    weights[rows, i] = 1 - t
    weights[rows, i + 1] = t
    return weights


def draw_region(classes: np.ndarray, artefacts: np.ndarray, textures: dict[int, _Texture], border_noise: _Texture,
                x: int, y: int, w: int, h: int, *, pen_colour: tuple[int, int, int],
                fold: tuple[float, float, float, float] | None) -> np.ndarray:
    """The ``(h, w, 3) uint8`` level-0 region at ``(x, y)`` of a laid-out slide.

    ``classes`` and ``artefacts`` are the ``(rows, cols) uint8`` layout (one
    px per ``LAYOUT_STEP``); ``textures`` one periodic texture per class.
    """
    s = LAYOUT_STEP
    rows, cols = classes.shape
    y1, x1 = min((y + h - 1) // s + 2, rows), min((x + w - 1) // s + 2, cols)
    y0, x0 = max(min(y // s - 1, y1 - 2), 0), max(min(x // s - 1, x1 - 2), 0)
    block = classes[y0:y1, x0:x1]
    arte = artefacts[y0:y1, x0:x1]
    present = np.unique(block)
    if len(present) == 1:
        out = textures[int(present[0])].window(x, y, w, h).copy()
        if not arte.any():
            return out
        label = np.full((h, w), present[0], np.uint8)
    if len(present) > 1 or arte.any():
        wy = _bilinear_weights(y, h, y0, block.shape[0])
        wx = _bilinear_weights(x, w, x0, block.shape[1]).T

        def upsample(values: np.ndarray) -> np.ndarray:
            return wy @ values.astype(np.float32) @ wx
    if len(present) > 1:
        # Soft class memberships from the layout, roughened at cell scale by
        # noise; a class competes only where its membership is above zero, so
        # borders move by at most one layout pixel and only between neighbours.
        scores = np.stack([upsample(block == cls) for cls in present])
        for k, cls in enumerate(present):
            if cls != GLASS:
                rough = border_noise.window(x + 211 * int(cls), y + 157 * int(cls), w, h)[..., 0]
                scores[k] = np.where(scores[k] > 0, scores[k] + rough, -1)
        label = present[np.argmax(scores, axis=0)]
        out = textures[int(present[0])].window(x, y, w, h).copy()
        for cls in present[1:]:
            np.copyto(out, textures[int(cls)].window(x, y, w, h), where=(label == cls)[..., None])
    kinds = np.unique(arte[arte > 0])
    if not len(kinds):
        return out
    img = out.astype(np.float32)
    for kind in kinds:
        if kind == FOLD:  # a doubled layer of tissue: darker and more saturated
            cos, sin, offset, half = fold
            across = (np.arange(x, x + w) + 0.5)[None, :] * cos + (np.arange(y, y + h) + 0.5)[:, None] * sin
            alpha = np.clip((half - np.abs(across - offset)) / 6, 0, 1).astype(np.float32) * (label != GLASS)
            img -= img * np.float32([0.22, 0.32, 0.22]) * alpha[..., None]
        else:
            alpha = np.clip(upsample(arte == kind) * 1.6 - 0.3, 0, 1)
            ink = np.float32(pen_colour if kind == PEN else (70, 58, 50))
            img += (ink - img) * (alpha * (0.8 if kind == PEN else 0.95))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)
