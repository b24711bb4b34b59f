"""How far apart two result files of the same grid are.

Made to check a change that should not move the numbers much: ``--precision bf16`` against fp32,
another thread count, machine or library version. Per model (matched by id, or by configuration hash
when one file names it otherwise: ``gradreg`` with ``--param lambda=1000`` is ``gradreg[lambda=1000]``): clean accuracy,
input-gradient norm and training time of each file. Per attack, white-box and transfer cells apart: how
many cells both files hold (eps > 0), the mean absolute and mean signed accuracy difference (B - A, in
points) and the largest one. Before them, a warning per setting in which the grids differ, since their
cells then measure different things; with no attacked cell in common, the reason.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Collection

from .grid import scored_split


def matched_models(a: dict[str, Any], b: dict[str, Any]) -> dict[str, str]:
    """``{B's model id: A's}`` for the models both files hold: the same id, else the same configuration hash
    under another id (one of a kind in each file), as ``--param lambda=1000`` and ``gradreg[lambda=1000]``
    name one model two ways."""
    ids_a = {m["id"] for m in a["models"]}
    pairs = {m["id"]: m["id"] for m in b["models"] if m["id"] in ids_a}
    left_a = [m for m in a["models"] if m["id"] not in pairs.values()]
    left_b = [m for m in b["models"] if m["id"] not in pairs]
    for mb in left_b:
        same = [ma for ma in left_a if ma["config_hash"] == mb["config_hash"]]
        if len(same) == 1 and sum(m["config_hash"] == mb["config_hash"] for m in left_b) == 1:
            pairs[mb["id"]] = same[0]["id"]
    return pairs


def cell_differences(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (attack, white-box or transfer) over the attacked cells (eps > 0 or no eps) both hold:
    ``attack``, ``cells``, ``n``, ``mean_abs``, ``mean``, ``largest`` (points, B - A)."""
    from .grid import Grid

    grid_a, in_a = Grid(a), matched_models(a, b)
    diffs: dict[tuple[str, str], list[float]] = {}
    for cell in b["cells"]:
        if cell["source"] not in in_a or cell["target"] not in in_a:
            continue
        before = grid_a.accuracy(cell["attack"], cell["eps"], in_a[cell["source"]], in_a[cell["target"]])
        if before is None or (cell["eps"] is not None and cell["eps"] <= 0):
            continue
        kind = "white-box" if cell["source"] == cell["target"] else "transfer"
        diffs.setdefault((cell["attack"], kind), []).append(100 * (cell["accuracy"] - before))
    return [{"attack": attack, "cells": kind, "n": len(d), "mean_abs": statistics.mean(abs(x) for x in d),
             "mean": statistics.mean(d), "largest": max(d, key=abs)}
            for (attack, kind), d in sorted(diffs.items())]


_MODEL_SETTINGS = (  # (what the warning calls it, how to read it from a model record)
    ("training steps", lambda m: m["train"]["steps"]),
    ("seed", lambda m: m["train"]["seed"]),
    ("epochs", lambda m: m["train"]["epochs"]),
    ("max_steps", lambda m: m["train"]["max_steps"]),
    ("training batch size", lambda m: m["train"]["batch_size"]),
    ("learning rate", lambda m: m["train"]["lr"]),
    ("adam_eps", lambda m: m["train"].get("adam_eps", "default")),
    ("training precision", lambda m: m["train"].get("precision", "fp32")),
    ("defense", lambda m: m["defense"]),
    ("defense parameters", lambda m: m["defense_params"]),
    ("architecture", lambda m: m["arch"]),
    ("architecture parameters", lambda m: m["arch_params"]),
    ("architecture revision", lambda m: m.get("arch_revision", "none")),
)


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _differ(what: str, va: Any, vb: Any, why: str = "") -> str:
    return f"warning: different {what}: {_show(va)} in A, {_show(vb)} in B{why}"


def setting_warnings(a: dict[str, Any], b: dict[str, Any], expected: Collection[str] = ()) -> list[str]:
    """One line per setting in which the two files' grids differ (so their cells are not the same
    experiment): the data set's name, variant and checksum, the number of test images, and for the models
    both hold (by id) each recorded training setting, then the config hash of models whose recorded settings
    all match on the same data (another igbench or torch version, a plugin's changed default).

    ``expected`` names model settings (as ``_MODEL_SETTINGS`` calls them, e.g. ``"seed"``) that are meant to
    differ: they get no line, and still explain a differing config hash."""
    out: list[str] = []
    da, db = a["dataset"], b["dataset"]
    for what, key in (("data set", "name"), ("data set variant", "variant")):
        if da[key] != db[key]:
            out.append(_differ(what, da[key], db[key]))
    same_data = (da["name"], da["variant"], da["checksum"]) == (db["name"], db["variant"], db["checksum"])
    if (da["name"], da["variant"]) == (db["name"], db["variant"]) and not same_data:
        out.append(_differ("data checksum", da["checksum"][:12], db["checksum"][:12], " (other images under the same name)"))
    split_a, split_b = scored_split(a), scored_split(b)
    if split_a != split_b:
        out.append(_differ("scored images", split_a, split_b, " (one file scored images held out of training)"))
    if a["eval"]["n_test"] != b["eval"]["n_test"]:
        out.append(_differ("n_test", a["eval"]["n_test"], b["eval"]["n_test"],
                           f" (cells scored on other {split_a} images)" if split_a == split_b else ""))
    models_a, in_a = {m["id"]: m for m in a["models"]}, matched_models(a, b)
    shared = [(models_a[in_a[m["id"]]], m) for m in b["models"] if m["id"] in in_a]
    explained: set[str] = set()
    for what, read in _MODEL_SETTINGS:
        groups: dict[tuple[str, str], list[str]] = {}
        for ma, mb in shared:
            va, vb = _show(read(ma)), _show(read(mb))
            if va != vb:
                groups.setdefault((va, vb), []).append(ma["id"])
                explained.add(ma["id"])
        if groups and what not in expected:
            out.append(f"warning: different {what}: " + "; ".join(
                f"{va} in A, {vb} in B ({_models(ids, len(shared))})" for (va, vb), ids in groups.items()))
    # The config hash covers the data set too: only with the same data is a differing hash unexplained.
    other = [ma["id"] for ma, mb in shared
             if same_data and ma["id"] not in explained and ma["config_hash"] != mb["config_hash"]]
    if other:
        out.append(f"warning: config hash differs with the same recorded settings ({_models(other, len(shared))}): "
                   "trained by another igbench or torch version, or with a plugin default changed")
    # the same configuration trained to other weights: another device, thread count or CPU (train.ran_on)
    reweighted = [ma["id"] for ma, mb in shared if ma["config_hash"] == mb["config_hash"]
                  and ma.get("checkpoint_sha256") and mb.get("checkpoint_sha256")
                  and ma["checkpoint_sha256"] != mb["checkpoint_sha256"]]
    if reweighted:
        out.append(f"warning: different weights with the same configuration ({_models(reweighted, len(shared))}): "
                   "trained on another device, thread count or CPU (see each model's train.ran_on)")
    # an attack of one name run with other parameters is another attack (jsma's jacobian=probs or logits)
    params_a = {x["name"]: x["params"] for x in a["attacks"]}
    for x in b["attacks"]:
        if x["name"] in params_a and _show(params_a[x["name"]]) != _show(x["params"]):
            out.append(_differ(f"{x['name']} parameters", params_a[x["name"]], x["params"],
                               " (its cells are not the same attack)"))
    return out


def _models(ids: list[str], n_shared: int) -> str:
    """``all 5 shared models``, ``model gradreg`` or ``models none, gradreg``."""
    if len(ids) == n_shared > 1:
        return f"all {n_shared} shared models"
    return ("model " if len(ids) == 1 else "models ") + ", ".join(ids)


def other_images_reason(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Why no cell of the two files scores the same images (one line), or None: another data set, or test
    images against validation ones. Then every "difference" would compare unrelated numbers. (Another
    variant, checksum or n_test leaves images in common: those get a warning.)"""
    name_a, name_b = a["dataset"]["name"], b["dataset"]["name"]
    if name_a != name_b:
        return f"A scores data set {name_a} and B {name_b}"
    split_a, split_b = scored_split(a), scored_split(b)
    if split_a != split_b:
        return f"A scores {split_a} images of {name_a} and B {split_b} images"
    return None


def no_shared_cells_reason(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Why the two files have no attacked cell in common (one line), or ``None`` when they have some."""
    if cell_differences(a, b):
        return None
    ids_a, ids_b = [m["id"] for m in a["models"]], [m["id"] for m in b["models"]]
    if not matched_models(a, b):
        return f"no model is in both, by id or configuration hash (A: {', '.join(ids_a)}; B: {', '.join(ids_b)})"
    eps_a = {x["name"]: x["eps"] for x in a["attacks"]}
    eps_b = {x["name"]: x["eps"] for x in b["attacks"]}
    shared = [name for name in eps_a if name in eps_b]
    if not shared:
        return f"no attack is in both (A: {', '.join(eps_a) or 'none'}; B: {', '.join(eps_b) or 'none'})"

    def attacked(eps: list[float] | None) -> str:
        return "no eps" if eps is None else ", ".join(f"{e:g}" for e in eps if e > 0) or "only eps 0"

    return "the shared attacks have no eps > 0 in both (" + "; ".join(
        f"{name}: A {attacked(eps_a[name])}, B {attacked(eps_b[name])}" for name in shared) + ")"


def render_comparison(a: dict[str, Any], b: dict[str, Any], label_a: str = "A", label_b: str = "B") -> str:
    """Plain-text tables: :func:`setting_warnings` first, the models side by side, then :func:`cell_differences`
    (left out when there are none: see :func:`no_shared_cells_reason`)."""
    from tabulate import tabulate

    models_a, in_a = {m["id"]: m for m in a["models"]}, matched_models(a, b)
    rows = [[m["id"] if in_a[m["id"]] == m["id"] else f"{in_a[m['id']]} (B: {m['id']})",
             f"{100 * models_a[in_a[m['id']]]['clean_accuracy']:.2f}", f"{100 * m['clean_accuracy']:.2f}",
             f"{models_a[in_a[m['id']]]['input_grad_norm']:.4f}", f"{m['input_grad_norm']:.4f}",
             f"{models_a[in_a[m['id']]]['train_seconds']:.0f}", f"{m['train_seconds']:.0f}"]
            for m in b["models"] if m["id"] in in_a]
    only = sorted((set(models_a) - set(in_a.values())) | {m["id"] for m in b["models"] if m["id"] not in in_a})
    renamed = [f"B's {b_id} is A's {a_id}" for b_id, a_id in in_a.items() if b_id != a_id]
    out = [f"A: {label_a}\nB: {label_b}\n", *setting_warnings(a, b),
           *([f"note: matched by configuration hash under another id: {'; '.join(renamed)}"] if renamed else []),
           tabulate(rows, headers=["model", "clean % A", "clean % B", "mean ‖dCE/dx‖ A", "mean ‖dCE/dx‖ B",
                                   "train s A", "train s B"], disable_numparse=True)]
    if only:
        out.append(f"models in one file only: {', '.join(only)}")
    diffs = cell_differences(a, b)
    if not diffs:
        return "\n".join(out)
    n_shared = sum(r["n"] for r in diffs)
    out.append(f"\n{n_shared} attacked cells (eps > 0) in both files (all cells, eps 0 included: {len(a['cells'])} "
               f"in A, {len(b['cells'])} in B); accuracy differences in points (B - A):")
    out.append(tabulate([[r["attack"], r["cells"], str(r["n"]), f"{r['mean_abs']:.2f}", f"{r['mean']:+.2f}",
                          f"{r['largest']:+.2f}"] for r in diffs],
                        headers=["attack", "cells", "n", "mean |diff|", "mean diff", "largest"],
                        disable_numparse=True))
    return "\n".join(out)
