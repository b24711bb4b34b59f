"""``igbench sweep``: one defense trained at several values of one parameter (e.g. the lambda sweep)."""

from __future__ import annotations

import re

import click

from .options import execute_grid, grid_options, grid_spec

_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_SPACED = re.compile(rf"^(logspace|linspace)\({_NUMBER},{_NUMBER},\s*(\d+)\s*\)$")
#: more values than this is a typo (logspace(2,5,130)), not a sweep: each value trains a model
MAX_SWEEP_VALUES = 100


def parse_sweep(text: str) -> tuple[str, list]:
    """``lambda=1,10,100``, ``lambda=logspace(2,5,13)`` (numpy's logspace), ``lambda=linspace(0,1,5)`` or
    ``direction=batch,example`` -> ``(name, values)``: floats for the spaced forms, else the texts, which
    :func:`sweep_values` types."""
    from ..errors import UsageError

    name, sep, values = text.partition("=")
    name, values = name.strip(), values.strip()
    if not sep or not name or not values:
        raise UsageError(f"--sweep {text!r} must look like NAME=V1,V2,... or NAME=logspace(START,STOP,NUM)")
    m = _SPACED.match(values)
    if m is None and re.match(r"^\w+\s*\(", values):  # logspace(2,5), linspace(a,b,c), range(3): not values
        raise UsageError(f"--sweep {text!r}: write logspace(START,STOP,NUM) or linspace(START,STOP,NUM), START and "
                         f"STOP numbers and NUM a whole number, e.g. lambda=logspace(2,5,13); or list the values")
    if m:
        kind, start, stop, num = m.group(1), float(m.group(2)), float(m.group(3)), int(m.group(4))
        if not 2 <= num <= MAX_SWEEP_VALUES:
            raise UsageError(f"--sweep {text!r}: {kind} needs NUM from 2 to {MAX_SWEEP_VALUES} (each value trains a "
                             f"model), got {num}")
        points = [start + i * (stop - start) / (num - 1) for i in range(num)]
        return name, [10 ** p for p in points] if kind == "logspace" else points
    listed = [v.strip() for v in values.split(",")]
    if "" in listed:
        raise UsageError(f"--sweep {text!r} has an empty value; use e.g. {name}=1,10,100")
    if len(listed) > MAX_SWEEP_VALUES:
        raise UsageError(f"--sweep {text!r}: {len(listed)} values, more than {MAX_SWEEP_VALUES}; each trains a model")
    return name, listed


def sweep_values(text: str, values: list, param, owner: str) -> list:
    """The swept values in the parameter's own type (``Param.coerce``: its choices and checks apply);
    a value named twice is a UsageError."""
    from ..errors import ParamError, UsageError
    from ..grid_values import repeated_values_problem

    numeric = param.value_type in (int, float)
    if not numeric and any(isinstance(v, float) for v in values):
        raise UsageError(f"--sweep {text!r}: logspace and linspace need a numeric parameter, and {param.name} takes "
                         f"{param.value_type.__name__} values; list them: {param.name}=A,B")
    try:
        typed = [param.coerce(v, owner) for v in values]
    except ParamError as exc:
        raise UsageError(f"--sweep {text!r}: {exc}") from None
    if problem := repeated_values_problem(typed):
        raise UsageError(f"--sweep {text!r} {problem}; give each value once")
    return typed


def swept_ids(defense: str, name: str, values: list) -> list[str]:
    """``gradreg[lambda=1000]`` per value: numbers ``:g`` (six significant digits), or every digit when two
    values would otherwise share an id (1e-07 and 1.0000001e-07); booleans ``true``/``false``; text as is."""
    def label(v, exact: bool) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (int, float)):
            return repr(float(v)) if exact else f"{v:g}"
        return str(v)

    short = [label(v, False) for v in values]
    labels = short if len(set(short)) == len(short) else [label(v, True) for v in values]
    return [f"{defense}[{name}={label}]" for label in labels]


@click.command("sweep", short_help="Train a defense once per value of one parameter.")
@click.option("--defense", required=True, multiple=True, help="The defense to sweep, e.g. gradreg (one per sweep).")
@click.option("--sweep", "sweep_text", required=True, metavar="NAME=VALUES",
              help="Parameter and values: lambda=1,10,100, lambda=logspace(2,5,13) (10^2 to 10^5, 13 values), "
                   "lambda=linspace(0,1,5), or any parameter's values in its own type, e.g. "
                   "scaling=paper,per-example (gradreg) or direction=batch,example (gradreg-fd).")
@grid_options
def sweep_command(defense, sweep_text, config_file, progress, out, cache_dir, **options) -> None:
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
    import dataclasses

    from ..errors import UsageError, did_you_mean
    from ..param_options import parse_param_option
    from ..registry import get_registry
    from . import echo_plugin_problems

    echo_plugin_problems()
    if len(defense) != 1:
        raise UsageError(f"igbench sweep sweeps one defense, got --defense {' --defense '.join(defense)}; "
                         f"run one sweep per defense")
    defense = defense[0]
    name, values = parse_sweep(sweep_text)
    if name.startswith(f"{defense}."):  # --param's PLUGIN.NAME form: the plugin is the swept defense
        name = name[len(defense) + 1:]
    clashing = [text for text in options.get("param") or ()
                if parse_param_option(text)[:2] in ((None, name), (defense, name))]
    if clashing:
        raise UsageError(f"--param {clashing[0]} and --sweep {sweep_text} both set {defense}'s {name}; "
                         f"drop the --param (the sweep sets it)")
    plugin = get_registry().get("defense", defense)
    if plugin.param(name) is None:
        known = [p.name for p in plugin.params]
        raise UsageError(f"defense '{defense}' has no parameter '{name}'{did_you_mean(name, known)}; it takes: "
                         f"{', '.join(known) or 'nothing'}")
    values = sweep_values(sweep_text, values, plugin.param(name), f"defense '{defense}'")
    spec = grid_spec({**options, "defense": (defense,)}, config_file)
    base = next(m for m in spec.models if m.id == defense)
    swept = [dataclasses.replace(base, id=model_id, defense_params={**base.defense_params, name: v})
             for model_id, v in zip(swept_ids(defense, name, values), values)]
    for m in swept:
        plugin.resolve_params(m.defense_params)
    # a sweep is the reference model plus the swept ones: a --config lends its [run] settings and the
    # swept defense's parameters, not its other models; --attack replaces the file's attacks
    reference = [m for m in spec.models if m.is_reference][:1]
    spec.models = reference + swept
    spec.transfer = False
    spec.validate()
    execute_grid(spec, out, cache_dir, progress, render=render_sweep_table)


def render_sweep_table(result) -> str:
    """One row per model: clean accuracy, input-gradient norm, white-box accuracy per attack and eps."""
    from tabulate import tabulate

    from ..results.grid import Grid, format_eps, format_pct, scored_images

    grid = Grid(result)
    columns = [(a["name"], e) for a in result["attacks"] for e in (a["eps"] if a["eps"] is not None else [None])]
    rows = []
    for m in result["models"]:
        row = [m["id"], f"{100 * m['clean_accuracy']:.2f}", f"{m['input_grad_norm']:.4g}"]
        for attack, eps in columns:
            row.append(format_pct(grid.white_box(attack, eps, m["id"])))
        rows.append(row)
    headers = ["model", "clean %", "mean ‖dCE/dx‖"] + [
        f"{a}" + ("" if e is None else f" eps={format_eps(e)}") + " %" for a, e in columns]
    return f"scored on {scored_images(result)}\n" + tabulate(rows, headers=headers, tablefmt="simple")


COMMANDS = [sweep_command]
