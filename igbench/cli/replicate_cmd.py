"""``igbench replicate``: a paper grid end to end: results, interpretability, plots and leaderboards."""

from __future__ import annotations

from pathlib import Path

import click

from .options import grid_options


@click.command("replicate")
@click.option("--defense", multiple=True, help="Extra defense to add to the config's models (repeatable).")
@click.option("--results-dir", default="leaderboards/results", show_default=True, type=click.Path(file_okay=False),
              help="Where the result file goes (the leaderboard reads this folder).")
@click.option("--leaderboards", "leaderboard_dir", default="leaderboards", show_default=True,
              type=click.Path(file_okay=False), help="Where the Markdown leaderboards are rendered.")
@click.option("--figures", "figure_dir", default="leaderboards/figures", show_default=True,
              type=click.Path(file_okay=False), help="Where accuracy-vs-eps plots and gradient figures go.")
@click.option("--explain/--no-explain", default=True, help="Also draw input-gradient and adversarial figures and "
              "score gradient interpretability into the result (default on).")
@click.option("--explain-attack", default="tgsm", show_default=True, help="Attack for the adversarial-example figure.")
@click.option("--explain-eps", default=0.3, show_default=True, type=float, help="Its eps.")
@click.option("--rerun", is_flag=True, help="Attack again even when the result file already holds this exact grid "
              "(by default such a result is reused, so a re-run after an interrupted explain or plot step "
              "only redoes those).")
@grid_options
def replicate_command(results_dir, leaderboard_dir, figure_dir, explain, explain_attack, explain_eps, rerun,
                      config_file, progress, out, cache_dir, **options) -> None:
    """Run a paper configuration end to end and publish it.

    Trains the config's models (the paper's five defenses in configs/paper-*.toml), runs its attacks
    over its eps sweep, writes the result into --results-dir, scores gradient interpretability and
    draws the figures (unless --no-explain), plots accuracy against eps, and re-renders the
    leaderboards. Options override the config, so `--steps 2000 --n-test 1000` is a shorter run of the
    same grid. Interrupted? Run the same command again: it resumes (training from its last snapshot,
    attacks from the last finished unit, and a finished grid is reused unless --rerun).

    \b
    Example:
      igbench replicate --config configs/paper-mnist.toml --data-dir ../shared/data
    """
    from ..errors import UsageError
    from ..grid_config import build_grid_spec
    from ..results.leaderboard_files import render_all
    from ..results.plot import plot_accuracy_vs_eps
    from . import echo_plugin_problems
    from .options import execute_grid

    if not config_file:
        raise UsageError("igbench replicate needs --config, e.g. --config configs/paper-mnist.toml")
    echo_plugin_problems()
    spec = build_grid_spec(options, config_file)
    if not spec.attacks:
        raise UsageError(f"{config_file} lists no [[attacks]]; add one or pass --attack")
    out = Path(out) if out else Path(results_dir) / f"{Path(config_file).stem}.json"
    result, path = execute_grid(spec, out, cache_dir, progress, reuse=not rerun)
    figures = Path(figure_dir)
    if explain:
        from ..interpret.explain import explain_result

        attack_params = {"eps": explain_eps}
        explained = explain_result(path, out_dir=figures / path.stem, attack=explain_attack,
                                   attack_params=attack_params, dataset_params=spec.dataset_params,
                                   data_dir=spec.data_dir, cache_dir=cache_dir, device=spec.train.device,
                                   progress=progress)
        click.echo(f"gradient figure: {explained.saliency_png}\nadversarial figure: {explained.adversarial_png}")
    for png in plot_accuracy_vs_eps(result, figures / path.stem):
        click.echo(f"plot: {png}")
    for md in render_all(results_dir, leaderboard_dir):
        click.echo(f"leaderboard: {md}")


COMMANDS = [replicate_command]
