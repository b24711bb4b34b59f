"""``igbench plugins``: list every registered plugin by kind."""

from __future__ import annotations

import json
import re

import click


@click.command("plugins", short_help="List the registered plugins, or describe one.")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
@click.option(
    "--kind",
    type=click.Choice(["dataset", "architecture", "defense", "attack"]),
    multiple=True,
    help="Only these kinds (repeatable). Default: all.",
)
@click.option("--params/--no-params", default=False, show_default=True, help="Also show each plugin's parameters and defaults.")
def plugins_command(name: str | None, as_json: bool, kind: tuple[str, ...], params: bool) -> None:
    """List registered datasets, architectures, defenses and attacks, or describe one (NAME).

    Shows each plugin's name, the package that provides it and a one-line summary, built-ins and
    third-party plugins (entry-point group `igbench`) alike, plus the ART evasion attacks usable
    as `art:<ClassName>`. With NAME (e.g. `igbench plugins pgd`), prints that plugin's description
    and every parameter with its default, allowed values and meaning.
    """
    from tabulate import tabulate

    from ..errors import UsageError
    from ..registry import KIND_PLURAL, get_registry
    from . import echo_plugin_problems

    if name is not None and not name.strip():  # it listed every plugin, as if no NAME had been given
        raise UsageError("NAME is empty; give a plugin's name (e.g. igbench plugins pgd), or none to list them all")

    reg = get_registry()
    kinds = list(kind) or list(KIND_PLURAL)
    if name:
        echo_plugin_problems()  # on stderr: a package that failed to load may be the one NAME is in
        found = _find(reg, name, kinds)
        if as_json:
            click.echo(json.dumps([p.describe() for p in found], indent=2, default=str))
        else:
            click.echo("\n\n".join(_details(p) for p in found))
        return
    report: dict[str, object] = {}
    for k in kinds:
        report[KIND_PLURAL[k]] = [p.describe() for p in reg.plugins(k)]
    providers = reg.providers() if "attack" in kinds else []
    report["attack_providers"] = [_provider_entry(p) for p in providers]
    report["problems"] = list(reg.problems)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    echo_plugin_problems()
    for k in kinds:
        rows = []
        for p in reg.plugins(k):
            row = [p.name, p.source, p.summary]
            if params:
                row.append(", ".join(f"{q.name}={q.default}" for q in p.params) or "-")
            rows.append(row)
        headers = ["name", "package", "summary"] + (["parameters"] if params else [])
        click.secho(f"\n{KIND_PLURAL[k]} ({len(rows)})", bold=True)
        click.echo(tabulate(rows, headers=headers, tablefmt="simple") if rows else "  (none)")
    for entry in report["attack_providers"]:
        names = [n + (f" (needs: {entry['needs'][n]})" if n in entry["needs"] else "") for n in entry["available"]]
        click.secho(f"\nattacks via {entry['prefix']}<Name> ({entry['source']}): {entry['summary']}", bold=True)
        click.echo("  " + (", ".join(names) if names else "(none available)"))


def _provider_entry(provider) -> dict:
    """A provider's listing: its description, the names it serves, and what those that cannot run here at
    their defaults need (``art:AutoAttack`` was listed, then refused by `run` for want of multiprocess)."""
    names = provider.available()
    needs = {n: need for n in names if (need := provider.missing_requirement(n))}
    return {**provider.describe(), "prefix": provider.prefix, "available": names, "needs": needs}


def _find(reg, name: str, kinds: list[str]) -> list:
    """The plugins called ``name`` among ``kinds`` (a name may exist in several kinds); a one-line
    error with the closest names when there is none."""
    from ..errors import UnknownPluginError, did_you_mean, with_article
    from ..plugin_types import PLUGIN_KINDS

    found, provider_error = [], None
    for k in kinds:
        try:
            found.append(reg.get(k, name))
        except UnknownPluginError as exc:
            if ":" in name and k == "attack":  # a provider's own answer (art:fastgradientmethod: did you mean art:FastGradientMethod?)
                provider_error = exc
            continue
    if found:
        return found
    if provider_error is not None:
        raise provider_error
    elsewhere = [k for k in PLUGIN_KINDS if k not in kinds and name in reg.names(k)]
    if elsewhere:  # `plugins mnist --kind attack` said only "no plugin called 'mnist'"
        raise UnknownPluginError(f"no {' or '.join(kinds)} called {name!r}; {name!r} is {with_article(elsewhere[0])}: use "
                                 f"--kind {elsewhere[0]}, or drop --kind")
    names = sorted({n for k in kinds for n in reg.names(k)})
    raise UnknownPluginError(f"no plugin called {name!r}{did_you_mean(name, names, cutoff=0.5)}; "
                     "`igbench plugins` lists them all")


def _details(plugin) -> str:
    """A plugin's kind, package, summary, documentation and parameters, as plain text."""
    from tabulate import tabulate

    lines = [f"{plugin.name} ({plugin.kind}, from {plugin.source or 'unknown package'})", plugin.summary]
    doc = _own_doc(plugin)
    if doc and doc.strip() != plugin.summary.strip():
        lines += ["", doc]
    if plugin.params:
        rows = [[p.name, "None" if p.default is None else str(p.default),
                 " | ".join(map(str, p.choices)) if p.choices else p.value_type.__name__, p.help]
                for p in plugin.params]
        lines += ["", "parameters (--param NAME=VALUE, or PLUGIN.NAME=VALUE; in a grid file: params = {...}):",
                  tabulate(rows, headers=["name", "default", "values", "meaning"], tablefmt="simple",
                           disable_numparse=True)]
    else:
        lines += ["", "parameters: none"]
    return "\n".join(lines)


def _own_doc(plugin) -> str | None:
    """The docstring written for this plugin's own class, as plain text; ``None`` when it has none.

    Not :func:`inspect.getdoc`, which falls back to a base class's docstring: a plugin without one would
    be described by ``LossDefense`` or ``ArchitecturePlugin`` (how to write a plugin, not what this one
    does). A provider-made plugin (``art:<Name>``) shares its adapter class's docstring, so it has none
    of its own either: its summary describes it.
    """
    import inspect

    if ":" in plugin.name:
        return None
    doc = type(plugin).__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return None
    return plain_text(inspect.cleandoc(doc))


_ROLE = re.compile(r":(?:[\w-]+:)?[\w-]+:`(~?)([^`<]*?)(?:\s*<([^`>]+)>)?`")


def plain_text(doc: str) -> str:
    """Docstring markup as a terminal shows it: Sphinx roles (``:func:`fd_terms```, ``:class:`~a.B```,
    ``:func:`text <target>```) become `fd_terms`, `B` and `text`; double backquotes become single ones."""

    def role(m: re.Match) -> str:
        tilde, text, target = m.groups()
        text = text.strip() or (target or "")
        if tilde:
            text = text.rsplit(".", 1)[-1]
        return f"`{text}`"

    return _ROLE.sub(role, doc).replace("``", "`")


COMMANDS = [plugins_command]
