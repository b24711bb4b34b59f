"""Stop a training at a step boundary, with a snapshot, when the user presses Ctrl-C or the job is killed.

Without this, an interruption loses the work since the last periodic snapshot (up to two minutes), and
stopping in the middle of an optimizer step leaves weights that must not be saved. Inside
:func:`deferred_stop` the first SIGINT, SIGTERM or SIGHUP only sets a flag (a signal the process ignores,
as ``nohup`` ignores SIGHUP, stays ignored); the training loop checks it after each
complete step, saves a snapshot and raises ``KeyboardInterrupt``. A second signal stops at once, as usual.
Signal handlers can only be set from the main thread; elsewhere the block changes nothing.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

#: Ctrl-C, ``kill``, and a closed terminal or SSH session (SIGHUP; not where it is ignored, as under nohup)
_SIGNALS = tuple(s for s in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class StopRequest:
    """Whether a stop was asked for (``bool(request)``), and by which signal."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def deferred_stop():
    """Yield a :class:`StopRequest` that the first SIGINT/SIGTERM/SIGHUP sets; the second one acts at once."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    previous = {s: h for s, h in previous.items() if h is not signal.SIG_IGN}

    def handler(signum, frame):
        if request:  # asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        request.signal = signum

    for s in previous:
        signal.signal(s, handler)
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
