"""What the checkpoint cache holds, and removal of what an abandoned training left behind.

Finished models (``<hash>.pt``) are kept: they are what makes a second run instant. Training snapshots
(``<hash>.fit<k>.partial.pt`` / ``.done.pt``, :mod:`.snapshots`) and interrupted atomic writes
(``.<name>.*.tmp``) are only useful to a training that will be resumed; one that was given up (a NaN
loss, a configuration never run again) leaves them behind, 40 MB apiece for the paper CNN.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..locks import is_locked
from .cache import CheckpointStore

_SNAPSHOT = re.compile(r"^(?P<key>[0-9a-f]{64})\.fit(?P<fit>\d+)\.(?P<kind>partial|done)\.pt$")
_CHECKPOINT = re.compile(r"^(?P<key>[0-9a-f]{64})\.pt$")


@dataclass
class Entry:
    """One file of the cache: a checkpoint, a training snapshot or a temporary file."""

    path: Path
    kind: str  # "checkpoint", "partial", "done" or "temporary"
    key: str | None
    size: int
    age_seconds: float
    info: dict[str, Any]
    #: A snapshot of a model that a live igbench process is training now (it holds the model's lock,
    #: :meth:`CheckpointStore.lock_path`); always False for checkpoints and temporary files.
    training_now: bool = False


def _load(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # reads only what is used
    except Exception as exc:  # noqa: BLE001 - a damaged file is listed, not fatal
        return {"error": f"unreadable ({type(exc).__name__})"}


def _checkpoint_info(path: Path) -> dict[str, Any]:
    blob = _load(path)
    if "error" in blob:
        return blob
    meta = blob.get("meta", {})
    config = meta.get("config", {})
    dataset, train = config.get("dataset") or {}, config.get("train") or {}
    return {"dataset": dataset.get("name"), "dataset_checksum": dataset.get("checksum"), "arch": config.get("arch"),
            "defense": config.get("defense"), "defense_params": config.get("defense_params"),
            "seed": train.get("seed"), "batch_size": train.get("batch_size"), "lr": train.get("lr"),
            "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"),
            "precision": (config.get("train") or {}).get("precision", "fp32"),
            "igbench": (config.get("versions") or {}).get("igbench")}


def _snapshot_info(path: Path, fit: int) -> dict[str, Any]:
    blob = _load(path)
    if "error" in blob:
        return blob
    return {"fit": fit, "label": blob.get("label"), "step": blob.get("step", blob.get("steps")),
            "total": blob.get("total", blob.get("steps"))}


def inventory(store: CheckpointStore, details: bool = True, now: float | None = None) -> list[Entry]:
    """Every file under the cache's ``models/`` folder, oldest first; ``details`` reads each file's
    metadata (configuration, steps), which loads it."""
    folder = store.root / "models"
    now = time.time() if now is None else now
    entries: list[Entry] = []
    live: dict[str, bool] = {}  # model key -> its training lock is held (checked once per model)
    if not folder.is_dir():
        return entries
    for path in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime):
        if not path.is_file():
            continue
        stat = path.stat()
        common = {"path": path, "size": stat.st_size, "age_seconds": max(0.0, now - stat.st_mtime)}
        if m := _CHECKPOINT.match(path.name):
            entries.append(Entry(kind="checkpoint", key=m["key"],
                                 info=_checkpoint_info(path) if details else {}, **common))
        elif m := _SNAPSHOT.match(path.name):
            if m["key"] not in live:
                live[m["key"]] = is_locked(store.lock_path(m["key"]))
            entries.append(Entry(kind=m["kind"], key=m["key"],
                                 info=_snapshot_info(path, int(m["fit"])) if details else {},
                                 training_now=live[m["key"]], **common))
        elif path.name.startswith(".") and path.name.endswith(".tmp"):
            entries.append(Entry(kind="temporary", key=None, info={}, **common))
    return entries


def stale_leftovers(store: CheckpointStore, older_than_seconds: float, now: float | None = None) -> list[Entry]:
    """Snapshots and temporary files that no training is using.

    A running training rewrites its snapshot every two minutes, so a model's snapshots are stale when the
    newest of them is ``older_than_seconds`` old (a distillation teacher's finished-fit snapshot is
    written once, and stays needed while its student trains). Snapshots of a model whose checkpoint
    exists are leftovers at any age; those of a model that a live process is training (it holds the
    model's lock, :meth:`CheckpointStore.lock_path`) never are.
    """
    entries = inventory(store, details=False, now=now)
    finished = {e.key for e in entries if e.kind == "checkpoint"}
    newest: dict[str, float] = {}
    for e in entries:
        if e.kind in ("partial", "done"):
            newest[e.key] = min(newest.get(e.key, float("inf")), e.age_seconds)
    stale = []
    for e in entries:
        if e.kind == "temporary":
            if e.age_seconds >= older_than_seconds:
                stale.append(e)
        elif e.kind != "checkpoint" and (e.key in finished or newest[e.key] >= older_than_seconds):
            if e.key in finished or not e.training_now:
                stale.append(e)
    return stale


def other_version_checkpoints(store: CheckpointStore, version: str) -> list[Entry]:
    """Checkpoints trained by an igbench version other than ``version``.

    The version is part of every configuration hash, so this version's runs never load them; only the
    result files that older version wrote refer to them (``igbench explain`` on such a file needs them).
    A checkpoint whose metadata cannot be read is not included.
    """
    return [e for e in inventory(store) if e.kind == "checkpoint" and "error" not in e.info
            and e.info.get("igbench") != version]
