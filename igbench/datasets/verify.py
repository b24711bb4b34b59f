"""One md5 verifier for every data file (canonical checksums of the published files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DataError


def md5_of_bytes(data: bytes | bytearray | memoryview) -> str:
    """md5 hex digest of an in-memory buffer."""
    return hashlib.md5(data).hexdigest()


def md5_of_file(path: Path, chunk: int = 1 << 22) -> str:
    """md5 hex digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_md5(path: Path, actual: str, expected: str, what: str, fix: str) -> None:
    """Raise a one-line :class:`DataError` naming ``path`` when ``actual`` differs from ``expected``.

    ``what`` says which content was hashed (e.g. "uncompressed content"); ``fix`` how to repair it.
    """
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path}: md5 of its {what} is {actual}, expected {expected}; "
            f"the file is corrupted, truncated or not the published one: {fix}"
        )
