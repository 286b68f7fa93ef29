"""What a slide is, as OpenSlide describes it: frozen metadata, read once at open."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["SlideInfo"]


def _float_property(props: Mapping[str, str], key: str) -> float | None:
    try:
        value = float(props[key])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


@dataclass(frozen=True)
class SlideInfo:
    """A slide's metadata: levels, resolution, vendor and every OpenSlide property.

    Attributes
    ----------
    path : str
    properties : Mapping[str, str]
        OpenSlide's properties, read-only.
    level_dimensions : tuple of (int, int)
        ``(width, height)`` of each level.
    level_downsamples : tuple of float
    associated_images : tuple of str
        Names of the label, macro, thumbnail and other associated images.
    """

    path: str
    properties: Mapping[str, str]
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    associated_images: tuple[str, ...]

    @classmethod
    def from_openslide(cls, path: str, osr: Any) -> SlideInfo:
        """Read everything once from an open ``openslide.OpenSlide``."""
        return cls(path=path, properties=MappingProxyType(dict(osr.properties)),
                   level_dimensions=tuple((int(w), int(h)) for w, h in osr.level_dimensions),
                   level_downsamples=tuple(float(d) for d in osr.level_downsamples),
                   associated_images=tuple(osr.associated_images))

    @property
    def vendor(self) -> str | None:
        return self.properties.get("openslide.vendor")

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        return self.level_dimensions[0]

    @property
    def mpp(self) -> tuple[float, float] | None:
        """``(x, y)`` microns per level-0 pixel, or ``None`` when unknown."""
        x = _float_property(self.properties, "openslide.mpp-x")
        y = _float_property(self.properties, "openslide.mpp-y")
        if x is None and y is None:
            return None
        return (x or y, y or x)

    @property
    def mean_mpp(self) -> float | None:
        """The mean of the x and y mpp: what every grid and mask uses; ``None`` when unknown."""
        mpp = self.mpp
        return None if mpp is None else (mpp[0] + mpp[1]) / 2

    @property
    def objective_power(self) -> float | None:
        return _float_property(self.properties, "openslide.objective-power")

    @property
    def bounds(self) -> tuple[int, int, int, int] | None:
        """``(x, y, w, h)`` of the scanned area in level-0 pixels, if the slide says."""
        keys = [f"openslide.bounds-{k}" for k in ("x", "y", "width", "height")]
        if not all(k in self.properties for k in keys):
            return None
        return tuple(int(self.properties[k]) for k in keys)

    @property
    def slide_id(self) -> str:
        """The file name without its extension, as CAMELYON names slides."""
        return Path(self.path).stem

    def native_tile(self, level: int, default: int) -> tuple[int, int]:
        """``(th, tw)`` of ``level``'s stored tiles, or ``default`` square when it has none."""
        tw = self.properties.get(f"openslide.level[{level}].tile-width")
        th = self.properties.get(f"openslide.level[{level}].tile-height")
        if tw and th and int(tw) > 0 and int(th) > 0:
            return int(th), int(tw)
        return default, default
