"""Figures people read to judge a model, drawn with matplotlib: axes, ticks, titles and legends.

Each builder returns a :class:`matplotlib.figure.Figure` on the Agg canvas
(no pyplot, no global state, safe in worker threads); :func:`save_png` and
:func:`png_bytes` turn one into a file or bytes. The Train widget draws
:func:`draw_training` into a Qt canvas instead.
"""

from .core import axes_box, new_figure, png_bytes, save_png
from .froc import froc_figure
from .heatmap import HEATMAP_FLOOR, draw_heatmap_legend, heatmap_rgba, mark_threshold
from .overlay import overlay_figure
from .training import draw_training, training_figure

__all__ = [
    "HEATMAP_FLOOR", "axes_box", "draw_heatmap_legend", "draw_training", "froc_figure", "heatmap_rgba",
    "mark_threshold", "new_figure",
    "overlay_figure", "png_bytes", "save_png", "training_figure",
]
