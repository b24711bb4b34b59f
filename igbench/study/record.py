"""The study's two JSON files, validated against igbench/schema/study.schema.json and written atomically:
the key (``study-key.json``: which model made each side of each trial) and the scores
(``study-scores.json``)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: File names inside a study folder.
KEY_FILE = "study-key.json"
QUESTIONNAIRE_FILE = "questionnaire.html"
SCORES_FILE = "study-scores.json"


@functools.lru_cache(maxsize=2)
def _validator(part: str) -> Any:
    from jsonschema import Draft202012Validator

    text = resources.files("igbench").joinpath("schema", "study.schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{part}"})


def validate(data: Any, part: str, where: str | os.PathLike[str]) -> None:
    """One-line :class:`igbench.errors.ResultError` unless ``data`` is a valid ``part`` (``key`` or ``scores``)."""
    from ..results.io import check_against

    check_against(_validator(part), data, os.fspath(where))


def study_id(trials: list[dict[str, Any]], run_id: str, attack: str, params: dict[str, Any]) -> str:
    """12 hex digits naming a study by what its participants see and what the answers mean: answers carry it,
    so answers to another study's questionnaire are refused."""
    text = json.dumps({"trials": trials, "run_id": run_id, "attack": attack, "params": params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sha256_file(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_json(path: Path, data: dict[str, Any], part: str) -> Path:
    """Validate ``data`` as ``part`` and write it atomically (sorted keys, indent 2)."""
    from ..atomic import atomic_write_text
    from ..results.io import dumps_result

    validate(data, part, path)
    return atomic_write_text(path, dumps_result(data))


def read_study_file(path: str | os.PathLike[str], part: str) -> dict[str, Any]:
    """A study's key (``part="key"``) or scores (``"scores"``) file, read and validated (one-line errors)."""
    from ..results.io import read_json

    data = read_json(path)
    validate(data, part, path)
    return data


#: The file names ``igbench validate`` checks against this schema, and the part each holds.
STUDY_FILES = {KEY_FILE: "key", SCORES_FILE: "scores"}


def read_key(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """The key of the study in ``folder`` (a study folder, or its key file), validated."""
    path = Path(folder)
    if path.is_dir():
        path = path / KEY_FILE
    if not path.is_file():
        raise UsageError(f"{path}: no study key here; pass the folder `igbench study make` wrote")
    return path, read_study_file(path, "key")


def provenance() -> dict[str, Any]:
    """``created``, ``igbench`` and the git fields every study file records."""
    from .. import __version__
    from ..environment import git_provenance, utc_timestamp

    return {"created": utc_timestamp(), "igbench": __version__, **git_provenance()}
