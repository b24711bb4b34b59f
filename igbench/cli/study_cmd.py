"""``igbench study make|score``: the paper's human-subject study (claim 6) as a kit: a questionnaire for
participants from a result's models, and the tally of their answers."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from ..interpret.explain import FIGURE_EPS
from ..results.grid import format_pct
from ..study.make import DEFAULT_CANDIDATES, DEFAULT_PER_PAIR
from .options import (attack_on_result, cache_dir_option, check_writable, check_writable_folder, parse_number,
                      plugins_of)
from .number_types import REAL, WHOLE
from .paths import PathArg


@click.group("study", short_help="The paper's human-subject study: questionnaire and scores.")
def study_group() -> None:
    """The paper's human-subject study, for people to answer.

    `study make` attacks a result's models with a targeted attack (TGSM by default) and writes a
    questionnaire: trials that each show two models' adversarial examples of one test image and ask
    which looks more like the target class. Send questionnaire.html to participants (one file; it works
    offline and names no model); keep study-key.json. `study score` reads their answer files and says,
    per pair of models, how often each one's examples were picked. `study power`, before either,
    simulates how many participants the study needs. HUMAN_STUDY.md describes it all.

    \b
    Example:
      igbench study power --trials-per-pair 30 --preference 0.6
      igbench study make runs/mnist-0123abcd.json --out study/ --data-dir ../shared/data
      igbench study score study/ answers/*.csv
    """


@study_group.command("make", short_help="Write a questionnaire and its key from a result's models.")
@click.argument("result", type=PathArg(dir_okay=False))
@click.option("--out", "out_dir", type=PathArg(file_okay=False), help="Study folder (default: <result stem>-study/ next to the result); refused if it holds another study.")
@click.option("--attack", default="tgsm", show_default=True, help="Targeted attack whose examples are shown (tgsm: next-class target, as in the paper).")
@click.option("--eps", default=None, callback=lambda ctx, param, value: parse_number(value, "--eps"),
              help=f"Perturbation size (default {FIGURE_EPS:g}; 8/255 style fractions too).")
@click.option("--param", multiple=True, metavar="[PLUGIN.]NAME=VALUE", help="Attack or dataset parameter, e.g. steps=10 (repeatable).")
@click.option("--models", help="Comma list of the result's model ids to compare (default: all); only their checkpoints are needed.")
@click.option("--versus", metavar="MODEL", help="Compare this model with each other one (default: every pair).")
@click.option("--trials-per-pair", type=WHOLE, default=DEFAULT_PER_PAIR, show_default=True, help="Trials for each pair of models (each image is shown in one trial at most).")
@click.option("--candidates", type=WHOLE, default=DEFAULT_CANDIDATES, show_default=True, help="First images of the result's scored split attacked, the pool trials are drawn from (not limited to the images the result scored).")
@click.option("--all-examples", is_flag=True, help="Also show examples that did not fool their model into the target (default: only those that did).")
@click.option("--seed", type=WHOLE, help="Seed of the trial choice, sides and order (default: the result's seed).")
@click.option("--catch-trials", type=WHOLE, default=0, show_default=True, help="Attention checks mixed in: a clean image of the named class beside one of another class; `study score` flags a participant who misses one.")
@click.option("--intro", type=PathArg(dir_okay=False, exists=True), help="Text file shown above the instructions (consent, purpose, contact); blank lines separate paragraphs.")
@click.option("--completion-code", help="Code shown to participants at the end (for crowdsourcing platforms).")
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--data-dir", envvar="IGBENCH_DATA_DIR", type=PathArg(file_okay=False), help="Folder holding the data sets (env IGBENCH_DATA_DIR).")
@cache_dir_option
@click.option("--progress/--no-progress", default=True, help="Show progress bars while each model is attacked (default on).")
def make_command(result, out_dir, attack, eps, param, models, versus, trials_per_pair, candidates, all_examples, seed,
                 catch_trials, intro, completion_code, device, data_dir, cache_dir, progress) -> None:
    """Attack the result's models and write a questionnaire (questionnaire.html) and its key
    (study-key.json) into the study folder.

    Each trial shows one image's adversarial examples against two models and asks which looks more like
    the attack's target class. A trial's image is one both models classify correctly, and by default
    each example fools its model into the target; an attack that rarely gets there in one step can
    iterate (--param steps=10 --param step_size=0.05 --param stop_at_target=true). Trials are drawn with
    --seed, each image in one trial at most, with each pair's first model on the left in half its trials.
    The page shows every participant the trials in an order of their own, with the sides swapped for
    about half of them, and records it. The key records which model made each image, and the model-free
    stand-in's verdict per side (target_alignment), so that `study score` can say how often people
    agreed with it.
    """
    from ..grid_config import resolve_device
    from ..registry import get_registry
    from ..results.io import read_result
    from ..selections import split_list
    from ..study.make import make_study
    from ..interpret.result_attack import default_out_dir
    from . import echo_plugin_problems

    echo_plugin_problems()
    get_registry().get("attack", attack)  # an unknown attack before a missing result: says what failed to load
    result_data = read_result(result)
    intro_text = _read_intro(intro) if intro else None
    out = Path(out_dir) if out_dir else default_out_dir(result, "study")
    with plugins_of(result_data), _removed_if_left_empty(out):
        plugin, attack_params, dataset_params = attack_on_result(result_data, attack, eps, param)
        check_writable_folder(out, "--out")
        made = make_study(result, out, attack=attack, attack_params=attack_params, dataset_params=dataset_params,
                          data_dir=data_dir, cache_dir=cache_dir, device=resolve_device(device),
                          models=split_list([models], "--models") if models else None, versus=versus,
                          per_pair=trials_per_pair, candidates=candidates, reached_only=not all_examples, seed=seed,
                          catch_trials=catch_trials, intro=intro_text, completion_code=completion_code,
                          progress=progress, result=result_data)
    lines = [f"{a} vs {b}: {p['trials']} trials ({p['eligible']} images eligible)" for p in made.pairs
             for a, b in [p["pair"]]]
    checks = f" and {made.n_checks} attention check(s)" if made.n_checks else ""
    click.echo(f"study {made.study}: {made.n_trials} trials{checks}\n  " + "\n  ".join(lines))
    click.echo(f"questionnaire: {made.questionnaire}  (send this one file to participants; it names no model)")
    click.echo(f"key:           {made.key}  (keep it: which model made each image)")
    click.echo(f"then:          igbench study score {made.folder} ANSWERS.csv ...")


def _read_intro(path: str) -> str:
    from ..errors import UsageError

    try:
        text = Path(path).read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--intro {path}: cannot read it as UTF-8 text ({exc})") from None
    if not text:
        raise UsageError(f"--intro {path}: the file is empty; write the text participants should read first")
    return text


@contextmanager
def _removed_if_left_empty(folder: Path):
    """A study folder this command creates is removed again if the command fails before writing into it."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


@study_group.command("score", short_help="Tally participants' answers to a study.")
@click.argument("study", type=PathArg())
@click.argument("answers", nargs=-1, required=True, type=PathArg(dir_okay=False))
@click.option("--out", type=PathArg(dir_okay=False), help="Scores file (default: study-scores.json in the study folder); study-answers.csv goes beside it.")
@click.option("--exclude", multiple=True, metavar="PARTICIPANT", help="Leave out a participant's answers (repeatable), e.g. one flagged as answering too fast; recorded in the scores.")
def score_command(study, answers, out, exclude) -> None:
    """Score the answer files (CSV, as the questionnaire saves them) of the study in STUDY (its folder).

    Per pair of models: how often the first one's example was picked (share, 95% Wilson interval,
    exact binomial p against 1/2, which treats every answer as independent), and how many participants
    preferred each (a sign test over people, ties left out: the safer test with few of them); both
    p-values also Holm-adjusted over the pairs. Per model: its share of all its comparisons. Per
    participant: answers, median time, share of left picks, attention checks passed, and flags for
    answers that may not be judgements (fast, one_side, missed_catch). Two checks of the study itself: how often the left image was
    picked (near 1/2 unless people favour a side) and how often people picked the image the model-free
    stand-in (target_alignment) scores higher. Written, validated, to study-scores.json, with one row per
    answer (attention checks included) in study-answers.csv for an analysis of your own (the images are a sample too: a mixed model
    with participant and image effects is the thorough test).
    """
    from ..study.scoring import score_study

    if out:
        check_writable(Path(out), "--out")
    scores, path, table = score_study(study, answers, out, exclude=exclude)
    click.echo(render_study_scores(scores))
    click.echo(f"\nscores: {path}\nanswers, one row each: {table}")


@study_group.command("power", short_help="How many participants a study needs (a simulation).")
@click.option("--trials-per-pair", type=WHOLE, default=DEFAULT_PER_PAIR, show_default=True, help="Trials each participant answers for the pair.")
@click.option("--preference", type=REAL, default=0.6, show_default=True, help="Share of picks for the first model the study should detect.")
@click.option("--spread", type=REAL, default=0.1, show_default=True, help="Standard deviation of that share between people (0: everyone alike).")
@click.option("--participants", default="5,10,20,40", show_default=True, help="Comma list of participant counts to simulate.")
@click.option("--alpha", type=REAL, default=0.05, show_default=True, help="Significance level of each test.")
@click.option("--sims", type=WHOLE, default=2000, show_default=True, help="Simulated studies per participant count.")
@click.option("--seed", type=WHOLE, default=0, show_default=True, help="Seed of the simulation.")
def power_command(trials_per_pair, preference, spread, participants, alpha, sims, seed) -> None:
    """Simulate one pair's study before asking anyone: for each number of participants, how often the
    test over all answers and the sign test over participants (the two `study score` reports) would find
    a preference of --preference for the first model, and how often they would "find" one that is not
    there (a true share of 1/2), when people differ by --spread.

    The test over answers treats every answer as independent; when people differ its false-positive rate
    rises above --alpha, which this shows. The sign test over participants keeps it, at the price of
    power. With several pairs, `study score` also Holm-adjusts; simulate with a smaller --alpha (alpha
    divided by the number of pairs) to plan for that.

    \b
    Example:
      igbench study power --trials-per-pair 30 --preference 0.6 --spread 0.1 --participants 5,10,20,40
    """
    from tabulate import tabulate

    from ..errors import UsageError
    from ..study.power import simulate_power

    try:
        counts = [int(v) for v in participants.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--participants {participants!r}: write whole numbers separated by commas, e.g. 5,10,20") from None
    rows = simulate_power(trials_per_pair, counts, preference, spread, alpha, sims, seed)
    keys = ("power_answers", "power_participants", "false_positive_answers", "false_positive_participants")
    table = tabulate([[r["participants"], *(format_pct(r[k]) for k in keys)] for r in rows],
                     headers=["participants", "power % (answers)", "power % (people)",
                              "false positives % (answers)", "false positives % (people)"],
                     tablefmt="simple", disable_numparse=True)
    click.echo(f"{trials_per_pair} trials each, first model picked {preference:g} of the time on average, spread "
               f"{spread:g} between people, alpha {alpha:g}, {sims} simulated studies per row (seed {seed})\n{table}")


def _p(value) -> str:
    return "-" if value is None else (f"{value:.2g}" if value < 0.001 else f"{value:.3f}")


def _share_cell(r: dict) -> str:
    return f"{format_pct(r['share'])} ({format_pct(r['ci_low'])}-{format_pct(r['ci_high'])})"


def render_study_scores(scores: dict) -> str:
    """Plain-text tables of :func:`igbench.study.scoring.score_study`'s scores."""
    from tabulate import tabulate

    people = scores["participants"]
    excluded = f", {len(scores['excluded'])} excluded ({', '.join(scores['excluded'])})" if scores["excluded"] else ""
    checks = f" and {scores['n_catch_trials']} attention checks" if scores["n_catch_trials"] else ""
    head = (f"study {scores['study']}: {sum(p['answers'] for p in people)} answers from {len(people)} participant(s) "
            f"to {scores['n_trials']} trials{checks}{excluded}")
    several = len(scores["pairs"]) > 1
    pair_rows = [[f"{r['pair'][0]} vs {r['pair'][1]}", r["answers"], _share_cell(r),
                  _p(r["p_value"]) + (f" ({_p(r['p_value_holm'])})" if several else ""),
                  f"{r['participants_preferring_first']}/{r['participants_preferring_second']}/{r['participants_tied']}",
                  _p(r["participants_p_value"]) + (f" ({_p(r['participants_p_value_holm'])})" if several else "")]
                 for r in scores["pairs"]]
    holm = " (Holm)" if several else ""
    pairs = tabulate(pair_rows, headers=["pair (first vs second)", "answers", "first picked % (95% CI)",
                                         f"p{holm}", "people first/second/tied", f"p people{holm}"],
                     tablefmt="simple", disable_numparse=True)
    model_rows = [[r["model"], r["answers"], _share_cell(r)] for r in sorted(scores["models"], key=lambda r: -(r["share"] or 0))]
    models = tabulate(model_rows, headers=["model", "comparisons", "picked % (95% CI)"], tablefmt="simple",
                      disable_numparse=True)
    checked = scores["n_catch_trials"] > 0
    person_rows = [[p["participant"], p["answers"], "-" if p["median_seconds"] is None else f"{p['median_seconds']:.1f}",
                    format_pct(p["left_share"])] + ([f"{p['catch_correct']}/{p['catch_answers']}"] if checked else [])
                   + [", ".join(p["flags"])] for p in people]
    persons = tabulate(person_rows, headers=["participant", "answers", "median s", "left %"]
                       + (["checks passed"] if checked else []) + ["flags"], tablefmt="simple", disable_numparse=True)
    pos, stand = scores["position"], scores["stand_in"]
    study_checks = ("p (answers) treats every answer as independent: when people differ it overstates the evidence "
                    "(`igbench study power` shows by how much); p people does not\n"
                    f"left image picked in {format_pct(pos['share'])}% of answers (p {_p(pos['p_value'])} against 50%: "
                    "a low p means people favoured a side; each pair shows its first model on the left half the "
                    "time, so a side preference does not favour a model)\n"
                    f"people picked the image the stand-in ({stand['key']}) scores higher in "
                    f"{format_pct(stand['share'])}% of {stand['answers']} answers")
    return (f"{head}\n\nwhich example looks more like the target, per pair of models\n{pairs}\n\n"
            f"per model, over all its comparisons\n{models}\n\nper participant\n{persons}\n\n{study_checks}")


COMMANDS = [study_group]
