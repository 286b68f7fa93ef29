"""Atomic output: write to a hidden temporary beside the target, then rename."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

__all__ = ["atomic_dir", "atomic_path", "result_set", "write_csv"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``.

    The temporary keeps ``path``'s suffix, so writers that pick a format by
    extension still work. On any error it is removed and ``path`` is left as
    it was, so an interrupted job never leaves a half-written file behind
    under the real name.

    Raises
    ------
    InputError
        If the folder to write into does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping]) -> Path:
    """A table of ``rows`` (mappings by column name) as CSV with a header, atomically; returns ``path``."""
    import csv

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it takes ``path``'s place.

    For stores that are folders (zarr). An old ``path`` is moved aside and
    removed only after the new one is in place; on any error the temporary
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder {path.parent} does not exist")
    tmp, old = path.with_name(f".{path.name}.partial"), path.with_name(f".{path.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def result_set(folder: str | os.PathLike, *, marker: str) -> Iterator[Path]:
    """Yield a staging folder to fill with a whole result set; on success it replaces its namesakes in
    ``folder``, with ``marker`` (the file that says the set is complete) moved in last.

    The old marker is removed before any file moves, so at every moment
    ``folder`` holds the old complete set, the new one, or files without a
    marker (a crash between renames), never a mix that claims to be
    complete. Renames need no space: a full disk is met while staging, and
    leaves the old set as it was.

    Raises
    ------
    InputError
        A file cannot be written (a full disk, a read-only folder); the
        message names it.
    """
    folder = Path(folder)
    stage = folder / ".results.partial"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        stage.mkdir()
        yield stage
        if not (stage / marker).is_file():
            raise RuntimeError(f"result set in {folder} has no {marker}")
        (folder / marker).unlink(missing_ok=True)
        for item in sorted(stage.iterdir()):
            if item.name != marker:
                _replace(item, folder / item.name)
        os.replace(stage / marker, folder / marker)
    except OSError as exc:
        name = Path(exc.filename).name if exc.filename else _newest(stage)
        where = folder / _final_name(name) if name else folder
        raise InputError(f"{where}: cannot write the results ({exc.strerror or exc}); "
                         f"the folder keeps {'the previous results' if (folder / marker).exists() else 'no results'}"
                         ) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _newest(folder: Path) -> str | None:
    """The name of the entry written last in ``folder``: the one a write that names no file was filling."""
    try:
        entries = list(folder.iterdir())
        return max(entries, key=lambda p: p.lstat().st_mtime_ns).name if entries else None
    except OSError:
        return None


def _final_name(name: str) -> str:
    """``overlay.png`` for :func:`atomic_path`'s ``.overlay.partial.png`` (and the name itself otherwise)."""
    if name.startswith(".") and ".partial" in name:
        return name[1:].replace(".partial", "", 1)
    return name


def _replace(source: Path, target: Path) -> None:
    """``os.replace`` that also takes a folder's place (a zarr store): the old one is moved aside first."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)
