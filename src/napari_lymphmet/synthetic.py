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
a few microns.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._io import atomic_path
from .errors import InputError
from .annotations import fill_rings, polygon_area, write_asap_xml
from .tiffwrite import write_pyramid_tiff

__all__ = ["GENERATOR_VERSION", "SynthSpec", "SyntheticSlide", "make_layout", "write_synthetic_slide",
           "GLASS", "NORMAL", "TUMOR", "CAPSULE", "FAT", "LAYOUT_STEP"]

GENERATOR_VERSION = 1  # bump whenever the same spec would render different pixels
GLASS, NORMAL, TUMOR, CAPSULE, FAT = range(5)
_N_CLASSES = 5
PEN, DUST, FOLD = 1, 2, 3
LAYOUT_STEP = 16  # level-0 px per layout px
_PERIOD_UM = 512.0  # texture period (rounded to whole nucleus cells)
_PEN_COLOURS = {"blue": (40, 70, 170), "green": (40, 140, 90), "black": (35, 35, 40)}


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Sizes in level-0 pixels, ``mpp`` in µm/px."""

    width: int = 20_000
    height: int = 20_000
    seed: int = 0
    lesions: int = 3
    mpp: float = 0.25
    artefacts: tuple[str, ...] = ("pen", "dust", "fold")

    def __post_init__(self) -> None:
        if self.width < 256 or self.height < 256:
            raise ValueError(f"a synthetic slide needs at least 256 × 256 px, got {self.width} × {self.height}")
        if not 0.05 <= self.mpp <= 10:
            raise ValueError(f"mpp must be between 0.05 and 10 µm/px, got {self.mpp}")
        if self.lesions < 0:
            raise ValueError(f"lesions must be >= 0, got {self.lesions}")
        unknown = set(self.artefacts) - {"pen", "dust", "fold"}
        if unknown:
            raise ValueError(f"unknown artefacts {sorted(unknown)}; choose from pen, dust, fold")


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
        grain += ndimage.zoom(_grain(rng, period, (0.8, 2.0), 12.0)[:, ::8], (1, 8), order=1, mode="grid-wrap")
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
        return _render(self, x, y, w, h)

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


def _render(slide: SyntheticSlide, x: int, y: int, w: int, h: int) -> np.ndarray:
    s = LAYOUT_STEP
    rows, cols = slide.classes.shape
    y1, x1 = min((y + h - 1) // s + 2, rows), min((x + w - 1) // s + 2, cols)
    y0, x0 = max(min(y // s - 1, y1 - 2), 0), max(min(x // s - 1, x1 - 2), 0)
    block = slide.classes[y0:y1, x0:x1]
    arte = slide.artefacts[y0:y1, x0:x1]
    present = np.unique(block)
    textures = slide._textures
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
                rough = slide._border_noise.window(x + 211 * int(cls), y + 157 * int(cls), w, h)[..., 0]
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
            cos, sin, offset, half = slide.fold
            across = (np.arange(x, x + w) + 0.5)[None, :] * cos + (np.arange(y, y + h) + 0.5)[:, None] * sin
            alpha = np.clip((half - np.abs(across - offset)) / 6, 0, 1).astype(np.float32) * (label != GLASS)
            img -= img * np.float32([0.22, 0.32, 0.22]) * alpha[..., None]
        else:
            alpha = np.clip(upsample(arte == kind) * 1.6 - 0.3, 0, 1)
            ink = np.float32(slide.pen_colour if kind == PEN else (70, 58, 50))
            img += (ink - img) * (alpha * (0.8 if kind == PEN else 0.95))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_slide(
    path: str | os.PathLike,
    spec: SynthSpec = SynthSpec(),
    *,
    xml_path: str | os.PathLike | None = None,
    mask_path: str | os.PathLike | None = None,
    tile: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[SyntheticSlide, dict]:
    """Generate a slide, its ASAP XML of metastases and optionally its tissue mask.

    Parameters
    ----------
    path : str or path-like
        The pyramidal TIFF to write (JPEG tiles, levels down to about 1k px).
    spec : SynthSpec
    xml_path : str or path-like, optional
        Defaults to ``path`` with the suffix ``.xml``.
    mask_path : str or path-like, optional
        Where to write the ground-truth tissue mask, a 0/255 PNG at
        downsample ``LAYOUT_STEP``.
    progress : callable, optional
        ``progress(done, total)`` in level-0 tile rows.

    Returns
    -------
    slide : SyntheticSlide
    summary : dict
        Paths, dimensions, level count, lesion count and tumor area (µm²).
    """
    path = Path(path)
    xml_path = Path(xml_path) if xml_path else path.with_suffix(".xml")
    for out in (path, xml_path, mask_path):
        if out is not None and not Path(out).parent.is_dir():
            raise InputError(f"{out}: output folder {Path(out).parent} does not exist")
    slide = make_layout(spec)
    info = write_pyramid_tiff(path, slide.render, spec.width, spec.height, tile=tile, mpp=spec.mpp,
                              description=f"napari-lymphmet synthetic lymph node seed={spec.seed}",
                              progress=progress)
    write_asap_xml(xml_path, slide.lesions, group="Tumor")
    summary = {
        "slide": str(path),
        "xml": str(xml_path),
        "dimensions": [spec.width, spec.height],
        "level_count": len(info.level_dimensions),
        "lesions": len(slide.lesions),
        "tumor_area_um2": round(slide.tumor_area_um2, 1),
        "mpp": spec.mpp,
        "seed": spec.seed,
    }
    if mask_path is not None:
        from skimage.io import imsave

        with atomic_path(mask_path) as tmp:
            imsave(tmp, (slide.tissue_mask() * 255).astype(np.uint8), check_contrast=False)
        summary["mask"] = str(mask_path)
        summary["mask_downsample"] = LAYOUT_STEP
    return slide, summary
