"""Content-addressed storage of trained models.

A checkpoint's file name is the hash of the model's *full* configuration (data set name, variant and
checksum; architecture and parameters; defense and parameters; training schedule and seed; library
versions), so a second run, or another grid that shares a model, loads it instead of retraining.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, is_disk_full, write_failure
from ..errors import IgbenchError


#: What to do about weights that do not fit, when the model is trained anew on demand (training, a grid)
RETRAIN = "delete it to retrain"


def load_weights(model, state_dict: dict[str, Any], what: str, fix: str = RETRAIN) -> None:
    """``model.load_state_dict(state_dict)``; weights that do not fit (missing, unexpected or mis-shaped) are a
    one-line error naming ``what`` held them and ending with ``fix``: the file is sound, the code that builds
    the model changed."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split(":", 1)[-1].split())
        raise IgbenchError(
            f"{what} does not fit the model its architecture builds now ({detail[:200]}"
            f"{'...' if len(detail) > 200 else ''}): the code that builds the model changed since it was trained "
            f"without a change of its configuration; {fix}") from exc


def read_torch_file(source, what: str, fix: str, state_dict: bool = False) -> dict[str, Any]:
    """``torch.load`` (weights only, onto the CPU) of a file igbench wrote, a path or a file object. A damaged
    one (truncated, another format, with ``state_dict`` one without a ``state_dict``) is a one-line error:
    "``what`` is unreadable (the exception's type); ``fix``"."""
    import torch

    try:
        blob = torch.load(source, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or (state_dict and not isinstance(blob.get("state_dict"), dict)):
            raise ValueError("not an igbench file")
    except Exception as exc:  # noqa: BLE001 - whatever torch raises, the file is damaged
        raise IgbenchError(f"{what} is unreadable ({type(exc).__name__}); {fix}") from None
    return blob



def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: the same configuration always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Any) -> str:
    """sha256 hex of a configuration's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def cpu_state_dict(model) -> dict[str, Any]:
    """The model's state dict as detached CPU tensors (what checkpoints and training snapshots store)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def weights_sha256(model) -> str:
    """sha256 over the model's state_dict (names, shapes, dtypes, raw bytes): identifies the weights
    independently of how the checkpoint file was written (its metadata holds timings)."""
    return state_dict_sha256(model.state_dict())


def state_dict_sha256(state: dict[str, Any]) -> str:
    """:func:`weights_sha256` of a state dict as stored in a checkpoint, without building the model."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def default_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else the igbench cache folder (:func:`igbench.datasets.locate.cache_root`:
    ``$IGBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/igbench`` or ``~/.cache/igbench``)."""
    from ..datasets.locate import cache_root

    return Path(explicit).expanduser() if explicit else cache_root()


class CheckpointStore:
    """Checkpoints under ``<root>/models/<config hash>.pt``, written atomically.

    A checkpoint holds ``{"state_dict": ..., "meta": {...}}`` with plain types only, so it loads with
    ``torch.load(..., weights_only=True)``.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = default_cache_dir(root)

    def path(self, key: str) -> Path:
        return self.root / "models" / f"{key}.pt"

    def check_writable(self) -> None:
        """Before a model trains: its snapshots and checkpoint can be written into the models folder (a
        read-only one was found only when the finished training was saved, and the training was lost)."""
        import tempfile

        folder = self.root / "models"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".igbench-write-check-"):
                pass
        except OSError as exc:
            raise IgbenchError(f"cannot write in the cache's models folder {folder} ({exc.strerror or exc}), where a "
                               "model that must be trained goes; make it writable or choose another --cache-dir"
                               ) from None

    def lock_path(self, key: str) -> Path:
        """The lock file its trainer holds while training the model ``key`` (:mod:`igbench.locks`)."""
        return self.root / "locks" / f"{key}.lock"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, model, meta: dict[str, Any]) -> Path:
        import torch

        target = self.path(key)
        state = cpu_state_dict(model)
        try:
            with atomic_path(target) as tmp:
                torch.save({"state_dict": state, "meta": json.loads(canonical_json(meta))}, tmp)
        except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
            if not is_disk_full(exc):
                raise
            raise IgbenchError(f"could not write the checkpoint {target} ({write_failure(exc, target.parent)}); "
                               f"free space there and re-run: the training's snapshots in {target.parent}, where "
                               "they could be written, spare training it again (another --cache-dir would not "
                               "find them)") from None
        return target

    def load(self, key: str, model, fix: str = RETRAIN) -> dict[str, Any]:
        """Load weights into ``model``; returns the stored metadata. Each is a one-line error that says which:
        a damaged file; a file whose stored configuration does not hash to ``key`` (another model's, copied
        or renamed by hand); weights that do not fit the model."""
        path = self.path(key)
        blob = read_torch_file(path, f"cached checkpoint {path}", "delete it to retrain", state_dict=True)
        meta = blob.get("meta", {})
        stored = meta.get("config")
        if isinstance(stored, dict) and config_hash(stored) != key:
            raise IgbenchError(
                f"cached checkpoint {path} holds a model of another configuration (its {stored.get('defense', '?')} "
                f"on {stored.get('arch', '?')} hashes to {config_hash(stored)[:12]}, not {key[:12]}): it was copied "
                "or renamed by hand, or written by a plugin that changed its own parameters while training; "
                "delete it to retrain")
        load_weights(model, blob["state_dict"], f"cached checkpoint {path}", fix)
        return meta
