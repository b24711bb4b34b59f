"""``--param`` options: ``NAME=VALUE`` for every selected plugin that takes NAME, or ``PLUGIN.NAME=VALUE``.

Values stay strings here; each plugin's :meth:`~igbench.plugin_types.Plugin.resolve_params` converts and
checks them. A name that no selected plugin takes is an error, so a typo is never silently dropped.
"""

from __future__ import annotations

from typing import Any, Iterable

from .errors import ParamError, did_you_mean


def parse_param_option(text: str) -> tuple[str | None, str, str]:
    """``"gradreg.lambda=100"`` -> ``("gradreg", "lambda", "100")``; ``"eps=0.3"`` -> ``(None, "eps", "0.3")``.
    PLUGIN may be a model id with its own settings, ``gradreg[lambda=1000].scaling=paper`` (the ``=`` inside
    brackets is not the one that separates the value)."""
    key, sep, value = _split_value(text)
    key = key.strip()
    if not sep or not key:
        raise ParamError(f"--param {text!r} must look like NAME=VALUE or PLUGIN.NAME=VALUE (e.g. --param lambda=100)")
    plugin, dot, name = key.rpartition(".")
    if not dot:
        return None, key, value.strip()
    if not plugin or not name:
        raise ParamError(f"--param {text!r}: expected PLUGIN.NAME=VALUE, e.g. gradreg.lambda=100")
    return plugin, name, value.strip()


def _models_hint(target: str, name: str, selections: Iterable[str]) -> str:
    """How to reach the models of ``target`` (``--defense gradreg[lambda=1]``) that a ``--param target.name``
    missed: ``ID.name=VALUE``, unless every one sets ``name`` in its brackets already, which refuses that."""
    from .selections import parse_defense

    models = [sel for sel in selections if sel.startswith(f"{target}[")]
    if not models:
        return ""
    open_ones = [m for m in models if name not in parse_defense(m).settings]
    where = f"address one as {open_ones[0]}.{name}=VALUE, or " if open_ones else ""
    return f"; this grid names the models of {target} {', '.join(models)}: {where}give {name} inside its [...]"


def _split_value(text: str) -> tuple[str, str, str]:
    """``text.partition("=")`` at the first ``=`` outside brackets."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "=" and depth == 0:
            return text[:i], "=", text[i + 1:]
    return text, "", ""


def distribute_params(options: Iterable[str], plugins: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Assign ``--param`` values to plugins.

    ``plugins`` maps a selection name (the name used on the command line, e.g. ``gradreg`` or
    ``art:CarliniL2Method``) to its plugin object. Returns ``{selection name: {param: value}}``.
    """
    out: dict[str, dict[str, str]] = {name: {} for name in plugins}
    # (selection, parameter) -> (the --param text that set it, whether it named the plugin). PLUGIN.NAME=V
    # wins over NAME=V, in either order (a value for all, another for one); two of the same kind that
    # disagree are refused: the last one used to win without a word.
    set_by: dict[tuple[str, str], tuple[str, bool]] = {}

    def assign(sel: str, name: str, value: str, text: str, qualified: bool) -> None:
        earlier = set_by.get((sel, name))
        if earlier is not None:
            earlier_text, earlier_qualified = earlier
            if earlier_qualified and not qualified:
                return  # PLUGIN.NAME's value stays
            if earlier_qualified == qualified:
                if _same_value(out[sel][name], value):
                    return  # one value given twice (5, then 5.0) is kept as first written
                raise ParamError(f"--param {earlier_text} and --param {text} both set {name} of {sel}; keep one")
        out[sel][name] = value
        set_by[(sel, name)] = (text, qualified)

    for text in options:
        target, name, value = parse_param_option(text)
        if target is not None:
            if target not in plugins:
                hint = _models_hint(target, name, plugins)
                raise ParamError(
                    f"--param {text}: '{target}' is not selected; selected: {', '.join(plugins)}{hint}"
                )
            assign(target, name, value, text, True)
            continue
        takers = [sel for sel, plugin in plugins.items() if _takes(plugin, name)]
        if not takers:
            # Plugins without parameters are left out: "none takes nothing" read as a riddle.
            listing = "; ".join(
                f"'{sel}' takes {', '.join(p.name for p in plugin.params)}" for sel, plugin in plugins.items()
                if plugin.params
            ) or "no selected plugin takes any parameter"
            taken = [p.name for plugin in plugins.values() for p in getattr(plugin, "params", ())]
            raise ParamError(f"--param {text}: no selected plugin takes '{name}'{did_you_mean(name, taken)} ({listing})")
        for sel in takers:
            assign(sel, name, value, text, False)
    return out


def shared_param_notes(options: Iterable[str], plugins: dict[str, Any]) -> list[str]:
    """A note for each unqualified ``--param NAME=VALUE`` that more than one selected plugin takes: it sets
    all of them, which is easy to miss (``eps=0.25`` sets advtrain's training eps and fgsm's sweep alike)."""
    notes = []
    named = {(target, name) for target, name, _ in map(parse_param_option, options) if target is not None}
    for text in options:
        target, name, value = parse_param_option(text)
        takers = [sel for sel, plugin in plugins.items() if _takes(plugin, name)] if target is None else []
        takers = [sel for sel in takers if (sel, name) not in named]  # PLUGIN.NAME sets those: it wins
        if len(takers) > 1:
            notes.append(f"note: --param {name}={value} sets {name} of {', '.join(takers)}; write "
                         f"PLUGIN.{name}={value} (e.g. {takers[0]}.{name}={value}) to set it for one of them")
    return notes


def _same_value(a: str, b: str) -> bool:
    """``5`` and ``5.0`` are one value (numbers compare as numbers), ``paper`` and ``Paper`` are not."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _takes(plugin: Any, name: str) -> bool:
    return any(p.name == name for p in getattr(plugin, "params", ()))
