"""Tallying a study's answers: per model pair, how often each model's example was picked as the more
target-like, over all answers and over participants; per model, over all its comparisons; and two checks
of the study itself (a preference for one side of the screen, agreement with the model-free stand-in)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from .answers import Answer
from .statistics import Share, share


def _share_record(s: Share) -> dict[str, Any]:
    return {"chosen": s.k, "answers": s.n, "share": s.share, "ci_low": s.low, "ci_high": s.high,
            "p_value": s.p_value}


def score_answers(trials: Sequence[dict[str, Any]], answers: Sequence[Answer], models: Sequence[str]) -> dict[str, Any]:
    """The ``pairs``, ``models``, ``position`` and ``stand_in`` blocks of a study's scores.

    A pair ``[a, b]`` reports how often ``a`` was chosen over all its answers (exact binomial test against
    1/2: it treats answers as independent, which answers of one person are not), and over participants: how
    many preferred ``a`` on most of their trials of that pair, how many ``b`` (a sign test, the safer one
    with few participants).
    """
    by_number = {t["trial"]: t for t in trials}
    pair_answers: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (participant, chosen model)
    model_counts = {m: [0, 0] for m in models}  # chosen, compared
    left = 0
    agree = comparable = 0
    for answer in answers:
        trial = by_number[answer.trial]
        chosen = trial[answer.choice]
        a, b = trial["pair"]
        pair_answers[(a, b)].append((answer.participant, chosen))
        for m in (a, b):
            model_counts[m][1] += 1
        model_counts[chosen][0] += 1
        left += answer.choice == "left"
        la, ra = trial.get("left_alignment"), trial.get("right_alignment")
        if la is not None and ra is not None and la != ra:
            comparable += 1
            agree += (answer.choice == "left") == (la > ra)
    pairs = []
    for a, b in dict.fromkeys(tuple(t["pair"]) for t in trials):
        given = pair_answers.get((a, b), [])
        per_person: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for person, chosen in given:
            per_person[person][0] += chosen == a
            per_person[person][1] += 1
        prefer_a = sum(1 for k, n in per_person.values() if 2 * k > n)
        prefer_b = sum(1 for k, n in per_person.values() if 2 * k < n)
        people = share(prefer_a, prefer_a + prefer_b)
        pairs.append({
            "pair": [a, b], **_share_record(share(sum(chosen == a for _, chosen in given), len(given))),
            "participants": len(per_person), "participants_preferring_first": prefer_a,
            "participants_preferring_second": prefer_b, "participants_tied": len(per_person) - prefer_a - prefer_b,
            "participants_p_value": people.p_value,
        })
    return {
        "pairs": pairs,
        "models": [{"model": m, **_share_record(share(*model_counts[m]))} for m in models if model_counts[m][1]],
        "position": {"side": "left", **_share_record(share(left, len(answers)))},
        "stand_in": {"key": "adv_target_alignment", **_share_record(share(agree, comparable))},
    }


def participant_summary(answers: Sequence[Answer]) -> list[dict[str, Any]]:
    """Per participant (in order of first answer): how many trials they answered and their median time."""
    from statistics import median

    times: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for a in answers:
        counts[a.participant] = counts.get(a.participant, 0) + 1
        times.setdefault(a.participant, [])
        if a.seconds is not None:
            times[a.participant].append(a.seconds)
    return [{"participant": p, "answers": counts[p], "median_seconds": median(times[p]) if times[p] else None}
            for p in counts]


def score_study(folder, answer_files: Sequence[Any], out=None) -> tuple[dict[str, Any], Any]:
    """Read the study in ``folder`` and the participants' ``answer_files``, tally them, and write the
    validated scores to ``out`` (default ``study-scores.json`` in the folder). Returns the scores and the path.
    A participant who left trials unanswered is scored on what they answered, and said so."""
    from pathlib import Path

    from ..messages import say
    from .answers import read_answers
    from .record import SCORES_FILE, provenance, read_key, sha256_file, write_json

    key_path, key = read_key(folder)
    trials = key["trials"]
    answers = read_answers(answer_files, key["study"], len(trials))
    people = participant_summary(answers)
    partial = [f"{p['participant']} ({p['answers']})" for p in people if p["answers"] < len(trials)]
    if partial:
        say(f"note: {len(partial)} participant(s) answered fewer than the {len(trials)} trials, scored on what they "
            f"answered: {', '.join(partial)}")
    scores = {
        "igbench_study_scores": "1", "study": key["study"], "key": key_path.as_posix(),
        "answer_files": [{"file": Path(f).as_posix(), "sha256": sha256_file(f)} for f in answer_files],
        "participants": people, "n_trials": len(trials),
        **score_answers(trials, answers, key["models"]), **provenance(),
    }
    path = Path(out) if out else key_path.parent / SCORES_FILE
    return scores, write_json(path, scores, "scores")
