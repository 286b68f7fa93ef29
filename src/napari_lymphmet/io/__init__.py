"""Writing files safely: atomic replacement of a file or a whole folder, so a crash never leaves half of one;
one run per output folder."""

from __future__ import annotations

from .atomic import atomic_dir, atomic_path
from .lock import LOCK_NAME, folder_lock

__all__ = ["LOCK_NAME", "atomic_dir", "atomic_path", "folder_lock"]
