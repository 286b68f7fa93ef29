"""A figure on the Agg canvas, and its PNG."""


from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["axes_box", "new_figure", "png_bytes", "save_png"]

DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """A ``width × height`` inch figure on its own Agg canvas (thread-safe; pyplot is never touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_png(figure: Figure, path: str | os.PathLike) -> Path:
    """Write the figure as a PNG, atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(figure))
    return path


def axes_box(figure: Figure, index: int = 0) -> tuple[int, int, int, int]:
    """Where axes ``index`` lies in the figure's PNG: ``(x0, y0, x1, y1)`` px, origin top left.

    Lets a page or a test map data coordinates onto the saved picture.
    """
    figure.canvas.draw()
    box = figure.axes[index].get_window_extent()
    height = figure.bbox.height
    return (round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0))
