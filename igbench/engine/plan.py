"""``--dry-run``: what a grid would do, without training or attacking anything.

It loads the data set and checks what a run checks before it starts (parameters, attack settings, models
named twice), then says which models the cache already holds and which would train, how many attack units
would run, and whether a journal at ``--out`` holds finished units.
"""

from __future__ import annotations

from pathlib import Path

from .cache import CheckpointStore, config_hash
from .grid import GridSpec, grid_plan, preflight
from .journal import journal_path
from .models import model_config
from .replacing import other_grid_differences, other_journal_differences, refuse_another_grids_work


def plan_grid(spec: GridSpec, store: CheckpointStore, out_path: str | Path | None = None,
              rerun: bool = False, replace: bool = True) -> list[str]:
    """The lines of a dry run of ``spec`` (its notes first), after the checks a run makes before training
    (``rerun``: the run would attack again rather than reuse a finished result at ``out_path``;
    ``replace``: it may replace another grid's result there, which is refused otherwise)."""
    lines: list[str] = []
    data, units = preflight(spec, lines.append)
    _, y_scored = data.scored(spec.score_on)
    planned = grid_plan(spec, data, units, min(spec.n_test or len(y_scored), len(y_scored)))
    other = other_grid_differences(Path(out_path), planned) if out_path is not None else None
    other_units = other_journal_differences(journal_path(out_path), planned) if out_path is not None else None
    if (other or other_units) and not replace:
        refuse_another_grids_work(Path(out_path), planned)
    lines += ["dry run: nothing is trained or attacked",
              f"data: {data.name} ({data.variant}), {len(data.train_y)} training images; scoring the first "
              f"{min(spec.n_test or len(y_scored), len(y_scored))} {spec.score_on} images"]
    steps = spec.train.total_steps(len(data.train_y))
    width = max(len(m.id) for m in spec.models)
    to_train = 0
    lines.append(f"models ({len(spec.models)}):")
    for m in spec.models:
        key = config_hash(model_config(m, data, spec.train))
        if store.has(key):
            state = f"in the cache ({key[:12]})"
        else:
            to_train += 1
            state = (f"to train ({key[:12]}): {steps} step{'s' if steps != 1 else ''} of batch {spec.train.batch_size}"
                     + (" per stage (teacher, then student)" if m.defense == "distillation" else "")
                     + (", resuming from its snapshots" if any(store.path(key).parent.glob(f"{key}.fit*.pt")) else ""))
        lines.append(f"  {m.id:<{width}}  {m.defense} on {m.arch}; {state}")
    sweeps = "; ".join(_attack_line(units, name) for name in dict.fromkeys(p.name for p, _params, _eps in units))
    if units:
        scored_on = len(spec.models) if spec.transfer else 1
        lines.append(f"attacks: {sweeps}; {len(units) * len(spec.models)} units (one per attack, eps and model), "
                     f"each scored on {scored_on} model(s)")
    if other:
        lines.append(f"{out_path} holds another grid's result ({'; '.join(other)}): --replace replaces it when the run "
                     f"finishes")
    elif other == []:
        lines.append(f"{out_path} holds a result of this grid: " + (
            "--rerun attacks again and replaces it" if rerun else
            "the run reuses it if its run id is the same (the same weights, attacks listed in the same order), "
            "else attacks again and replaces it (--rerun always attacks again)"))
    if other_units is not None:
        lines.append(f"{journal_path(out_path)} holds {other_units[0]} finished unit(s) of another grid "
                     f"({'; '.join(other_units[1])}): --replace drops them when the run starts attacking")
    elif out_path is not None and journal_path(out_path).is_file():
        lines.append(f"{journal_path(out_path)} exists: the run resumes from the units it holds if they are this "
                     f"grid's (its run id decides, once the models are trained); another grid's units are dropped, "
                     f"with a note")
    lines.append(f"{to_train} model(s) to train, {len(spec.models) - to_train} from the cache ({store.root})")
    return lines


def _attack_line(units, name: str) -> str:
    eps = [e for plugin, _params, e in units if plugin.name == name]
    return name if eps == [None] else f"{name} at eps {', '.join(f'{e:g}' for e in eps)}"
