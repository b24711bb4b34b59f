"""``igbench replicate``: a paper grid end to end: results, interpretability, plots and leaderboards."""

from __future__ import annotations

from pathlib import Path

import click

from ..interpret.explain import FIGURE_EPS
from .options import grid_options, grid_spec, parse_number
from .paths import PathArg


@click.command("replicate", short_help="Run a paper configuration end to end and publish it.")
@click.option("--defense", multiple=True, help="Extra defense to add to the config's models (repeatable, a comma list, NAME[PARAM=VALUE,...] for one with its own settings, NAME@ARCH for one on another architecture).")
@click.option("--results-dir", default="leaderboards/results", show_default=True, type=PathArg(file_okay=False),
              help="Where the result file goes (the leaderboard reads this folder).")
@click.option("--leaderboards", "leaderboard_dir", default="leaderboards", show_default=True,
              type=PathArg(file_okay=False), help="Where the Markdown leaderboards are rendered.")
@click.option("--figures", "figure_dir", default="leaderboards/figures", show_default=True,
              type=PathArg(file_okay=False), help="Where accuracy-vs-eps plots and gradient figures go.")
@click.option("--explain/--no-explain", default=True, help="Also draw input-gradient and adversarial figures and "
              "score gradient interpretability into the result (default on).")
@click.option("--explain-attack", default="tgsm", show_default=True, help="Attack for the adversarial-example figure.")
@click.option("--explain-eps", default=f"{FIGURE_EPS:g}", show_default=True,
              callback=lambda ctx, param, value: parse_number(value, "--explain-eps"),
              help="Its eps (8/255 style fractions too).")
@click.option("--rerun", is_flag=True, help="Attack again even when the result file already holds this exact grid "
              "(by default such a result is reused, so a re-run after an interrupted explain or plot step "
              "only redoes those).")
@grid_options(out_help="Result file to write (default <--results-dir>/<config file name>.json); it must lie in "
              "--results-dir, whose leaderboards replicate renders.")
def replicate_command(results_dir, leaderboard_dir, figure_dir, explain, explain_attack, explain_eps, rerun,
                      config_file, progress, out, cache_dir, **options) -> None:
    """Run a paper configuration end to end and publish it.

    Trains the config's models (the paper's five defenses in configs/paper-*.toml), runs its attacks
    over its eps sweep, writes the result into --results-dir, scores gradient interpretability and
    draws the figures (unless --no-explain), plots accuracy against eps, and re-renders the
    leaderboards. Options override the config, so `--steps 2000 --n-test 1000` is a shorter run of the
    same grid; name where such a trial goes (--results-dir, --leaderboards, --figures), so that it does
    not land beside the full-length runs in leaderboards/. Interrupted? Run the same command again: it resumes (training from its last snapshot,
    attacks from the last finished unit, and a finished grid is reused unless --rerun).

    \b
    Example:
      igbench replicate --config configs/paper-mnist.toml --data-dir ../shared/data
    """
    from ..errors import UsageError
    from ..results.leaderboard_files import render_all
    from ..results.plot import plot_accuracy_vs_eps
    from . import echo_plugin_problems
    from .options import execute_grid, given

    if not config_file:
        raise UsageError("igbench replicate needs --config, e.g. --config configs/paper-mnist.toml")
    echo_plugin_problems()
    spec = grid_spec(options, config_file)
    if not spec.attacks:
        raise UsageError(f"{config_file} lists no [[attacks]]; add one or pass --attack")
    out = Path(out) if out else Path(results_dir) / f"{Path(config_file).stem}.json"
    figures = Path(figure_dir)
    check_destinations(config_file, options, out, Path(results_dir), figures / out.stem, Path(leaderboard_dir),
                       spec.dataset)
    if not explain and (unused := [f"--{n.replace('_', '-')}" for n in ("explain_attack", "explain_eps") if given(n)]):
        raise UsageError(f"{' and '.join(unused)} {'have' if len(unused) > 1 else 'has'} no effect with --no-explain "
                         f"(no figures are drawn); drop {'them' if len(unused) > 1 else 'it'}, or --no-explain")
    also_check, attack_params = [], {}
    if explain:
        plugin, attack_params = explain_attack_params(explain_attack, explain_eps)
        # a value the attack refuses stops here; its own check (ART's constructor) needs the data's input
        # shape, so the grid runs it with its attacks' checks, before training
        also_check.append((plugin, plugin.resolve_params(attack_params)))
    result, path = execute_grid(spec, out, cache_dir, progress, reuse=not rerun, also_check=also_check)
    if explain:
        from ..interpret.explain import explain_result

        explained = explain_result(path, out_dir=figures / path.stem, attack=explain_attack,
                                   attack_params=attack_params, dataset_params=spec.dataset_params,
                                   data_dir=spec.data_dir, cache_dir=cache_dir, device=spec.train.device,
                                   progress=progress)
        click.echo(f"gradient figure: {explained.saliency_png}\nadversarial figure: {explained.adversarial_png}")
    for png in plot_accuracy_vs_eps(result, figures / path.stem):
        click.echo(f"plot: {png}")
    for md in render_all(results_dir, leaderboard_dir):
        click.echo(f"leaderboard: {md}")


# Options that make a run a variant of the config rather than the config itself (a validation-scored grid
# is no test-set score either): any that changes what is trained, attacked or scored. Only the device, the
# memory layout, monitoring and the folders leave the config's result the config's.
TRIAL_OPTIONS = ("steps", "epochs", "n_test", "attack", "eps", "score_on", "seed", "lr", "batch_size", "param",
                 "arch", "defense", "precision", "dataset")


def explain_attack_params(attack: str, eps: float) -> tuple:
    """``(plugin, params)`` of the figure attack (``params`` as given, unresolved), checked before the grid
    runs: an unknown --explain-attack, or an --explain-eps for an attack without eps, used to stop
    replicate only after hours of training."""
    from ..registry import get_registry
    from ..interpret.explain import figure_attack_params
    from .options import given

    plugin = get_registry().get("attack", attack)
    params = figure_attack_params(plugin, eps if given("explain_eps") else None, {}, "--explain-eps")
    return plugin, params


def check_destinations(config_file, options, out: Path, results_dir: Path, figure_folder: Path,
                       leaderboard_dir: Path, dataset: str) -> None:
    """Before any training: stop a run that would write over, or beside, what is not its own.

    - ``--out`` outside ``--results-dir`` would leave the leaderboards without the result.
    - A variant (a TRIAL_OPTIONS override) with the default results and leaderboard folders would be ranked
      beside the full-length runs.
    - A figure folder that holds another result's figures (its ``explain-scores.json`` names that
      result) would be overwritten.
    - The leaderboards rendered at the end must be renderable: every other result file of ``results_dir``
      reads, and no ``<dataset>.md`` among them is a file igbench did not write (it would be replaced).
    """
    from ..errors import UsageError
    from ..interpret.explain import SCORES_FILE, other_results_figures
    from .options import given

    if out.resolve().parent != results_dir.resolve():
        raise UsageError(f"--out {out} is not in --results-dir {results_dir}, whose leaderboards replicate renders; "
                         f"pass --results-dir DIR instead (the result goes to DIR/{out.name}) or an --out inside it")
    overrides = [f"--{name.replace('_', '-')}" for name in TRIAL_OPTIONS if options.get(name) not in (None, ())]
    defaulted = [flag for flag, name in (("--results-dir", "results_dir"), ("--leaderboards", "leaderboard_dir"),
                                         ("--figures", "figure_dir")) if not given(name)]
    if overrides and defaulted:
        raise UsageError(
            f"{' '.join(overrides)} make this a variant of {config_file}, and the default {', '.join(defaulted)} would "
            f"put it beside the full-length runs; name where it goes, e.g. --results-dir runs/trial/results "
            f"--leaderboards runs/trial --figures runs/trial/figures")
    from ..results.leaderboard_files import check_can_render

    # the leaderboards it renders last, after hours of training, are every data set's of --results-dir
    check_can_render(results_dir, leaderboard_dir, dataset, replaced=out)
    scores = figure_folder / SCORES_FILE
    if (owner := other_results_figures(figure_folder, out)) is not None:
        raise UsageError(f"{figure_folder} holds the figures of {owner} ({scores}), which this run would replace; "
                         f"pass --figures DIR for this result's, or delete {figure_folder} to replace them")


COMMANDS = [replicate_command]
