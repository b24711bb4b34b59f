"""How much a grid's numbers move between training seeds.

The same grid run with several ``--seed`` values (each seed changes the models' initialisation, the
order of their batches and the attacks' random choices) gives one result file per seed. Per model: the
mean, sample standard deviation, lowest and highest clean accuracy and input-gradient norm. Per attack
and eps: the same for each model's white-box accuracy, and for the transfer cells the typical and the
largest standard deviation. A gap between two defenses no wider than these is within what a new seed
changes.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Sequence

from .compare import setting_warnings


def seed_of(result: dict[str, Any]) -> int:
    return int(result["environment"]["seed"])


def spread_problems(results: Sequence[dict[str, Any]], paths: Sequence[str]) -> list[str]:
    """Why the files are not one grid run with different seeds (one line each); empty when they are."""
    if len(results) < 2:
        return [f"{len(results)} result file given; give two or more runs of one grid with different --seed"]
    by_seed: dict[int, list[str]] = {}
    for path, result in zip(paths, results):
        by_seed.setdefault(seed_of(result), []).append(path)
    problems = [f"seed {seed} is in {' and '.join(where)}; give each seed once"
                for seed, where in by_seed.items() if len(where) > 1]
    base_ids = [m["id"] for m in results[0]["models"]]
    for path, result in zip(paths[1:], results[1:]):
        ids = [m["id"] for m in result["models"]]
        if sorted(ids) != sorted(base_ids):
            problems.append(f"{path} has models {', '.join(ids)}, {paths[0]} has {', '.join(base_ids)}")
        problems += [f"{path}: {w.removeprefix('warning: ')} (A: {paths[0]}, B: {path})"
                     for w in setting_warnings(results[0], result, expected={"seed"})]
        if _attacks(result) != _attacks(results[0]):
            problems.append(f"{path} ran other attacks ({_attacks(result)}) than {paths[0]} ({_attacks(results[0])})")
    return problems


def _attacks(result: dict[str, Any]) -> str:
    """The attacks with their parameters and eps, as one comparable line."""
    return "; ".join(f"{a['name']} {json.dumps(a['params'], sort_keys=True)} eps {a['eps']}" for a in result["attacks"])


def describe(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``sd`` (sample standard deviation), ``min`` and ``max`` of two or more values."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values), "min": min(values), "max": max(values)}


def model_spread(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model id (the first file's order): ``clean_accuracy`` and ``input_grad_norm`` described."""
    out = {}
    for m in results[0]["models"]:
        records = [next(r for r in result["models"] if r["id"] == m["id"]) for result in results]
        out[m["id"]] = {key: describe([float(r[key]) for r in records])
                        for key in ("clean_accuracy", "input_grad_norm")}
    return out


def cell_spread(results: Sequence[dict[str, Any]]) -> tuple[dict[tuple, dict[str, float]], int]:
    """``({(attack, eps, source, target): described accuracy}, cells missing from some file)`` over the
    cells of the first file, in its order."""
    from .grid import Grid

    grids = [Grid(r) for r in results]
    spread, missing = {}, 0
    for c in results[0]["cells"]:
        key = (c["attack"], c["eps"], c["source"], c["target"])
        values = [g.accuracy(*key) for g in grids]
        if any(v is None for v in values):
            missing += 1
        else:
            spread[key] = describe(values)
    return spread, missing


def paired_differences(results: Sequence[dict[str, Any]], against: str) -> dict[tuple, dict[str, float]]:
    """``{(model, attack, eps): described difference}``: per seed, each model's white-box accuracy minus
    ``against``'s in the same file (same seed, so the same initialisation and batch order), described over
    the seeds, with ``higher``, how many seeds the model was above ``against``; the clean accuracy's
    difference under ``(model, "clean", None)``."""
    from .grid import Grid

    grids = [Grid(r) for r in results]
    out = {}
    clean = [{m["id"]: float(m["clean_accuracy"]) for m in r["models"]} for r in results]
    for model in clean[0]:
        if model != against:
            out[(model, "clean", None)] = _versus([c[model] - c[against] for c in clean])
    for c in results[0]["cells"]:
        model, attack, eps = c["source"], c["attack"], c["eps"]
        if c["target"] != model or model == against:
            continue
        pairs = [(g.white_box(attack, eps, model), g.white_box(attack, eps, against)) for g in grids]
        if all(a is not None and b is not None for a, b in pairs):
            out[(model, attack, eps)] = _versus([a - b for a, b in pairs])
    return out


def _versus(diffs: Sequence[float]) -> dict[str, float]:
    """Paired differences described, with ``higher``: how many are above zero."""
    return {**describe(diffs), "higher": sum(d > 0 for d in diffs)}


def _pct(d: dict[str, float]) -> str:
    return f"{100 * d['mean']:.2f} ± {100 * d['sd']:.2f}"


def _pct_range(d: dict[str, float]) -> str:
    """``27.20 ± 2.76 (24.9-30.3)``: the mean and sd, and the lowest and highest seed's value."""
    return f"{_pct(d)} ({100 * d['min']:.1f}-{100 * d['max']:.1f})"


def _paired(d: dict[str, float], n: int) -> str:
    return f"{100 * d['mean']:+.2f} ± {100 * d['sd']:.2f} ({d['higher']}/{n})"


def render_spread(results: Sequence[dict[str, Any]], paths: Sequence[str], against: str | None = None) -> str:
    """Plain-text tables (points for accuracies): the models, white-box accuracy per attack and eps, the
    transfer cells' standard deviations per attack, and with ``against`` each model's paired difference
    from that model (:func:`paired_differences`)."""
    from tabulate import tabulate

    from .grid import format_eps, scored_images

    seeds = ", ".join(str(seed_of(r)) for r in results)
    out = [f"{len(results)} seeds ({seeds}), scored on {scored_images(results[0])}; mean ± sample standard "
           "deviation, in points for accuracies:"]
    models = model_spread(results)
    out.append(tabulate(
        [[mid, _pct(s["clean_accuracy"]), f"{100 * s['clean_accuracy']['min']:.2f}-{100 * s['clean_accuracy']['max']:.2f}",
          f"{s['input_grad_norm']['mean']:.4g} ± {s['input_grad_norm']['sd']:.2g}"] for mid, s in models.items()],
        headers=["model", "clean %", "lowest-highest", "mean ‖dCE/dx‖"], disable_numparse=True))
    cells, missing = cell_spread(results)
    columns = list(dict.fromkeys((a, e) for a, e, s, t in cells if s == t))
    if columns:
        rows = [[mid] + [_pct_range(cells[(a, e, mid, mid)]) if (a, e, mid, mid) in cells else "" for a, e in columns]
                for mid in models]
        headers = ["white-box"] + [a + ("" if e is None else f" eps={format_eps(e)}") + " %" for a, e in columns]
        out += ["", "white-box accuracy, mean ± sd (lowest-highest seed):",
                tabulate(rows, headers=headers, disable_numparse=True)]
    if against is not None and columns:
        paired = paired_differences(results, against)
        rows = [[mid] + [_paired(paired[(mid, a, e)], len(results)) if (mid, a, e) in paired else ""
                         for a, e in [("clean", None)] + columns] for mid in models if mid != against]
        out += ["", f"minus {against} in the same seed's file (mean ± sd over seeds; seeds above {against}):",
                tabulate(rows, headers=["model", "clean %"] + headers[1:], disable_numparse=True)]
    transfer: dict[str, list[tuple[float, tuple]]] = {}
    for key, d in cells.items():
        if key[2] != key[3] and (key[1] is None or key[1] > 0):
            transfer.setdefault(key[0], []).append((d["sd"], key))
    if transfer:
        rows = []
        for attack, sds in transfer.items():
            sd, (_, eps, source, target) = max(sds, key=lambda pair: pair[0])
            rows.append([attack, str(len(sds)), f"{100 * statistics.median(s for s, _ in sds):.2f}",
                         f"{100 * sd:.2f} ({source} -> {target}" + ("" if eps is None else f", eps {format_eps(eps)}") + ")"])
        out += ["", tabulate(rows, headers=["transfer (eps > 0)", "cells", "median sd", "largest sd"],
                             disable_numparse=True)]
    if missing:
        out.append(f"\n{missing} cell(s) of {paths[0]} are missing from another file and left out")
    return "\n".join(out)
