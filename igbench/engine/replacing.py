"""What a grid run writing to ``--out`` would replace there, said before the work or refused.

A result at ``--out`` written by another command is refused unless the run may replace it (``--replace``):
re-running a changed command to the same file used to replace the earlier result with only a note. The
same command run again replaces its own result as before (retrained elsewhere, or ``--rerun``).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

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


def refuse_another_commands_result(out_path: Path, command: str) -> None:
    """A one-line error when ``out_path`` holds a result recorded with a command other than ``command`` (both
    as results record them; the ``--out`` words are left out, which name this file either way)."""
    try:
        previous = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else None
    except (OSError, ValueError, RecursionError):
        return  # not a result: run's own destination check refuses a file igbench did not write
    if not isinstance(previous, dict) or not isinstance(previous.get("command"), str) or "run_id" not in previous:
        return
    if _without_out(previous["command"]) == _without_out(command):
        return
    raise UsageError(f"{out_path} holds the result of another command ({previous['command']}); pass --replace to "
                     f"replace it, or another --out to keep it")


def _without_out(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:
        return [command]
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif not word.startswith("--out="):
            kept.append(word)
    return kept


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
