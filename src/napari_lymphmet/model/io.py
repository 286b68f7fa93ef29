"""Saving and loading models: one ``.keras`` file with its card inside, loaded in Keras safe mode."""


from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from .card import METADATA_ENTRY, ModelCard, read_card
from .registry import resolve_model
from ..errors import InputError

__all__ = ['check_signature', 'load_model', 'save_model']


# -- saving and loading --------------------------------------------------------------
def save_model(model, path: str | os.PathLike, card: ModelCard) -> Path:
    """Save ``model`` as ``.keras`` with its card (``lymphmet.json``) inside, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise InputError(f"{path}: a model file must end in .keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_ENTRY, json.dumps(card.to_dict(), indent=2, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def load_model(path: str | os.PathLike):
    """Load a model (a ``.keras`` file or a bundled model's name) in Keras safe mode, with its card.

    Returns
    -------
    model : keras.Model
    card : ModelCard

    Raises
    ------
    InputError
        Missing, not a model, no metadata, or refused by safe mode (a
        ``Lambda`` layer or other code that would run on load).
    """
    from ._tensorflow import import_keras

    path = resolve_model(path)
    card = read_card(path)  # a bad card is refused before TensorFlow's seconds of import
    keras = import_keras()
    from . import ensemble_layers, equivariant  # noqa: F401  (register their layers, so safe mode can rebuild them)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "Lambda" in text or "unsafe" in text.lower():
            raise InputError(f"{path}: refused in safe mode: the model holds code that would run on load "
                             f"(e.g. a Lambda layer). Only use models from sources you trust") from None
        raise InputError(f"{path}: not a valid Keras model ({text[:200]})") from None
    except Exception as exc:
        raise InputError(f"{path}: not a valid Keras model ({' '.join(str(exc).split())[:200]})") from None
    check_signature(model, card, path)
    return model, card


def check_signature(model, card: ModelCard, path: str | os.PathLike) -> None:
    """Refuse a model that does not take one batch of RGB patches of the card's size and give one
    probability per patch, before any slide is read.

    Raises
    ------
    InputError
        Naming the file and what its inputs or outputs are.
    """
    inputs, outputs = list(getattr(model, "inputs", None) or []), list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"{path}: the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                         "napari-lymphmet needs one batch of patches in and one probability per patch out")
    shape = tuple(inputs[0].shape)
    size = card.input_size
    if len(shape) != 4 or shape[3] != 3 or any(side not in (None, size) for side in shape[1:3]):
        raise InputError(f"{path}: the model takes input of shape {shape}, but its card says "
                         f"{size} × {size} RGB patches, (batch, {size}, {size}, 3)")
    out = tuple(outputs[0].shape)
    if len(out) != 2 or out[1] != 1:
        raise InputError(f"{path}: the model gives output of shape {out}; napari-lymphmet needs one "
                         "probability per patch, (batch, 1)")
