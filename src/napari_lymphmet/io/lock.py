"""One run per output folder: an advisory lock that a second run finds at once.

Two ``lymphmet`` runs writing into one folder would wipe each other's
checkpoints and mix their files. The first takes ``fcntl.flock`` on
``.lymphmet.lock`` in the folder; the lock goes when the process ends,
however it ends (a crash or kill -9 leaves no stale lock behind). A second
run is refused with one line naming the folder and the holder's pid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

__all__ = ["LOCK_NAME", "folder_lock"]

LOCK_NAME = ".lymphmet.lock"


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (the folder is created if missing).

    Raises
    ------
    InputError
        Another process holds it, or the folder cannot be written.
    """
    import fcntl

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write here ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise InputError(f"{folder}: another lymphmet run (pid {holder}) is writing here; wait for it, "
                             f"or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield folder
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
