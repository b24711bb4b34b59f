"""Atomic file writes: write a temporary file in the target's directory, then ``os.replace`` it.

A reader (or a run that is interrupted half-way) therefore sees either the old file or the complete
new one, never a truncated file. Parent directories are created as needed.
"""

from __future__ import annotations

import contextlib
import os
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
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename); return the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
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
