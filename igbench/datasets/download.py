"""Automatic downloads through torchvision (the path that online users take), with a short timeout."""

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


def torchvision_download(class_name: str, root: Path, **kwargs) -> str | None:
    """Download ``torchvision.datasets.<class_name>`` into ``root``; return ``None`` or why it failed.

    Uses a 10 s socket timeout (the previous default is restored) and sends torchvision's progress
    output to stderr so that stdout stays clean. Skipped when ``IGBENCH_OFFLINE`` is set.
    """
    if offline():
        return f"automatic download is off ({ENV_OFFLINE} is set)"
    created = _first_missing(root)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(SOCKET_TIMEOUT_S)
    try:
        import torchvision.datasets as tvd

        cls = getattr(tvd, class_name)
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr):
            cls(root=str(root), download=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure (network, disk, torchvision) means "not available"
        _remove_empty_tree(created)
        text = str(exc).strip().splitlines()
        return f"download with torchvision.datasets.{class_name} into {root} failed: {type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    finally:
        socket.setdefaulttimeout(old_timeout)
    return None
