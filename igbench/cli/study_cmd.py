"""``igbench study make|score``: the paper's human-subject study (claim 6) as a kit: a questionnaire for
participants from a result's models, and the tally of their answers."""

from __future__ import annotations

from pathlib import Path

import click

from ..interpret.explain import FIGURE_EPS
from .options import cache_dir_option, check_writable, check_writable_folder, parse_number


@click.group("study", short_help="The paper's human-subject study: questionnaire and scores.")
def study_group() -> None:
    """The paper's human-subject study, for people to answer.

    `study make` attacks a result's models with a targeted attack (TGSM by default) and writes a
    questionnaire: trials that each show two models' adversarial examples of one test image and ask
    which looks more like the target class. Send questionnaire.html to participants (one file; it works
    offline and names no model); keep study-key.json. `study score` reads their answer files and says,
    per pair of models, how often each one's examples were picked.

    \b
    Example:
      igbench study make runs/mnist-0123abcd.json --out study/ --data-dir ../shared/data
      igbench study score study/ answers/*.csv
    """


def _default_out(result: str) -> Path:
    p = Path(result)
    return p.with_name(f"{p.stem}-study")


@study_group.command("make", short_help="Write a questionnaire and its key from a result's models.")
@click.argument("result", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Study folder (default: <result stem>-study/ next to the result); refused if it holds another study.")
@click.option("--attack", default="tgsm", show_default=True, help="Targeted attack whose examples are shown (tgsm: next-class target, as in the paper).")
@click.option("--eps", default=None, callback=lambda ctx, param, value: parse_number(value, "--eps"),
              help=f"Perturbation size (default {FIGURE_EPS:g}; 8/255 style fractions too).")
@click.option("--param", multiple=True, metavar="[PLUGIN.]NAME=VALUE", help="Attack or dataset parameter, e.g. steps=10 (repeatable).")
@click.option("--models", help="Comma list of the result's model ids to compare (default: all).")
@click.option("--versus", metavar="MODEL", help="Compare this model with each other one (default: every pair).")
@click.option("--trials-per-pair", type=int, default=30, show_default=True, help="Trials for each pair of models.")
@click.option("--candidates", type=int, default=1000, show_default=True, help="First scored test images attacked, the pool trials are drawn from.")
@click.option("--all-examples", is_flag=True, help="Also show examples that did not fool their model into the target (default: only those that did).")
@click.option("--seed", type=int, help="Seed of the trial choice, sides and order (default: the result's seed).")
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--data-dir", envvar="IGBENCH_DATA_DIR", type=click.Path(file_okay=False), help="Folder holding the data sets (env IGBENCH_DATA_DIR).")
@cache_dir_option
@click.option("--progress/--no-progress", default=True, help="Show progress bars while each model is attacked (default on).")
def make_command(result, out_dir, attack, eps, param, models, versus, trials_per_pair, candidates, all_examples, seed,
                 device, data_dir, cache_dir, progress) -> None:
    """Attack the result's models and write a questionnaire (questionnaire.html) and its key
    (study-key.json) into the study folder.

    Each trial shows one test image's adversarial examples against two models, on random sides, and
    asks which looks more like the attack's target class. By default only examples that fool their
    model into the target are shown; an attack that rarely gets there in one step can iterate
    (--param steps=10 --param step_size=0.05 --param stop_at_target=true). Trials, sides and order
    are drawn with --seed; the key records them, with the model-free stand-in's verdict per side
    (adv_target_alignment), so that `study score` can say how often people agreed with it.
    """
    from ..grid_config import resolve_device
    from ..interpret.explain import figure_attack_params
    from ..param_options import distribute_params
    from ..registry import get_registry
    from ..results.io import read_result
    from ..selections import split_list
    from ..study.make import make_study
    from . import echo_plugin_problems
    from .explain_cmd import plugins_of

    reg = get_registry()
    echo_plugin_problems()
    plugin = reg.get("attack", attack)
    result_data = read_result(result)
    dataset_name = result_data["dataset"]["name"]
    out = Path(out_dir) if out_dir else _default_out(result)
    with plugins_of(result_data):
        selected = {attack: plugin, dataset_name: reg.get("dataset", dataset_name)}
        given = distribute_params(param, selected)
        attack_params = figure_attack_params(plugin, eps, given.get(attack, {}), "--eps")
        check_writable_folder(out, "--out")
        made = make_study(result, out, attack=attack, attack_params=attack_params,
                          dataset_params=given.get(dataset_name, {}), data_dir=data_dir, cache_dir=cache_dir,
                          device=resolve_device(device), models=split_list([models], "--models") if models else None,
                          versus=versus, per_pair=trials_per_pair, candidates=candidates,
                          reached_only=not all_examples, seed=seed, progress=progress, result=result_data)
    lines = [f"{a} vs {b}: {p['trials']} trials ({p['eligible']} images eligible)" for p in made.pairs
             for a, b in [p["pair"]]]
    click.echo(f"study {made.study}: {made.n_trials} trials\n  " + "\n  ".join(lines))
    click.echo(f"questionnaire: {made.questionnaire}  (send this one file to participants; it names no model)")
    click.echo(f"key:           {made.key}  (keep it: which model made each image)")
    click.echo(f"then:          igbench study score {made.folder} ANSWERS.csv ...")


@study_group.command("score", short_help="Tally participants' answers to a study.")
@click.argument("study", type=click.Path())
@click.argument("answers", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Scores file (default: study-scores.json in the study folder).")
def score_command(study, answers, out) -> None:
    """Score the answer files (CSV, as the questionnaire saves them) of the study in STUDY (its folder).

    Per pair of models: how often the first one's example was picked (share, 95% Wilson interval,
    exact binomial p against 1/2, which treats every answer as independent), and how many participants
    preferred each (a sign test over people, the safer test with few of them). Per model: its share of
    all its comparisons. Two checks of the study itself: how often the left image was picked (near 1/2
    unless people favour a side) and how often people picked the image the stand-in
    (adv_target_alignment) scores higher. Written, validated, to study-scores.json.
    """
    from ..study.scoring import score_study

    if out:
        check_writable(Path(out), "--out")
    scores, path = score_study(study, answers, out)
    click.echo(render_study_scores(scores))
    click.echo(f"\nscores: {path}")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _p(value) -> str:
    return "-" if value is None else (f"{value:.2g}" if value < 0.001 else f"{value:.3f}")


def render_study_scores(scores: dict) -> str:
    """Plain-text tables of :func:`igbench.study.scoring.score_study`'s scores."""
    from tabulate import tabulate

    people = scores["participants"]
    head = (f"study {scores['study']}: {sum(p['answers'] for p in people)} answers from {len(people)} participant(s) "
            f"to {scores['n_trials']} trials")
    pair_rows = [[f"{r['pair'][0]} vs {r['pair'][1]}", r["answers"], f"{_pct(r['share'])} ({_pct(r['ci_low'])}-{_pct(r['ci_high'])})",
                  _p(r["p_value"]), f"{r['participants_preferring_first']}/{r['participants_preferring_second']}/{r['participants_tied']}",
                  _p(r["participants_p_value"])] for r in scores["pairs"]]
    pairs = tabulate(pair_rows, headers=["pair (first vs second)", "answers", "first picked % (95% CI)", "p (answers)",
                                         "people first/second/tied", "p (people)"], tablefmt="simple",
                     disable_numparse=True)
    model_rows = [[r["model"], r["answers"], f"{_pct(r['share'])} ({_pct(r['ci_low'])}-{_pct(r['ci_high'])})"]
                  for r in sorted(scores["models"], key=lambda r: -(r["share"] or 0))]
    models = tabulate(model_rows, headers=["model", "comparisons", "picked % (95% CI)"], tablefmt="simple",
                      disable_numparse=True)
    pos, stand = scores["position"], scores["stand_in"]
    checks = (f"left image picked in {_pct(pos['share'])}% of answers (p {_p(pos['p_value'])} against 50%: a low p means "
              f"people favoured a side)\n"
              f"people picked the image the stand-in ({stand['key']}) scores higher in {_pct(stand['share'])}% of "
              f"{stand['answers']} answers")
    return (f"{head}\n\nwhich example looks more like the target, per pair of models\n{pairs}\n\n"
            f"per model, over all its comparisons\n{models}\n\n{checks}")


COMMANDS = [study_group]
