"""Notes and warnings that igbench's library code gives while it works, and where they go.

A line goes to stderr unless a caller routes it: :func:`said_through` sends every line said inside it to
the caller's ``echo`` (the CLI's ``click.echo``, a test's list, a notebook's display). ``run_grid`` and
``train_models`` route them through the ``echo`` they are given, so a library user who passes one sees the
trainer's and the data loader's notes there too, not on a stream they do not read.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

_ECHO: ContextVar[Callable[[str], None] | None] = ContextVar("igbench_echo", default=None)


def say(text: str) -> None:
    """Give ``text`` (one line) to the current :func:`said_through` echo, or to stderr."""
    echo = _ECHO.get()
    if echo is None:
        print(text, file=sys.stderr, flush=True)
    else:
        echo(text)


@contextmanager
def said_through(echo: Callable[[str], None]) -> Iterator[None]:
    """Send every :func:`say` inside the block to ``echo``."""
    token = _ECHO.set(echo)
    try:
        yield
    finally:
        _ECHO.reset(token)
