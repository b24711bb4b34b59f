"""Calls into a third-party plugin's own code, and how errors name the plugin.

An exception raised inside a third-party plugin's ``loss``, ``train``, ``build``, ``perturb`` or ``targets``
would otherwise surface as a traceback that says nothing about which plugin, or which package, it came
from. :func:`plugin_call` turns it into one line naming both and the method (a
:class:`~igbench.errors.PluginCrashed`, with the original exception kept as ``original`` and as its
cause). ``IGBENCH_DEBUG=1`` lets the original exception through, traceback and all. Built-in plugins are
never wrapped: their bugs are igbench's, and their tracebacks are what an igbench developer needs.
Neither are igbench's own errors (a plugin may raise :class:`~igbench.errors.ParamError` on purpose),
nor ``KeyboardInterrupt``.

Imports nothing heavy: :mod:`igbench.plugin_types` uses it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import IgbenchError, PluginCrashed

#: Set to 1 to see the original traceback of an exception raised inside a third-party plugin.
DEBUG_ENV = "IGBENCH_DEBUG"


def debugging() -> bool:
    """Whether ``IGBENCH_DEBUG`` asks for the original tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in {"", "0", "false", "no", "off"}


def is_third_party(plugin: Any) -> bool:
    """A plugin registered by a package other than igbench (an unregistered object has no source: not)."""
    source = getattr(plugin, "source", "") or ""
    return bool(source) and source != "igbench"


def named(plugin: Any) -> str:
    """``defense 'x' from package 'p'`` for a third-party plugin, ``defense 'x'`` for a built-in one."""
    label = getattr(plugin, "label", None) or f"plugin '{getattr(plugin, 'name', '?')}'"
    return f"{label} from package '{plugin.source}'" if is_third_party(plugin) else label


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``ValueError: first line of the message`` (torch's messages run over several lines)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def plugin_call(plugin: Any, method: str) -> Iterator[None]:
    """Run a call of ``plugin.method`` inside; an unexpected exception from a third-party plugin becomes
    a one-line :class:`~igbench.errors.PluginCrashed` (unless ``IGBENCH_DEBUG=1``)."""
    try:
        yield
    except IgbenchError:
        raise
    except Exception as exc:
        if not is_third_party(plugin) or debugging():
            raise
        raise PluginCrashed(f"{named(plugin)} failed in {method}: {one_line(exc)} (raised in that "
                            f"package's code, not igbench's: check the plugin's parameters, or report it to its "
                            f"authors; run with {DEBUG_ENV}=1 for the traceback)", exc) from exc
