"""Checkpoint archives: the trained models behind a result file, packed into one tar file and unpacked
into another checkpoint cache.

A result records each model's configuration hash (its cache key) and the hash of its weights. Training
the same configuration again on another machine, thread count or torch build gives other weights, so
the figures ``igbench explain`` draws for a result need the very checkpoints the result was made with.
An archive carries them: ``igbench cache export RESULT`` writes one, ``igbench cache import ARCHIVE``
puts its checkpoints into a cache, checking each one's configuration hash and weights against the
archive's manifest and never replacing a different model already there unless told to.

Layout (an uncompressed tar; the weights do not compress): ``igbench-checkpoints.json``, the manifest,
then ``models/<config hash>.pt`` per model, byte for byte the cache's file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, atomic_write_bytes
from ..locks import exclusive_lock
from ..errors import IgbenchError
from .cache import CheckpointStore, config_hash, read_torch_file, state_dict_sha256
from .result_models import missing_checkpoint

MANIFEST = "igbench-checkpoints.json"
FORMAT = 1
_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ArchivedModel:
    """One model of an archive: its id in the result, cache key and weights hash."""

    id: str
    config_hash: str
    checkpoint_sha256: str

    @property
    def member(self) -> str:
        return f"models/{self.config_hash}.pt"


def _read_checkpoint(data: bytes, where: str, fix: str) -> dict[str, Any]:
    return read_torch_file(io.BytesIO(data), f"{where}, an igbench checkpoint,", fix, state_dict=True)


def _check(blob: dict[str, Any], model: ArchivedModel, where: str) -> None:
    """The checkpoint is the model the manifest names: same configuration hash, same weights."""
    config = (blob.get("meta") or {}).get("config")
    if config is None or config_hash(config) != model.config_hash:
        raise IgbenchError(f"{where}: its configuration does not hash to {model.config_hash[:12]} "
                           f"(model '{model.id}'); the file is damaged or not this model's")
    if state_dict_sha256(blob["state_dict"]) != model.checkpoint_sha256:
        raise IgbenchError(f"{where}: its weights are not the ones recorded for model '{model.id}' "
                           f"({model.config_hash[:12]}); the file is damaged or from another training")


def is_checkpoint_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an archive ``igbench cache export`` wrote (a tar holding the manifest)."""
    try:
        with tarfile.open(path, "r") as tar:  # export writes the manifest first: stop there, not at the end
            return any(member.name == MANIFEST for member in tar)
    except (OSError, tarfile.TarError, EOFError):
        return False


def export_checkpoints(result: dict[str, Any], result_name: str, store: CheckpointStore,
                       out: str | os.PathLike[str], echo=print) -> list[ArchivedModel]:
    """Write the checkpoints of ``result``'s models from ``store`` into the archive ``out`` (atomically).

    Every checkpoint must be in the cache and hold the weights the result recorded; otherwise this is a
    one-line error saying how to get it, and nothing is written. An existing ``out`` that is not such an
    archive (the result itself, a typo'd name) is refused, not replaced.
    """
    if Path(out).exists() and not is_checkpoint_archive(out):
        raise IgbenchError(f"{out} exists and is not a checkpoint archive of `igbench cache export`, so it is kept; "
                           f"choose another --out")
    models = [ArchivedModel(m["id"], m["config_hash"], m["checkpoint_sha256"]) for m in result["models"]]
    manifest = {
        "format": FORMAT,
        "result": result_name,
        "command": result["command"],
        "dataset": result["dataset"]["name"],
        "models": [{"id": m.id, "config_hash": m.config_hash, "checkpoint_sha256": m.checkpoint_sha256}
                   for m in models],
    }
    with atomic_path(Path(out)) as tmp:  # an error below leaves no archive behind
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
            for m in models:
                path = store.path(m.config_hash)
                if not path.is_file():
                    raise IgbenchError(missing_checkpoint(m.id, m.config_hash, store, result["command"]))
                data = path.read_bytes()  # read once: the bytes checked are the bytes packed
                _check(_read_checkpoint(data, str(path), "delete it and retrain the model"), m, str(path))
                _add_bytes(tar, m.member, data)
                echo(f"  {m.id}: {m.config_hash[:12]} ({len(data) / 1e6:.1f} MB)")
    return models


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


@contextlib.contextmanager
def _truncated_is_one_line(path: Path):
    """A truncated or damaged archive (a copy cut short) as one line, not tarfile's traceback; nothing has
    been written yet when it is read."""
    try:
        yield
    except (tarfile.TarError, EOFError) as exc:
        raise IgbenchError(f"{path} is truncated or damaged ({exc}); copy or export it again") from None


def _manifest(tar: tarfile.TarFile, where: str) -> tuple[dict[str, Any], list[ArchivedModel]]:
    """The manifest as read, and its models, checked for the fields import needs."""
    hint = "make one with `igbench cache export RESULT.json`"
    try:
        member = tar.extractfile(MANIFEST)
        data = json.loads(member.read()) if member else None
    except (KeyError, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise IgbenchError(f"{where} has no igbench checkpoint manifest ({MANIFEST}); {hint}")
    if data.get("format") != FORMAT:
        raise IgbenchError(f"{where} is a checkpoint archive of format {data.get('format')!r}; this igbench reads "
                           f"format {FORMAT}: upgrade igbench")
    models = []
    for entry in data["models"]:
        try:
            m = ArchivedModel(str(entry["id"]), str(entry["config_hash"]), str(entry["checkpoint_sha256"]))
        except (KeyError, TypeError):
            raise IgbenchError(f"{where}: a manifest entry lacks id, config_hash or checkpoint_sha256") from None
        if not _KEY.match(m.config_hash):
            raise IgbenchError(f"{where}: manifest entry '{m.id}' has no valid configuration hash")
        models.append(m)
    return data, models


def import_checkpoints(archive: str | os.PathLike[str], store: CheckpointStore, replace: bool = False,
                       echo=print) -> list[tuple[ArchivedModel, str]]:
    """Put an archive's checkpoints into ``store``; return ``(model, what happened)`` per model.

    Each checkpoint is checked against the manifest (configuration hash and weights) before anything is
    written. A model already in the cache with the same weights is left alone (``"already cached"``);
    one with other weights is an error unless ``replace`` (``"replaced"``). Files are written atomically.
    """
    path = Path(archive)
    if not path.is_file():
        raise IgbenchError(f"{path}: no such archive; check the path")
    try:
        tar = tarfile.open(path, "r")
    except (tarfile.TarError, OSError) as exc:  # tarfile's message lists every compression it tried, one a line
        reason = "not a tar archive" if isinstance(exc, tarfile.ReadError) else (exc.strerror or type(exc).__name__)
        raise IgbenchError(f"{path} is not a checkpoint archive ({reason}); make one with "
                           "`igbench cache export RESULT.json`") from None
    with tar, _truncated_is_one_line(path):
        manifest, models = _manifest(tar, str(path))
        echo(f"  checkpoints of {manifest.get('result', '?')} ({manifest.get('dataset', '?')}; "
             f"made by `{manifest.get('command', '?')}`)")
        payload: dict[str, bytes] = {}
        for m in models:
            try:
                info = tar.getmember(m.member)
            except KeyError:
                raise IgbenchError(f"{path}: {m.member} (model '{m.id}') is missing from the archive") from None
            member = tar.extractfile(info) if info.isfile() else None  # a link or folder is never unpacked
            if member is None:
                raise IgbenchError(f"{path}: {m.member} (model '{m.id}') is not a regular file in the archive (a "
                                   f"link or a folder); export it again with `igbench cache export`")
            data = member.read()
            _check(_read_checkpoint(data, f"{path}:{m.member}", "export the archive again"), m, f"{path}:{m.member}")
            payload[m.config_hash] = data
    outcome = []
    for m in models:  # all checked: now decide, before writing anything
        target = store.path(m.config_hash)
        if not target.is_file():
            outcome.append((m, "imported"))
            continue
        try:
            cached = state_dict_sha256(_read_checkpoint(target.read_bytes(), str(target), "")["state_dict"])
        except IgbenchError:  # a damaged cache entry: the archive's checked copy takes its place
            outcome.append((m, "imported over an unreadable cached file"))
            continue
        if cached == m.checkpoint_sha256:
            outcome.append((m, "already cached"))
        elif replace:
            outcome.append((m, "replaced"))
        else:
            raise IgbenchError(f"the cache {store.root} already holds model '{m.id}' ({m.config_hash[:12]}) with "
                               "other weights; pass --replace to overwrite it with the archive's (results made "
                               "from the cached one then no longer match it)")
    writes = {}  # config hash -> model: two model ids of one configuration share one checkpoint, and one lock
    for m, status in outcome:
        if status != "already cached":
            writes.setdefault(m.config_hash, m)
    with contextlib.ExitStack() as locks:
        # Each model's training lock, all taken before anything is written: a training that starts
        # meanwhile would clear half-written files of its model, and a refusal must leave the cache as it was.
        for m in writes.values():
            def busy(lock_path, m=m):
                raise IgbenchError(f"another igbench process is training model '{m.id}' ({m.config_hash[:12]}, lock "
                                   f"{lock_path}); import again once it has finished")

            locks.enter_context(exclusive_lock(store.lock_path(m.config_hash), on_busy=busy))
        for m in writes.values():
            atomic_write_bytes(store.path(m.config_hash), payload[m.config_hash])
            store.lock_path(m.config_hash).unlink(missing_ok=True)  # as a trainer does once its checkpoint exists
    for m, status in outcome:
        echo(f"  {m.id}: {m.config_hash[:12]} {status}")
    return outcome
