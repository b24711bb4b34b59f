"""Reading participants' answer files: CSV with a header ``study,participant,trial,choice`` and optionally
``mirrored`` and ``seconds``, one row per answered trial, as the questionnaire's download writes them.

``choice`` is the side of the screen the participant picked (``left`` or ``right``). ``mirrored`` (``0`` or
``1``; ``0`` when the column is absent, as for answers collected on paper from the key's layout) says that
the page showed the trial with its sides swapped, which it does for half the participants.

Files a spreadsheet saved are read too: a UTF-8 or UTF-16 byte-order mark, ``;`` or tab between fields,
any line ending. Every problem is one line naming the file, its line and the fix; what is set aside (an
empty file, a header repeated by joining files, a row repeated identically by a partial and a final save)
is said in a note, never dropped silently.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import NamedTuple, Sequence

from ..errors import UsageError
from ..messages import say

#: The columns an answer file must have.
COLUMNS = ("study", "participant", "trial", "choice")
#: The columns it may also have.
OPTIONAL_COLUMNS = ("mirrored", "seconds")
#: What ``choice`` may hold: the side of the screen the participant picked.
CHOICES = ("left", "right")
_DELIMITERS = (",", ";", "\t")


class Answer(NamedTuple):
    """One answered trial."""

    participant: str
    trial: int
    #: the side of the screen picked
    choice: str
    #: whether the page showed the key's right image on the left
    mirrored: bool
    seconds: float | None
    #: ``file:line``, for messages
    where: str

    def chose_key_side(self) -> str:
        """The side of the key's layout (``left``/``right`` in ``study-key.json``) that was picked."""
        return other_side(self.choice) if self.mirrored else self.choice


def other_side(side: str) -> str:
    return "right" if side == "left" else "left"


def read_answers(paths: Sequence[str | os.PathLike[str]], study_id: str, n_trials: int,
                 exclude: Sequence[str] = ()) -> list[Answer]:
    """Every answer in ``paths`` for the study ``study_id`` with trials numbered ``1..n_trials``, except
    those of the participants in ``exclude`` (left out before their answers are compared, so that a
    participant whose files contradict each other can be left out).

    Refused, in one line: a file that cannot be read or lacks a column, a column twice, a row of another
    study, a trial out of range, a choice other than left or right, a ``mirrored`` other than 0 or 1, a
    ``seconds`` that is not a number >= 0, an empty participant, a row with more or fewer fields than the
    header, and one participant giving two different answers to one trial.
    """
    answers: list[Answer] = []
    first_seen: dict[tuple[str, int], Answer] = {}
    repeated = 0
    everyone: set[str] = set()
    for path in paths:
        for answer in _read_file(Path(path), study_id, n_trials):
            everyone.add(answer.participant)
            if answer.participant in exclude:
                continue
            key = (answer.participant, answer.trial)
            earlier = first_seen.get(key)
            if earlier is not None:
                if (earlier.choice, earlier.mirrored) == (answer.choice, answer.mirrored):
                    repeated += 1  # the same saved answer twice: a partial save and the final one
                    continue
                raise UsageError(
                    f"{answer.where}: participant {answer.participant!r} answered trial {answer.trial} "
                    f"{answer.choice} here and {earlier.choice} at {earlier.where}: a partial save and a later "
                    "one with a changed answer (pass only the later file), or two people under one code (give one "
                    f"of them another code in its file's participant column); or --exclude {answer.participant!r}")
            first_seen[key] = answer
            answers.append(answer)
    unknown = [p for p in exclude if p not in everyone]
    if unknown:
        raise UsageError(f"--exclude {', '.join(repr(p) for p in unknown)}: no such participant in the answers; they "
                         f"are {', '.join(repr(p) for p in sorted(everyone))}")
    if repeated:
        say(f"note: {repeated} answer(s) appear twice with the same choice (a partial save and the final one?); "
            "each is counted once")
    if not answers:
        what = "every participant is excluded" if everyone else f"no answers in {', '.join(os.fspath(p) for p in paths)}"
        raise UsageError(f"{what}; pass the CSV files the questionnaire's 'Download your answers' link saved")
    return answers


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such answer file; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder; pass the answer files in it (e.g. {path}/*.csv)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the answers ({exc.strerror or exc})") from None
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return raw.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 or UTF-16 text; save it as CSV (UTF-8)") from None


def _read_file(path: Path, study_id: str, n_trials: int) -> list[Answer]:
    text = _decode(path)
    if not text.strip():
        say(f"note: {path} is empty; no answers read from it")
        return []
    lines = text.splitlines(keepends=True)
    skipped = next(i for i, line in enumerate(lines) if line.strip())  # blank lines above the header
    text = "".join(lines[skipped:])
    header_line = lines[skipped].strip()
    delimiter = max(_DELIMITERS, key=header_line.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    while fields and not fields[-1]:  # a trailing delimiter
        fields.pop()
    twice = sorted({f for f in fields if f and fields.count(f) > 1})
    if twice:
        raise UsageError(f"{path}: column {', '.join(twice)} appears twice in the header; keep one")
    reader.fieldnames = fields
    missing = [c for c in COLUMNS if c not in fields]
    if missing:
        raise UsageError(f"{path}: no column {', '.join(missing)} (its header: {header_line[:80]!r}); an "
                         f"answer file has the header {','.join(COLUMNS)}[,mirrored][,seconds]")
    other = [f for f in fields if f not in COLUMNS + OPTIONAL_COLUMNS]
    if other:
        say(f"note: {path}: column(s) {', '.join(repr(f) for f in other)} are not read")
    out, headers, blank, people = [], 0, 0, set()
    try:
        for row in reader:
            where = f"{path}:{reader.line_num + skipped}"
            extra = row.pop(None, None)
            if extra and any(v.strip() for v in extra):
                raise UsageError(f"{where}: more fields than the header has; mend or remove the row")
            if all(not (v or "").strip() for v in row.values()):
                blank += 1  # a spreadsheet's empty row (,,,)
                continue
            if any(row.get(c) is None for c in fields):
                raise UsageError(f"{where}: fewer fields than the header has; mend or remove the row")
            if all((row.get(c) or "").strip().lower() == c for c in COLUMNS):
                headers += 1  # files joined with cat: their headers
                continue
            answer = _answer(row, where, study_id, n_trials, decimal_comma=delimiter != ",")
            people.add(answer.participant)
            out.append(answer)
    except csv.Error as exc:  # a field over the csv module's limit (a pasted essay), a stray NUL
        raise UsageError(f"{path}:{reader.line_num + skipped}: {exc}; this row is not one the questionnaire "
                         f"saves: mend or remove it") from None
    if headers:
        say(f"note: {path}: {headers} repeated header row(s) skipped (files joined together?)")
    if blank:
        say(f"note: {path}: {blank} empty row(s) skipped")
    if len(people) > 1:
        say(f"note: {path} holds answers of {len(people)} participants ({', '.join(sorted(people)[:5])}"
            f"{', ...' if len(people) > 5 else ''}); the page saves one per file: check that no code was mistyped")
    return out


def _answer(row: dict[str, str | None], where: str, study_id: str, n_trials: int, decimal_comma: bool = False) -> Answer:
    if (row.get("study") or "").strip() != study_id:
        raise UsageError(f"{where}: answers study {row.get('study')!r}, not this study ({study_id}); pass the "
                         "answers to this study's questionnaire")
    participant = (row.get("participant") or "").strip()
    if not participant:
        raise UsageError(f"{where}: no participant; every row names the participant who answered it")
    text = (row.get("trial") or "").strip()
    if not (text.isascii() and text.isdigit()):  # int() also took 1_0 (10), +2 and full-width digits
        raise UsageError(f"{where}: trial {row.get('trial')!r} is not a whole number")
    trial = int(text)
    if not 1 <= trial <= n_trials:
        raise UsageError(f"{where}: trial {trial} is not in this study (trials 1 to {n_trials})")
    choice = (row.get("choice") or "").strip().lower()
    if choice not in CHOICES:
        raise UsageError(f"{where}: choice {row.get('choice')!r}; write left or right (the side picked)")
    mirrored_text = "0" if "mirrored" not in row else (row["mirrored"] or "").strip()
    if mirrored_text not in ("0", "1"):
        raise UsageError(f"{where}: mirrored {mirrored_text!r}; write 1 if the page swapped the sides, else 0 (the "
                         "page writes it: an empty cell would read a swapped page backwards)")
    seconds = None
    text = (row.get("seconds") or "").strip()
    if text:
        try:
            seconds = float(text.replace(",", ".") if decimal_comma else text)
        except ValueError:
            seconds = float("nan")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise UsageError(f"{where}: seconds {text!r} is not a time (a number >= 0); leave it empty if unknown")
    return Answer(participant, trial, choice, mirrored_text == "1", seconds, where)
