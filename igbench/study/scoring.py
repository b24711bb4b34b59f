"""Tallying a study's answers: per model pair, how often each model's example was picked as the more
target-like, over all answers and over participants; per model, over all its comparisons; per participant,
what might call their answers into question; and two checks of the study itself (a preference for one side
of the screen, agreement with the model-free stand-in)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from ..atomic import atomic_write_text
from ..errors import UsageError
from ..messages import say
from .answers import Answer, other_side, read_answers
from .record import ANSWERS_TABLE_FILE, KEY_FILE, SCORES_FILE, provenance, read_key, sha256_file, write_json
from .statistics import Share, holm, share

#: A participant whose median answer time is below this many seconds is flagged as answering too fast.
FAST_SECONDS = 0.5
#: A participant with at least this many answers, all on one side of the screen, is flagged.
ONE_SIDE_MIN_ANSWERS = 10


def _share_record(s: Share) -> dict[str, Any]:
    return {"chosen": s.k, "answers": s.n, "share": s.share, "ci_low": s.low, "ci_high": s.high,
            "p_value": s.p_value}


def chosen_model(trial: dict[str, Any], answer: Answer) -> str:
    """The model whose example the answer picked."""
    return trial[answer.chose_key_side()]


def score_answers(trials: Sequence[dict[str, Any]], answers: Sequence[Answer], models: Sequence[str],
                  pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The ``pairs``, ``models``, ``position`` and ``stand_in`` blocks of a study's scores (pairs in the order
    given, the key's).

    A pair ``[a, b]`` reports how often ``a`` was chosen over all its answers (exact binomial test against
    1/2: it treats answers as independent, which answers of one person are not), and over participants:
    how many preferred ``a`` on most of their trials of that pair, how many ``b`` (a sign test, the safer one
    with few participants; ties left out). Both p-values are also given Holm-adjusted over the pairs, for
    a study of several.
    """
    by_number = {t["trial"]: t for t in trials}
    pair_answers: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (participant, chosen model)
    model_counts = {m: [0, 0] for m in models}  # chosen, compared
    left = agree = comparable = 0
    for answer in answers:
        trial = by_number[answer.trial]
        chosen = chosen_model(trial, answer)
        a, b = trial["pair"]
        pair_answers[(a, b)].append((answer.participant, chosen))
        for m in (a, b):
            model_counts[m][1] += 1
        model_counts[chosen][0] += 1
        left += answer.choice == "left"
        la, ra = trial.get("left_alignment"), trial.get("right_alignment")
        if la is not None and ra is not None and la != ra:
            comparable += 1
            agree += (answer.chose_key_side() == "left") == (la > ra)
    records = []
    for a, b in (tuple(p) for p in pairs):
        given = pair_answers.get((a, b), [])
        per_person: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for person, chosen in given:
            per_person[person][0] += chosen == a
            per_person[person][1] += 1
        prefer_a = sum(1 for k, n in per_person.values() if 2 * k > n)
        prefer_b = sum(1 for k, n in per_person.values() if 2 * k < n)
        records.append({
            "pair": [a, b], **_share_record(share(sum(chosen == a for _, chosen in given), len(given))),
            "participants": len(per_person), "participants_preferring_first": prefer_a,
            "participants_preferring_second": prefer_b, "participants_tied": len(per_person) - prefer_a - prefer_b,
            "participants_p_value": share(prefer_a, prefer_a + prefer_b).p_value,
        })
    for field in ("p_value", "participants_p_value"):
        for record, adjusted in zip(records, holm([r[field] for r in records])):
            record[f"{field}_holm"] = adjusted
    return {
        "pairs": records,
        "models": [{"model": m, **_share_record(share(*model_counts[m]))} for m in models if model_counts[m][1]],
        "position": {"side": "left", **_share_record(share(left, len(answers)))},
        "stand_in": {"key": "target_alignment", **_share_record(share(agree, comparable))},
    }


def participant_summary(answers: Sequence[Answer], checks: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per participant (in order of first answer): trials answered (attention checks included), median time,
    share of left picks, attention checks passed, and flags for answers that may not be judgements
    (``fast``: median time under :data:`FAST_SECONDS`; ``one_side``: every one of at least
    :data:`ONE_SIDE_MIN_ANSWERS` answers on one side; ``missed_catch``: an attention check answered wrong)."""
    from statistics import median

    correct_side = {c["trial"]: c["correct"] for c in checks}
    by_person: dict[str, list[Answer]] = {}
    for a in answers:
        by_person.setdefault(a.participant, []).append(a)
    out = []
    for person, given in by_person.items():
        times = [a.seconds for a in given if a.seconds is not None]
        lefts = sum(a.choice == "left" for a in given)
        checked = [a for a in given if a.trial in correct_side]
        passed = sum(a.chose_key_side() == correct_side[a.trial] for a in checked)
        flags = []
        if times and median(times) < FAST_SECONDS:
            flags.append("fast")
        if len(given) >= ONE_SIDE_MIN_ANSWERS and lefts in (0, len(given)):
            flags.append("one_side")
        if passed < len(checked):
            flags.append("missed_catch")
        out.append({"participant": person, "answers": len(given), "median_seconds": median(times) if times else None,
                    "left_share": lefts / len(given), "catch_correct": passed, "catch_answers": len(checked),
                    "flags": flags})
    return out


def answers_table(trials: Sequence[dict[str, Any]], checks: Sequence[dict[str, Any]], answers: Sequence[Answer]) -> str:
    """One CSV row per answer with everything known about its trial, for an analysis of one's own (e.g. a
    mixed model with participant and image effects: the images are a sample too). An attention check's row
    has ``attention_check`` 1, no models, and ``chose_first`` 1 when it was answered right."""
    by_number = {t["trial"]: t for t in trials}
    check_by_number = {c["trial"]: c for c in checks}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["participant", "trial", "attention_check", "image", "label", "target", "first_model",
                     "second_model", "mirrored", "shown_left", "shown_right", "screen_side", "chosen_model",
                     "chose_first", "seconds", "chosen_alignment", "other_alignment"])
    for a in answers:
        seconds = "" if a.seconds is None else a.seconds
        side = a.chose_key_side()
        if a.trial in check_by_number:
            c = check_by_number[a.trial]
            writer.writerow([a.participant, a.trial, 1, c["target_image"], c["target"], c["target"], "", "",
                             int(a.mirrored), "", "", a.choice, "", int(side == c["correct"]), seconds, "", ""])
            continue
        t = by_number[a.trial]
        shown_left, shown_right = (t["right"], t["left"]) if a.mirrored else (t["left"], t["right"])
        chosen = chosen_model(t, a)
        writer.writerow([a.participant, a.trial, 0, t["image"], t["label"], t["target"], t["pair"][0], t["pair"][1],
                         int(a.mirrored), shown_left, shown_right, a.choice, chosen, int(chosen == t["pair"][0]),
                         seconds, _blank(t.get(f"{side}_alignment")), _blank(t.get(f"{other_side(side)}_alignment"))])
    return out.getvalue()


def _blank(value) -> Any:
    return "" if value is None else value


def _refuse_foreign(path: Path, table_path: Path) -> None:
    """An existing scores file or answers table that ``study score`` did not write (a result, someone's own
    CSV) is kept: it would be replaced without a word."""
    from ..results.io import refuse_foreign_json

    refuse_foreign_json(path, "--out", "a study's scores file", "igbench_study_scores")
    if table_path.is_file() and table_path.stat().st_size:
        try:
            with open(table_path, encoding="utf-8") as fh:
                ours = fh.readline().startswith("participant,trial,")
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise UsageError(f"--out {path}: {table_path} exists and was not written by `igbench study score` (it "
                             f"goes beside the scores), so it is kept; choose another folder for --out")


def score_study(folder, answer_files: Sequence[Any], out=None,
                exclude: Sequence[str] = ()) -> tuple[dict[str, Any], Path, Path]:
    """Read the study in ``folder`` and the participants' ``answer_files``, leave out the participants in
    ``exclude``, tally the rest, and write the validated scores to ``out`` (default ``study-scores.json`` in
    the folder) and one row per answer to ``study-answers.csv`` beside it. Returns the scores and both paths.

    ``out`` may not be a CSV file, the key, the questionnaire or an answer file, nor lie in another study's
    folder (it would replace them). A participant who left trials unanswered is scored on what they
    answered, and said so; flagged participants are named, and left in unless excluded.
    """
    key_path, key = read_key(folder)
    path = Path(out) if out else key_path.parent / SCORES_FILE
    table_path = path.parent / ANSWERS_TABLE_FILE
    if path.suffix.lower() == ".csv":
        raise UsageError(f"--out {path}: the scores are JSON, and {ANSWERS_TABLE_FILE} goes beside them; name a .json file")
    protected = {key_path, key_path.parent / key["questionnaire"], *map(Path, answer_files)}
    for written in (path, table_path):
        if any(_same_file(written, p) for p in protected):
            raise UsageError(f"--out {path}: would replace {written.name}, one of the study's own files or an answer "
                             "file; choose another path")
    _refuse_foreign(path, table_path)
    other_key = path.parent / KEY_FILE
    if other_key.exists() and not _same_file(other_key, key_path):
        raise UsageError(f"--out {path}: that folder holds another study, whose scores it would replace; choose "
                         "another folder")
    trials, checks = key["trials"], key["catch_trials"]
    n_shown = len(trials) + len(checks)
    shown = f"{n_shown} ({len(trials)} trials and {len(checks)} attention checks)" if checks else str(n_shown)
    answers = read_answers(answer_files, key["study"], n_shown, exclude)
    people = participant_summary(answers, checks)
    partial = [f"{p['participant']} ({p['answers']})" for p in people if p["answers"] < n_shown]
    if partial:
        say(f"note: {len(partial)} participant(s) answered fewer than the {shown} trials, scored on what they "
            f"answered: {', '.join(partial)}")
    flagged = [f"{p['participant']} ({', '.join(p['flags'])})" for p in people if p["flags"]]
    if flagged:
        say(f"note: answers that may not be judgements: {', '.join(flagged)} (fast: median under {FAST_SECONDS:g} s; "
            f"one_side: every answer on one side; missed_catch: an attention check answered wrong); they are "
            "counted unless you pass --exclude NAME")
    check_numbers = {c["trial"] for c in checks}
    judged = [a for a in answers if a.trial not in check_numbers]
    scores = {
        "igbench_study_scores": "1", "study": key["study"], "key": key_path.as_posix(),
        "answer_files": [{"file": Path(f).as_posix(), "sha256": sha256_file(f)} for f in answer_files],
        "excluded": sorted(set(exclude)), "participants": people, "n_trials": len(trials),
        "n_catch_trials": len(checks),
        **score_answers(trials, judged, key["models"], [p["pair"] for p in key["pairs"]]), **provenance(),
    }
    written = write_json(path, scores, "scores")
    table = atomic_write_text(table_path, answers_table(trials, checks, answers))
    return scores, written, table


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
