"""Whole-slide inference: the heatmap grid, the overlapped read/predict run, detections, outputs, dask.distributed.
"""

from __future__ import annotations

from .detect import DETECTION_SMOOTHING, detect, detection_sigma, slide_score, smooth_heatmap
from .distributed import connect, predict_distributed
from .lesion_calibration import NODE_GATE_LEVEL, detection_threshold, node_gate
from .lesions import LESION_COLUMNS, Lesion, measure_lesions, write_lesions_csv
from .staging import CATEGORIES, STAGES, lesion_category, node_category, patient_of, pn_stage
from .grid import HeatmapGrid, batches_of, grid_for, polygon_cells, score_cells
from .omezarr import HeatmapZarr, read_heatmap_zarr, write_heatmap_zarr
from .outputs import read_heatmap, write_outputs
from .regions import TumorRegion, region_annotations, region_around, tumor_regions
from .run import PredictResult, iter_predict, model_id, predict_slide
from .screen import ScreenConfig, cells_to_refine, fill_unpredicted, lattice_cells

__all__ = [
    "CATEGORIES", "STAGES", "lesion_category", "node_category", "patient_of", "pn_stage",
    "NODE_GATE_LEVEL", "detection_threshold", "node_gate",
    "DETECTION_SMOOTHING", "LESION_COLUMNS", "HeatmapGrid", "HeatmapZarr", "Lesion", "PredictResult", "ScreenConfig",
    "TumorRegion", "batches_of", "cells_to_refine", "connect", "detect", "detection_sigma", "fill_unpredicted",
    "grid_for", "iter_predict", "lattice_cells", "measure_lesions", "model_id", "polygon_cells",
    "predict_distributed", "predict_slide", "read_heatmap", "read_heatmap_zarr", "region_annotations",
    "region_around", "score_cells", "slide_score", "smooth_heatmap", "tumor_regions", "write_heatmap_zarr",
    "write_lesions_csv", "write_outputs",
]
