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

from .. import __version__
from ..errors import UsageError
from .journal import Journal, journal_path


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
    """What names a grid before anything trains, in the form :func:`grid_of_result` reads from a result: its
    models' configuration hashes (data, architecture, defense, training and seed; not their ids, which the
    run id leaves out too), each attack's parameters and eps (in any order), the scored images, and whether
    transfer cells are scored (one model: always). ``models``: ``(id, configuration hash)`` pairs, kept to
    name the models that differ."""
    attacks = {a["name"]: {"params": json.loads(json.dumps(a["params"], sort_keys=True)),
                           "eps": None if a["eps"] is None else sorted(float(e) for e in a["eps"])}
               for a in attack_records}
    return {"models": dict(models), "attacks": attacks, "n_scored": int(n_scored), "split": str(split),
            "transfer": bool(transfer) or len(models) == 1}


def grid_of_result(result: dict[str, Any]) -> dict[str, Any]:
    """:func:`planned_grid` of the grid a result file holds (KeyError, TypeError or ValueError when it cannot
    be read as one)."""
    from ..results.grid import scored_split

    models = [(str(m["id"]), str(m["config_hash"])) for m in result["models"]]
    transfer = any(c["source"] != c["target"] for c in result["cells"])
    return planned_grid(models, result["attacks"], result["eval"]["n_test"], scored_split(result), transfer)


def other_grid_differences(out_path: Path, planned: dict[str, Any]) -> list[str] | None:
    """How the grid of the result at ``out_path`` differs from ``planned``, in words for each part that
    differs; None when no result is there, [] when it holds the same grid (which another machine may have
    trained to other weights, or the command listed in another order: the run then replaces it, as the same
    command run again always did). A file that claims to be a result (it has a ``run_id``) but cannot be
    read as one counts as another grid's, and says so."""
    try:
        previous = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else None
    except (OSError, ValueError, RecursionError):
        return None  # not a result: run's own destination check refuses a file igbench did not write
    if not isinstance(previous, dict) or "run_id" not in previous:
        return None
    try:
        theirs = grid_of_result(previous)
    except (KeyError, TypeError, ValueError, AttributeError):
        return [f"a result this igbench cannot read as a grid (igbench {previous.get('igbench_version', '?')}, "
                f"or damaged)"]
    return grid_differences(theirs, planned, previous.get("igbench_version"))


def other_journal_differences(journal: Path, planned: dict[str, Any]) -> tuple[int, list[str]] | None:
    """``(finished units, differences)`` when the journal at ``journal`` holds units of another grid than
    ``planned``, else None. Journals record their grid from this version on; an older one (run id only)
    is known to be another grid's only once the models are trained and the run id is known."""
    if not journal.is_file():
        return None
    entries = list(Journal(journal, "")._lines())
    grid = entries[0].get("grid") if entries else None
    units = len(entries) - 1
    if not isinstance(grid, dict) or units < 1:
        return None
    try:
        differences = grid_differences(grid, planned)
    except (KeyError, TypeError, ValueError, AttributeError):
        differences = ["a journal this igbench cannot read as a grid"]
    return (units, differences) if differences else None


def grid_differences(theirs: dict[str, Any], planned: dict[str, Any], written_by: str | None = None) -> list[str]:
    """Words for each part in which grid ``theirs`` (:func:`planned_grid`'s form) differs from ``planned``;
    ``written_by``: the igbench version that wrote ``theirs``, named when the models differ."""
    differences = []
    hashes_theirs, hashes_ours = set(theirs["models"].values()), set(planned["models"].values())
    if hashes_theirs != hashes_ours:
        only_theirs = sorted(i for i, h in theirs["models"].items() if h not in hashes_ours)
        only_ours = sorted(i for i, h in planned["models"].items() if h not in hashes_theirs)
        by = f", written by igbench {written_by}" if written_by and written_by != __version__ else ""
        if only_theirs and only_ours:
            differences.append(f"models {', '.join(only_theirs)} where this run trains {', '.join(only_ours)} "
                               f"(other models, or trained otherwise: data, settings, seed or versions{by})")
        elif only_ours:
            differences.append(f"no model like this run's {', '.join(only_ours)}")
        else:
            differences.append(f"models {', '.join(only_theirs)}, which this run lacks")
    attacks_theirs, attacks_ours = theirs["attacks"], planned["attacks"]
    for name in sorted(set(attacks_theirs) | set(attacks_ours)):
        if name not in attacks_ours:
            differences.append(f"attack {name}, which this run lacks")
        elif name not in attacks_theirs:
            differences.append(f"no attack {name}")
        elif attacks_theirs[name]["params"] != attacks_ours[name]["params"]:
            differences.append(f"{name} with other parameters")
        elif attacks_theirs[name]["eps"] != attacks_ours[name]["eps"]:
            differences.append(f"{name} at eps {_eps_list(attacks_theirs[name]['eps'])} where this run has "
                               f"{_eps_list(attacks_ours[name]['eps'])}")
    if (theirs["n_scored"], theirs["split"]) != (planned["n_scored"], planned["split"]):
        differences.append(f"{theirs['n_scored']} {theirs['split']} images scored, not {planned['n_scored']} "
                           f"{planned['split']}")
    if theirs["transfer"] != planned["transfer"]:
        differences.append("transfer cells" if theirs["transfer"] else "no transfer cells")
    return differences


def _eps_list(eps: list[float] | None) -> str:
    return "none" if eps is None else ", ".join(f"{e:g}" for e in eps)


def refuse_another_grids_work(out_path: Path, planned: dict[str, Any]) -> None:
    """A one-line error when ``out_path`` holds the result of another grid than ``planned``, or its journal
    holds another grid's finished units: a changed command (or grid file) to the same ``--out`` replaced the
    one and dropped the other with only a note. A run checks before it trains, and again when it takes the
    result's lock (another process may have written them meanwhile)."""
    differences = other_grid_differences(out_path, planned)
    if differences:
        raise UsageError(f"{out_path} holds another grid's result ({'; '.join(differences)}); pass --replace to "
                         f"replace it, or another --out to keep it")
    journal = journal_path(out_path)
    if (other := other_journal_differences(journal, planned)) is not None:
        units, differences = other
        raise UsageError(f"{journal} holds {units} finished unit(s) of another grid, resumable ({'; '.join(differences)}); "
                         f"pass --replace to drop them, or another --out to keep that grid resumable")


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
        notes.append(f"note: {out_path} holds the result of run {str(previous)[:12]}, not this run's; this run "
                     f"replaces it when it finishes (pass another --out to keep it)")
    return notes
