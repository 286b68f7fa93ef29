"""Tissue detection on a low-resolution view of a slide.

H&E tissue is stained, glass is not, so the detector thresholds HSV
saturation (Otsu by default), then removes what is stained but not tissue:
black marker and ink (too dark), blue and green pen (their hues lie far from
haematoxylin and eosin), and small debris (too small). Fat inside the node is
pale and unsaturated, so holes are filled rather than left as glass.

Everything here is a pure function of an RGB array, plus
:func:`working_image`, which reads the pyramid level nearest the target
resolution and nothing finer."""


from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

from ..wsi import READ_BUDGET_PIXELS, Slide
from .morphology import box_sum, dilate, erode, fill_holes, remove_small

__all__ = ['TissueChannels', 'TissueParams', 'TissueResult', 'TissueWarning', 'detect_tissue', 'params_dict',
           'tissue_channels', 'tissue_mask', 'working_image']


class TissueWarning(UserWarning):
    """The mask is empty or suspicious, but that is an answer, not an error."""


@dataclass(frozen=True)
class TissueParams:
    """Tissue detection parameters.

    Attributes
    ----------
    target_mpp : float
        Working resolution, µm per mask pixel, when the slide has an mpp.
    downsample : float or None
        Level-0 px per mask px; overrides ``target_mpp``. When neither
        applies (no mpp), the working image is about ``long_side`` px.
    long_side : int
        Long side of the working image for slides without mpp.
    saturation : float or None
        HSV saturation threshold in [0, 1]; ``None`` picks it by Otsu,
        clamped to ``otsu_range``.
    otsu_range : (float, float)
        Otsu's threshold is clamped into this: glass-only images must not
        split their noise, tissue-only images must not split their stain.
    dark : int
        Pixels whose brightest channel is below this are marker or ink.
    bright : int
        Pixels whose darkest channel is above this are glass.
    reject_pen : bool
        Drop saturated pixels with blue-green hues (``pen_hues``, degrees).
    median : int
        Side of the majority (binary median) filter, in mask px; 1 disables.
    close : int
        Radius of the morphological closing, in mask px; 0 disables.
    fill_holes : bool
        Fill enclosed holes (fat, sinuses, tears).
    min_area_um2 : float
        Objects and (when ``fill_holes`` is off) holes smaller than this are
        removed; used when the mask's mpp is known.
    min_area_px : int
        The same, in mask px, for slides without mpp.
    """

    target_mpp: float = 8.0
    downsample: float | None = None
    long_side: int = 3000
    saturation: float | None = None
    otsu_range: tuple[float, float] = (0.04, 0.15)
    dark: int = 50
    bright: int = 235
    reject_pen: bool = True
    pen_hues: tuple[float, float] = (70.0, 255.0)
    median: int = 5
    close: int = 2
    fill_holes: bool = True
    min_area_um2: float = 20_000.0
    min_area_px: int = 64

    def __post_init__(self) -> None:
        if self.saturation is not None and not 0 <= self.saturation <= 1:
            raise InputError(f"saturation must be in [0, 1] or auto, got {self.saturation}")
        if self.downsample is not None and self.downsample < 1:
            raise InputError(f"downsample must be >= 1, got {self.downsample}")
        if self.target_mpp <= 0:
            raise InputError(f"target mpp must be > 0, got {self.target_mpp}")
        if self.median < 1 or self.close < 0 or self.min_area_um2 < 0 or self.min_area_px < 0:
            raise InputError("median must be >= 1; close and the minimum areas >= 0")


@dataclass(frozen=True)
class TissueChannels:
    """Per-pixel quantities of a working image that every detection reuses."""

    saturation: np.ndarray  # (H, W) float32 in [0, 1]
    hue: np.ndarray  # (H, W) float32, degrees
    brightest: np.ndarray  # (H, W) uint8, max over RGB
    darkest: np.ndarray  # (H, W) uint8, min over RGB
    otsu: float  # Otsu threshold of saturation


@dataclass(frozen=True)
class TissueResult:
    """A tissue mask and how it was made.

    Attributes
    ----------
    mask : (H, W) bool ndarray
    downsample : float
        Level-0 px per mask px.
    thresholds : dict
        The thresholds actually applied (``saturation``, ``otsu``, ...).
    mpp : float or None
        µm per mask px.
    """

    mask: np.ndarray
    downsample: float
    thresholds: dict[str, Any] = field(default_factory=dict)
    mpp: float | None = None

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def working_image(slide: Slide, params: TissueParams = TissueParams()) -> tuple[np.ndarray, float]:
    """Read the slide at the working resolution.

    Reads the finest pyramid level no finer than needed, then block-averages
    by a whole factor to reach the target, in bands, so memory stays bounded
    even for a single-level slide.

    Returns
    -------
    rgb : (H, W, 3) uint8 ndarray
    downsample : float
        Level-0 px per pixel of ``rgb``.
    """
    target = params.downsample
    if target is None:
        target = params.target_mpp / slide.mean_mpp if slide.mpp \
            else max(slide.dimensions) / params.long_side
    target = max(1.0, target)
    level = slide.best_level_for_downsample(target)
    level_ds = slide.level_downsamples[level]
    factor = max(1, int(round(target / level_ds)))
    lw, lh = slide.level_dimensions[level]
    if factor == 1:
        return slide.read_level_region(level, (0, 0), (lw, lh)), level_ds
    out_h, out_w = -(-lh // factor), -(-lw // factor)
    out = np.empty((out_h, out_w, 3), np.uint8)
    band = max(1, min(4096, READ_BUDGET_PIXELS // (out_w * factor)) // factor) * factor  # bounded memory
    for y in range(0, out_h * factor, band):
        rows = slide.read_level_region(level, (0, y), (out_w * factor, band))  # white past the edge
        small = rows.reshape(band // factor, factor, out_w, factor, 3).mean(axis=(1, 3), dtype=np.float32)
        n = min(band // factor, out_h - y // factor)
        out[y // factor: y // factor + n] = np.round(small[:n])
    return out, level_ds * factor


def tissue_channels(rgb: np.ndarray) -> TissueChannels:
    """HSV saturation, hue, brightest and darkest channel, and Otsu's threshold.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 ndarray
    """
    from skimage.filters import threshold_otsu

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    rgb = rgb[..., :3]
    hi = rgb.max(axis=2)
    lo = rgb.min(axis=2)
    span = (hi.astype(np.float32) - lo)
    saturation = np.divide(span, hi, out=np.zeros_like(span), where=hi > 0)
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    safe = np.where(span > 0, span, 1)
    hue = np.where(hi == rgb[..., 0], (g - b) / safe % 6,
                   np.where(hi == rgb[..., 1], (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    hue = np.where(span > 0, hue, 0).astype(np.float32)
    sample = saturation[::max(1, saturation.shape[0] // 1024), ::max(1, saturation.shape[1] // 1024)]
    otsu = float(threshold_otsu(sample)) if np.ptp(sample) > 0 else 1.0
    return TissueChannels(saturation, hue, hi, lo, otsu)


def detect_tissue(image: np.ndarray | TissueChannels, params: TissueParams = TissueParams(), *,
                  mpp: float | None = None, downsample: float = 1.0, source: str = "image") -> TissueResult:
    """Detect tissue in a low-resolution RGB image.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray or TissueChannels
        The working image, or its precomputed channels (faster when only
        the parameters change, as in the live preview).
    params : TissueParams
    mpp : float, optional
        µm per pixel of ``image``, to convert the minimum areas.
    downsample : float, optional
        Level-0 px per pixel of ``image``, recorded in the result.
    source : str, optional
        Named in the warning when the mask comes out empty.

    Returns
    -------
    TissueResult
    """
    ch = image if isinstance(image, TissueChannels) else tissue_channels(image)
    lo_t, hi_t = params.otsu_range
    threshold = params.saturation if params.saturation is not None else float(np.clip(ch.otsu, lo_t, hi_t))
    mask = (ch.saturation > threshold) & (ch.brightest >= params.dark) & (ch.darkest <= params.bright)
    if params.reject_pen:
        h0, h1 = params.pen_hues
        mask &= ~((ch.hue >= h0) & (ch.hue <= h1))
    if params.median > 1:
        # A binary median is a majority vote: a box sum above half the box.
        mask = box_sum(mask, params.median) * 2 > params.median**2
    if params.close > 0:
        # Closing with a square: dilate, then erode, each separable.
        mask = erode(dilate(mask, params.close), params.close)
    min_px = params.min_area_um2 / mpp**2 if mpp else params.min_area_px
    if params.fill_holes:
        mask = fill_holes(mask)
    elif min_px > 0:
        mask = ~remove_small(~mask, min_px)
    if min_px > 0:
        mask = remove_small(mask, min_px)
    thresholds = {"saturation": round(threshold, 4), "otsu": round(ch.otsu, 4),
                  "dark": params.dark, "bright": params.bright, "min_area_px": round(float(min_px), 1)}
    if not mask.any():
        warnings.warn(TissueWarning(f"{source}: no tissue found (saturation threshold {threshold:.3f}); "
                                    f"the mask is empty"), stacklevel=2)
    return TissueResult(mask, float(downsample), thresholds, mpp)


def tissue_mask(slide: Slide, params: TissueParams = TissueParams()) -> TissueResult:
    """Read the working level of ``slide`` and detect its tissue."""
    rgb, downsample = working_image(slide, params)
    mpp = slide.mean_mpp * downsample if slide.mpp else None
    return detect_tissue(rgb, params, mpp=mpp, downsample=downsample, source=slide.path)


def params_dict(params: TissueParams) -> dict[str, Any]:
    """The parameters as plain JSON values, for sidecars and summaries."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()}
