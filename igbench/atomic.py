"""Atomic file writes: write a temporary file in the target's directory, then ``os.replace`` it.

A reader (or a run that is interrupted half-way) therefore sees either the old file or the complete
new one, never a truncated file. The temporary file is flushed to disk (``fsync``) before the rename,
and the directory after it, so a power loss does not leave an empty file under the final name either.
Parent directories are created as needed.

A process killed in the middle of a write (SIGKILL, power loss) leaves its temporary file,
``.<name>.<random>.tmp``, behind; :func:`remove_orphan_temps` removes those of one target, for a writer
that holds the lock under which that target is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

# Files made by mkstemp are private (0600); give the final file the usual mode (0666 minus umask).
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def _temp_in(directory: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _fsync_file(path: Path) -> None:
    # Opened for writing: Windows' fsync (FlushFileBuffers) refuses a read-only handle.
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform opens directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_orphan_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it; return them.

    Call it only while holding the lock that every writer of ``path`` holds (a grid's journal lock, a
    model's training lock): a temporary file of a writer that is still running would be removed too.
    """
    target = Path(path)
    return remove_orphan_temps_matching(target.parent, re.escape(target.name))


def remove_orphan_temps_matching(folder: str | os.PathLike[str], name_regex: str) -> list[Path]:
    """:func:`remove_orphan_temps` for every target in ``folder`` whose name matches ``name_regex``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    # mkstemp's random part: 8 characters of tempfile's alphabet, so another target's name cannot match.
    own = re.compile(rf"\.(?:{name_regex})\.[a-z0-9_]{{8}}\.tmp")
    removed = []
    for tmp in folder.iterdir():
        if own.fullmatch(tmp.name):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    Use it for writers that want a file name, e.g. ``with atomic_path(ckpt) as tmp: torch.save(obj, tmp)``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_in(target.parent, target.name)
    try:
        yield tmp
        _fsync_file(tmp)  # while the file is still mkstemp's 0600, so writable whatever the umask
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
        _fsync_directory(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def is_disk_full(exc: BaseException) -> bool:
    """Whether a failed write ran out of room, or met a read-only or quota-bound disk: an ``OSError``, or
    torch's ``RuntimeError`` for the same ("unexpected pos", "file write failed")."""
    import errno

    if isinstance(exc, OSError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("unexpected pos", "file write failed", "PytorchStreamWriter failed", os.strerror(errno.ENOSPC)))


def write_failure(exc: BaseException, folder: str | os.PathLike[str]) -> str:
    """Why a write into ``folder`` failed, in words, with the space left on its disk: torch reports a full
    disk as ``RuntimeError: [enforce fail at inline_container.cc:...] unexpected pos``, which names neither."""
    import shutil

    text = getattr(exc, "strerror", None) or next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:.0f} MB free on its disk"
    except OSError:
        free = "free space unknown"
    return f"{type(exc).__name__}: {text[:120]}; {free}"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``\\n`` line endings kept as given); return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_npz(path: str | os.PathLike[str], **arrays) -> Path:
    """Write numpy ``arrays`` to ``path`` as an ``.npz`` atomically (through a file object: given a path,
    ``np.savez`` would append ``.npz`` to the temporary name); return the path."""
    import numpy as np

    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return target
