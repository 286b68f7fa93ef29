"""A sortable, read-only table for the widgets (the Slides list, the lesion table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

__all__ = ["SortItem", "make_table"]


class SortItem(QTableWidgetItem):
    """A cell that sorts by a key (numbers as numbers, missing values lowest), whatever it shows."""

    def __init__(self, text: str, key: Any) -> None:
        super().__init__(text)
        self.key = key

    def __lt__(self, other: Any) -> bool:
        mine, theirs = self.key, getattr(other, "key", None)
        if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)) or type(mine) is type(theirs):
            return mine < theirs
        return str(mine) < str(theirs)


def make_table(columns: Sequence[str], *, tooltips: Sequence[str] | None = None, min_height: int = 160) -> Any:
    """A QTableWidget with these columns: sortable, whole rows selected, one at a time, not editable."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    for i, tip in enumerate(tooltips or []):
        table.horizontalHeaderItem(i).setToolTip(tip)
    # Qt sorts by its indicator as soon as sorting is on; its default is the first column descending.
    table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
    table.setSortingEnabled(True)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setMinimumHeight(min_height)
    table.horizontalHeader().setStretchLastSection(True)
    return table
