"""What a grid run writing to ``--out`` would replace there, said before the work or refused.

A result at ``--out`` of another grid (other models or settings, attacks, eps or scored images) is refused
before any training unless the run may replace it (``--replace``): re-running a changed command, or a
changed grid file, to the same file used to replace the earlier result with only a note. The same grid,
however its command is spelt, replaces its own result as before (retrained elsewhere, or ``--rerun``).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .journal import Journal


def command_for_data(command: str, requested: str, used: str) -> str:
    """``command`` naming ``--dataset used`` when the run fell back from the ``requested`` data set (MNIST not
    found: the bundled sample). The command as typed trains on full MNIST wherever MNIST is found, and its
    result then replaces this one under the same ``--out``."""
    if used == requested:
        return command
    words = shlex.split(command)
    for i, word in enumerate(words):
        if word == "--dataset" and i + 1 < len(words):
            words[i + 1] = used
            break
        if word.startswith("--dataset="):
            words[i] = f"--dataset={used}"
            break
    else:
        words += ["--dataset", used]
    return shlex.join(words)


def planned_grid(models: list[tuple[str, str]], attack_records: list[dict[str, Any]], n_scored: int, split: str,
                 transfer: bool) -> dict[str, Any]:
    """What names a grid before anything trains, in the form :func:`grid_of_result` reads from a result: each
    model's id and configuration hash (its data, architecture, defense, training and seed), each attack's
    parameters and eps, the scored images, and whether transfer cells are scored (one model: always)."""
    return {"models": sorted(models), "attacks": json.loads(json.dumps(attack_records, sort_keys=True)),
            "n_scored": n_scored, "split": split, "transfer": transfer or len(models) == 1}


def grid_of_result(result: dict[str, Any]) -> dict[str, Any]:
    """:func:`planned_grid` of the grid a result file holds."""
    from ..results.grid import scored_split

    attacks = [{k: v for k, v in a.items() if k != "targeted"} for a in result["attacks"]]
    models = [(m["id"], m["config_hash"]) for m in result["models"]]
    transfer = any(c["source"] != c["target"] for c in result["cells"])
    return planned_grid(models, attacks, result["eval"]["n_test"], scored_split(result), transfer)


def other_grid_differences(out_path: Path, planned: dict[str, Any]) -> list[str] | None:
    """How the grid of the result at ``out_path`` differs from ``planned`` (words for each part that
    differs); None when there is no result there, [] when it is the same grid (which another machine may
    have trained to other weights: the same command run again, however it is spelt)."""
    try:
        previous = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else None
        theirs = grid_of_result(previous) if isinstance(previous, dict) and "run_id" in previous else None
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None  # not a result: run's own destination check refuses a file igbench did not write
    if theirs is None:
        return None
    differences = []
    ids_theirs, ids_ours = [i for i, _ in theirs["models"]], [i for i, _ in planned["models"]]
    if ids_theirs != ids_ours:
        differences.append(f"models {', '.join(ids_theirs)} where this run has {', '.join(ids_ours)}")
    else:
        changed = [i for (i, h), (_, h2) in zip(theirs["models"], planned["models"]) if h != h2]
        if changed:
            differences.append(f"{', '.join(changed)} trained otherwise (data, settings, seed or versions)")
    if theirs["attacks"] != planned["attacks"]:
        differences.append("other attacks, attack parameters or eps")
    if (theirs["n_scored"], theirs["split"]) != (planned["n_scored"], planned["split"]):
        differences.append(f"{theirs['n_scored']} {theirs['split']} images scored, not {planned['n_scored']} "
                           f"{planned['split']}")
    if theirs["transfer"] != planned["transfer"]:
        differences.append("transfer cells" if theirs["transfer"] else "no transfer cells")
    return differences


def refuse_another_grids_result(out_path: Path, planned: dict[str, Any]) -> None:
    """A one-line error, before any training, when ``out_path`` holds the result of another grid than
    ``planned``: a changed command (or grid file) to the same ``--out`` replaced it with only a note."""
    differences = other_grid_differences(out_path, planned)
    if differences:
        raise UsageError(f"{out_path} holds another grid's result ({'; '.join(differences)}); pass --replace to "
                         f"replace it, or another --out to keep it")


def replacement_notes(out_path: Path, journal: Journal, run_id: str) -> list[str]:
    """Say what of another grid this run replaces at ``out_path``: its unfinished journal (now) and its
    result (when this run writes its own). Both used to go without a word."""
    notes = []
    other = journal.other_run()
    if other is not None:
        notes.append(f"note: {journal.path} held {other[1]} finished unit(s) of another grid (run {other[0][:12]}); "
                     f"they are dropped for this one (pass another --out to keep that grid resumable)")
    try:
        previous = json.loads(out_path.read_text()).get("run_id") if out_path.is_file() else None
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous and previous != run_id:
        notes.append(f"note: {out_path} holds another grid's result (run {str(previous)[:12]}); this run replaces "
                     f"it when it finishes (pass another --out to keep it)")
    return notes
