"""Textures: split from synthetic.py."""


from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .spec import _PERIOD_UM, CAPSULE, FAT, GLASS, NORMAL, TUMOR

__all__ = []


@dataclass(frozen=True)
class _Nuclei:
    """A jittered grid of elliptical nuclei; sizes in µm."""

    cell: float
    probability: float
    radius: tuple[float, float]
    aspect: tuple[float, float]
    colour: tuple[int, int, int]
    strength: float
    irregularity: float = 0.0


# Stroma/cytoplasm colour per class, and each class's nuclei.
_BASE = {GLASS: (243, 242, 240), NORMAL: (222, 178, 214), TUMOR: (234, 152, 196),
         CAPSULE: (232, 140, 182), FAT: (247, 240, 244)}
_NUCLEI = {
    NORMAL: _Nuclei(cell=7.5, probability=0.92, radius=(2.4, 3.2), aspect=(1.0, 1.3),
                    colour=(58, 30, 112), strength=0.95),
    TUMOR: _Nuclei(cell=13.0, probability=0.96, radius=(4.2, 6.2), aspect=(1.1, 1.8),
                   colour=(118, 74, 166), strength=0.8, irregularity=0.14),
    CAPSULE: _Nuclei(cell=20.0, probability=0.35, radius=(2.6, 3.4), aspect=(2.8, 4.0),
                     colour=(78, 42, 128), strength=0.85),
}


class _Texture:
    """A periodic ``(P, P, 3) uint8`` texture, windowed by level-0 position."""

    def __init__(self, rgb: np.ndarray, pad: int = 512) -> None:
        self.period = rgb.shape[0]
        self.pad = min(pad, self.period)
        self.rgb = np.pad(rgb, ((0, self.pad), (0, self.pad), (0, 0)), mode="wrap")

    def window(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        p = self.period
        if w <= self.pad and h <= self.pad:
            return self.rgb[y % p: y % p + h, x % p: x % p + w]
        return self.rgb[(np.arange(y, y + h) % p)[:, None], (np.arange(x, x + w) % p)[None, :]]


def _period(cell_px: float, mpp: float) -> tuple[int, int]:
    """Texture period in px, a whole number ``n`` of cells of about ``cell_px``."""
    n = max(1, round(_PERIOD_UM / mpp / cell_px))
    return int(round(n * cell_px)), n


def _grain(rng: np.random.Generator, size: int, sigma: float | tuple[float, float],
           amplitude: float) -> np.ndarray:
    """Periodic smooth noise, ``(size, size) float32`` of standard deviation ~``amplitude``."""
    noise = rng.standard_normal((size, size), dtype=np.float32)
    if sigma:
        noise = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    return noise * np.float32(amplitude / (noise.std() or 1))


def _sprites(rng: np.random.Generator, cls: int, mpp: float, count: int = 64) -> list[np.ndarray]:
    """Nuclei of one class, varied in size and shape.

    Each is ``(s, s, 4) float32``: premultiplied RGB, then ``1 - alpha``.
    """
    nuc = _NUCLEI[cls]
    sprites = []
    for _ in range(count):
        radius = rng.uniform(*nuc.radius) / mpp
        aspect = rng.uniform(*nuc.aspect)
        a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
        angle = rng.uniform(0, np.pi)
        halo = 1.9 if cls == TUMOR else 1.0  # tumor cells: dense eosinophilic cytoplasm
        r = int(np.ceil(max(a, b) * halo)) + 1
        d = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32) + rng.uniform(-0.5, 0.5, (2, 1, 1))
        c, s = np.cos(angle), np.sin(angle)
        along, across = d[1] * c + d[0] * s, d[0] * c - d[1] * s
        dist = np.hypot(along / a, across / b)
        if nuc.irregularity:  # lobed, uneven outlines
            theta = np.arctan2(across, along)
            for k in (2, 3, 5):
                dist *= 1 + nuc.irregularity / k * 2 * rng.normal() * np.cos(k * theta + rng.uniform(0, 6.3))
        chromatin = ndimage.gaussian_filter(rng.standard_normal(dist.shape, dtype=np.float32), 0.9)
        chromatin /= chromatin.std() or 1
        alpha = np.clip((1 - dist) / 0.2, 0, 1) * nuc.strength * np.clip(0.85 + 0.18 * chromatin, 0, 1)
        rgba = np.zeros((*dist.shape, 4), np.float32)
        rgba[..., :3] = np.float32(nuc.colour) * alpha[..., None]
        rgba[..., 3] = alpha
        if halo > 1:
            h = np.clip((1 - dist / halo) / 0.3, 0, 1) * 0.22 * (1 - alpha)
            rgba[..., :3] += np.float32((214, 110, 170)) * h[..., None]
            rgba[..., 3] += h
        rgba[..., 3] = 1 - rgba[..., 3]  # stored as what shows through
        sprites.append(rgba)
    return sprites


def _nuclei_texture(rng: np.random.Generator, cls: int, mpp: float) -> np.ndarray:
    """Stamp one class's nuclei on its stroma, periodically."""
    nuc = _NUCLEI[cls]
    period, n = _period(nuc.cell / mpp, mpp)
    cell = period / n
    sprites = _sprites(rng, cls, mpp)
    margin = max(s.shape[0] for s in sprites) + 1
    size = period + 2 * margin
    grain = _grain(rng, period, 0.8, 5.0)
    if cls == CAPSULE:  # collagen fibres: noise stretched along one direction
        fibres = ndimage.zoom(_grain(rng, period, (0.8, 2.0), 12.0)[:, ::8], (1, 8), order=1, mode="grid-wrap")
        grain += fibres[:, :period]  # a period that is not a multiple of 8 (e.g. at 0.243 µm/px) overshoots
    canvas = np.float32(_BASE[cls]) + np.pad(grain, margin, mode="wrap")[..., None]
    u = rng.random((4, n, n))
    # Draw every nucleus that reaches into the period, including the wrapped
    # copies of those near the far edge, so the crop tiles seamlessly.
    reach = int(np.ceil(margin / cell))
    for i in range(-reach, n + reach):
        for j in range(-reach, n + reach):
            ui = u[:, i % n, j % n]
            if ui[0] >= nuc.probability:
                continue
            sprite = sprites[int(ui[3] * len(sprites))]
            k = sprite.shape[0]
            y0 = int((i + 0.15 + 0.7 * ui[1]) * cell) + margin - k // 2
            x0 = int((j + 0.15 + 0.7 * ui[2]) * cell) + margin - k // 2
            if y0 < 0 or x0 < 0 or y0 + k > size or x0 + k > size:
                continue
            region = canvas[y0:y0 + k, x0:x0 + k]
            region *= sprite[..., 3:]
            region += sprite[..., :3]
    return np.clip(canvas[margin:margin + period, margin:margin + period], 0, 255).astype(np.uint8)


def _restain(rgb: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Scale a texture's optical density per channel: stain and scanner differ between slides."""
    od = -np.log(np.maximum(np.arange(256), 1) / 255)[:, None]
    lut = np.clip(255 * np.exp(-od * factor) + 0.5, 0, 255).astype(np.uint8)  # (256, 3)
    return lut[rgb, np.arange(3)]


def _fat_texture(rng: np.random.Generator, mpp: float) -> np.ndarray:
    """Adipocytes: a periodic Voronoi of thin pink membranes around empty cells."""
    period, n = _period(55.0 / mpp, mpp)
    q = 4  # computed at a quarter of the resolution, then interpolated
    small = period // q
    cell = small / n
    pts = (np.mgrid[0:n, 0:n].transpose(1, 2, 0) + 0.2 + 0.6 * rng.random((n, n, 2))) * cell
    yy, xx = np.mgrid[0:small, 0:small].astype(np.float32) + 0.5
    ci, cj = (yy // cell).astype(int), (xx // cell).astype(int)
    first = np.full(yy.shape, np.inf, np.float32)
    second = first.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ii, jj = ci + di, cj + dj
            p = pts[ii % n, jj % n]
            py = p[..., 0] + np.floor_divide(ii, n) * small
            px = p[..., 1] + np.floor_divide(jj, n) * small
            d = np.hypot(yy - py, xx - px).astype(np.float32)
            second = np.minimum(second, np.maximum(first, d))
            first = np.minimum(first, d)
    gap = (second - first) * q  # level-0 px from the membrane between two cells
    gap = ndimage.zoom(np.pad(gap, 1, mode="wrap"), q, order=1)[q:q + period, q:q + period]
    membrane = np.clip(1.6 - gap / (0.9 / mpp), 0, 1)
    base = np.float32(_BASE[FAT]) + _grain(rng, period, 0.8, 2.0)[..., None]
    rgb = base + (np.float32((214, 150, 196)) - base) * membrane[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _glass_texture(rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.float32(_BASE[GLASS]) + _grain(rng, 1024, 0, 1.6)[..., None], 0, 255).astype(np.uint8)
