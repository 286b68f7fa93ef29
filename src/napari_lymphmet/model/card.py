"""The model card: what a saved model is, how it sees patches, and how it was trained.

It travels inside the ``.keras`` file as ``lymphmet.json``. Files written by
napari-lymphmet 0.1.0 hold the same keys without ``card_version`` and read
into a card unchanged; keys this version does not know are kept in
``extra`` and written back, so nothing is lost on a round trip.
"""

from __future__ import annotations

import json
import math
import numbers
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
        ``"efficientnetb0"``, ``"mobilenetv3small"``, ``"small-cnn"`` or ``"p4m-cnn"``.
    input_size : int
        Model input, px (patches are resized to it).
    patch_size : int
        Side of the patches it was trained on, px, before resizing.
    patch_mpp : float or None
        µm/px of those patches; inference reads slides at this resolution.
    classes : tuple of str
        Output index to class name; index 1 is the score.
    threshold : float
        Decision threshold, chosen on validation (Youden's J) by ``train`` and ``ensemble``, else 0.5;
        the bundled models' is their detection threshold (:mod:`~napari_lymphmet.inference.lesion_calibration`).
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
        problem = _card_problem(self)
        if problem:
            raise InputError(f"model card: {problem}")
        for name in ("stain_norm", "training", "validation", "history", "extra"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "classes", tuple(self.classes))

    def __reduce__(self):
        # Read-only mappings do not pickle; dask.distributed ships cards to workers.
        return (ModelCard.from_dict, (self.to_dict(),))

    @property
    def screen_threshold(self) -> float | None:
        """The screening threshold measured on the validation set at training (see
        :func:`~napari_lymphmet.model.metrics.screening_threshold`), or None for models without one."""
        value = (self.validation or {}).get("screen_threshold")
        return float(value) if _is_number(value) and 0 <= value <= 1 else None

    @property
    def normal_score_quantiles(self) -> tuple[float, ...] | None:
        """Evenly spaced quantiles (0 to 1) of the validation normal patches' scores (see
        :func:`~napari_lymphmet.model.metrics.normal_score_quantiles`), or None for models without them."""
        values = (self.validation or {}).get("normal_score_quantiles")
        if not isinstance(values, (list, tuple)) or len(values) < 2 or not all(_is_number(v) for v in values):
            return None
        return tuple(float(v) for v in values)

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
        version = data.get("card_version", 1)
        if not _is_whole(version):
            raise InputError(f"{source}: model card: card_version must be a whole number, got {version!r}")
        if version > CARD_VERSION:
            raise InputError(f"{source}: model card version {version} is newer than this napari-lymphmet "
                             f"reads ({CARD_VERSION}); upgrade napari-lymphmet")
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in ("card_version", "format")}
        for key in ("input_size", "patch_size", "epochs_run"):
            value = values.get(key)
            if isinstance(value, float) and value.is_integer():
                values[key] = int(value)  # JSON writers that know only doubles
        for key in ("patch_mpp", "threshold", "hed_sigma", "colour_sigma", "blur_sigma"):
            if _is_number(values.get(key)):
                values[key] = float(values[key])
        if not isinstance(values.get("cancelled", False), bool):
            raise InputError(f"{source}: model card: cancelled must be true or false, got {values['cancelled']!r}")
        if isinstance(values.get("classes"), list):
            values["classes"] = tuple(values["classes"])
        try:
            return cls(**values, extra=extra)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise InputError(f"{source}: malformed model metadata: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, the keys 0.1.0 wrote plus ``card_version``."""
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}
        data.update(_plain(self.extra))
        return {"format": _FORMAT, "card_version": CARD_VERSION, **data}


# A card is a few KB; the archive's own directory says how large a member is before it is read.
MAX_CARD_BYTES = 1 * 2**20


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _card_problem(card: ModelCard) -> str | None:
    """What is wrong with a card's values, in a phrase, or None. Types, ranges, finiteness."""
    if not isinstance(card.backbone, str) or not card.backbone:
        return f"backbone must be a name, got {card.backbone!r}"
    if card.input_space not in ("rgb", "hed"):
        return f"input_space must be 'rgb' or 'hed', got {card.input_space!r}"
    if not _is_whole(card.input_size) or not 8 <= card.input_size <= 2048:
        return f"input_size must be a whole number of px from 8 to 2048, got {card.input_size!r}"
    if card.patch_size is not None and (not _is_whole(card.patch_size) or not 8 <= card.patch_size <= 8192):
        return f"patch_size must be a whole number of px from 8 to 8192, got {card.patch_size!r}"
    if card.patch_mpp is not None and (not _is_number(card.patch_mpp) or not 0.01 <= card.patch_mpp <= 1000):
        return f"patch_mpp must be a finite µm/px from 0.01 to 1000, got {card.patch_mpp!r}"
    if not _is_number(card.threshold) or not 0 <= card.threshold <= 1:
        return f"threshold must be a probability from 0 to 1, got {card.threshold!r}"
    for name in ("hed_sigma", "colour_sigma", "blur_sigma"):
        value = getattr(card, name)
        if not _is_number(value) or value < 0:
            return f"{name} must be a finite number ≥ 0, got {value!r}"
    if not _is_whole(card.epochs_run) or card.epochs_run < 0:
        return f"epochs_run must be a whole number ≥ 0, got {card.epochs_run!r}"
    classes = card.classes
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple)) or len(classes) != 2 \
            or not all(isinstance(c, str) for c in classes):
        return f"classes must be two names (negative, positive), got {classes!r}"
    for name in ("stain_norm", "training", "validation"):
        if getattr(card, name) is not None and not isinstance(getattr(card, name), Mapping):
            return f"{name} must be an object, got {type(getattr(card, name)).__name__}"
    if not isinstance(card.history, Mapping):
        return f"history must be an object, got {type(card.history).__name__}"
    return None


def read_metadata(path: str | os.PathLike) -> dict:
    """The raw ``lymphmet.json`` of a saved model, without loading TensorFlow."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a Keras model (.keras files are zip archives)")
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_ENTRY not in archive.namelist():
                raise InputError(f"{path}: a Keras model without napari-lymphmet metadata; "
                                 "train it with lymphmet train")
            declared = archive.getinfo(METADATA_ENTRY).file_size
            if declared > MAX_CARD_BYTES:
                raise InputError(f"{path}: {METADATA_ENTRY} claims {declared} bytes; a model card is a few KB "
                                 f"(at most {MAX_CARD_BYTES})")
            with archive.open(METADATA_ENTRY) as member:
                raw = member.read(MAX_CARD_BYTES + 1)  # a directory that lies about the size cannot bomb either
            if len(raw) > MAX_CARD_BYTES:
                raise InputError(f"{path}: {METADATA_ENTRY} is larger than a model card can be ({MAX_CARD_BYTES} "
                                 "bytes)")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: a damaged model archive ({exc})") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InputError(f"{path}: {METADATA_ENTRY} is not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: {METADATA_ENTRY} must hold an object, not a {type(data).__name__}")
    return data


def read_card(path: str | os.PathLike) -> ModelCard:
    """The :class:`ModelCard` of a saved model, without loading TensorFlow."""
    return ModelCard.from_dict(read_metadata(path), source=str(path))
