"""How much a file read may cost: the machine's free memory, and inputs read with a size bound.

A path may name a device (``/dev/zero``), a FIFO or a file of gigabytes
where a few KB were expected. :func:`read_limited` checks what the path is
and how large it says it is before reading, and never reads past the bound,
so neither lie costs memory.
"""

from __future__ import annotations

import os
import resource
import stat
from pathlib import Path

from ..errors import InputError

__all__ = ["available_memory", "check_writable", "read_limited", "text_limit"]


def available_memory() -> int:
    """Bytes this process may still allocate: the smaller of what the kernel says is available
    and the address-space limit (``ulimit -v``), when one is set."""
    free = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 2**40
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft)
    return int(free)


def text_limit() -> int:
    """The largest annotation or metadata file read whole: 128 MB, or a sixteenth of free memory.

    Parsed JSON and XML take up to ten times their text in objects, and a
    run must stay within 1.5 GB; a CAMELYON16 ASAP file is at most a few MB,
    a QuPath export of hand-drawn outlines rarely 10.
    """
    return min(128 * 2**20, available_memory() // 16)


def read_limited(path: str | os.PathLike, limit: int, *, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises
    ------
    InputError
        Missing, a folder, not a regular file (a device, a FIFO), unreadable, or larger than ``limit``;
        the message names the path.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file (a device or a pipe), not a {what}")
    if info.st_size > limit:
        raise InputError(f"{path}: {info.st_size / 2**20:.0f} MB is more than a {what} may be here "
                         f"({limit / 2**20:.0f} MB)")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # a file that grows while read is bounded too
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise InputError(f"{path}: more than a {what} may be here ({limit / 2**20:.0f} MB)")
    return data


def check_writable(folder: str | os.PathLike, *, need: int) -> None:
    """Refuse an output folder that cannot take ``need`` bytes, before the work that fills it starts.

    Writes and removes a probe file (permission bits alone do not tell:
    root ignores them, a read-only mount does not) and checks free space.

    Raises
    ------
    InputError
        Naming the folder and what is wrong.
    """
    import shutil
    import tempfile

    folder = Path(folder)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lymphmet-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"{folder}: cannot write here ({exc.strerror or exc})") from None
    free = shutil.disk_usage(folder).free
    if free < need:
        raise InputError(f"{folder}: {free / 2**20:.1f} MB free, but the results need about "
                         f"{need / 2**20:.0f} MB")
