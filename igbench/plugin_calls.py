"""Calls into a third-party plugin's own code, and how errors name the plugin.

An exception raised inside a third-party plugin's ``load``, ``loss``, ``train``, ``build``, ``perturb`` or ``targets``
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

from .errors import IgbenchError, PluginCrashed, UsageError

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
    a one-line :class:`~igbench.errors.PluginCrashed` (unless ``IGBENCH_DEBUG=1``).

    The exception is blamed on the third-party plugin whose code raised it, which need not be the one
    called: a built-in defense's ``train`` runs a third-party architecture's ``forward``, and an attack's
    ``perturb`` runs the model. Those used to end in a traceback, or to blame the attack."""
    try:
        yield
    except IgbenchError:
        raise
    except Exception as exc:
        if debugging():
            raise
        from .torch_utils import out_of_memory

        if (what := out_of_memory(exc)) is not None:  # the machine's limit, not a bug of the plugin's
            raise UsageError(f"{named(plugin)} ran out of {what} in {method} ({one_line(exc)}); free some, or choose "
                             f"smaller settings (--batch-size, --n-test, the plugins' parameters)") from None
        try:
            raiser = _raised_in(exc, plugin)
        except Exception:  # noqa: BLE001 - explaining must never hide the original error
            raiser = None
        if raiser is not None and raiser[0] is not plugin:
            other, where = raiser
            raise PluginCrashed(f"{named(other)} failed ({where}) while {named(plugin)} ran {method}: "
                                f"{one_line(exc)} (raised in that package's code, not igbench's: report it to its "
                                f"authors; run with {DEBUG_ENV}=1 for the traceback)", exc) from exc
        if not is_third_party(plugin):
            raise
        check = "" if method == "resolve" else "check the plugin's parameters, or "  # resolve takes none
        raise PluginCrashed(f"{named(plugin)} failed in {method}: {one_line(exc)} (raised in that "
                            f"package's code, not igbench's: {check}report it to its "
                            f"authors; run with {DEBUG_ENV}=1 for the traceback)", exc) from exc


def _raised_in(exc: BaseException, called: Any) -> tuple[Any, str] | None:
    """``(plugin, "in forward, model.py line 12")`` for the innermost frame of ``exc``'s traceback that lies
    in a third-party plugin's code (its class's module, or its package), or None. Where one file or package
    holds several plugins, a model's method is its architecture's, else ``called`` is preferred. Only on
    the error path: it reads the registry."""
    import sys
    from pathlib import Path

    from .registry import loaded_registry

    registry = loaded_registry()
    if registry is None:
        return None
    places: list[tuple[str, Any]] = []  # (a module file or a package folder, the plugin defined there)
    for kind in ("architecture", "dataset", "defense", "attack"):
        for p in registry.plugins(kind):
            if not is_third_party(p):
                continue
            for module in (type(p).__module__, type(p).__module__.split(".")[0]):
                file = getattr(sys.modules.get(module), "__file__", None)
                if file:
                    places.append((str(Path(file).parent) + "/" if Path(file).name == "__init__.py" else file, p))
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    for frame in reversed(frames):  # innermost first
        filename = frame.tb_frame.f_code.co_filename
        owners = [p for place, p in places if filename == place or (place.endswith("/") and filename.startswith(place))]
        if not owners:
            continue
        in_model = _is_module(frame.tb_frame.f_locals.get("self"))
        chosen = next((p for p in owners if in_model and p.kind == "architecture"), None) \
            or (called if called in owners else owners[0])
        return chosen, f"in {frame.tb_frame.f_code.co_name}, {Path(filename).name} line {frame.tb_lineno}"
    return None


def _is_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (without importing torch when nothing has)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)
