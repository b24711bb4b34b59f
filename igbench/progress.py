"""Progress of long work: a tqdm bar on a terminal, a line every minute in a log file.

A full-length replication trains for hours, usually in the background with its output sent to a file,
where a bar is useless and tqdm stays silent. There :func:`progress` prints a plain line instead, every
``IGBENCH_PROGRESS_INTERVAL`` seconds (default 60) and at the end: done/total, rate, time left and the
latest postfix (loss, accuracy). Work shorter than the interval prints nothing.
"""

from __future__ import annotations

import os
import sys
import time

DEFAULT_INTERVAL = 60.0


def _interval() -> float:
    raw = os.environ.get("IGBENCH_PROGRESS_INTERVAL", "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_INTERVAL
    except ValueError:
        if raw not in _WARNED:
            _WARNED.add(raw)
            print(f"igbench: warning: IGBENCH_PROGRESS_INTERVAL={raw!r} is not a number of seconds; "
                  f"using {DEFAULT_INTERVAL:g}", file=sys.stderr)
        return DEFAULT_INTERVAL


_WARNED: set[str] = set()


def format_duration(seconds: float) -> str:
    """``1h05m`` from an hour and five minutes, ``2m07s`` under an hour."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class LogLines:
    """The tqdm methods igbench uses (``update``, ``set_postfix``, ``close``), written as log lines."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it", stream=None,
                 interval: float | None = None, clock=time.monotonic) -> None:
        self.total, self.n, self.desc, self.unit = int(total), int(initial), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = _interval() if interval is None else interval
        self.clock = clock
        self.started = self.last = clock()
        self.first = self.last_n = self.n
        self.postfix = ""
        self.closed = False

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def update(self, k: int = 1) -> None:
        self.n += int(k)
        now = self.clock()
        if now - self.last >= self.interval and self.n < self.total:
            self._write(now)

    def close(self) -> None:
        """A last line, for work that ran long enough to print one before (short work stays quiet)."""
        if not self.closed:
            self.closed = True
            now = self.clock()
            if self.n > self.first and now - self.started >= self.interval:
                self._write(now)

    def line(self, now: float) -> str:
        """The status line. While work is left, the rate (and so the time left) is that of the work since
        the last line; the line at the end gives the whole run's average rate beside its duration."""
        done = self.n - self.first
        elapsed = max(now - self.started, 1e-9)
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}s ({100.0 * self.n / max(self.total, 1):.0f}%)"]
        if done > 0:
            recent = self.n - self.last_n
            left = self.total - self.n
            rate = (now - self.last) / recent if recent > 0 and left > 0 else elapsed / done
            parts.append(f"{rate:.3g} s/{self.unit}" if rate >= 0.01 else f"{1 / rate:.3g} {self.unit}/s")
            parts.append(f"{format_duration(left * rate)} left" if left > 0 else f"took {format_duration(elapsed)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _write(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self.last, self.last_n = now, self.n


def progress(total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True):
    """A tqdm bar when stderr is a terminal, :class:`LogLines` when it is not, nothing when disabled."""
    from tqdm.auto import tqdm

    if enabled and not sys.stderr.isatty():
        return LogLines(total, initial=initial, desc=desc, unit=unit)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=False,
                dynamic_ncols=True)
