"""Whole-slide inference: the heatmap grid, the overlapped read/predict run, detections, outputs, dask.distributed.
"""

from __future__ import annotations

from .detect import detect, slide_score
from .distributed import connect, predict_distributed
from .grid import HeatmapGrid, batches_of, grid_for
from .outputs import colormap, overlay_image, read_heatmap, write_outputs
from .run import PredictResult, iter_predict, model_id, predict_slide

__all__ = ['HeatmapGrid', 'PredictResult', 'batches_of', 'colormap', 'connect', 'detect', 'grid_for', 'iter_predict',
           'model_id', 'overlay_image', 'predict_distributed', 'predict_slide', 'read_heatmap', 'slide_score',
           'write_outputs']
