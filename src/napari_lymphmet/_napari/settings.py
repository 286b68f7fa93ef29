"""The plugin's own small preferences (the model last trained or chosen), and who to tell when it changes.

Plain JSON in the cache folder; no Qt. *Train* announces the model it has
just trained, and every open *Detect metastases* widget takes it.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["last_model", "remember_model", "when_model_changes"]

_listeners: list[Any] = []  # weak references to bound methods or functions


def _settings_path() -> Path:
    from .sample import cache_dir

    return cache_dir() / "settings.json"


def _read() -> dict:
    try:
        data = json.loads(_settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_model() -> str:
    """The model file last trained or chosen in the viewer, if it still exists; else ``""`` (the bundled one)."""
    path = _read().get("last_model", "")
    return path if isinstance(path, str) and path and Path(path).is_file() else ""


def remember_model(path: str | Path, *, announce: bool = False) -> None:
    """Keep ``path`` as the model to offer next; with ``announce``, tell every listener now."""
    settings = _read()
    settings["last_model"] = str(path)
    try:
        _settings_path().write_text(json.dumps(settings))
    except OSError:
        pass  # a preference is not worth an error
    if announce:
        for ref in list(_listeners):
            callback = ref()
            if callback is None:
                _listeners.remove(ref)
            else:
                callback(str(path))


def when_model_changes(callback: Callable[[str], None]) -> None:
    """Call ``callback(path)`` when a model is announced; held weakly (a closed widget is forgotten)."""
    ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else weakref.ref(callback)
    _listeners.append(ref)
