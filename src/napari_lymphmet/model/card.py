"""The model card: what a saved model is, how it sees patches, and how it was trained.

It travels inside the ``.keras`` file as ``lymphmet.json``. Files written by
napari-lymphmet 0.1.0 hold the same keys without ``card_version`` and read
into a card unchanged; keys this version does not know are kept in
``extra`` and written back, so nothing is lost on a round trip.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import InputError

__all__ = ["CARD_VERSION", "METADATA_ENTRY", "ModelCard", "read_card", "read_metadata"]

METADATA_ENTRY = "lymphmet.json"
CARD_VERSION = 2  # 1: napari-lymphmet 0.1.0's dict, which had no version key
_FORMAT = "napari-lymphmet model 1"


def _frozen(value: Any) -> Any:
    """JSON-like data made immutable: dicts become read-only mappings, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """The inverse of :func:`_frozen`, for JSON."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class ModelCard:
    """A patch classifier's metadata, typed and checked.

    Attributes
    ----------
    backbone : str
        ``"efficientnetb0"``, ``"mobilenetv3small"`` or ``"small-cnn"``.
    input_size : int
        Model input, px (patches are resized to it).
    patch_size : int
        Side of the patches it was trained on, px, before resizing.
    patch_mpp : float or None
        µm/px of those patches; inference reads slides at this resolution.
    classes : tuple of str
        Output index to class name; index 1 is the score.
    threshold : float
        Decision threshold, chosen on validation (Youden's J), else 0.5.
    input_space : {"rgb", "hed"}
        ``"hed"``: haematoxylin/eosin optical densities standardised per patch.
    stain_norm : Mapping or None
        Reinhard LAB statistics fitted on the training set, if used.
    hed_sigma, colour_sigma, blur_sigma : float
        Augmentation strengths it was trained with (0 when off).
    weights : str
        Initial weights: ``"imagenet"``, ``"none"`` or a file.
    training, validation : Mapping or None
        Training data summary and configuration; validation metrics.
    epochs_run : int
    cancelled : bool
        Training was stopped early by the user.
    history : Mapping of str to tuple of float
        Loss and AUC per epoch.
    extra : Mapping
        Keys this version does not know, kept for the round trip.
    """

    backbone: str
    input_size: int
    patch_size: int | None = None
    patch_mpp: float | None = None
    classes: tuple[str, ...] = ("normal", "tumor")
    threshold: float = 0.5
    input_space: str = "rgb"
    stain_norm: Mapping[str, Any] | None = None
    hed_sigma: float = 0.0
    colour_sigma: float = 0.0
    blur_sigma: float = 0.0
    weights: str = "none"
    training: Mapping[str, Any] | None = None
    validation: Mapping[str, Any] | None = None
    epochs_run: int = 0
    cancelled: bool = False
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_space not in ("rgb", "hed"):
            raise InputError(f"model card: input_space must be 'rgb' or 'hed', got {self.input_space!r}")
        if int(self.input_size) < 8:
            raise InputError(f"model card: input_size must be at least 8 px, got {self.input_size}")
        for name in ("stain_norm", "training", "validation", "history", "extra"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "classes", tuple(self.classes))

    def __reduce__(self):
        # Read-only mappings do not pickle; dask.distributed ships cards to workers.
        return (ModelCard.from_dict, (self.to_dict(),))

    @property
    def read_size(self) -> int:
        """Side of the patch to read from a slide, px at :attr:`patch_mpp`."""
        return int(self.patch_size or self.input_size)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "model") -> ModelCard:
        """A card from ``lymphmet.json`` (this version's, or 0.1.0's unversioned dict).

        Raises
        ------
        InputError
            A required key is missing, or a value has the wrong type.
        """
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = [k for k in ("backbone", "input_size") if k not in data]
        if missing:
            raise InputError(f"{source}: model metadata lacks {', '.join(missing)}")
        version = int(data.get("card_version", 1))
        if version > CARD_VERSION:
            raise InputError(f"{source}: model card version {version} is newer than this napari-lymphmet "
                             f"reads ({CARD_VERSION}); upgrade napari-lymphmet")
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in ("card_version", "format")}
        try:
            for key in ("input_size", "patch_size", "epochs_run"):
                if values.get(key) is not None:
                    values[key] = int(values[key])
            for key in ("patch_mpp", "threshold", "hed_sigma", "colour_sigma", "blur_sigma"):
                if values.get(key) is not None:
                    values[key] = float(values[key])
            values["cancelled"] = bool(values.get("cancelled", False))
            return cls(**values, extra=extra)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: malformed model metadata: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, the keys 0.1.0 wrote plus ``card_version``."""
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}
        data.update(_plain(self.extra))
        return {"format": _FORMAT, "card_version": CARD_VERSION, **data}


def read_metadata(path: str | os.PathLike) -> dict:
    """The raw ``lymphmet.json`` of a saved model, without loading TensorFlow."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a Keras model (.keras files are zip archives)")
    with zipfile.ZipFile(path) as archive:
        if METADATA_ENTRY not in archive.namelist():
            raise InputError(f"{path}: a Keras model without napari-lymphmet metadata; train it with lymphmet train")
        try:
            return json.loads(archive.read(METADATA_ENTRY))
        except ValueError as exc:
            raise InputError(f"{path}: {METADATA_ENTRY} is not valid JSON ({exc})") from None


def read_card(path: str | os.PathLike) -> ModelCard:
    """The :class:`ModelCard` of a saved model, without loading TensorFlow."""
    return ModelCard.from_dict(read_metadata(path), source=str(path))
