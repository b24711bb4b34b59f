"""Reading participants' answer files: CSV with a header ``study,participant,trial,choice`` (and optionally
``seconds``), one row per answered trial, as the questionnaire's download writes them. Every problem is one
line naming the file, the row and the fix; no row is dropped without an error."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from ..errors import UsageError

#: The columns an answer file must have.
COLUMNS = ("study", "participant", "trial", "choice")
#: What ``choice`` may hold: the side of the image the participant picked.
CHOICES = ("left", "right")


class Answer(NamedTuple):
    participant: str
    trial: int
    choice: str
    seconds: float | None
    where: str  # file:row, for messages


def read_answers(paths: Sequence[str | os.PathLike[str]], study_id: str, n_trials: int) -> list[Answer]:
    """Every answer in ``paths`` for the study ``study_id`` with trials numbered ``1..n_trials``.

    Refused, in one line: a file that cannot be read or lacks a column, a row of another study (answers
    to another questionnaire), a trial number out of range, a choice other than left or right, an empty
    participant, and a participant who answered one trial twice (two downloads of one session, say).
    """
    answers: list[Answer] = []
    first_seen: dict[tuple[str, int], str] = {}
    for path in paths:
        for answer in _read_file(Path(path), study_id, n_trials):
            key = (answer.participant, answer.trial)
            if key in first_seen:
                raise UsageError(f"{answer.where}: participant {answer.participant!r} answered trial {answer.trial} "
                                 f"again (first at {first_seen[key]}); keep one of the two files or rows")
            first_seen[key] = answer.where
            answers.append(answer)
    if not answers:
        raise UsageError(f"no answers in {', '.join(os.fspath(p) for p in paths)}; pass the CSV files the "
                         "questionnaire's 'Download answers' button saved")
    return answers


def _read_file(path: Path, study_id: str, n_trials: int) -> list[Answer]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such answer file; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the answers ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UsageError(f"{path}: no column {', '.join(missing)}; an answer file has the header "
                         f"{','.join(COLUMNS)}[,seconds]")
    out = []
    for row_number, row in enumerate(reader, start=2):
        where = f"{path}:{row_number}"
        out.append(_answer(row, where, study_id, n_trials))
    return out


def _answer(row: dict[str, Any], where: str, study_id: str, n_trials: int) -> Answer:
    if (row.get("study") or "").strip() != study_id:
        raise UsageError(f"{where}: answers study {row.get('study')!r}, not this study ({study_id}); pass the "
                         "answers to this study's questionnaire")
    participant = (row.get("participant") or "").strip()
    if not participant:
        raise UsageError(f"{where}: no participant; every row names the participant who answered it")
    try:
        trial = int((row.get("trial") or "").strip())
    except ValueError:
        raise UsageError(f"{where}: trial {row.get('trial')!r} is not a whole number") from None
    if not 1 <= trial <= n_trials:
        raise UsageError(f"{where}: trial {trial} is not in this study (trials 1 to {n_trials})")
    choice = (row.get("choice") or "").strip().lower()
    if choice not in CHOICES:
        raise UsageError(f"{where}: choice {row.get('choice')!r}; write left or right (the image picked)")
    seconds = None
    text = (row.get("seconds") or "").strip()
    if text:
        try:
            seconds = float(text)
        except ValueError:
            raise UsageError(f"{where}: seconds {text!r} is not a number; leave it empty if unknown") from None
    return Answer(participant, trial, choice, seconds, where)
