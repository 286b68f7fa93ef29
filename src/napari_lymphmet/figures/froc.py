"""The CAMELYON16 FROC curve."""


from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .core import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["froc_figure"]

_LOW, _HIGH = 0.125, 16.0


def froc_figure(fps: np.ndarray, sens: np.ndarray, *, operating_points: Mapping[float, float] | None = None,
                score: float | None = None, all_thresholds: tuple[np.ndarray, np.ndarray] | None = None) -> Figure:
    """Lesion sensitivity against mean false positives per slide.

    Parameters
    ----------
    fps, sens : (N,) float arrays
        The curve, as :func:`napari_lymphmet.evaluation.froc` returns it.
    operating_points : mapping of float to float, optional
        Sensitivity at each official FP rate (1/4 … 8), marked on the curve.
    score : float, optional
        The FROC score, shown in the title.
    all_thresholds : (fps, sens), optional
        The curve without the official script's skipped lowest threshold,
        drawn dashed when it differs.

    Returns
    -------
    Figure
        Log-scaled x from 1/8 to 16 FP per slide, sensitivity 0–1 on y.
    """
    figure = new_figure(5.2, 3.8)
    ax = figure.add_subplot()
    _curve(ax, fps, sens, label="FROC (official thresholds)", colour="#1f5fbf", style="-")
    if all_thresholds is not None and not _same(all_thresholds, (fps, sens)):
        _curve(ax, *all_thresholds, label="all thresholds", colour="#7f7f7f", style="--")
    if operating_points:
        ax.plot(list(operating_points), list(operating_points.values()), "o", color="#d0402a",
                label="official operating points", zorder=3)
    ax.set_xscale("log", base=2)
    ax.set_xlim(_LOW, _HIGH)
    ax.set_xticks([0.125, 0.25, 0.5, 1, 2, 4, 8, 16], ["1/8", "1/4", "1/2", "1", "2", "4", "8", "16"])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean false positives per slide")
    ax.set_ylabel("lesion sensitivity")
    ax.grid(True, which="major", color="#e4e4e4")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("FROC" + (f" = {score:.3f}" if score is not None else ""))
    return figure


def _curve(ax, fps: np.ndarray, sens: np.ndarray, *, label: str, colour: str, style: str) -> None:
    fps, sens = np.asarray(fps, float), np.asarray(sens, float)
    if not len(fps):
        return
    order = np.lexsort((sens, fps))
    # Straight lines between the points, as the score interpolates them; 0 FP
    # cannot sit on a log axis, so it is drawn at the left edge.
    ax.plot(np.clip(fps[order], _LOW, _HIGH), sens[order], linestyle=style, color=colour, label=label)


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return all(np.shape(x) == np.shape(y) and np.allclose(x, y) for x, y in zip(a, b))
