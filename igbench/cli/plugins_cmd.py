"""``igbench plugins``: list every registered plugin by kind."""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
@click.option(
    "--kind",
    type=click.Choice(["dataset", "architecture", "defense", "attack"]),
    multiple=True,
    help="Only these kinds (repeatable). Default: all.",
)
@click.option("--params/--no-params", default=False, help="Also show each plugin's parameters and defaults.")
def plugins_command(as_json: bool, kind: tuple[str, ...], params: bool) -> None:
    """List registered datasets, architectures, defenses and attacks.

    Shows each plugin's name, the package that provides it and a one-line summary, built-ins and
    third-party plugins (entry-point group `igbench`) alike, plus the ART evasion attacks usable
    as `art:<ClassName>`.
    """
    from tabulate import tabulate

    from ..registry import KIND_PLURAL, get_registry
    from . import echo_plugin_problems

    reg = get_registry()
    kinds = list(kind) or list(KIND_PLURAL)
    report: dict[str, object] = {}
    for k in kinds:
        report[KIND_PLURAL[k]] = [p.describe() for p in reg.plugins(k)]
    providers = reg.providers() if "attack" in kinds else []
    report["attack_providers"] = [
        {**p.describe(), "prefix": p.prefix, "available": p.available()} for p in providers
    ]
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
        names = entry["available"]
        click.secho(f"\nattacks via {entry['prefix']}<Name> ({entry['source']}): {entry['summary']}", bold=True)
        click.echo("  " + (", ".join(names) if names else "(none available)"))


COMMANDS = [plugins_command]
