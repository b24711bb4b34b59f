"""An append-only journal of finished grid units, so an interrupted grid resumes where it stopped.

One JSON object per line; the first line names the run, and the grid it runs
(:func:`~igbench.engine.replacing.planned_grid`: known before training, so that another grid sent to the
same result can be stopped before it trains rather than drop these units). Each line is flushed and fsync'ed when written;
a torn last line (the process was killed mid-write) is ignored on reading, so nothing finished is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import UsageError
from ..locks import exclusive_lock


def journal_path(result_path: str | os.PathLike[str]) -> Path:
    """The journal of the grid that writes ``result_path``: ``<result>.partial.jsonl`` beside it."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name + ".partial.jsonl")


def result_write_lock(result_path: str | os.PathLike[str], on_busy):
    """Hold the lock a grid holds while it writes ``result_path`` (its journal's), for another writer of the
    result (``explain`` adding its scores); ``on_busy(lock_path)`` runs when a grid holds it now."""
    return Journal(journal_path(result_path), "").holding_lock(on_busy)


#: What a finished unit holds; a line without all of them is not one.
UNIT_KEYS = frozenset({"attack", "eps", "source", "cells", "stats"})


class Journal:
    def __init__(self, path: Path, run_id: str, grid: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.grid = grid

    @property
    def lock_path(self) -> Path:
        """The lock file held while the grid runs (:meth:`locked`)."""
        return self.path.with_name(self.path.name + ".lock")

    def read(self) -> list[dict[str, Any]]:
        """Finished units of *this* run (an old journal of a different run is ignored)."""
        if not self.path.exists():
            return []
        entries = list(self._lines())
        if not entries or entries[0].get("run_id") != self.run_id:
            return []
        return [e for e in entries[1:] if UNIT_KEYS <= e.keys()]  # anything else (damage) is redone

    def other_run(self) -> tuple[str, int] | None:
        """``(run id, finished units)`` of a journal at this path that belongs to another run (which
        :meth:`start` replaces), or ``None``."""
        if not self.path.exists():
            return None
        entries = list(self._lines())
        if not entries or entries[0].get("run_id") == self.run_id:
            return None
        return str(entries[0].get("run_id") or "?"), len(entries) - 1

    def _lines(self) -> Iterator[dict[str, Any]]:
        """The JSON objects of the file, a line each. A torn line (killed mid-write) or a damaged one (bytes
        that are not UTF-8, a line that is not an object) is skipped: its unit is simply redone."""
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict):
                    yield entry

    @contextlib.contextmanager
    def locked(self, before_start: Callable[[], None] | None = None):
        """Begin (or continue) the journal while holding an exclusive lock on ``<journal>.lock``.

        Another process running the same grid into the same result gets a one-line error instead of
        interleaving its units; the operating system drops the lock when a process dies.
        ``before_start`` runs once the lock is held, before a journal of another run is replaced (what it
        reads is then this process's to replace).
        """
        def refuse(path):
            raise UsageError(f"another igbench process is running a grid into this result (it holds {path}); "
                             "wait for it to finish, or pass a different --out")

        with self.holding_lock(on_busy=refuse):
            if before_start is not None:
                before_start()
            self.start()
            yield self

    @contextlib.contextmanager
    def holding_lock(self, on_busy) -> Iterator[Path]:
        """Hold ``<journal>.lock`` for the block (``on_busy(lock_path)`` when another process holds it); the
        lock file goes when no journal is left to resume, so a finished grid leaves neither behind."""
        with exclusive_lock(self.lock_path, on_busy=on_busy):
            try:
                yield self.lock_path
            finally:
                if not self.path.exists():
                    self.lock_path.unlink(missing_ok=True)

    def start(self) -> None:
        """Begin (or continue) the journal of this run; a stale journal of another run is replaced."""
        if self.path.exists() and self.read() == [] and not self._is_ours():
            self.path.unlink()
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.append({"run_id": self.run_id, **({"grid": self.grid} if self.grid is not None else {})})
        else:
            self._end_torn_line()

    def _end_torn_line(self) -> None:
        """A process killed mid-write leaves a last line without its newline: close it, so the next unit
        starts on a line of its own (the torn one is skipped on reading)."""
        with open(self.path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        if torn:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("\n")

    def _is_ours(self) -> bool:
        first = next(self._lines(), None)
        return bool(first) and first.get("run_id") == self.run_id

    def append(self, entry: dict[str, Any]) -> None:
        """Add one line, flushed and fsynced: a finished unit survives a kill."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
