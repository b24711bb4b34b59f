"""Advisory file locks between igbench processes (``fcntl.flock``; none on Windows).

The operating system drops a lock when its process dies, so a crash never leaves a stale lock behind,
only a lock file that the next process locks again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no protection between processes
    fcntl = None


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], on_busy: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block.

    When another process holds it, ``on_busy(path)`` is called first: it may raise (give up with a
    message) or return, and then this waits until the lock is free.
    """
    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_busy is not None:
                    on_busy(lock_path)
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield lock_path


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether another process holds the lock on ``path`` now (a missing file is not locked)."""
    if fcntl is None or not Path(path).is_file():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False
