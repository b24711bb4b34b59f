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
ANSWERS_TABLE_FILE = "study-answers.csv"


@functools.lru_cache(maxsize=2)
def _validator(part: str) -> Any:
    from jsonschema import Draft202012Validator

    text = resources.files("igbench").joinpath("schema", "study.schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{part}"})


def validate(data: Any, part: str, where: str | os.PathLike[str]) -> None:
    """One-line :class:`igbench.errors.ResultError` unless ``data`` is a valid ``part`` (``key`` or
    ``scores``): the schema, then for a key what the schema cannot say (:func:`key_problem`)."""
    from ..errors import ResultError
    from ..results.io import check_against, json_path

    check_against(_validator(part), data, os.fspath(where))
    problem = key_problem(data) if part == "key" else None
    if problem is not None:
        path, message = problem
        raise ResultError(f"{os.fspath(where)}: {json_path(path)}: {message}")


def key_problem(key: dict[str, Any]) -> tuple[list[Any], str] | None:
    """The first inconsistency of a schema-valid key, as ``(json path, message)``: trials and attention
    checks not numbered 1..N between them, a side that is not one of its pair's models, a pair not among
    the key's pairs or with a model not among its models, a target equal to the label, an image beyond
    the candidates or in two trials, or more trials than eligible images."""
    models = set(key["models"])
    pairs = [tuple(p["pair"]) for p in key["pairs"]]
    for i, p in enumerate(key["pairs"]):
        if not set(p["pair"]) <= models:
            return ["pairs", i, "pair"], f"{p['pair']} names a model not in models"
        if p["trials"] > p["eligible"]:
            return ["pairs", i, "trials"], f"{p['trials']} trials of {p['eligible']} eligible images"
    if len(set(pairs)) != len(pairs):
        return ["pairs"], "a pair is listed twice"
    checks = key["catch_trials"]
    numbers = sorted(t["trial"] for t in key["trials"] + checks)
    if numbers != list(range(1, len(numbers) + 1)):
        missing = next(k for k in range(1, len(numbers) + 1) if k not in numbers)
        return ["trials"], (f"trial numbers run from 1 to {len(numbers)} across trials and catch_trials, once each; "
                            f"none is numbered {missing}")
    images: set[int] = set()
    counted: dict[tuple[str, ...], int] = {}
    for i, t in enumerate(key["trials"]):
        if i and t["trial"] < key["trials"][i - 1]["trial"]:
            return ["trials", i, "trial"], "trials are listed in the order of their numbers"
        if tuple(t["pair"]) not in pairs:
            return ["trials", i, "pair"], f"{t['pair']} is not one of the key's pairs"
        if t["left"] == t["right"] or {t["left"], t["right"]} != set(t["pair"]):
            return ["trials", i, "left"], f"sides {t['left']!r} and {t['right']!r} are not the pair {t['pair']}"
        if t["target"] == t["label"]:
            return ["trials", i, "target"], "the target is the label"
        if t["image"] >= key["candidates"]:
            return ["trials", i, "image"], f"{t['image']} is beyond the {key['candidates']} candidates"
        if t["image"] in images:
            return ["trials", i, "image"], f"image {t['image']} is in another trial too"
        images.add(t["image"])
        counted[tuple(t["pair"])] = counted.get(tuple(t["pair"]), 0) + 1
    for i, c in enumerate(checks):
        if c["model"] not in models:
            return ["catch_trials", i, "model"], f"{c['model']!r} is not among the models"
        if c["target"] == c["other_label"]:
            return ["catch_trials", i, "target"], "the other image is of the named class"
        for field in ("target_image", "other_image"):
            if c[field] >= key["candidates"] or c[field] in images:
                return ["catch_trials", i, field], f"image {c[field]} is beyond the candidates or in another trial"
            images.add(c[field])
    for i, p in enumerate(key["pairs"]):
        if counted.get(tuple(p["pair"]), 0) != p["trials"]:
            return ["pairs", i, "trials"], f"{p['trials']}, but {counted.get(tuple(p['pair']), 0)} trials show the pair"
    return None


def study_id(trials: list[dict[str, Any]], run_id: str, attack: str, params: dict[str, Any]) -> str:
    """``s`` and 11 hex digits naming a study by what its participants see and what the answers mean: answers
    carry it, so answers to another study's questionnaire are refused."""
    text = json.dumps({"trials": trials, "run_id": run_id, "attack": attack, "params": params}, sort_keys=True)
    return "s" + hashlib.sha256(text.encode()).hexdigest()[:11]  # a letter first: spreadsheets keep it text


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_json(path: Path, data: dict[str, Any], part: str) -> Path:
    """Validate ``data`` as ``part`` and write it atomically (sorted keys, indent 2)."""
    from ..atomic import atomic_write_text
    from ..results.io import dumps_result

    validate(data, part, path)
    return atomic_write_text(path, dumps_result(data))


def create_key(path: Path, key: dict[str, Any]) -> Path:
    """Validate ``key`` and write it to ``path`` whole, only if no file is there: two ``study make`` runs
    into one folder cannot replace each other's key (the later gets the "already holds a study" error)."""
    import tempfile

    from ..results.io import dumps_result

    validate(key, "key", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as fh:
        fh.write(dumps_result(key))
        fh.flush()
        os.fsync(fh.fileno())
    staged = Path(fh.name)
    try:
        os.chmod(staged, 0o644)
        os.link(staged, path)  # fails if the key exists, where a rename would replace it
    except FileExistsError:
        raise UsageError(already_a_study(path.parent)) from None
    finally:
        staged.unlink(missing_ok=True)
    return path


def already_a_study(folder: Path) -> str:
    return (f"{folder} already holds a study ({KEY_FILE}); its answers are scored with that key, so pick another "
            "--out (or delete the folder if no one has answered it)")


def read_study_file(path: str | os.PathLike[str], part: str) -> dict[str, Any]:
    """A study's key (``part="key"``) or scores (``"scores"``) file, read and validated (one-line errors)."""
    from ..results.io import read_json

    data = read_json(path)
    validate(data, part, path)
    return data


def study_file_or_result(path: str | os.PathLike[str], read_result) -> dict[str, Any]:
    """A study's key or scores, known by its content and validated as such; anything else goes to
    ``read_result``."""
    from ..results.io import read_json

    data = read_json(path)
    if isinstance(data, dict) and "igbench_study" in data:
        return read_study_file(path, "key")
    if isinstance(data, dict) and "igbench_study_scores" in data:
        return read_study_file(path, "scores")
    return read_result(path)


#: The file names ``igbench validate`` checks against this schema, and the part each holds.
STUDY_FILES = {KEY_FILE: "key", SCORES_FILE: "scores"}


def read_key(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """The key of the study in ``folder`` (a study folder, or its key file), validated."""
    path = Path(folder)
    if path.is_dir():
        path = path / KEY_FILE
    if not path.is_file():
        raise UsageError(f"{path}: no study key here; pass the folder `igbench study make` wrote")
    from ..results.io import read_json

    data = read_json(path)
    if not (isinstance(data, dict) and "igbench_study" in data):  # a result, or the scores: "required field"
        what = "a study's scores, " if isinstance(data, dict) and "igbench_study_scores" in data else (
            "a result file, " if isinstance(data, dict) and "run_id" in data else "")
        raise UsageError(f"{path}: is {what}not a study key; pass the folder `igbench study make` wrote (it "
                         f"holds {KEY_FILE})")
    validate(data, "key", path)
    return path, data


def provenance() -> dict[str, Any]:
    """``created``, ``igbench`` and the git fields every study file records."""
    from .. import __version__
    from ..environment import git_provenance, utc_timestamp

    return {"created": utc_timestamp(), "igbench": __version__, **git_provenance()}
