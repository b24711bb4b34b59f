"""``igbench sweep``: one defense trained at several values of one parameter (e.g. the lambda sweep)."""

from __future__ import annotations

import click

from .options import (dry_run as show_plan, dry_run_option, execute_grid, grid_options, grid_spec, replace_option,
                      rerun_option)


@click.command("sweep", short_help="Train a defense once per value of one parameter.")
@click.option("--defense", required=True, multiple=True, help="The defense to sweep, e.g. gradreg (one per sweep).")
@click.option("--sweep", "sweep_text", required=True, metavar="NAME=VALUES",
              help="Parameter and values: lambda=1,10,100, lambda=logspace(2,5,13) (10^2 to 10^5, 13 values), "
                   "lambda=linspace(0,1,5), or any parameter's values in its own type, e.g. "
                   "scaling=paper,per-example (gradreg) or direction=batch,example (gradreg-fd).")
@rerun_option
@replace_option
@dry_run_option
@grid_options
def sweep_command(defense, sweep_text, config_file, progress, out, cache_dir, rerun, replace, dry_run: bool,
                  **options) -> None:
    """Train DEFENSE once per value of one parameter and report clean accuracy, input-gradient norm
    and (with --attack) white-box accuracy per value, next to the undefended `none` model.

    Writes an ordinary result file (white-box cells only), so `igbench plot` and `igbench validate`
    work on it. Models are cached like in `igbench run`. With --config, the file's [run] settings and
    its parameters for DEFENSE are used, but not its other models; --attack replaces its attacks.

    \b
    Examples (the first is the paper's lambda sweep, short training; the third scores the config's 5,000
    held-out training images, to choose lambda without the test set):
      igbench sweep --defense gradreg --sweep "lambda=logspace(2,5,13)" --attack fgsm --eps 0.1,0.3
      igbench sweep --config configs/paper-mnist.toml --defense gradreg --sweep "lambda=100,1000,10000" \\
          --attack fgsm --data-dir ../shared/data
      igbench sweep --config configs/paper-mnist.toml --defense gradreg --sweep "lambda=logspace(2,5,13)" \\
          --attack fgsm --score-on validation --n-test 5000 --data-dir ../shared/data
    """
    from ..engine.sweep import read_sweep, sweep_spec
    from ..errors import UsageError
    from ..results.sweep_table import sweep_table
    from ..selections import split_list
    from . import echo_plugin_problems

    echo_plugin_problems()
    if len(split_list(defense, "--defense")) != 1:  # repeated, or a comma list (gradreg,advtrain)
        raise UsageError(f"igbench sweep sweeps one defense, got --defense {' --defense '.join(defense)}; "
                         f"run one sweep per defense")
    defense = defense[0]
    if "[" in defense:
        raise UsageError(f"igbench sweep takes a plain defense name, got --defense {defense}; give its other settings "
                         f"with --param (e.g. --param scaling=paper)")
    if "@" in defense:
        name, _, arch = defense.rpartition("@")
        raise UsageError(f"igbench sweep takes a plain defense name, got --defense {defense}; sweep it on {arch} with "
                         f"--defense {name} --arch {arch} (its undefended reference then uses {arch} too)")
    name, values = read_sweep(defense, sweep_text, options.get("param") or ())
    spec = sweep_spec(grid_spec({**options, "defense": (defense,)}, config_file), defense, name, values)
    if dry_run:
        return show_plan(spec, cache_dir, out, rerun=rerun, replace=replace)
    execute_grid(spec, out, cache_dir, progress, render=sweep_table, reuse=not rerun, replace=replace)


COMMANDS = [sweep_command]
