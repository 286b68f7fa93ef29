"""The tumor-probability colours, one definition for napari and matplotlib, and the legend that explains them.

Pathologists read a heatmap over the tissue, so the colours must not hide
it: cells below ``HEATMAP_FLOOR`` (glass, and tissue the model calls
clearly normal) are fully transparent, and above it the opacity rises with
the probability. The hues follow viridis, a perceptual, colour-blind-safe
ramp whose blue-green-yellow stands apart from the pink and purple of H&E.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["HEATMAP_FLOOR", "draw_heatmap_legend", "heatmap_rgba", "mark_threshold"]

HEATMAP_FLOOR = 0.2  # probabilities at or below it are not drawn
_ALPHA = (0.12, 0.85)  # opacity just above the floor, and at probability 1: faint doubt, solid tumor
_HUES = (0.15, 1.0)  # the part of viridis used: its darkest purple would read as haematoxylin


def heatmap_rgba(n: int = 256) -> np.ndarray:
    """``(n, 4)`` RGBA in [0, 1] for probabilities ``linspace(0, 1, n)``: transparent up to the floor."""
    from matplotlib import colormaps

    p = np.linspace(0.0, 1.0, n)
    t = np.clip((p - HEATMAP_FLOOR) / (1 - HEATMAP_FLOOR), 0, 1)
    rgba = colormaps["viridis"](_HUES[0] + (_HUES[1] - _HUES[0]) * t)
    above = p > HEATMAP_FLOOR
    rgba[:, 3] = np.where(above, _ALPHA[0] + (_ALPHA[1] - _ALPHA[0]) * (p - HEATMAP_FLOOR) / (1 - HEATMAP_FLOOR), 0)
    return rgba


def draw_heatmap_legend(figure: Figure, threshold: float | None = None) -> Figure:
    """A horizontal colour bar of tumor probability 0–1 over a tissue-pink ground, the threshold marked.

    The ground shows what the overlay does to the slide: left of the floor
    nothing changes; the marked threshold is where detections start.
    """
    from matplotlib.colors import ListedColormap

    figure.clear()
    ax = figure.add_subplot()
    rgba = heatmap_rgba()
    pink = np.array([0.93, 0.76, 0.86])
    shown = rgba[:, :3] * rgba[:, 3:] + pink * (1 - rgba[:, 3:])  # as drawn over tissue
    ax.imshow(shown[None], aspect="auto", extent=(0, 1, 0, 1), cmap=ListedColormap(shown))
    ax.set_yticks([])
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlim(0, 1)
    ax.tick_params(labelsize=8)
    ax.axvline(HEATMAP_FLOOR, color="0.4", lw=0.8, ls=":")
    label = "tumor probability (left of the dotted line: not drawn)"
    # Drawn always (hidden without a threshold), so mark_threshold moves them without laying the figure out again.
    ax.axvline(0.5, color="#d00000", lw=2, gid="threshold-line")
    ax.text(0.5, 1.05, "", color="#d00000", fontsize=8, ha="center", va="bottom",
            transform=ax.get_xaxis_transform(), gid="threshold-text")
    ax.set_xlabel(label, fontsize=8)
    mark_threshold(figure, threshold)
    return figure


def mark_threshold(figure: Figure, threshold: float | None) -> None:
    """Move the legend's threshold line and label to ``threshold`` (hide them for ``None``): a few
    artists changed, no new layout, so a window showing the legend redraws it in milliseconds."""
    shown = threshold is not None and bool(np.isfinite(threshold))
    for artist in figure.findobj(lambda a: a.get_gid() in ("threshold-line", "threshold-text")):
        artist.set_visible(shown)
        if not shown:
            continue
        if artist.get_gid() == "threshold-line":
            artist.set_xdata([threshold, threshold])
        else:
            artist.set_x(threshold)
            artist.set_text(f"threshold {threshold:.2f}")
