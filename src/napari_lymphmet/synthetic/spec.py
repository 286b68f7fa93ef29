"""What a synthetic slide is made of: its spec, tissue classes and constants."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


__all__ = ["CAPSULE", "DUST", "FAT", "FOLD", "GENERATOR_VERSION", "GLASS", "LAYOUT_STEP", "NORMAL", "PEN",
           "SynthSpec", "TUMOR"]

GENERATOR_VERSION = 1  # bump whenever the same spec would render different pixels
# Tissue classes of the layout raster (uint8 codes), not annotation labels: those are annotations.Label.
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
            raise InputError(f"a synthetic slide needs at least 256 × 256 px, got {self.width} × {self.height}")
        if not 0.05 <= self.mpp <= 10:
            raise InputError(f"mpp must be between 0.05 and 10 µm/px, got {self.mpp}")
        if self.lesions < 0:
            raise InputError(f"lesions must be >= 0, got {self.lesions}")
        unknown = set(self.artefacts) - {"pen", "dust", "fold"}
        if unknown:
            raise InputError(f"unknown artefacts {sorted(unknown)}; choose from pen, dust, fold")
