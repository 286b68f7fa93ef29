"""Deterministic, H&E-like synthetic lymph-node slides with ground truth.

A slide is laid out at low resolution (tissue outline, capsule, fat,
metastases, artefacts; one layout pixel per ``LAYOUT_STEP`` level-0 pixels),
then rendered tile by tile at full resolution. Each tissue class has its own
texture with nuclei drawn as blobs, periodic over about 2,048 px and indexed
by level-0 position, so a tile renders the same whatever order tiles are
drawn in and rendering costs little more than slicing:

- normal node: dense, small, dark, round lymphocyte nuclei;
- metastasis: cohesive, larger, paler, irregular nuclei in eosinophilic
  cytoplasm;
- capsule: fibrous eosinophilic band with sparse spindle nuclei;
- fat: large empty adipocytes with thin membranes.

Class borders are interpolated from the layout and roughened with smooth
noise, so they follow the lesion polygons written to the ASAP XML to within
a few microns."""


from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..annotations import fill_rings, polygon_area
from .draw import draw_region
from .spec import _PEN_COLOURS, CAPSULE, FAT, FOLD, GLASS, LAYOUT_STEP, NORMAL, PEN, DUST, TUMOR, SynthSpec
from .textures import _NUCLEI, _fat_texture, _glass_texture, _grain, _nuclei_texture, _restain, _Texture

__all__ = ["SyntheticSlide", "make_layout"]

@dataclass
class SyntheticSlide:
    """The layout of one synthetic slide, and everything needed to render it."""

    spec: SynthSpec
    classes: np.ndarray  # (h, w) uint8 layout, one px per LAYOUT_STEP level-0 px
    artefacts: np.ndarray  # (h, w) uint8: 0, PEN, DUST or FOLD
    lesions: list[np.ndarray] = field(default_factory=list)  # (N, 2) xy each
    pen_colour: tuple[int, int, int] = _PEN_COLOURS["blue"]
    fold: tuple[float, float, float, float] | None = None  # cos, sin, offset, half-width (level-0 px)
    _textures: dict[int, _Texture] = field(default_factory=dict, repr=False)
    _border_noise: _Texture | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tumor_area_um2(self) -> float:
        return sum(polygon_area(p) for p in self.lesions) * self.spec.mpp**2

    def tissue_mask(self) -> np.ndarray:
        """``(h, w) bool`` ground-truth tissue at the layout scale (downsample ``LAYOUT_STEP``)."""
        return self.classes != GLASS

    def render(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The ``(h, w, 3) uint8`` level-0 region at ``(x, y)``. Thread-safe."""
        if not self._textures:
            with self._lock:
                if not self._textures:
                    self._make_textures()
        return draw_region(self.classes, self.artefacts, self._textures, self._border_noise, x, y, w, h,
                           pen_colour=self.pen_colour, fold=self.fold)

    def _make_textures(self) -> None:
        rng = np.random.default_rng([self.spec.seed, 1])
        mpp = self.spec.mpp
        stain = np.float32(1 + np.clip(np.random.default_rng([self.spec.seed, 2]).normal(0, 0.1, 3), -0.25, 0.25))
        textures = {cls: _Texture(_restain(_nuclei_texture(rng, cls, mpp), stain)) for cls in _NUCLEI}
        textures[FAT] = _Texture(_restain(_fat_texture(rng, mpp), stain))
        textures[GLASS] = _Texture(_glass_texture(rng))
        noise = _grain(rng, 1024, 5, 0.22)  # roughens class borders at cell scale
        self._border_noise = _Texture(noise[..., None])
        self._textures = textures


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float, *, n: int = 96,
          roughness: float = 0.25) -> np.ndarray:
    """An irregular closed outline: a circle whose radius wobbles with a few harmonics."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 7):
        r += roughness / k * rng.normal() * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.55, 1.6)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


def _raster(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return fill_rings([xy], shape, downsample=LAYOUT_STEP)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed noise of unit deviation; drawn coarse, then interpolated, for speed."""
    step = max(1, int(sigma // 4))
    coarse = (-(-shape[0] // step) + 1, -(-shape[1] // step) + 1)
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma / step)
    noise = ndimage.zoom(noise, step, order=1)[: shape[0], : shape[1]]
    return noise / (noise.std() or 1)


def make_layout(spec: SynthSpec) -> SyntheticSlide:
    """Lay out tissue, capsule, fat, metastases and artefacts for ``spec``."""
    rng = np.random.default_rng(spec.seed)
    W, H = spec.width, spec.height
    shape = (-(-H // LAYOUT_STEP), -(-W // LAYOUT_STEP))
    um = 1 / (spec.mpp * LAYOUT_STEP)  # layout px per µm

    outline = _blob(rng, 0.0, 0.0, 1.0, n=256, roughness=0.3)
    outline = outline * (0.40 * W, 0.36 * H) + (W / 2, H / 2)
    tissue = _raster(outline, shape)
    depth = ndimage.distance_transform_edt(tissue)  # layout px from the edge
    classes = np.where(tissue, NORMAL, GLASS).astype(np.uint8)
    capsule_width = float(np.clip(40 * um, 1.5, 0.015 * min(shape)))
    classes[tissue & (depth < capsule_width)] = CAPSULE

    # Fat: smooth noise above a threshold, deep inside, towards one side (the hilum).
    noise = _smooth_noise(rng, shape, max(2.0, min(shape) / 14))
    side = np.linspace(-1, 1, shape[1])[None, :] * rng.choice([-1, 1])
    inner = tissue & (depth > 2 * capsule_width)
    score = noise + 0.8 * side
    fat = inner & (score > np.quantile(score[inner], 0.88)) if inner.any() else inner
    classes[fat] = FAT

    lesions = []
    for _ in range(spec.lesions):
        free = (classes == NORMAL) & (depth > 2 * capsule_width)
        if not free.any():
            break
        free_depth = ndimage.distance_transform_edt(free)
        radius = rng.uniform(0.035, 0.075) * min(W, H) / LAYOUT_STEP  # layout px
        fits = np.argwhere(free_depth > radius * 1.5)
        if len(fits):
            cy, cx = fits[rng.integers(len(fits))]
        else:  # shrink to the roomiest spot left
            cy, cx = np.unravel_index(np.argmax(free_depth), shape)
            radius = free_depth[cy, cx] / 1.6
            if radius < 1.5:
                break
        poly = _blob(rng, (cx + 0.5) * LAYOUT_STEP, (cy + 0.5) * LAYOUT_STEP, radius * LAYOUT_STEP, n=96)
        lesions.append(poly)
        classes[_raster(poly, shape)] = TUMOR

    artefacts = np.zeros(shape, np.uint8)
    pen_colour = _PEN_COLOURS[str(rng.choice(list(_PEN_COLOURS)))]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    if "pen" in spec.artefacts:
        # An arc on the glass beside the tissue, as a pathologist's ring mark.
        gap = ndimage.distance_transform_edt(~tissue)
        width = max(1.5, min(150 * um, 0.012 * min(shape)))
        ring = ~tissue & (np.abs(gap - 2.5 * width) < width)
        angle = np.arctan2(yy - shape[0] / 2, xx - shape[1] / 2)
        artefacts[ring & ((angle - rng.uniform(-np.pi, np.pi)) % (2 * np.pi) < 1.3)] = PEN
    if "dust" in spec.artefacts:
        cy, cx = rng.uniform(0.04, 0.96, 2) * shape
        r = max(1.5, min(30 * um, 0.01 * min(shape)))
        artefacts[(yy - cy) ** 2 + ((xx - cx) * 1.4) ** 2 < r**2] = DUST
    fold = None
    if "fold" in spec.artefacts:
        # A straight crease across the section, drawn exactly at level 0.
        a = rng.uniform(0, np.pi)
        fold = (np.cos(a), np.sin(a), (W * np.cos(a) + H * np.sin(a)) / 2 + rng.uniform(-0.25, 0.25) * min(W, H),
                max(8.0, min(60 / spec.mpp, 0.008 * min(W, H))))
        offset = (xx + 0.5) * LAYOUT_STEP * fold[0] + (yy + 0.5) * LAYOUT_STEP * fold[1] - fold[2]
        artefacts[tissue & (np.abs(offset) < fold[3] + 2 * LAYOUT_STEP)] = FOLD
    return SyntheticSlide(spec, classes, artefacts, lesions, tuple(pen_colour), fold)
