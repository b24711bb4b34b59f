"""Keep freed CPU memory inside the process, so large tensors do not page-fault on every allocation.

glibc serves allocations above its mmap threshold (128 KiB, raised on the fly up to 32 MiB) with fresh
``mmap`` pages and returns freed heap tops to the system above its trim threshold. A training step of
the paper CNN at batch 256 allocates and frees dozens of 3-25 MB activation tensors; with the defaults
many of them come back as new pages, and the first write to each page faults (the kernel zeroes it).
Measured on one CPU thread (``benchmarks/bench_defenses.py``, README) this was a large share of the
elementwise work in a double-backprop step. :func:`keep_freed_memory` sets the mmap threshold to glibc's
maximum (32 MiB) and the trim threshold to 1 GiB: the process keeps its peak heap and reuses it.

Only the speed changes, never a number. Linux with glibc only; elsewhere (or with
``IGBENCH_MALLOC_TUNING=0``) it does nothing. jemalloc or tcmalloc via ``LD_PRELOAD`` do the same job.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process; ``True`` when it is (or already was) tuned."""
    if "tuned" in _state:
        return _state["tuned"]
    tuned = False
    if os.environ.get("IGBENCH_MALLOC_TUNING", "1") != "0" and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl has no mallopt)
            mallopt = None
        if mallopt is not None:
            tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _state["tuned"] = tuned
    return tuned
