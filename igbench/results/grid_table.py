"""The terminal view of one result: a source x target accuracy matrix per attack and eps."""

from __future__ import annotations

from typing import Any

from .grid import Grid, format_eps, format_pct, scored_images


def render_grid_tables(result: dict[str, Any]) -> str:
    """Text tables: rows are the models the examples were crafted on, columns the models scored."""
    from tabulate import tabulate

    grid = Grid(result)
    ids = grid.model_ids
    parts = [
        f"clean accuracy on {scored_images(result)}: " + ", ".join(f"{m['id']} {100 * m['clean_accuracy']:.1f}%" for m in result["models"]),
    ]
    for attack in result["attacks"]:
        for eps in attack["eps"] if attack["eps"] is not None else [None]:
            rows = []
            for source in ids:
                row = [source]
                for target in ids:
                    row.append(format_pct(grid.accuracy(attack["name"], eps, source, target)))
                rows.append(row)
            title = f"{attack['name']}" + ("" if eps is None else f" eps={format_eps(eps)}")
            parts.append(f"\n{title}: accuracy (%) of each target model (columns) on examples crafted "
                         f"against each source model (rows); the diagonal is white-box")
            # disable_numparse: tabulate would print 45.0 as "45"; keep the one decimal of every cell
            parts.append(tabulate(rows, headers=["crafted on \\ scored on", *ids], tablefmt="simple",
                                  disable_numparse=True, colalign=("left", *["right"] * len(ids))))
    if len(parts) > 1:
        parts.append("\nEach cell is the share of all scored images whose adversarial example the target model "
                     "classifies correctly; images it got wrong before the attack are attacked and counted too.")
    return "\n".join(parts)
