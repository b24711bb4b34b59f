"""``igbench run``: train (or load) models, attack them, score the cross-model transfer grid."""

from __future__ import annotations

import click

from .options import (dry_run as show_plan, dry_run_option, execute_grid, grid_options, grid_spec, replace_option,
                      rerun_option)


@click.command("run", short_help="Train, attack and score the full transfer grid.")
@click.option("--defense", multiple=True, help="Defense to train (repeatable, or a comma list). `none` is always included as the reference model. NAME[PARAM=VALUE,...] is the defense with its own settings, a model of its own (e.g. --defense \"gradreg[lambda=1000],gradreg[lambda=56234]\"; the ids igbench sweep gives). NAME@ARCH or NAME[...]@ARCH trains it on another architecture than --arch (e.g. none@mlp: examples transferred between architectures; --param mlp.hidden=64 sets its architecture's parameters).")
@rerun_option
@replace_option
@dry_run_option
@grid_options
def run_command(config_file, progress, out, cache_dir, rerun, replace, dry_run: bool, **options) -> None:
    """Train every model, attack every model, score every model on every model's examples.

    For each attack and eps, adversarial examples are crafted against each model (source) and
    scored on every model (target): the diagonal of the printed grid is white-box, the rest is
    transfer. Trained models are cached by the hash of their full configuration; an interrupted
    run resumes where it stopped when re-run with the same options (a model interrupted during
    training continues from its last snapshot, taken every two minutes), and a finished one is
    reused unless --rerun.

    \b
    Examples:
      igbench run --defense gradreg --attack fgsm
      igbench run --defense gradreg --defense advtrain --attack fgsm --attack tgsm --eps 0.1,0.2,0.3
      igbench run --defense "gradreg[lambda=1000],advtrain" --attack fgsm,pgd --steps 300
      igbench run --defense gradreg --param lambda=1000 --attack art:ProjectedGradientDescent \\
          --param max_iter=20 --param eps_step=0.01 --eps 0.1
      igbench run --config configs/paper-mnist.toml --data-dir ../shared/data
    """
    from ..errors import UsageError
    from . import echo_plugin_problems

    echo_plugin_problems()
    spec = grid_spec(options, config_file)
    if not spec.attacks:
        raise UsageError("no attack selected; add --attack NAME (see `igbench plugins --kind attack`)")
    if dry_run:
        return show_plan(spec, cache_dir, out, rerun=rerun, replace=replace)
    execute_grid(spec, out, cache_dir, progress, reuse=not rerun, replace=replace)


COMMANDS = [run_command]
