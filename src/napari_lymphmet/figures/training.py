"""Training curves: loss and validation AUC against epoch."""


from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .core import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw_training", "training_figure"]

_LOSS = {"loss": ("training loss", "#e07828"), "val_loss": ("validation loss", "#f0be3c")}
_AUC = {"val_auc": ("validation AUC", "#3ca0f0"), "auc": ("training AUC", "#78c878")}


def training_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """A new figure of :func:`draw_training`."""
    figure = new_figure(5.0, 3.2)
    draw_training(figure, history)
    return figure


def draw_training(figure: Figure, history: Mapping[str, Sequence[float]]) -> None:
    """Redraw ``figure``: losses on the left axis, AUCs (0–1) on the right, epochs from 1 along x.

    Parameters
    ----------
    figure : Figure
        Cleared and drawn again (the Train widget calls this after each epoch).
    history : mapping of str to sequence of float
        One value per epoch under Keras' names (``loss``, ``val_loss``, ``val_auc``, ``auc``).
    """
    figure.clear()
    loss_ax = figure.add_subplot()
    auc_ax = loss_ax.twinx()
    lines = []
    for key, (label, colour) in _LOSS.items():
        if history.get(key):
            lines += loss_ax.plot(range(1, len(history[key]) + 1), history[key], "-o", ms=3, color=colour,
                                  label=label)
    for key, (label, colour) in _AUC.items():
        if history.get(key):
            lines += auc_ax.plot(range(1, len(history[key]) + 1), history[key], "-s", ms=3, color=colour,
                                 label=label)
    epochs = max((len(v) for v in history.values()), default=0)
    loss_ax.set_xlim(0.5, max(epochs, 1) + 0.5)
    loss_ax.xaxis.get_major_locator().set_params(integer=True)
    loss_ax.set_ylim(bottom=0)
    auc_ax.set_ylim(0, 1)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    auc_ax.set_ylabel("AUC")
    loss_ax.grid(True, color="#e8e8e8")
    if lines:
        loss_ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize="small")
    else:
        loss_ax.set_title("waiting for the first epoch", fontsize="small", color="#777777")
    if figure.canvas is not None:
        figure.canvas.draw_idle()
