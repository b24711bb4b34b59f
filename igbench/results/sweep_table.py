"""The table ``igbench sweep`` prints: one row per model of a sweep's result."""

from __future__ import annotations

from typing import Any


def sweep_table(result: dict[str, Any]) -> str:
    """One row per model: clean accuracy, input-gradient norm, white-box accuracy per attack and eps."""
    from tabulate import tabulate

    from .grid import Grid, format_eps, format_pct, scored_images

    grid = Grid(result)
    columns = [(a["name"], e) for a in result["attacks"] for e in (a["eps"] if a["eps"] is not None else [None])]
    rows = []
    for m in result["models"]:
        row = [m["id"], f"{100 * m['clean_accuracy']:.2f}", f"{m['input_grad_norm']:.4g}"]
        for attack, eps in columns:
            row.append(format_pct(grid.white_box(attack, eps, m["id"])))
        rows.append(row)
    headers = ["model", "clean %", "mean ‖dCE/dx‖"] + [
        f"{a}" + ("" if e is None else f" eps={format_eps(e)}") + " %" for a, e in columns]
    return f"scored on {scored_images(result)}\n" + tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)  # as formatted
