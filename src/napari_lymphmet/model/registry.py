"""Models by name: the ones that ship inside the package, and which one is the default.

Everywhere a model file is accepted, a bundled model's name is accepted too;
:func:`resolve_model` turns either into a path. The files live in
``napari_lymphmet/models/<name>.keras``; ``scripts/train_bundled_model.py``
retrains them from scratch, and ``docs/models.md`` is their card.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from .card import read_card

__all__ = ["BUNDLED_DIR", "DEFAULT_MODEL", "bundled_models", "describe_models", "resolve_model"]

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "lymph-node-10x"


def bundled_models() -> dict[str, Path]:
    """Name → file of every model shipped with the package."""
    return {path.stem: path for path in sorted(BUNDLED_DIR.glob("*.keras"))}


def resolve_model(model: str | os.PathLike | None = None) -> Path:
    """The model file for ``model``: a path to a ``.keras`` file, a bundled model's name, or ``None``
    for the default.

    Raises
    ------
    InputError
        Neither a file nor a bundled name; the message lists the bundled names.
    """
    text = str(model) if model is not None and str(model) not in ("", ".") else DEFAULT_MODEL
    path = Path(text)
    if path.is_file():
        return path
    bundled = bundled_models()
    if text in bundled:
        return bundled[text]
    names = ", ".join(bundled) or "none installed"
    raise InputError(f"{text}: no such model file, nor a bundled model (bundled: {names})")


def describe_models() -> dict[str, Any]:
    """What ``lymphmet models`` prints: the default's name and each bundled model's card in brief."""
    rows = []
    for name, path in bundled_models().items():
        card = read_card(path)
        rows.append({"name": name, "path": str(path), "backbone": card.backbone, "patch_mpp": card.patch_mpp,
                     "patch_size": card.patch_size, "input_size": card.input_size, "threshold": card.threshold,
                     "validation": card.to_dict()["validation"] or None})  # plain: nested mappings too
    return {"default": DEFAULT_MODEL, "models": rows}
