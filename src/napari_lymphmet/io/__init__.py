"""Writing files safely: atomic replacement of a file or a whole folder, so a crash never leaves half of one."""

from __future__ import annotations

from .atomic import atomic_dir, atomic_path

__all__ = ["atomic_dir", "atomic_path"]
