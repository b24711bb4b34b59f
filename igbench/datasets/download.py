"""Automatic downloads (the path that online users take) through torchvision's data set classes or its
archive helper, with a short timeout; a failed download leaves nothing behind."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

from .locate import ENV_OFFLINE, offline

SOCKET_TIMEOUT_S = 10.0


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (what a failed download should remove)."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _remove_empty_tree(top: Path | None) -> None:
    """Remove the empty folders under (and including) ``top`` that a failed download left behind."""
    if top is None or not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [top]:
        try:
            d.rmdir()
        except OSError:
            pass


@contextlib.contextmanager
def _guarded_download(root: Path):
    """Create ``root``, set a 10 s socket timeout and send progress output to stderr for the block; on an
    exception remove the empty folders it created and re-raise (the caller turns it into a reason)."""
    created = _first_missing(root)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(SOCKET_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except BaseException:
        _remove_empty_tree(created)
        raise
    finally:
        socket.setdefaulttimeout(old_timeout)


def _reason(what: str, exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{what} failed: {type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def torchvision_download(class_name: str, root: Path, **kwargs) -> str | None:
    """Download ``torchvision.datasets.<class_name>`` into ``root``; return ``None`` or why it failed.

    Uses a 10 s socket timeout (the previous default is restored) and sends torchvision's progress
    output to stderr so that stdout stays clean. Skipped when ``IGBENCH_OFFLINE`` is set.
    """
    if offline():
        return f"automatic download is off ({ENV_OFFLINE} is set)"
    try:
        with _guarded_download(root):
            import torchvision.datasets as tvd

            getattr(tvd, class_name)(root=str(root), download=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure (network, disk, torchvision) means "not available"
        return _reason(f"automatic download with torchvision.datasets.{class_name} into {root}", exc)
    return None


def archive_download(urls: tuple[str, ...], root: Path) -> str | None:
    """Download a .tar.gz from the first of ``urls`` (mirrors) that answers and unpack it into ``root``;
    return ``None`` or why every mirror failed. Same timeout, output and offline rules as
    :func:`torchvision_download`."""
    if offline():
        return f"automatic download is off ({ENV_OFFLINE} is set)"
    reasons = []
    for url in urls:
        try:
            with _guarded_download(root):
                _download_and_unpack(url, root)
            return None
        except Exception as exc:  # noqa: BLE001 - try the next mirror
            reasons.append(_reason(f"automatic download of {url}", exc))
    return "; ".join(reasons)


def _download_and_unpack(url: str, root: Path) -> None:
    """Fetch ``url`` into ``root`` and unpack it there. It unpacks into a hidden folder first and moves
    the result in only when complete, and deletes the archive either way, so that a broken download
    never leaves files that a later search would take for the data set."""
    import shutil
    from urllib.parse import urlparse

    from torchvision.datasets.utils import download_and_extract_archive

    archive = root / Path(urlparse(url).path).name
    unpacking = root / f".unpacking-{archive.name}"
    shutil.rmtree(unpacking, ignore_errors=True)
    try:
        download_and_extract_archive(url, download_root=str(root), extract_root=str(unpacking))
        for item in sorted(unpacking.iterdir()):
            item.rename(root / item.name)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(unpacking, ignore_errors=True)
