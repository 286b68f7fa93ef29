"""Writing files safely: atomic replacement of a file or a whole folder, so a crash never leaves half of one;
one run per output folder; reading inputs within a bound."""

from __future__ import annotations

from .atomic import atomic_dir, atomic_path, result_set, write_csv
from .limits import available_memory, check_writable, read_limited, text_limit
from .lock import LOCK_NAME, folder_lock

__all__ = ["LOCK_NAME", "atomic_dir", "atomic_path", "available_memory", "check_writable", "folder_lock",
           "read_limited", "result_set", "text_limit", "write_csv"]
