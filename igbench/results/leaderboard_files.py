"""The folder of generated leaderboards: write one per data set, remove orphans, check for staleness.

``render_all`` is what ``igbench leaderboard`` (and ``replicate``) run; ``check_leaderboards`` is
``igbench leaderboard --check``, which CI runs to catch a committed leaderboard that no longer matches
its result files. The text of each leaderboard comes from :mod:`igbench.results.leaderboard`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import ResultError, UsageError
from ..messages import say
from . import DEFAULT_OUT, DEFAULT_RESULTS
from .io import load_results, read_result, result_files
from .leaderboard import GENERATED_MARKER, leaderboard_filename, render_leaderboard

def fix_hint(results_dir: str | os.PathLike[str] = DEFAULT_RESULTS, out_dir: str | os.PathLike[str] = DEFAULT_OUT) -> str:
    """The command that renders these folders' leaderboards: options for any folder not the default (the
    hint said plain `igbench leaderboard`, which renders the default folders, not the ones checked)."""
    import shlex

    words = ["igbench", "leaderboard"]
    if Path(results_dir) != Path(DEFAULT_RESULTS):
        words += ["--results", shlex.quote(os.fspath(results_dir))]
    if Path(out_dir) != Path(DEFAULT_OUT):
        words += ["--out", shlex.quote(os.fspath(out_dir))]
    return f"run `{' '.join(words)}` and commit the result"


def _expected(results: list[tuple[Path, dict[str, Any]]], out_dir: Path) -> dict[Path, str]:
    datasets = sorted({data["dataset"]["name"] for _, data in results})
    return {out_dir / leaderboard_filename(d): render_leaderboard(results, d, link_base=out_dir) for d in datasets}


def _is_generated(path: Path) -> bool:
    """Whether ``path`` is a leaderboard ``igbench leaderboard`` wrote (it holds the generated marker)."""
    try:
        return GENERATED_MARKER in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def _generated_files(out_dir: Path) -> list[Path]:
    return [p for p in sorted(out_dir.glob("*.md")) if _is_generated(p)]


#: A result file's entry in a leaderboard's "Result files" list, ``1. [LINK](LINK): ...``: its link, relative
#: to the leaderboard (the backreference reads names with brackets or parentheses, ``r (1).json``).
_SOURCE_LINK = re.compile(r"^\d+\. \[(.+)\]\(\1\): ", re.M)


def _absolute(path: Path) -> Path:
    """``path`` made absolute and normalised without following links (a linked --out stays comparable)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _orphans(out: Path, results_dir: Path, expected: dict[Path, str]) -> list[Path]:
    """The generated leaderboards of ``out`` that no data set of ``results_dir`` renders although their result
    files were in ``results_dir`` (since removed, or rewritten with another data set). One made from another
    folder's results is not this folder's to remove: a mistyped --results used to remove every leaderboard
    of --out."""
    root = _absolute(results_dir)
    found = []
    for path in _generated_files(out):
        if path in expected:
            continue
        links = [_absolute(out / link) for link in _SOURCE_LINK.findall(path.read_text(encoding="utf-8"))]
        if links and all(link.parent == root for link in links):
            found.append(path)
    return found


def refuse_foreign_leaderboard(path: Path, option: str = "--out") -> None:
    """An existing ``path`` that ``igbench leaderboard`` did not write (no generated marker) is someone's own
    file: a one-line error, so that it is kept rather than replaced."""
    if path.exists() and not _is_generated(path):
        raise UsageError(f"{path} exists and was not written by `igbench leaderboard` (it lacks the generated "
                         f"marker), so it is kept; choose another {option}, or move the file away")


def check_can_render(results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], dataset: str,
                     replaced: Path, option: str = "--leaderboards") -> None:
    """Before hours of work whose last step is ``render_all(results_dir, out_dir)``, once a result of ``dataset``
    is written to ``replaced``: stop now if that step would fail. Every other result file in ``results_dir``
    must read, and each leaderboard it gives must be one igbench wrote (a one-line error names the file)."""
    datasets = {dataset}
    for path in result_files(results_dir) if Path(results_dir).is_dir() else []:
        if path.resolve() != replaced.resolve():
            try:
                datasets.add(read_result(path)["dataset"]["name"])
            except ResultError as exc:
                raise UsageError(f"{exc}; the leaderboards rendered at the end read every result file of "
                                 f"{results_dir}: fix or move this one first") from None
    for name in sorted(datasets):
        refuse_foreign_leaderboard(Path(out_dir) / leaderboard_filename(name), option)


def render_all(results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``<out_dir>/<dataset>.md`` for every data set in ``results_dir``; return the paths.

    Files are rewritten (atomically) only when their text changes; generated leaderboards of data
    sets that no longer have result files are removed.
    """
    out = Path(out_dir)
    expected = _expected(load_results(results_dir), out)
    for path in expected:
        refuse_foreign_leaderboard(path)
    for path, text in expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
    if out.is_dir():
        for orphan in _orphans(out, Path(results_dir), expected):
            orphan.unlink()
            say(f"removed {orphan}: its result files are gone from {results_dir}")
    return list(expected)


def _loose_dataset_name(path: Path) -> str | None:
    try:
        name = json.loads(path.read_text(encoding="utf-8"))["dataset"]["name"]
        return name if isinstance(name, str) else None
    except Exception:
        return None


def check_leaderboards(results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[str]:
    """One-line problems that make the committed leaderboards wrong (empty list: all up to date).

    Reports invalid result files, and missing, stale or orphaned ``<out_dir>/<dataset>.md`` files.
    Writes nothing.
    """
    out = Path(out_dir)
    hint = fix_hint(results_dir, out_dir)
    problems: list[str] = []
    valid: list[tuple[Path, dict[str, Any]]] = []
    broken_datasets: set[str | None] = set()
    for path in result_files(results_dir):
        try:
            valid.append((path, read_result(path)))
        except ResultError as exc:
            problems.append(f"{exc}")
            broken_datasets.add(_loose_dataset_name(path))
    expected = _expected(valid, out)
    for path, text in expected.items():
        dataset = next(d["dataset"]["name"] for p, d in valid if out / leaderboard_filename(d["dataset"]["name"]) == path)
        if dataset in broken_datasets:
            continue  # already reported: the file that is invalid decides what this leaderboard should say
        if not path.exists():
            problems.append(f"{path}: missing; {hint}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: stale (differs from what the result files give); {hint}")
    if out.is_dir():
        broken_files = {out / leaderboard_filename(d) for d in broken_datasets if d}
        for orphan in _orphans(out, Path(results_dir), expected):
            if orphan not in broken_files:
                problems.append(f"{orphan}: generated leaderboard without result files; {hint} (it removes it)")
    return problems
