"""``igbench train``: train a grid's models into the checkpoint cache without attacking them."""

from __future__ import annotations

from pathlib import Path

import click

from .options import CACHE_FOLDER, check_writable_folder, dry_run as show_plan, dry_run_option, grid_spec, training_options


@click.command("train", short_help="Train a grid's models into the cache, no attacks.")
@click.option("--defense", multiple=True, help="Defense to train (repeatable, or a comma list). `none` is always included as the reference model. NAME[PARAM=VALUE,...] is the defense with its own settings, a model of its own (e.g. --defense \"gradreg[lambda=1000],gradreg[lambda=56234]\"; the ids igbench sweep gives). NAME@ARCH or NAME[...]@ARCH trains it on another architecture than --arch (e.g. none@mlp: examples transferred between architectures; --param mlp.hidden=64 sets its architecture's parameters).")
@click.option("--model", "model_ids", multiple=True, metavar="ID", help="Train only the grid's model with this id (repeatable; default: every model).")
@dry_run_option
@training_options
def train_command(config_file, model_ids, progress, cache_dir, dry_run: bool, **options) -> None:
    """Train a grid's models into the checkpoint cache, without attacking them.

    The models are cached under the same configuration hashes `igbench run` and `igbench replicate` use
    for the same options, so a later run of the grid loads them instead of training. Use it to train
    the models first (on a GPU, or the one model you want to look at before the rest), or in parallel
    processes with --model. A process that needs a model another igbench process is training (a grid
    started meanwhile, say) waits for it and loads its checkpoint. Prints each model's clean accuracy
    on the first --n-test test images.

    \b
    Examples:
      igbench train --config configs/paper-mnist.toml --model gradreg --data-dir ../shared/data
      igbench train --defense gradreg --param lambda=1000 --steps 2000
    """
    from tabulate import tabulate

    from ..engine.cache import CheckpointStore
    from ..engine.train_grid import train_models
    from ..progress import format_duration
    from . import echo_plugin_problems

    echo_plugin_problems()
    spec = grid_spec(options, config_file)
    if dry_run:
        from ..engine.train_grid import select_models

        spec.models, spec.attacks = select_models(spec, model_ids), []
        return show_plan(spec, cache_dir, trains_only=True)
    store = CheckpointStore(cache_dir)
    check_writable_folder(store.root, CACHE_FOLDER)  # before training, not when the checkpoint is saved
    records = train_models(spec, store, model_ids, progress=progress,
                           echo=lambda s: click.echo(s, err=True))
    rows = [[r["id"], r["config_hash"][:12], r["steps"], f"{100 * r['clean_accuracy']:.2f}",
             format_duration(r["train_seconds"] or 0.0), "cached" if r["cached"] else "trained now"]
            for r in records]
    scored = records[0]["n_scored"] if records else spec.n_test
    headers = ["model", "hash", "steps", f"clean % ({scored} {spec.score_on})", "training", "status"]
    if any(r["monitor"] for r in records):
        for row, r in zip(rows, records):
            row.append(last_monitored(r["monitor"]))
        headers.append("last monitored: clean / FGSM %")
    click.echo(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    if records:
        click.echo(f"\ncheckpoints in {Path(records[0]['checkpoint']).parent}")


def last_monitored(monitor) -> str:
    """The last point of a monitored training's last curve, ``98.2 / 41.0 (eps 0.2, step 500)``, or ``-``."""
    points = monitor["fits"][-1]["points"] if monitor and monitor["fits"] else []
    if not points:
        return "-"
    step, clean, adv = points[-1]
    return f"{100 * clean:.1f} / {100 * adv:.1f} (eps {monitor['eps']:g}, step {step})"


COMMANDS = [train_command]
