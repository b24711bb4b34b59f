"""How far apart two result files of the same grid are.

Made to check a change that should not move the numbers much: ``--precision bf16`` against fp32,
another thread count, machine or library version. Per model (matched by id): clean accuracy,
input-gradient norm and training time of each file. Per attack, white-box and transfer cells apart: how
many cells both files hold (eps > 0), the mean absolute and mean signed accuracy difference (B - A, in
points) and the largest one.
"""

from __future__ import annotations

import statistics
from typing import Any


def cell_differences(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (attack, white-box or transfer) over the attacked cells (eps > 0 or no eps) both hold:
    ``attack``, ``cells``, ``n``, ``mean_abs``, ``mean``, ``largest`` (points, B - A)."""
    from .grid import Grid

    grid_a = Grid(a)
    diffs: dict[tuple[str, str], list[float]] = {}
    for cell in b["cells"]:
        before = grid_a.accuracy(cell["attack"], cell["eps"], cell["source"], cell["target"])
        if before is None or (cell["eps"] is not None and cell["eps"] <= 0):
            continue
        kind = "white-box" if cell["source"] == cell["target"] else "transfer"
        diffs.setdefault((cell["attack"], kind), []).append(100 * (cell["accuracy"] - before))
    return [{"attack": attack, "cells": kind, "n": len(d), "mean_abs": statistics.mean(abs(x) for x in d),
             "mean": statistics.mean(d), "largest": max(d, key=abs)}
            for (attack, kind), d in sorted(diffs.items())]


def render_comparison(a: dict[str, Any], b: dict[str, Any], label_a: str = "A", label_b: str = "B") -> str:
    """Plain-text tables: the models side by side, then :func:`cell_differences`."""
    from tabulate import tabulate

    models_a = {m["id"]: m for m in a["models"]}
    rows = [[m["id"], f"{100 * models_a[m['id']]['clean_accuracy']:.2f}", f"{100 * m['clean_accuracy']:.2f}",
             f"{models_a[m['id']]['input_grad_norm']:.4f}", f"{m['input_grad_norm']:.4f}",
             f"{models_a[m['id']]['train_seconds']:.0f}", f"{m['train_seconds']:.0f}"]
            for m in b["models"] if m["id"] in models_a]
    only = sorted(set(models_a) ^ {m["id"] for m in b["models"]})
    out = [f"A: {label_a}\nB: {label_b}\n",
           tabulate(rows, headers=["model", "clean % A", "clean % B", "grad norm A", "grad norm B",
                                   "train s A", "train s B"], disable_numparse=True)]
    if only:
        out.append(f"models in one file only: {', '.join(only)}")
    diffs = cell_differences(a, b)
    n_shared = sum(r["n"] for r in diffs)
    out.append(f"\n{n_shared} attacked cells (eps > 0) in both files (all cells, eps 0 included: {len(a['cells'])} "
               f"in A, {len(b['cells'])} in B); accuracy differences in points (B - A):")
    out.append(tabulate([[r["attack"], r["cells"], str(r["n"]), f"{r['mean_abs']:.2f}", f"{r['mean']:+.2f}",
                          f"{r['largest']:+.2f}"] for r in diffs],
                        headers=["attack", "cells", "n", "mean |diff|", "mean diff", "largest"],
                        disable_numparse=True))
    return "\n".join(out)
