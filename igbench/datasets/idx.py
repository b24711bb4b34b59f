"""One reader for IDX files (the MNIST format), plain or gzip-compressed."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .verify import md5_of_bytes, verify_md5

# IDX type codes -> big-endian numpy dtypes.
_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def idx_names(stem: str) -> list[str]:
    """The accepted file names for ``stem`` (e.g. ``train-images-idx3-ubyte``): plain first, then gzip,
    then the dotted form (``train-images.idx3-ubyte``) that some unpackers produce."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, f"{stem}.gz", dotted, f"{dotted}.gz"]


def read_raw(path: Path, fix: str) -> bytes:
    """The uncompressed bytes of ``path`` (gunzipped when it is gzip); a bad gzip is a :class:`DataError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; check its permissions, or {fix}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path} is not a valid gzip file ({exc}); it is truncated or corrupted: {fix}") from None
    return data


def parse_idx(data: bytes, path: Path, ndim: int, fix: str) -> np.ndarray:
    """Parse IDX bytes into an array with ``ndim`` dimensions (no copy: a read-only view of ``data``).

    Checks the magic number, the number of dimensions and that the size matches the header exactly.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'}): {fix}")
    if data[3] != ndim:
        raise DataError(f"{path} has {data[3]} dimensions, expected {ndim} (wrong file?): {fix}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header incomplete): {fix}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[data[2]]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise DataError(f"{path} is truncated: {len(data)} bytes, its header {dims} needs {expected}: {fix}")
    if len(data) > expected:
        raise DataError(f"{path} has {len(data) - expected} bytes more than its header {dims} allows: {fix}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr


def read_idx(path: Path, ndim: int, fix: str, expected_md5: str | None = None,
             expected_as: tuple[str, str, str] | None = None) -> np.ndarray:
    """Read an IDX file (plain or .gz) with ``ndim`` dimensions; verify the md5 of its uncompressed content.

    Every problem (unreadable, bad gzip, bad header, truncated, checksum mismatch) is a one-line
    :class:`DataError` naming ``path`` and ending with ``fix``. ``expected_as`` is ``(data set title, file
    stem, where it is looked for)``: with it, a mismatching file that is another built-in data set's (MNIST
    where Fashion-MNIST was expected) is named as such instead of being called corrupted.
    """
    data = read_raw(path, fix)
    arr = parse_idx(data, path, ndim, fix)
    if expected_md5 is not None:
        actual = md5_of_bytes(data)
        if actual != expected_md5 and expected_as is not None:
            from .idx_known import wrong_file_message

            msg = wrong_file_message(path, actual, *expected_as)
            if msg:
                raise DataError(msg)
        verify_md5(path, actual, expected_md5, "uncompressed content", fix)
    return arr
