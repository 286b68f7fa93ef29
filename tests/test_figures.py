"""The figures people judge a model by carry numbers: axis titles, tick labels, legends, colour-bar scale.

Checked through matplotlib's figure objects, not pixels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lymphmet.figures import axes_box, overlay_figure, png_bytes, training_figure


def tick_texts(axis) -> list[str]:
    axis.figure.canvas.draw()  # tick labels are filled in when drawn
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def assert_readable_training_plot(figure) -> None:
    """Loss and AUC axes titled and ticked, epochs along x, a legend naming the curves."""
    loss_ax, auc_ax = figure.axes
    assert loss_ax.get_xlabel() == "epoch" and loss_ax.get_ylabel() == "loss" and auc_ax.get_ylabel() == "AUC"
    assert tick_texts(loss_ax.xaxis) and tick_texts(loss_ax.yaxis) and tick_texts(auc_ax.yaxis)
    assert auc_ax.get_ylim() == (0, 1)
    labels = {t.get_text() for t in loss_ax.get_legend().get_texts()}
    assert {"training loss", "validation AUC"} <= labels


def test_training_figure_has_axes_ticks_and_legend():
    figure = training_figure({"loss": [0.7, 0.5, 0.4], "val_loss": [0.6, 0.5, 0.45], "val_auc": [0.7, 0.8, 0.85]})
    assert_readable_training_plot(figure)
    assert tick_texts(figure.axes[0].xaxis)[:3] == ["1", "2", "3"] or "1" in tick_texts(figure.axes[0].xaxis)


def test_overlay_figure_has_a_probability_colour_bar_and_mm_axes():
    rng = np.random.default_rng(0)
    thumbnail = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    heat = np.zeros((10, 15), np.float32)
    heat[3:6, 4:8] = 0.9
    figure = overlay_figure(thumbnail, heat, extent_um=(3000.0, 2000.0), title="slide: tumor probability")
    image_ax, bar_ax = figure.axes
    assert image_ax.get_xlabel() == "x (mm)" and image_ax.get_ylabel() == "y (mm)"
    assert image_ax.get_xlim() == pytest.approx((0, 3.0)) and tick_texts(image_ax.xaxis)
    assert bar_ax.get_ylabel() == "tumor probability"
    assert tick_texts(bar_ax.yaxis) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    x0, y0, x1, y1 = axes_box(figure)
    png = png_bytes(figure)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 0 <= x0 < x1 and 0 <= y0 < y1
