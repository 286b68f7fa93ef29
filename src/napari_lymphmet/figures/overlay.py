"""The heatmap over a slide thumbnail, with a probability colour bar."""


from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .core import new_figure
from .heatmap import HEATMAP_FLOOR, heatmap_rgba

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["overlay_figure"]


def overlay_figure(thumbnail: np.ndarray, heatmap: np.ndarray, *, extent_um: tuple[float, float] | None = None,
                   heatmap_fraction: tuple[float, float] = (1.0, 1.0), title: str | None = None) -> Figure:
    """Tumor probability over the slide, colour bar 0–1 with ticks.

    Parameters
    ----------
    thumbnail : (H, W, 3 or 4) uint8
        The slide, downsampled.
    heatmap : (rows, cols) float
        Probabilities in [0, 1] covering the same area, in the viewer's
        colours (:func:`heatmap_rgba`): cells at or below ``HEATMAP_FLOOR``
        (off tissue, or clearly normal) are left transparent.
    extent_um : (width, height), optional
        The slide's size in µm, for axes in mm; without it the axes count
        thumbnail pixels.
    heatmap_fraction : (x, y)
        How far the heatmap reaches across the slide: its last cells may
        overhang the slide's edge (cols · stride ≥ width).
    """
    h, w = thumbnail.shape[:2]
    aspect = w / max(h, 1)
    figure = new_figure(min(9.0, 1.9 + 4.0 * aspect), 4.8)
    ax = figure.add_subplot()
    if extent_um is not None:
        extent = (0.0, extent_um[0] / 1000, extent_um[1] / 1000, 0.0)
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
    else:
        extent = (0.0, float(w), float(h), 0.0)
        ax.set_xlabel("x (thumbnail px)")
        ax.set_ylabel("y (thumbnail px)")
    ax.imshow(thumbnail[..., :3], extent=extent, interpolation="antialiased")
    from matplotlib.colors import ListedColormap

    colours = ListedColormap(heatmap_rgba())
    fx, fy = heatmap_fraction
    shown = ax.imshow(np.asarray(heatmap, np.float32), cmap=colours, vmin=0, vmax=1, interpolation="nearest",
                      extent=(0.0, extent[1] * fx, extent[2] * fy, 0.0))
    ax.set_xlim(0, extent[1])
    ax.set_ylim(extent[2], 0)
    bar = figure.colorbar(shown, ax=ax, fraction=0.05, pad=0.02, ticks=np.linspace(0, 1, 6))
    bar.solids.set_alpha(1)  # the bar shows the colours at full strength
    bar.ax.axhspan(0, HEATMAP_FLOOR, color="white", zorder=3)  # not drawn on the slide
    bar.set_label("tumor probability")
    if title:
        ax.set_title(title, usetex=False, parse_math=False)  # a slide's name is text, even "case $^$ 1"
    return figure
