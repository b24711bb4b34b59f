"""Options shared by the commands that train and attack models (`run`, `sweep`, `replicate`, `train`), and
the helpers of the commands that attack a result's models (`explain`, `study make`)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..engine.memory_format import MEMORY_FORMATS
from ..numbers import exact_number, read_number
from .number_types import REAL, WHOLE, WholeNumberRange
from .paths import PathArg


def parse_number(value: str | None, option: str) -> float | None:
    """One number or fraction (``8/255``) of an option, or None when not given."""
    if value is None:
        return None
    try:
        return read_number(value)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{value!r} is not a number; use e.g. 0.2 or 8/255", param_hint=option) from None


def parse_number_list(ctx, param, values):
    """``("0.1,0.2", "8/255")`` -> ``(0.1, 0.2, 0.0313...)``; a bad number is a usage error naming it."""
    out: list[float] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:  # "--eps ," or "0.1,,0.2": used to be dropped, and "--eps ''" ran the default sweep
                raise click.BadParameter(f"{value!r} has an empty value; use e.g. 0.1,0.2,0.3")
            try:
                number = read_number(part)
            except (ValueError, ZeroDivisionError):
                raise click.BadParameter(f"{part!r} is not a number; use e.g. 0.1,0.2,0.3 or 8/255") from None
            if not math.isfinite(number):
                raise click.BadParameter(f"{part!r} is not a finite number; use e.g. 0.1,0.2,0.3")
            out.append(number)
    return tuple(out)


def _use_cache_dir(ctx, param, value):
    """Move the whole cache (checkpoints, decoded data sets, downloads) for this command, not only models."""
    if value:
        from ..datasets.locate import cache_root_override

        ctx.with_resource(cache_root_override(value))
    return value


cache_dir_option = click.option(
    "--cache-dir", envvar="IGBENCH_CACHE_DIR", type=PathArg(file_okay=False), callback=_use_cache_dir,
    help="Cache folder: checkpoints (models/), decoded data sets (parsed/) and downloads when no data folder is "
         "named (data/). Env IGBENCH_CACHE_DIR; default $XDG_CACHE_HOME/igbench or ~/.cache/igbench.")

_attack_option = click.option("--attack", multiple=True, help="Attack (repeatable, or a comma list): fgsm, tgsm, pgd, jsma, art:<ClassName>, or a plugin's (`igbench plugins --kind attack` lists those installed). Replaces a --config file's attacks.")
_eps_option = click.option("--eps", multiple=True, callback=parse_number_list, help="Perturbation sizes for attacks that take eps, in the data's units (pixels in [0, 1]: 8/255, not 8): 0.1,0.2,0.3 (default) or repeated. "
                           "Replaces a --config file's eps lists, an attack's own `eps = [...]` included.")
_out_option = click.option("--out", type=PathArg(dir_okay=False), help="Result file to write (default runs/<dataset>-<run id>.json).")


#: `run` and `sweep`: a finished result of the same grid at --out is returned, not attacked again
rerun_option = click.option(
    "--rerun", is_flag=True,
    help="Attack again even when --out already holds this exact grid's finished result (same data, models and "
         "their weights, attacks, scored images and seed); by default that result is reused, since it would "
         "come out the same.")


#: `run` and `sweep`: a result of another grid at --out is replaced only when asked
replace_option = click.option(
    "--replace", is_flag=True,
    help="Replace the result at --out even when it holds another grid (other models or training settings, "
         "attacks, eps or scored images), and drop another grid's unfinished units in its journal. By default "
         "both are refused before anything trains, so that a changed command or grid file does not overwrite "
         "earlier work; the same grid, however its command is written, reuses, resumes or replaces its own "
         "without it.")


#: `run`, `sweep` and `train`: say what would be done, and do nothing
dry_run_option = click.option(
    "--dry-run", is_flag=True,
    help="Check everything a run checks before it starts, then list the models the cache holds and those that "
         "would train, and the attack units that would run; train and attack nothing.")


def dry_run(spec, cache_dir, out=None, rerun: bool = False, trains_only: bool = False, replace: bool = True) -> None:
    """Print :func:`~igbench.engine.plan.plan_grid`'s lines for ``spec``, after the checks of where the run
    would write (``--out`` and the cache folder; for ``trains_only``, ``igbench train``, the cache's; without
    ``replace``, another grid's result at ``--out`` is refused, as the run refuses it)."""
    from ..engine.cache import CheckpointStore
    from ..engine.plan import plan_grid

    store = CheckpointStore(cache_dir)
    if trains_only:
        check_writable_folder(store.root, CACHE_FOLDER)
    else:
        check_run_destinations(out, store)
    for line in plan_grid(spec, store, out, rerun=rerun, replace=replace):
        click.echo(line)


def _seed_option(help: str = "Seed for initialisation, batching and random attack choices (default 0)."):
    return click.option("--seed", type=WHOLE, help=help)


def _n_test_option(help: str = "Test images attacked and scored (default 1000)."):
    return click.option("--n-test", type=WHOLE, help=help)


_PRECISION_HELP = ("Training precision: fp32 (default, the paper's) or bf16 (bfloat16 autocast in each training step: "
                   "faster on CPUs with AMX/AVX512-BF16 and recent GPUs; its own checkpoints")


def _precision_option(help: str = _PRECISION_HELP + ", recorded in the result; evaluation and attacks stay fp32: "
                      "--param precision=bf16 runs the jsma, pgd and tgsm attacks in bf16 too)."):
    return click.option("--precision", type=click.Choice(["fp32", "bf16"]), help=help)


def _score_on_option(help: str = "Images attacked and scored: test (default) or validation, the images the data set "
                     "holds out of training (--param mnist.validation=5000; the paper configs do). Choose a setting "
                     "such as lambda on validation, then report the chosen one on test."):
    from ..results.grid import SCORED_SPLITS

    return click.option("--score-on", type=click.Choice(SCORED_SPLITS), help=help)


_seed, _n_test, _precision, _score_on = _seed_option(), _n_test_option(), _precision_option(), _score_on_option()

#: The shared options whose help would be wrong for a command that trains without attacking.
_TRAINING_ONLY = {
    _seed: _seed_option("Seed for initialisation and batching (default 0); part of each model's checkpoint key."),
    _precision: _precision_option(_PRECISION_HELP + "; the clean-accuracy check stays fp32)."),
    _n_test: _n_test_option("Test images each trained model's clean accuracy is measured on (default 1000); "
                            "training and the checkpoint do not depend on it."),
    _score_on: _score_on_option("Images the clean accuracy is measured on: test (default) or validation, the images "
                                "the data set holds out of training (--param mnist.validation=5000); training and "
                                "the checkpoint do not depend on it."),
}

_SHARED = [
    click.option("--config", "config_file", type=PathArg(dir_okay=False), help="TOML grid file (e.g. configs/paper-mnist.toml); options given here override it."),
    click.option("--dataset", help="Data set plugin. Default: mnist (falls back to the bundled 5,000-digit sample when MNIST is not found and no data dir is named)."),
    click.option("--arch", help="Architecture plugin. Default: paper-cnn."),
    _attack_option,
    _eps_option,
    click.option("--param", multiple=True, metavar="[PLUGIN.]NAME=VALUE", help="Plugin parameter, e.g. lambda=100 (every selected plugin that takes it) or gradreg.lambda=100 (that one, which wins over the first form); repeatable, each parameter once."),
    click.option("--epochs", type=REAL, help="Training epochs per model (default 1)."),
    click.option("--steps", type=WHOLE, help="Training batches per model; wins over --epochs (the paper used 15000)."),
    click.option("--batch-size", type=WHOLE, help="Training batch size (default 64; the paper used 256)."),
    click.option("--lr", type=REAL, help="Adam learning rate (default 1e-3; the paper used 2e-4 for 15000 steps)."),
    _precision,
    click.option("--memory-format", type=click.Choice(MEMORY_FORMATS),
                 help="Layout of weights and batches while models train: contiguous (default) or channels_last "
                 "(NHWC: 1.25-1.29x faster first-order training steps and 1.0-1.07x double backprop on the "
                 "Intel CPU this project used until 2026-12-01, README 'Performance'; like the thread count it "
                 "changes float rounding only, so it "
                 "is recorded with the device a model ran on, not in its checkpoint hash: a cached model is reused "
                 "either way)."),
    click.option("--monitor-every", type=WholeNumberRange(min=0), metavar="STEPS",
                 help="Every STEPS training steps (and after the last), measure the model on 512 held-out images "
                 "(validation when the data set holds some out, else test), clean and under white-box FGSM at "
                 "--monitor-eps, as the study did while training; printed, stored with the checkpoint and recorded "
                 "in results (models[].train.monitor). Default 0: off. Does not change training or the checkpoint "
                 "key."),
    click.option("--monitor-eps", metavar="EPS", callback=lambda ctx, param, value: parse_number(value, "--monitor-eps"),
                 help="FGSM size of --monitor-every (default 0.2, the study's; 8/255 style fractions too)."),
    _seed,
    _n_test,
    _score_on,
    click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
    click.option("--data-dir", envvar="IGBENCH_DATA_DIR", type=PathArg(file_okay=False), help="Folder holding the data sets (env IGBENCH_DATA_DIR)."),
    _out_option,
    cache_dir_option,
    click.option("--progress/--no-progress", default=True, help="Show progress bars (default on)."),
]


def grid_options(command=None, *, out_help: str | None = None):
    """Apply the shared options to a command (in the order shown by --help). ``out_help`` replaces
    ``--out``'s help, for a command whose default result path differs (``@grid_options(out_help=...)``)."""
    if command is None:
        return lambda cmd: grid_options(cmd, out_help=out_help)
    out = click.option("--out", type=PathArg(dir_okay=False), help=out_help) if out_help else _out_option
    for option in reversed(_SHARED):
        command = (out if option is _out_option else option)(command)
    return command


def given(name: str, ctx: click.Context | None = None) -> bool:
    """Whether the option ``name`` of ``ctx``'s command (default: the current one) was set on the command
    line or by its env var."""
    from click.core import ParameterSource

    source = (ctx or click.get_current_context()).get_parameter_source(name)
    return source not in (ParameterSource.DEFAULT, None)


def training_options(command):
    """The shared options without those about attacks and result files, and with help that speaks of
    training only (for a command that only trains)."""
    for option in reversed(_SHARED):
        if option not in (_attack_option, _eps_option, _out_option):
            command = _TRAINING_ONLY.get(option, option)(command)
    return command


def grid_spec(options: dict, config_file):
    """:func:`~igbench.grid_config.build_grid_spec` of a command's options, saying when ``IGBENCH_DATA_DIR``
    replaces the grid file's ``data_dir`` (the environment variable counts as --data-dir, which wins over
    the file; that used to happen without a word)."""
    from ..grid_config import build_grid_spec, read_grid_file

    spec = build_grid_spec(options, config_file)
    for note in spec.notes:
        click.echo(note, err=True)
    ctx = click.get_current_context(silent=True)
    if config_file and ctx is not None and "data_dir" in ctx.params:
        from click.core import ParameterSource

        if ctx.get_parameter_source("data_dir") == ParameterSource.ENVIRONMENT:
            file_dir = read_grid_file(config_file).get("run", {}).get("data_dir")
            if file_dir and Path(file_dir).resolve() != Path(ctx.params["data_dir"]).expanduser().resolve():
                click.echo(f"note: IGBENCH_DATA_DIR={ctx.params['data_dir']} replaces {config_file}'s data_dir "
                           f"({file_dir}); unset it, or pass --data-dir, to choose", err=True)
    return spec


def reproducible_command(ctx: click.Context) -> str:
    """The command line that reproduces this invocation, rebuilt from the parsed options.

    Options set on the command line *or through an environment variable* (e.g. ``IGBENCH_DATA_DIR``)
    are written out; defaults are left out. Progress, cache, rerun and replace options do not change results
    and are omitted.
    """
    import shlex

    words = ["igbench", ctx.info_name or ctx.command.name]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in {"progress", "cache_dir", "rerun", "replace"}:
            continue
        if not given(param.name, ctx):
            continue
        value = ctx.params[param.name]
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag if value else (param.secondary_opts or [flag])[0])
        elif param.multiple:
            if param.name == "eps":
                words += [flag, ",".join(exact_number(v) for v in value)]
            else:
                for v in value:
                    words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


#: How a check of the cache folder names it (it comes from --cache-dir, IGBENCH_CACHE_DIR or the default).
CACHE_FOLDER = "cache folder (--cache-dir or IGBENCH_CACHE_DIR)"


def check_writable(path: Path, option: str) -> None:
    """Before any work: ``path``'s folder can be created and written (a one-line error otherwise, not a
    traceback from the journal's lock file after the models have trained)."""
    _check_folder(Path(path).parent, f"{option} {path}")


def check_writable_folder(folder: str | Path, option: str) -> None:
    """Before any work: the folder ``folder`` (an ``--out`` folder, the cache) can be created and written."""
    _check_folder(Path(folder).expanduser(), f"{option} {folder}")


def _check_folder(folder: Path, what: str) -> None:
    import tempfile

    from ..errors import UsageError

    blocking = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UsageError(f"{what}: {blocking} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".igbench-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{what}: cannot write in {folder} ({exc.strerror or exc}); choose another path") from None


def check_run_destinations(out, store) -> None:
    """Before any work: ``--out``'s folder, and the cache folder when it holds no models yet, can be written.
    Checkpoints are written there after training. A cache that already holds models may be read-only (a
    shared one): its models load, and a model that needs training stops at its lock file, before training.
    An existing ``--out`` that is not a result is kept and refused."""
    from ..results.io import refuse_foreign_json

    if out:
        check_writable(Path(out), "--out")
        refuse_foreign_json(out, "--out", "an igbench result", "run_id")
    if not (store.root / "models").is_dir():
        check_writable_folder(store.root, CACHE_FOLDER)


def execute_grid(spec, out, cache_dir, progress, render=None, reuse: bool = False, also_check=(), replace: bool = True):
    """Run a grid spec with the CLI's progress output, print ``render(result)`` and the result path;
    returns ``(result, path)``. ``reuse``, ``also_check`` and ``replace``: see
    :func:`~igbench.engine.grid.run_grid`."""
    from ..engine.cache import CheckpointStore
    from ..engine.grid import run_grid
    from ..results.grid_table import render_grid_tables

    store = CheckpointStore(cache_dir)
    check_run_destinations(out, store)
    command = reproducible_command(click.get_current_context())
    result, path = run_grid(spec, out_path=out, store=store, progress=progress,
                            command=command, echo=lambda s: click.echo(s, err=True), reuse=reuse,
                            also_check=also_check, replace=replace)
    click.echo((render or render_grid_tables)(result))
    click.echo(f"\nresult in {path}")
    return result, path


@contextmanager
def plugins_of(result: dict[str, Any]):
    """A lookup of a plugin the result used that fails inside the block (the plugin's package is not
    installed here) names the third-party packages the result records, so that "unknown dataset 'x' (did
    you mean 'mnist'?)" also says what to install."""
    from ..errors import UnknownPluginError

    try:
        yield
    except UnknownPluginError as exc:
        packages = (result.get("environment") or {}).get("plugin_packages") or {}
        if not packages or "is left out" in str(exc):  # installed, and refused for a reason it states
            raise
        listed = ", ".join(f"{name} {version}" if version else name for name, version in sorted(packages.items()))
        raise UnknownPluginError(f"{exc}; the result was made with the plugin package(s) {listed}: install them "
                                 f"here (e.g. pip install {' '.join(sorted(packages))}) to use its plugins") from None


def attack_on_result(result: dict[str, Any], attack: str, eps: float | None, param: tuple[str, ...]):
    """For a command that attacks a result's models (``explain``, ``study make``): the attack's plugin, its
    parameters from ``--eps`` and ``--param``, and the data set's ``--param`` values (call it inside
    :func:`plugins_of`)."""
    from ..interpret.explain import figure_attack_params
    from ..param_options import distribute_params
    from ..registry import get_registry

    reg = get_registry()
    plugin = reg.get("attack", attack)
    dataset_name = result["dataset"]["name"]
    given = distribute_params(param, {attack: plugin, dataset_name: reg.get("dataset", dataset_name)})
    return plugin, figure_attack_params(plugin, eps, given.get(attack, {}), "--eps"), given.get(dataset_name, {})
