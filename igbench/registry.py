"""The plugin manager: loads built-in and third-party plugins, collects their objects, looks them up.

Built-ins (``BUILTIN_PLUGINS``) are registered exactly like third-party plugins, through the
``igbench_*`` hooks. Third-party packages are found through the ``igbench`` entry-point group;
each is loaded on its own so that one broken package is reported by name and the rest still work.

Environment variables:

``IGBENCH_PLUGINS``
    Which third-party plugins load: unset or ``all`` for every installed one, ``none`` for none,
    or a comma-separated list of entry-point, distribution or module names (a name no installed
    plugin has is reported, like any plugin problem).
``IGBENCH_STRICT_PLUGINS``
    ``1`` turns every plugin problem (import error, duplicate name, wrong type, unknown or unmarked
    hook, a parameter default its own check rejects) into an error.
"""

from __future__ import annotations

import importlib
import itertools
import os
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownPluginError, did_you_mean, with_article
from .plugin_calls import plugin_call
from .plugin_checks import declaration_problem
from .plugin_types import PLUGIN_KINDS, AttackProvider, Plugin

ENTRY_POINT_GROUP = "igbench"
ENV_PLUGINS = "IGBENCH_PLUGINS"
ENV_STRICT = "IGBENCH_STRICT_PLUGINS"

BUILTIN_PLUGINS = (
    "igbench.datasets",
    "igbench.architectures",
    "igbench.defenses",
    "igbench.attacks",
)

HOOK_FOR_KIND = {
    "dataset": "igbench_datasets",
    "architecture": "igbench_architectures",
    "defense": "igbench_defenses",
    "attack": "igbench_attacks",
}

KIND_PLURAL = {"dataset": "datasets", "architecture": "architectures", "defense": "defenses", "attack": "attacks"}


def _hook_arguments_problem(exc: Exception) -> str:
    """pluggy's complaint about a hook implementation, as one line with the fix: every igbench hook takes
    one argument, ``register``."""
    text = " ".join(str(exc).split())
    hook = next((h for h in HOOK_FOR_KIND.values() if h in text), None)
    if hook is not None and "can not be found in the hookspec" in text:
        return f"its {hook} takes arguments igbench does not pass; define it as def {hook}(register)"
    return text


def _plain(name: str) -> str:
    """A plugin, package or module name compared loosely: case and ``-``/``_``/``.`` do not matter."""
    return name.lower().replace("-", "_").replace(".", "_")


def _strict() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes"}


def _left_out() -> str:
    """How a refused plugin is spoken of: left out (a warning, the rest goes on), or, under strict mode,
    where the problem stops the command, refused."""
    return "is refused (IGBENCH_STRICT_PLUGINS)" if _strict() else "is left out"


def _keeping(which: str) -> str:
    """``; keeping 'igbench's`` for a warning; nothing under strict mode, where the problem is an error and
    nothing is kept."""
    return "" if _strict() else f"; keeping {which}"


class Registry:
    """Holds the pluggy manager and the collected plugin objects, by kind and name."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("igbench")
        self.pm.add_hookspecs(hookspecs)
        self._problems: list[str] = []
        self._load_failures: list[str] = []
        self._source_of: dict[int, str] = {}
        self._order: dict[int, int] = {}  # id(plugin) -> when it was registered: built-ins first
        self._counter = itertools.count()
        self._collected: dict[str, dict[str, Plugin]] | None = None
        self._providers: list[AttackProvider] = []
        self._left_out: dict[tuple[str, str], str] = {}  # (kind, name) -> why the registry refused it

    # ------------------------------------------------------------------ loading
    def load_builtins(self) -> None:
        for modname in BUILTIN_PLUGINS:
            self.register(importlib.import_module(modname), source="igbench")

    def load_entry_points(self, allowed: str | None = None) -> None:
        """Load the ``igbench`` entry points, each in its own try block."""
        allowed = os.environ.get(ENV_PLUGINS, "all") if allowed is None else allowed
        allowed = allowed.strip()
        if allowed.lower() == "none":
            return
        only = None if allowed.lower() in {"", "all"} else {a.strip() for a in allowed.split(",") if a.strip()}
        matched: set[str] = set()
        installed: list[str] = []
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if getattr(ep, "dist", None) is not None else ep.name
            installed.append(f"{ep.name} (package {dist})")
            if only is not None:
                # an entry point is named by itself, its package or its module, spelt with - or _
                names = {_plain(n) for n in (ep.name, dist, ep.module.split(".")[0])}
                hits = {a for a in only if _plain(a) in names}
                if not hits:
                    continue
                matched |= hits
            if self.pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
                self.register(module, source=dist, name=ep.name)
                unmarked = any(callable(getattr(module, hook, None)) for hook in HOOK_FOR_KIND.values())
                if not self.pm.get_hookcallers(module) and not unmarked:  # pluggy takes it without a word
                    self._no_hooks(ep, dist, module)  # (an unmarked hook function has its own problem)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                if isinstance(exc, PluginError) and _strict():
                    raise  # already a one-line problem of its own (an unknown hook under strict mode)
                self._load_failures.append(ep.name)
                self._problem(
                    f"plugin '{ep.name}' from package '{dist}' failed to load "
                    f"({type(exc).__name__}: {exc}); fix or uninstall it, or leave it out with "
                    f"{ENV_PLUGINS}=<names of the others>"
                )
        for name in sorted((only or set()) - matched):  # a typo used to load nothing, without a word
            self._problem(
                f"{ENV_PLUGINS} names '{name}', which no installed plugin is called"
                f"{did_you_mean(name, [i.split(' ')[0] for i in installed])}; installed: "
                f"{', '.join(installed) or 'none'}")

    def _no_hooks(self, ep, dist: str, loaded: Any) -> None:
        """Report an entry point whose object implements no igbench hook (it registered nothing)."""
        kind = "module" if isinstance(loaded, type(importlib)) else "class" if isinstance(loaded, type) else "object"
        what = f"the {kind} {getattr(loaded, '__name__', type(loaded).__name__)}"
        hint = ""
        if isinstance(loaded, Plugin) or (isinstance(loaded, type) and issubclass(loaded, Plugin)):
            hint = (" (a plugin object is registered from a hook: @hookimpl def igbench_<kinds>(register): "
                    "register(MyPlugin()))")
        self._problem(f"plugin '{ep.name}' from package '{dist}' registers nothing: its entry point {ep.value!r} "
                      f"names {what}, which has no @hookimpl igbench_* function{hint}; point the entry point at "
                      f"the module that defines them")

    def register(self, plugin: Any, source: str | None = None, name: str | None = None) -> str:
        """Register a module or object implementing ``igbench_*`` hooks; returns its pluggy name."""
        try:
            registered = self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # pluggy's message runs over three lines
            raise PluginError(f"cannot register plugin {name or getattr(plugin, '__name__', plugin)!r}: "
                              f"{_hook_arguments_problem(exc)}") from None
        except ValueError as exc:
            raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from None
        self._source_of[id(plugin)] = source or getattr(plugin, "__name__", None) or type(plugin).__name__
        self._order[id(plugin)] = next(self._counter)
        self._collected = None
        try:
            self._check_hook_names(plugin, self._source_of[id(plugin)], name)
        except PluginError:  # strict mode: leave nothing half-registered behind
            self.unregister(plugin)
            raise
        return registered

    def _check_hook_names(self, plugin: Any, source: str, name: str | None) -> None:
        """Report what pluggy would ignore silently or only in ``check_pending``'s terms: a hook
        implementation whose name is no igbench hook (a typo such as ``igbench_defense``), and an
        ``igbench_*`` function that is not marked ``@hookimpl`` (pluggy skips it)."""
        who = f"plugin '{name}' from package '{source}'" if name and name != source else f"package '{source}'"
        hooks = list(HOOK_FOR_KIND.values())
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.name not in hooks:
                self._problem(
                    f"{who} implements {caller.name}, which is not an igbench hook"
                    f"{did_you_mean(caller.name, hooks)}; rename it to one of {', '.join(hooks)}"
                )
        marked = {caller.name for caller in self.pm.get_hookcallers(plugin) or []}
        for attr in dir(plugin):
            if not attr.startswith("igbench_") or attr in marked:
                continue
            value = getattr(plugin, attr, None)
            if not callable(value) or isinstance(value, type):
                continue
            if attr not in hooks and not did_you_mean(attr[len("igbench_"):], [h[len("igbench_"):] for h in hooks]):
                continue  # a helper that merely shares the prefix
            hint = "" if attr in hooks else did_you_mean(attr, hooks)
            self._problem(
                f"function {attr} in {who} is not marked @igbench.hookimpl; igbench ignores it{hint} "
                f"(put `@hookimpl` from `from igbench import hookimpl` above it)"
            )

    def unregister(self, plugin: Any = None, name: str | None = None) -> None:
        removed = self.pm.unregister(plugin=plugin, name=name)
        if removed is not None:
            self._source_of.pop(id(removed), None)
            self._order.pop(id(removed), None)
        self._collected = None

    def refresh(self) -> None:
        """Collect the hooks again at the next lookup, e.g. after ``IGBENCH_STRICT_PLUGINS`` changed."""
        self._collected = None

    @property
    def load_failures(self) -> list[str]:
        """Entry-point names of the third-party plugins that failed to load (their problems say why)."""
        return list(self._load_failures)

    @property
    def problems(self) -> list[str]:
        """Every plugin problem so far: load failures, and what collecting the hooks finds (duplicate
        names, wrong types, a hook that raised). Collects first, so a caller that reports problems
        before its first lookup still sees them."""
        self._collect()
        return list(self._problems)

    # ------------------------------------------------------------------ collecting
    def _problem(self, text: str) -> None:
        if _strict():
            raise PluginError(text)
        if text not in self._problems:
            self._problems.append(text)

    def _collect(self) -> dict[str, dict[str, Plugin]]:
        if self._collected is not None:
            return self._collected
        self._left_out = {}
        collected: dict[str, dict[str, Plugin]] = {kind: {} for kind in HOOK_FOR_KIND}
        providers: list[AttackProvider] = []
        for kind, hookname in HOOK_FOR_KIND.items():
            base = PLUGIN_KINDS[kind]
            hook = getattr(self.pm.hook, hookname)
            # In registration order, built-ins first, so that a later duplicate never shadows them.
            # pluggy's own order puts trylast implementations first and tryfirst ones last.
            for impl in sorted(hook.get_hookimpls(), key=lambda i: self._order.get(id(i.plugin), -1)):
                source = self._source_of.get(id(impl.plugin), impl.plugin_name)
                who = f"plugin '{impl.plugin_name}' ({source})"
                if impl.wrapper or impl.hookwrapper:  # calling it would only make a generator
                    self._problem(f"{who} marks {hookname} as a wrapper, so it registers nothing; "
                                  f"use a plain @hookimpl that calls register(obj)")
                    continue
                objects: list[Any] = []
                try:
                    returned = impl.function(*([objects.append] if impl.argnames else []))
                except Exception as exc:  # noqa: BLE001
                    self._problem(f"{who} failed in {hookname}: {type(exc).__name__}: {exc}")
                    continue
                if returned:  # returned objects instead of, or as well as, registering them (None and [] are fine)
                    what = "and registered nothing" if not objects else f"beside the {len(objects)} it registered"
                    self._problem(f"{who} returned {type(returned).__name__} from {hookname} {what}; igbench "
                                  f"ignores return values: call register(obj) once per object")
                for obj in objects:
                    self._add(kind, base, obj, source, collected, providers)
        self._collected = collected
        self._providers = providers
        return collected

    def _add(self, kind, base, obj, source, collected, providers) -> None:
        if isinstance(obj, type):
            self._problem(f"{source} registered the class {obj.__name__} as {with_article(kind)}; register an instance: register({obj.__name__}())")
            return
        if kind == "attack" and isinstance(obj, AttackProvider):
            if not obj.prefix:
                self._problem(f"{source} registered an attack provider without a prefix")
                return
            # one prefix inside another ("art:" and "art:x") would leave the names of one unreachable
            taken = next((p for p in providers if p.prefix.startswith(obj.prefix) or obj.prefix.startswith(p.prefix)),
                         None)
            if taken is not None:
                both = (f"attack prefix '{obj.prefix}' is served by both" if taken.prefix == obj.prefix else
                        f"attack prefixes '{taken.prefix}' and '{obj.prefix}' overlap, served by")
                kept = _keeping(f"'{taken.source}'s")
                self._problem(f"{both} '{taken.source}' and '{source}'{kept}; choose another prefix")
                return
            obj.source = source
            providers.append(obj)
            return
        if not isinstance(obj, base):
            other = next((k for k, b in PLUGIN_KINDS.items() if isinstance(obj, b)), None)
            if other is not None:  # the right object in the wrong hook
                self._problem(f"{source} registered the {other} '{getattr(obj, 'name', '?')}' in "
                              f"{HOOK_FOR_KIND[kind]}; register it in {HOOK_FOR_KIND[other]}")
            else:
                self._problem(f"{source} registered {obj!r} as {with_article(kind)}, but it is not {with_article(base.__name__)}")
            return
        if not isinstance(obj.name, str) or not obj.name:
            self._problem(f"{source} registered {with_article(kind)} ({type(obj).__name__}) without a name, so it "
                          f"{_left_out()}; set name = \"...\" on its class")
            return
        existing = collected[kind].get(obj.name)
        if existing is not None and existing.source == source:
            kept = _keeping(f"the first ({type(existing).__name__})")
            self._problem(f"{source} registers {kind} '{obj.name}' twice{kept}; remove one register() call or "
                          f"rename one of them")
            return
        if existing is not None:
            kept = _keeping(f"'{existing.source}'s")
            self._problem(f"{kind} '{obj.name}' is registered by both '{existing.source}' and '{source}'{kept}; "
                          f"rename one of them")
            return
        problem = declaration_problem(obj)
        if problem:
            why = f"{kind} '{obj.name}' from package '{source}' {_left_out()}: {problem}"
            self._left_out[(kind, obj.name)] = why  # for a later lookup by name, which says why
            self._problem(why)
            return
        obj.source = source
        collected[kind][obj.name] = obj

    # ------------------------------------------------------------------ lookup
    def plugins(self, kind: str) -> list[Plugin]:
        """Registered plugins of ``kind``, sorted by name (attack providers not included)."""
        return sorted(self._collect()[kind].values(), key=lambda p: p.name)

    def names(self, kind: str) -> list[str]:
        return [p.name for p in self.plugins(kind)]

    def providers(self) -> list[AttackProvider]:
        self._collect()
        return list(self._providers)

    def get(self, kind: str, name: str) -> Any:
        """The plugin called ``name``; a one-line :class:`UnknownPluginError` lists the choices."""
        if kind not in HOOK_FOR_KIND:
            raise ValueError(f"unknown plugin kind {kind!r}")
        found = self._collect()[kind].get(name)
        if found is not None:
            return found
        if (kind, name) in self._left_out:  # it exists, but the registry refused it: say why, not "unknown"
            raise UnknownPluginError(self._left_out[(kind, name)])
        if kind == "attack":
            for provider in self._providers:
                if name.startswith(provider.prefix):
                    with plugin_call(provider, "resolve"):  # a third-party provider's bug, named
                        attack = provider.resolve(name[len(provider.prefix):])
                    attack.source = attack.source or provider.source
                    return attack
        choices = self.names(kind)
        prefix = name[:name.index(":") + 1] if ":" in name else ""
        if kind == "attack" and prefix:  # `foo:bar` listed the native attacks as the choices
            known = ", ".join(p.prefix for p in self._providers) or "none installed"
            hint = did_you_mean(prefix.lower(), [p.prefix for p in self._providers])  # ART: is art:
            raise UnknownPluginError(f"unknown attack '{name}': no attack provider reads the prefix '{prefix}'{hint}; "
                                     f"installed providers: {known}")
        msg = f"unknown {kind} '{name}'; choose from: {', '.join(choices) or '(none registered)'}"
        if kind == "attack" and self._providers:
            msg += ", " + ", ".join(f"{p.prefix}<Name>" for p in self._providers)
        raise UnknownPluginError(msg + did_you_mean(name, choices, cutoff=0.5))


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use (built-ins, then entry points)."""
    global _REGISTRY
    if _REGISTRY is None:
        reg = Registry()
        reg.load_builtins()
        reg.load_entry_points()
        _REGISTRY = reg
    return _REGISTRY


def loaded_registry() -> Registry | None:
    """The process-wide registry if something has loaded it, else ``None`` (without loading it: for code on
    an error path that must not import every plugin to explain an error)."""
    return _REGISTRY


def reset_registry() -> None:
    """Forget the process-wide registry (tests use this after changing the environment)."""
    global _REGISTRY
    _REGISTRY = None

