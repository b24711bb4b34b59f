"""What each ``[run]`` value (and each ``[[models]]``/``[[attacks]]`` entry's) of a grid file must be, checked
when the file is read.

Click types and checks the command-line options; a TOML file can hold any type, and a wrong one used to
surface as a traceback deep in the run (``steps = "abc"``), as an error blaming a flag nobody passed
(``batch_size = 0``: "--batch-size must be >= 1"), or only after the whole grid had run (``epochs = -1``,
caught by the result schema). :func:`check_run_values` turns each into one line naming the file and key.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .engine.memory_format import MEMORY_FORMATS
from .engine.train import PRECISIONS, SEED_LIMIT
from .results.grid import SCORED_SPLITS


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def eps_list_problem(values: Any) -> str | None:
    """Why ``values`` is not an eps sweep (a non-empty list of distinct finite numbers >= 0), or None."""
    if not isinstance(values, (list, tuple)) or not values:
        return "must be a non-empty list of numbers, e.g. [0.1, 0.2, 0.3]"
    for e in values:
        if not _is_number(e):
            return f"must hold finite numbers only, found {e!r}"
        if e < 0:
            return f"must hold numbers >= 0, found {e:g}"
    return repeated_values_problem(values)


def repeated_values_problem(values) -> str | None:
    """``lists 0.1 more than once`` for values that a sweep (eps, ``--sweep``) names twice, or None. Numbers
    are compared as floats (1 and 1.0 are one value) and written ``:g``; other values (a choice's texts)
    as they are."""
    def key(v):
        return float(v) if _is_number(v) else v

    keys = [key(v) for v in values]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        return f"lists {', '.join(f'{k:g}' if isinstance(k, float) else str(k) for k in repeated)} more than once"
    return None


#: key -> (test, what the value must be)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dataset": (_text, 'a data set name, e.g. "mnist"'),
    "arch": (_text, 'an architecture name, e.g. "paper-cnn"'),
    "dataset_params": (lambda v: isinstance(v, dict), "a table, e.g. { validation = 5000 }"),
    "arch_params": (lambda v: isinstance(v, dict), 'a table, e.g. { style = "tf-slim" }'),
    "epochs": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "steps": (lambda v: _is_whole(v) and v >= 1, "a whole number >= 1"),
    "batch_size": (lambda v: _is_whole(v) and v >= 1, "a whole number >= 1"),
    "lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "adam_eps": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "seed": (lambda v: _is_whole(v) and abs(v) < SEED_LIMIT, "a whole number with at most 18 digits"),
    "n_test": (lambda v: _is_whole(v) and v >= 1, "a whole number >= 1"),
    "eval_batch_size": (lambda v: _is_whole(v) and v >= 1, "a whole number >= 1"),
    "device": (_text, 'a device, e.g. "cpu", "cuda" or "cuda:1"'),
    "data_dir": (_text, 'a folder, e.g. "../shared/data" (relative to the grid file\'s folder)'),
    "precision": (lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "memory_format": (lambda v: v in MEMORY_FORMATS, f"one of {', '.join(MEMORY_FORMATS)}"),
    "score_on": (lambda v: v in SCORED_SPLITS, f"one of {', '.join(SCORED_SPLITS)}"),
    "monitor_every": (lambda v: _is_whole(v) and v >= 0, "a whole number of steps >= 0 (0: no monitoring)"),
    "monitor_eps": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
}


def check_run_values(run: dict[str, Any], where: str) -> str | None:
    """The first problem with a grid file's ``[run]`` values as one line (``where`` names the file), or None."""
    for key, value in run.items():
        if key == "eps":
            problem = eps_list_problem(value)
            if problem:
                return f"{where}: [run] eps {problem}"
            continue
        if problem := _rule_problem(RULES, key, value):
            return f"{where}: [run] {problem}"
    return None


def _rule_problem(rules: dict[str, tuple[Callable[[Any], bool], str]], key: str, value: Any) -> str | None:
    """``KEY must be WHAT, got VALUE`` when ``rules`` has a rule for ``key`` that ``value`` breaks, else None."""
    test, what = rules.get(key, (lambda v: True, ""))
    return None if test(value) else f"{key} must be {what}, got {value!r}"


#: key of a ``[[models]]`` or ``[[attacks]]`` entry -> (test, what it must be); an attack's eps has its own check
ENTRY_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "id": (_text, 'a name, e.g. "gradreg-1000"'),
    "defense": (_text, 'a defense name, e.g. "gradreg"'),
    "arch": (_text, 'an architecture name, e.g. "paper-cnn"'),
    "name": (_text, 'an attack name, e.g. "fgsm"'),
    "params": (lambda v: isinstance(v, dict), "a table, e.g. { lambda = 100 }"),
    "arch_params": RULES["arch_params"],
}


def check_entry_values(entry: dict[str, Any]) -> str | None:
    """The first wrong-typed value of a grid file's ``[[models]]``/``[[attacks]]`` entry (``params = "x"``
    used to end in a traceback), as ``KEY must be ...``, or None."""
    for key, value in entry.items():
        if problem := _rule_problem(ENTRY_RULES, key, value):
            return problem
    return None
