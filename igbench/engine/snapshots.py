"""Snapshots of a training in progress, so an interrupted training continues where it stopped.

A model of the paper's schedule trains for hours on a CPU; an interrupted grid already resumes its attack
units, and with snapshots an interrupted *training* resumes too, at the step of its last snapshot, and
ends with the same weights as an uninterrupted one (same batches, same dropout masks, same optimizer
state; ``tests/test_snapshots.py``).

Files sit beside the checkpoint they lead to, named by its configuration hash and the index of the
``Trainer.fit`` call (distillation fits a teacher, then a student):

* ``<hash>.fit<k>.partial.pt``: model, optimizer, step, batch order, random-generator states and the
  seconds spent so far, written atomically at most every ``every_seconds``, and after the current step
  when the process gets SIGINT or SIGTERM (:mod:`.interrupts`);
* ``<hash>.fit<k>.done.pt``: the weights and random state at the end of a finished fit, so a later fit's
  interruption does not retrain an earlier one.

:meth:`TrainingSnapshots.clear` removes them once the finished model is in the checkpoint cache.
All tensors are plain, so the files load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, is_disk_full, remove_orphan_temps_matching, write_failure
from ..messages import say
from .cache import read_torch_file

#: Seconds between two snapshots of one training (a snapshot of the paper CNN takes well under a second).
DEFAULT_EVERY_SECONDS = 120.0


class TrainingSnapshots:
    """Partial and finished-fit snapshots of one model's training, under ``folder`` with prefix ``key``."""

    def __init__(self, folder: str | Path, key: str, every_seconds: float = DEFAULT_EVERY_SECONDS) -> None:
        self.folder = Path(folder)
        self.key = key
        self.every_seconds = float(every_seconds)
        self._last_save = time.monotonic()

    def path(self, fit_index: int, kind: str) -> Path:
        return self.folder / f"{self.key}.fit{fit_index}.{kind}.pt"

    def load(self, fit_index: int, kind: str) -> dict[str, Any] | None:
        """The snapshot, or ``None`` when there is none; an unreadable one is a one-line error."""
        path = self.path(fit_index, kind)
        if not path.is_file():
            return None
        return read_torch_file(path, f"training snapshot {path}", "delete it to train this model from the start")

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= self.every_seconds

    def save(self, fit_index: int, kind: str, state: dict[str, Any]) -> bool:
        """Write a snapshot; whether it was written. A failed write (a full disk) is a warning, not the end
        of the training: a snapshot only spares work after an interruption, and the last one stays."""
        import torch

        path = self.path(fit_index, kind)
        try:
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
        except (OSError, RuntimeError) as exc:
            if not is_disk_full(exc):  # a state that cannot be saved is a bug to see, not a warning to repeat
                raise
            self._last_save = time.monotonic()  # try again at the next interval, not every step
            say(f"warning: could not write the training snapshot {path} ({write_failure(exc, self.folder)}); "
                "training goes on, but an interruption now loses the steps since the last snapshot")
            return False
        self._last_save = time.monotonic()
        if kind == "done":
            self.path(fit_index, "partial").unlink(missing_ok=True)
        return True

    def clear(self) -> None:
        for p in self.folder.glob(f"{self.key}.fit*.pt"):
            p.unlink(missing_ok=True)

    def remove_orphan_temps(self) -> list[Path]:
        """Remove the half-written snapshots of a training that was killed mid-write (SIGKILL, power loss).

        Only for the process that holds this model's training lock, as :func:`obtain_model` does.
        """
        return remove_orphan_temps_matching(self.folder, rf"{re.escape(self.key)}\.fit\d+\.(?:partial|done)\.pt")


def rng_state(device) -> dict[str, Any]:
    """The global random state that dropout draws from (CPU, and the CUDA device when training there)."""
    import torch

    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
