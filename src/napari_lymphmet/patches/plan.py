"""Labelled training patches from slides, tissue masks and tumor annotations.

A :class:`PatchPlan` says, for one slide, which patches to cut and how each
is labelled; :func:`export_patches` writes them as an ImageFolder
(``OUT/tumor``, ``OUT/normal``) plus ``OUT/patches.csv``.

Geometry: a patch of ``size`` output pixels at ``mpp`` µm/px covers
``size · scale`` level-0 pixels, ``scale = mpp / slide mpp``, from its
level-0 corner ``(x, y)``. It is read from the finest level no coarser than
that (so never upsampled) and resized only when the level's downsample is
not exactly ``scale``.

Labels, from the tumor annotations, at patch resolution (a patch pixel is
tumor when its centre is):

- ``center``: tumor when the central ``center_size`` × ``center_size`` px
  hold any tumor (as PatchCamelyon); normal when the patch holds none;
  otherwise uncertain.
- ``fraction:t``: tumor when the tumor fraction is at least ``t``; normal
  when it is zero; otherwise uncertain.

Uncertain patches are skipped and counted, never called normal."""


from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..annotations import NORMAL, TUMOR, UNCERTAIN, Annotation, rasterize
from ..errors import InputError
from ..wsi import Slide
from .grid import box_fraction, integral_image

__all__ = ['NORMAL', 'PatchPlan', 'PatchSpec', 'UNCERTAIN', 'plan_for_slide', 'plan_patches']



@dataclass(frozen=True)
class PatchSpec:
    """How to cut patches.

    Attributes
    ----------
    size : int
        Patch side in output pixels.
    stride : int or None
        Grid step in output pixels; defaults to ``size``.
    mpp : float or None
        Output resolution, µm/px. Slides without mpp need ``level``.
    level : int or None
        Read this pyramid level as is (used when ``mpp`` is None).
    min_tissue : float
        Keep patches whose tissue fraction is at least this.
    label_rule : str
        ``"center"`` or ``"fraction:T"``.
    center_size : int
        Side of the central region for the ``center`` rule, output pixels.
    max_per_class : int or None
        Random sample (seeded) of at most this many patches per class and slide.
    balance : bool
        Sample normals down to the number of tumor patches (per slide, when
        the slide has tumor).
    seed : int
    format : {"png", "jpeg"}
    """

    size: int = 256
    stride: int | None = None
    mpp: float | None = 0.5
    level: int | None = None
    min_tissue: float = 0.5
    label_rule: str = "center"
    center_size: int = 32
    max_per_class: int | None = None
    balance: bool = False
    seed: int = 0
    format: str = "png"

    def __post_init__(self) -> None:
        if self.size < 8 or (self.stride is not None and self.stride < 1):
            raise InputError(f"size must be >= 8 and stride >= 1, got {self.size}, {self.stride}")
        if self.mpp is None and self.level is None:
            raise InputError("give mpp, or a level for slides without mpp")
        if not 0 <= self.min_tissue <= 1:
            raise InputError(f"min_tissue must be in [0, 1], got {self.min_tissue}")
        _ = self.threshold  # validates label_rule
        if not 1 <= self.center_size <= self.size:
            raise InputError(f"center_size must be in [1, size], got {self.center_size}")
        if self.format not in ("png", "jpeg"):
            raise InputError(f"format must be png or jpeg, got {self.format!r}")

    @property
    def step(self) -> int:
        return self.stride or self.size

    @property
    def threshold(self) -> float | None:
        """The tumor fraction threshold, or None for the ``center`` rule."""
        if self.label_rule == "center":
            return None
        kind, _, value = self.label_rule.partition(":")
        try:
            t = float(value)
        except ValueError:
            t = -1.0
        if kind != "fraction" or not 0 < t <= 1:
            raise InputError(f"label rule must be 'center' or 'fraction:T' with 0 < T <= 1, got {self.label_rule!r}")
        return t


_PER_PATCH = ("x", "y", "labels", "tissue_fraction", "tumor_fraction")


@dataclass(frozen=True)
class PatchPlan:
    """The patches to cut from one slide, with their labels. Arrays are ``(N,)``."""

    slide_path: str
    slide_id: str
    x: np.ndarray  # int64 level-0 corner
    y: np.ndarray
    labels: np.ndarray  # "tumor" / "normal"
    tissue_fraction: np.ndarray
    tumor_fraction: np.ndarray
    read_level: int
    read_downsample: float
    box: float  # level-0 px per patch side
    size: int
    mpp: float | None
    tag: str  # "0.5mpp" or "L2", in file names
    candidates: int = 0  # grid patches on tissue, before labelling
    uncertain: int = 0
    sampled_out: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def counts(self) -> dict[str, int]:
        return {TUMOR: int((self.labels == TUMOR).sum()), NORMAL: int((self.labels == NORMAL).sum())}

    def take(self, keep: np.ndarray) -> PatchPlan:
        """The same plan with only the patches ``keep`` selects (a boolean mask or indices)."""
        return replace(self, **{name: getattr(self, name)[keep] for name in _PER_PATCH})

    def filename(self, i: int, suffix: str) -> str:
        return f"{self.labels[i]}/{self.slide_id}_{self.x[i]}_{self.y[i]}_{self.tag}{suffix}"


def _patch_tumor(annotations: Sequence[Annotation], x: float, y: float, box: float, size: int) -> np.ndarray:
    """``(size, size) bool``: which patch pixels have their centre in tumor."""
    x1, y1 = x + box, y + box
    near = []
    for a in annotations:
        lo, hi = a.exterior.min(axis=0), a.exterior.max(axis=0)
        if lo[0] < x1 and hi[0] > x and lo[1] < y1 and hi[1] > y:
            near.append(a)
    if not near:
        return np.zeros((size, size), bool)
    scale = box / size
    origin = np.array([x, y])
    moved = [Annotation((a.exterior - origin) / scale, a.label, tuple((h - origin) / scale for h in a.holes))
             for a in near]
    return rasterize(moved, (size, size))


def plan_patches(slide: Slide, spec: PatchSpec, *, tissue_mask: np.ndarray, tissue_downsample: float,
                 annotations: Sequence[Annotation] = ()) -> PatchPlan:
    """Lay the grid over the tissue and label every patch.

    Parameters
    ----------
    slide : Slide
    spec : PatchSpec
    tissue_mask : (H, W) bool ndarray
        At ``tissue_downsample`` level-0 px per pixel.
    annotations : sequence of Annotation
        Tumor and exclusion polygons; none means an all-normal slide.

    Returns
    -------
    PatchPlan
    """
    if spec.mpp is not None:
        if not slide.mpp:
            raise InputError(f"{slide.path}: the slide has no mpp; give a level instead of mpp")
        scale = spec.mpp / slide.mean_mpp
        if scale < 0.99:
            raise InputError(f"{slide.path}: the slide's {slide.mean_mpp:g} µm/px is coarser than the "
                             f"requested {spec.mpp:g} µm/px; patches are never upsampled")
        level = slide.best_level_for_downsample(scale * 1.001)
        tag = f"{spec.mpp:g}mpp"
    else:
        if not 0 <= spec.level < slide.level_count:
            raise InputError(f"{slide.path}: no level {spec.level} (it has {slide.level_count})")
        level = spec.level
        scale = slide.level_downsamples[level]
        tag = f"L{level}"
    box = spec.size * scale
    step = spec.step * scale
    w0, h0 = slide.dimensions
    xs = np.arange(0, w0 - box + 1e-6, step)
    ys = np.arange(0, h0 - box + 1e-6, step)
    gx, gy = (np.round(g).astype(np.int64).ravel() for g in np.meshgrid(xs, ys))
    tissue = box_fraction(integral_image(np.asarray(tissue_mask, bool)), tissue_downsample, gx, gy, box)
    on = tissue >= spec.min_tissue if spec.min_tissue > 0 else np.ones(len(gx), bool)
    gx, gy, tissue = gx[on], gy[on], tissue[on]

    tumor_fraction = np.zeros(len(gx))
    centre = np.zeros(len(gx), bool)
    tumors = [a for a in annotations if a.label == TUMOR]
    if tumors:
        # Coarse pass: which patches might touch tumor (mask dilated by a pixel).
        d = max(1.0, min(16.0, box / 16))
        coarse = rasterize(annotations, (math.ceil(h0 / d), math.ceil(w0 / d)), downsample=d)
        from scipy import ndimage

        coarse = ndimage.binary_dilation(coarse, iterations=2)
        maybe = np.nonzero(box_fraction(integral_image(coarse), d, gx - d, gy - d, box + 2 * d) > 0)[0]
        # Exact pass at patch resolution, only where tumor may be.
        c0 = (spec.size - spec.center_size) // 2
        for i in maybe:
            px = _patch_tumor(annotations, float(gx[i]), float(gy[i]), box, spec.size)
            tumor_fraction[i] = px.mean()
            centre[i] = px[c0:c0 + spec.center_size, c0:c0 + spec.center_size].any()
    threshold = spec.threshold
    is_tumor = centre if threshold is None else tumor_fraction >= threshold
    is_normal = tumor_fraction == 0
    keep = is_tumor | is_normal
    labels = np.where(is_tumor, TUMOR, NORMAL).astype(object)
    plan = PatchPlan(slide.path, slide.slide_id, gx[keep], gy[keep], labels[keep], tissue[keep],
                     tumor_fraction[keep], level, slide.level_downsamples[level], box, spec.size, spec.mpp, tag,
                     candidates=len(gx), uncertain=int((~keep).sum()))
    return _sample(plan, spec)


def _sample(plan: PatchPlan, spec: PatchSpec) -> PatchPlan:
    """Seeded per-class caps (and balancing), keeping grid order."""
    counts = plan.counts()
    caps = {k: v for k, v in counts.items()}
    if spec.balance and counts[TUMOR]:
        caps[NORMAL] = min(caps[NORMAL], counts[TUMOR])
    if spec.max_per_class is not None:
        caps = {k: min(v, spec.max_per_class) for k, v in caps.items()}
    if caps == counts:
        return plan
    # Seed from the spec and the slide's name, so each slide samples differently
    # but reproducibly whatever the order slides are given in.
    rng = np.random.default_rng([spec.seed, *plan.slide_id.encode()])
    keep = np.zeros(len(plan), bool)
    for label, cap in caps.items():
        idx = np.nonzero(plan.labels == label)[0]
        keep[np.sort(rng.choice(idx, cap, replace=False)) if cap < len(idx) else idx] = True
    return replace(plan.take(keep), sampled_out={k: counts[k] - caps[k] for k in counts})


def plan_for_slide(slide: Slide, spec: PatchSpec, *, annotations: str | os.PathLike | None = None,
                   mask: str | os.PathLike | None = None) -> PatchPlan:
    """Plan one slide from files: its annotations (none: all normal) and saved mask (none: detect)."""
    from ..annotations import check_within, read_annotations
    from ..tissue import tissue_for

    tissue = tissue_for(slide, mask)
    anns = read_annotations(annotations) if annotations is not None else []
    if anns:
        check_within(anns, slide.dimensions, source=str(annotations))
    return plan_patches(slide, spec, tissue_mask=tissue.mask, tissue_downsample=tissue.downsample, annotations=anns)
