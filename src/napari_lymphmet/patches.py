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

Uncertain patches are skipped and counted, never called normal.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import atomic_path
from .annotations import TUMOR, Annotation, rasterize
from .errors import InputError
from .slide import Slide

__all__ = ["CSV_COLUMNS", "ExportResult", "PatchPlan", "PatchSpec", "companion", "export_patches",
           "iter_export", "plan_for_slide", "plan_patches", "read_row_boxes"]

NORMAL = "normal"
UNCERTAIN = "uncertain"
CSV_COLUMNS = ["file", "slide_path", "slide_id", "x", "y", "read_level", "size", "mpp", "label",
               "tissue_fraction", "tumor_fraction"]


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
            raise ValueError(f"size must be >= 8 and stride >= 1, got {self.size}, {self.stride}")
        if self.mpp is None and self.level is None:
            raise ValueError("give mpp, or a level for slides without mpp")
        if not 0 <= self.min_tissue <= 1:
            raise ValueError(f"min_tissue must be in [0, 1], got {self.min_tissue}")
        _ = self.threshold  # validates label_rule
        if not 1 <= self.center_size <= self.size:
            raise ValueError(f"center_size must be in [1, size], got {self.center_size}")
        if self.format not in ("png", "jpeg"):
            raise ValueError(f"format must be png or jpeg, got {self.format!r}")

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
            raise ValueError(f"label rule must be 'center' or 'fraction:T' with 0 < T <= 1, got {self.label_rule!r}")
        return t


@dataclass
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

    def filename(self, i: int, suffix: str) -> str:
        return f"{self.labels[i]}/{self.slide_id}_{self.x[i]}_{self.y[i]}_{self.tag}{suffix}"


def _integral(mask: np.ndarray) -> np.ndarray:
    return np.pad(np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1), ((1, 0), (1, 0)))


def _box_fraction(integral: np.ndarray, downsample: float, x: np.ndarray, y: np.ndarray,
                  box: float) -> np.ndarray:
    """Fraction of set mask pixels whose centres fall in each level-0 box."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    c0 = np.clip(np.ceil(x / downsample - 0.5), 0, w).astype(np.int64)
    c1 = np.clip(np.ceil((x + box) / downsample - 0.5), 0, w).astype(np.int64)
    r0 = np.clip(np.ceil(y / downsample - 0.5), 0, h).astype(np.int64)
    r1 = np.clip(np.ceil((y + box) / downsample - 0.5), 0, h).astype(np.int64)
    # A box smaller than one mask pixel takes the pixel under its centre.
    small = (c1 <= c0) | (r1 <= r0)
    cc = np.clip(((x + box / 2) / downsample).astype(np.int64), 0, w - 1)
    rr = np.clip(((y + box / 2) / downsample).astype(np.int64), 0, h - 1)
    c0, c1 = np.where(small, cc, c0), np.where(small, cc + 1, c1)
    r0, r1 = np.where(small, rr, r0), np.where(small, rr + 1, r1)
    total = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    return total / np.maximum((r1 - r0) * (c1 - c0), 1)


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
        scale = spec.mpp / float(np.mean(slide.mpp))
        if scale < 0.99:
            raise InputError(f"{slide.path}: the slide's {np.mean(slide.mpp):g} µm/px is coarser than the "
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
    tissue = _box_fraction(_integral(np.asarray(tissue_mask, bool)), tissue_downsample, gx, gy, box)
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
        maybe = np.nonzero(_box_fraction(_integral(coarse), d, gx - d, gy - d, box + 2 * d) > 0)[0]
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
    plan.sampled_out = {k: counts[k] - caps[k] for k in counts}
    for name in ("x", "y", "labels", "tissue_fraction", "tumor_fraction"):
        setattr(plan, name, getattr(plan, name)[keep])
    return plan


def companion(slide_path: str | os.PathLike, given: str | os.PathLike | None,
              suffixes: Sequence[str]) -> Path | None:
    """A slide's own file among ``given``: the file itself, or ``<stem><suffix>`` in a folder."""
    if given is None:
        return None
    given = Path(given)
    if not given.is_dir():
        return given
    stem = Path(slide_path).stem
    for suffix in suffixes:
        if (given / f"{stem}{suffix}").exists():
            return given / f"{stem}{suffix}"
    return None


def plan_for_slide(slide: Slide, spec: PatchSpec, *, annotations: str | os.PathLike | None = None,
                   mask: str | os.PathLike | None = None) -> PatchPlan:
    """Plan one slide from files: its annotations (none: all normal) and saved mask (none: detect)."""
    from .annotations import check_within, read_annotations
    from .masks import load_mask
    from .tissue import tissue_mask

    if mask is not None:
        saved = load_mask(mask)
        w, h = slide.dimensions
        expected = (math.ceil(h / saved.downsample), math.ceil(w / saved.downsample))
        if any(abs(a - b) > 1 for a, b in zip(saved.mask.shape, expected)):
            raise InputError(f"{mask}: a {saved.mask.shape} mask at downsample {saved.downsample:g} "
                             f"does not fit {slide.path} ({w} × {h})")
        tissue, downsample = saved.mask, saved.downsample
    else:
        result = tissue_mask(slide)
        tissue, downsample = result.mask, result.downsample
    anns = read_annotations(annotations) if annotations is not None else []
    if anns:
        check_within(anns, slide.dimensions, source=str(annotations))
    return plan_patches(slide, spec, tissue_mask=tissue, tissue_downsample=downsample, annotations=anns)


def read_row_boxes(slide: Slide, level: int, xs: Sequence[float], y: float, box: float,
                   size: int) -> list[np.ndarray]:
    """Square level-0 boxes on one row, read with one region read, as ``(size, size, 3) uint8``.

    Reading the span once decodes each slide tile once, however many boxes
    share it. Boxes are read at ``level`` and resized to ``size`` only when
    that level does not give exactly ``size`` px (integer factors by box
    averaging, others by Lanczos). Parts outside the slide are white.
    """
    ds = slide.level_downsamples[level]
    n = int(round(box / ds))  # box side in read-level px
    starts = [int(round(x / ds)) for x in xs]
    y0 = int(round(y / ds))
    region = slide.read_level_region(level, (starts[0], y0), (starts[-1] - starts[0] + n, n))
    out = []
    for start in starts:
        patch = region[:, start - starts[0]:start - starts[0] + n]
        if n != size:
            from PIL import Image

            image = Image.fromarray(np.ascontiguousarray(patch))
            factor = n / size
            if abs(factor - round(factor)) < 1e-9:
                image = image.reduce(int(round(factor)))
            else:
                image = image.resize((size, size), Image.Resampling.LANCZOS)
            patch = np.asarray(image)
        out.append(np.ascontiguousarray(patch))
    return out


def _read_run(slide: Slide, plan: PatchPlan, run: Sequence[int]) -> list[np.ndarray]:
    return read_row_boxes(slide, plan.read_level, plan.x[run], plan.y[run[0]], plan.box, plan.size)


def _runs(plan: PatchPlan, max_len: int = 16) -> list[list[int]]:
    """Consecutive patches of one grid row, in order, at most ``max_len`` long."""
    runs: list[list[int]] = []
    for i in range(len(plan)):
        if runs and len(runs[-1]) < max_len and plan.y[i] == plan.y[runs[-1][-1]] \
                and plan.x[i] - plan.x[runs[-1][-1]] <= 2 * plan.box:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _encode(patch: np.ndarray, fmt: str) -> bytes:
    import imagecodecs

    if fmt == "jpeg":
        return imagecodecs.jpeg8_encode(patch, level=95)
    # zlib level 1 with the SUB filter: 3-5× faster than PIL's default, a
    # file about a quarter larger.
    return imagecodecs.png_encode(patch, level=1, filter=16)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class ExportResult:
    """What :func:`export_patches` did."""

    written: int
    skipped_existing: int
    counts: dict[str, int]
    uncertain: int
    seconds: float
    complete: bool
    csv: Path

    @property
    def patches_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


def iter_export(
    plans: Sequence[tuple[Slide, PatchPlan]],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "png",
    workers: int | None = None,
    summary: dict | None = None,
) -> Iterator[tuple[int, int]]:
    """Write every planned patch, yielding ``(done, total)`` as it goes.

    Resumes: patch files already there are skipped. Each file is written
    under a temporary name and renamed, so an interrupted export leaves only
    whole files. Closing the generator (a cancel) lets the patches in flight
    finish and drops the rest. ``patches.csv``, one row per patch on disk, is
    written last, atomically, however the export ends. ``summary`` (a dict)
    receives the :class:`ExportResult` fields.
    """
    out = Path(out_dir)
    suffix = ".png" if fmt == "png" else ".jpg"
    for label in (TUMOR, NORMAL):
        (out / label).mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*/.*.partial"):  # left by a killed process
        stale.unlink(missing_ok=True)
    jobs = []
    skipped = 0
    for slide, plan in plans:
        todo = np.array([i for i in range(len(plan)) if not (out / plan.filename(i, suffix)).exists()], np.int64)
        skipped += len(plan) - len(todo)
        sub = PatchPlan(**{**plan.__dict__})
        for name in ("x", "y", "labels", "tissue_fraction", "tumor_fraction"):
            setattr(sub, name, getattr(plan, name)[todo])
        jobs += [(slide, sub, run) for run in _runs(sub)]
    total = sum(len(run) for _, _, run in jobs)
    written: list[int] = []
    start = time.monotonic()

    def work(job) -> int:
        slide, plan, run = job
        for i, patch in zip(run, _read_run(slide, plan, run)):
            _write_atomic(out / plan.filename(i, suffix), _encode(patch, fmt))
            written.append(1)
        return len(run)

    workers = workers or min(8, (os.cpu_count() or 1) + 1)
    done = 0
    pending: deque = deque()
    try:
        with ThreadPoolExecutor(workers) as pool:
            try:
                # Bounded submission keeps memory flat however many patches there are.
                for job in jobs:
                    pending.append(pool.submit(work, job))
                    if len(pending) >= workers * 4:
                        done += pending.popleft().result()
                        yield done, total
                while pending:
                    done += pending.popleft().result()
                    yield done, total
            finally:
                for future in pending:
                    future.cancel()
    finally:
        counts = _write_csv(out, plans, suffix)
        if summary is not None:
            summary.update(written=len(written), skipped_existing=skipped, counts=counts,
                           uncertain=sum(p.uncertain for _, p in plans), seconds=time.monotonic() - start,
                           complete=len(written) == total, csv=out / "patches.csv")


def export_patches(
    plans: Sequence[tuple[Slide, PatchPlan]],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "png",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ExportResult:
    """Run :func:`iter_export` to the end, or until ``cancel`` is set."""
    summary: dict = {}
    steps = iter_export(plans, out_dir, fmt=fmt, workers=workers, summary=summary)
    try:
        for done, total in steps:
            if progress is not None:
                progress(done, total)
            if cancel is not None and cancel.is_set():
                break
    finally:
        steps.close()
    return ExportResult(**summary)


def _write_csv(out: Path, plans: Sequence[tuple[Slide, PatchPlan]], suffix: str) -> dict[str, int]:
    """Rows for every planned patch on disk, after the kept rows of other slides.

    Exporting slides one call at a time into one folder therefore builds up
    a single ``patches.csv``; a slide exported again replaces its own rows.
    """
    counts = {TUMOR: 0, NORMAL: 0}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    current = {plan.slide_id for _, plan in plans}
    existing = out / "patches.csv"
    if existing.exists():
        with existing.open() as f:
            for row in csv.DictReader(f):
                if row.get("slide_id") not in current and (out / row.get("file", "")).exists():
                    writer.writerow([row.get(c, "") for c in CSV_COLUMNS])
    for _, plan in plans:
        for i in range(len(plan)):
            name = plan.filename(i, suffix)
            if not (out / name).exists():
                continue
            counts[plan.labels[i]] += 1
            writer.writerow([name, plan.slide_path, plan.slide_id, int(plan.x[i]), int(plan.y[i]),
                             plan.read_level, plan.size, "" if plan.mpp is None else plan.mpp, plan.labels[i],
                             round(float(plan.tissue_fraction[i]), 4), round(float(plan.tumor_fraction[i]), 4)])
    with atomic_path(out / "patches.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    return counts

