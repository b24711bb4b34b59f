"""Reading, validating and writing result files (igbench/schema/result.schema.json, schema_version "1").

Every problem becomes a one-line :class:`igbench.errors.ResultError` that names the file and the
failing field as a JSON path, e.g. ``x.json: models[0].clean_accuracy: 1.7 is greater than the maximum of 1``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..atomic import atomic_write_text
from ..errors import ResultError
from .grid import scored_split

SCHEMA_VERSION = "1"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_VALUE_REPR = 80


@functools.lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The result JSON Schema (draft 2020-12), loaded from the installed package."""
    text = resources.files("igbench").joinpath("schema", "result.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts: Iterable[Any]) -> str:
    """``["models", 0, "clean_accuracy"]`` -> ``models[0].clean_accuracy`` (``(top level)`` when empty)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_VALUE_REPR else text[: _MAX_VALUE_REPR - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _schema_message(error: Any) -> tuple[list[Any], str]:
    """(path, message) for a jsonschema error, phrased for people and kept to one line."""
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        missing = [name for name in error.validator_value if name not in instance]
        if missing:
            return path + [missing[0]], "required field is missing"
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        if extra and error.validator_value is False:
            return path + [extra[0]], f"unknown field (allowed: {', '.join(sorted(allowed))})"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return path, f"{_short(instance)} is not of type {expected}"
    if error.validator == "const":
        return path, f"{_short(instance)} should be {_short(error.validator_value)}"
    if error.validator == "pattern":
        return path, f"{_short(instance)} does not match the pattern {error.validator_value}"
    return path, _one_line(error.message)


def _non_finite(data: Any, path: list[Any]) -> list[Any] | None:
    if isinstance(data, float) and not math.isfinite(data):
        return path
    if isinstance(data, dict):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        found = _non_finite(value, path + [key])
        if found is not None:
            return found
    return None


def _semantic_problem(data: dict[str, Any]) -> tuple[list[Any], str] | None:
    """Rules the schema cannot express; the first broken one as (path, message)."""
    ids: dict[str, int] = {}
    for i, model in enumerate(data["models"]):
        if model["id"] in ids:
            return ["models", i, "id"], f"duplicate model id {_short(model['id'])} (also models[{ids[model['id']]}]); model ids must be unique"
        ids[model["id"]] = i
    attacks: dict[str, Any] = {}
    for i, attack in enumerate(data["attacks"]):
        if attack["name"] in attacks:
            return ["attacks", i, "name"], f"duplicate attack {_short(attack['name'])}; attack names must be unique within a file"
        attacks[attack["name"]] = attack["eps"]
    lo, hi = data["dataset"]["clip"]
    if not lo < hi:
        return ["dataset", "clip"], f"{_short([lo, hi])}: the minimum must be below the maximum"
    if scored_split(data) == "validation":
        n_validation = data["dataset"].get("n_validation")
        if n_validation is None:
            return ["eval", "split"], "validation, but dataset.n_validation is absent: the data set held no images out"
        if data["eval"]["n_test"] > n_validation:
            return ["eval", "n_test"], f"{data['eval']['n_test']} is more than the dataset's n_validation ({n_validation})"
    elif data["eval"]["n_test"] > data["dataset"]["n_test"]:
        return ["eval", "n_test"], f"{data['eval']['n_test']} is more than the dataset's n_test ({data['dataset']['n_test']})"

    def check_attack_eps(section: str, i: int, entry: dict[str, Any]) -> tuple[list[Any], str] | None:
        name = entry["attack"]
        if name not in attacks:
            known = ", ".join(sorted(attacks)) or "none"
            return [section, i, "attack"], f"{_short(name)} is not listed in attacks (listed: {known})"
        eps_list = attacks[name]
        if eps_list is None and entry["eps"] is not None:
            return [section, i, "eps"], f"{_short(entry['eps'])} given, but attack {_short(name)} has no eps (expected null)"
        if eps_list is not None and entry["eps"] not in eps_list:
            return [section, i, "eps"], f"{_short(entry['eps'])} is not one of attack {_short(name)}'s eps values {_short(eps_list)}"
        return None

    def check_model(section: str, i: int, field: str, value: str) -> tuple[list[Any], str] | None:
        if value not in ids:
            return [section, i, field], f"{_short(value)} is not a model id in this file (models: {', '.join(ids)})"
        return None

    seen: dict[tuple[Any, ...], int] = {}
    for i, cell in enumerate(data["cells"]):
        problem = (
            check_attack_eps("cells", i, cell)
            or check_model("cells", i, "source", cell["source"])
            or check_model("cells", i, "target", cell["target"])
        )
        if problem:
            return problem
        key = (cell["attack"], cell["eps"], cell["source"], cell["target"])
        if key in seen:
            return ["cells", i], f"duplicate cell (same attack, eps, source and target as cells[{seen[key]}])"
        seen[key] = i
        if cell["count"] > data["eval"]["n_test"]:
            return ["cells", i, "count"], f"{cell['count']} is more than eval.n_test ({data['eval']['n_test']})"
    stats_seen: dict[tuple[Any, ...], int] = {}
    for i, stat in enumerate(data["attack_stats"]):
        problem = check_attack_eps("attack_stats", i, stat) or check_model("attack_stats", i, "source", stat["source"])
        if problem:
            return problem
        key = (stat["attack"], stat["eps"], stat["source"])
        if key in stats_seen:
            return ["attack_stats", i], f"duplicate entry (same attack, eps and source as attack_stats[{stats_seen[key]}])"
        stats_seen[key] = i
    problem = _incomplete_grid(list(ids), attacks, set(seen), set(stats_seen))
    if problem:
        return problem
    for i, entry in enumerate(data.get("interpretability", [])):
        problem = check_model("interpretability", i, "model", entry["model"])
        if problem:
            return problem
    return None


def _incomplete_grid(ids: list[str], attacks: dict[str, Any], cells: set[tuple[Any, ...]],
                     stats: set[tuple[Any, ...]]) -> tuple[list[Any], str] | None:
    """The first cell (or attack_stats entry) that the file's models and attacks promise but it lacks.

    The grid writer (igbench.engine.grid) scores every attack, at each of its eps (one null eps for an
    attack without eps), against every source model, on every target model; a white-box-only grid (as
    sweeps write) on the source alone. Which of the two a file is shows in its cells: any cell with
    source != target makes it a transfer grid.
    """
    transfer = any(key[2] != key[3] for key in cells)
    fix = "the file is incomplete (entries deleted or lost); re-run the command recorded in its command field"
    for name, eps_list in attacks.items():
        for eps in eps_list if eps_list is not None else [None]:
            for source in ids:
                where = f"attack {_short(name)}, eps {_short(eps)}, source {_short(source)}"
                for target in ids if transfer else [source]:
                    if (name, eps, source, target) not in cells:
                        promised = _n_promised(attacks, len(ids), transfer)
                        return ["cells"], (f"no cell for {where}, target {_short(target)} ({len(cells)} of the "
                                           f"{promised} cells its models and attacks promise are there); {fix}")
                if (name, eps, source) not in stats:
                    return ["attack_stats"], f"no entry for {where}; {fix}"
    return None


def _n_promised(attacks: dict[str, Any], n_models: int, transfer: bool) -> int:
    units = sum(1 if eps is None else len(eps) for eps in attacks.values()) * n_models
    return units * (n_models if transfer else 1)


def check_against(validator: Any, data: Any, where: str) -> None:
    """Raise a one-line :class:`ResultError` for a non-finite number or the most relevant schema error."""
    from jsonschema.exceptions import best_match

    bad = _non_finite(data, [])
    if bad is not None:
        raise ResultError(f"{where}: {json_path(bad)}: non-finite number (NaN/Infinity) is not allowed; the run produced an invalid value")
    error = best_match(validator.iter_errors(data))
    if error is not None:
        path, message = _schema_message(error)
        raise ResultError(f"{where}: {json_path(path)}: {message}")


def validate_result(data: Any, source: str | os.PathLike[str] = "<result>") -> None:
    """Raise :class:`ResultError` (one line: ``source: json.path: problem``) unless ``data`` is a valid result."""
    where = os.fspath(source)
    check_against(_validator(), data, where)
    problem = _semantic_problem(data)
    if problem is not None:
        path, message = problem
        raise ResultError(f"{where}: {json_path(path)}: {message}")


@functools.lru_cache(maxsize=1)
def _scores_validator() -> Any:
    """Validator of an ``explain-scores.json`` file: the result schema's ``explain`` and ``interpretability``
    blocks, plus the result file they were made from."""
    from jsonschema import Draft202012Validator

    schema = load_schema()
    scores_schema = {
        "$defs": schema["$defs"], "type": "object",
        "additionalProperties": False, "required": ["result", "explain", "interpretability"],
        "properties": {
            "result": {"type": "string", "minLength": 1},
            # the result's run id (absent in records written before 2026-12-02): which result the figures
            # are, wherever explain ran (``result`` is the path as it was given, relative to that folder)
            "run_id": schema["properties"]["run_id"],
            "explain": schema["properties"]["explain"],
            "interpretability": schema["properties"]["interpretability"],
        },
    }
    return Draft202012Validator(scores_schema)


def validate_scores(data: Any, source: str | os.PathLike[str] = "<scores>") -> None:
    """Raise :class:`ResultError` (one line) unless ``data`` is a valid ``explain-scores.json`` record."""
    check_against(_scores_validator(), data, os.fspath(source))


def dumps_result(data: dict[str, Any]) -> str:
    """The canonical text of a result file: sorted keys, indent 2, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_result(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Validate ``data`` and write it to ``path`` atomically in canonical form; return the path."""
    validate_result(data, path)
    return atomic_write_text(path, dumps_result(data))


class _NonFiniteConstant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFiniteConstant(name)


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one result file; any problem is a one-line :class:`ResultError` naming the file."""
    data = read_json(path)
    if isinstance(data, dict) and {"explain", "interpretability", "result"} <= set(data) and "cells" not in data:
        raise ResultError(f"{os.fspath(path)}: is the gradient scores `igbench explain` wrote, not a result file; "
                          f"pass the result it was drawn from ({data['result']})")
    if isinstance(data, dict) and ("igbench_study" in data or "igbench_study_scores" in data):
        made_from = data.get("result") or f"the one its key {data.get('key')} names"
        raise ResultError(f"{os.fspath(path)}: is a study's {'key' if 'igbench_study' in data else 'scores'} "
                          f"(`igbench study`), not a result file; pass the result it was made from ({made_from})")
    validate_result(data, os.fspath(path))
    return data


def read_scores(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one ``explain-scores.json`` record (one-line :class:`ResultError` on a problem)."""
    data = read_json(path)
    validate_scores(data, os.fspath(path))
    return data


def refuse_foreign_json(path: str | os.PathLike[str], option: str, what: str, key: str) -> None:
    """Before any work: an existing ``path`` that a command would replace must be igbench's own file of that
    kind, a JSON object with ``key`` (``run_id`` for a result); anything else (notes, someone's data, a typo)
    is kept, and this is a one-line :class:`~igbench.errors.UsageError`. An empty file (mktemp's) holds
    nothing to lose."""
    from ..errors import UsageError

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ours = isinstance(data, dict) and key in data
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        ours = False
    if not ours:
        raise UsageError(f"{option} {path} exists and is not {what}, so it is kept; choose another {option}")


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON content of ``path``; a missing or unreadable file, invalid JSON or a non-finite number is a
    one-line :class:`ResultError` naming the file."""
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultError(f"{where}: no such result file; check the path") from None
    except IsADirectoryError:
        raise ResultError(f"{where}: is a directory, not a result file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultError(f"{where}: cannot read the file ({_one_line(str(exc))})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except _NonFiniteConstant as exc:
        raise ResultError(f"{where}: {exc} is not valid JSON; result files may hold only finite numbers") from None
    except json.JSONDecodeError as exc:
        raise ResultError(f"{where}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ResultError(f"{where}: nested too deeply to be a result file") from None
    except ValueError as exc:  # an integer of thousands of digits (Python's int_max_str_digits)
        raise ResultError(f"{where}: not a result file ({_one_line(str(exc))})") from None
    return data


def result_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``*.json`` files directly inside ``directory``, sorted by path."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ResultError(f"{os.fspath(directory)}: results directory not found; pass an existing directory")
    return sorted(p for p in folder.glob("*.json") if p.is_file())


def load_results(directory: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    """Read and validate every result file in ``directory``: ``[(path, data), ...]`` sorted by path."""
    return [(path, read_result(path)) for path in result_files(directory)]


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, directories replaced by their ``*.json`` files (sorted); errors for missing paths."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = result_files(path)
            if not found:
                raise ResultError(f"{os.fspath(p)}: no .json result files in this directory")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise ResultError(f"{os.fspath(p)}: no such file or directory")
    return out

