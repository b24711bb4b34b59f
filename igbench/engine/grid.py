"""The cross-model transfer grid: craft adversarial examples against every model, score them on every model.

For each attack (and each eps, for attacks that take one) and each *source* model, adversarial examples
are crafted once against the source and scored on every *target* model: the diagonal is white-box, the
rest is transfer. Each (attack, eps, source) unit is journalled as soon as it finishes, so an interrupted
grid resumes without redoing finished cells; trained models come from the checkpoint cache.
"""

from __future__ import annotations

import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from ..atomic import remove_orphan_temps
from ..errors import UsageError, check_at_least
from ..messages import said_through
from ..registry import get_registry
from .cache import CheckpointStore, config_hash
from .journal import Journal, journal_path
from .grid_notes import (accuracy_gap_hints, eps_range_notes, monitor_eps_note, short_schedule_notes, size_notes,
                         training_eps_notes, untrained_model_note)
from .models import ModelSpec, model_config, obtain_model
from .replacing import command_for_data, planned_grid, refuse_another_grids_work, replacement_notes
from .train import TrainConfig, accuracy


@dataclass
class AttackSpec:
    """An attack of the grid: the name as selected (``fgsm``, ``art:CarliniL2Method``) and raw parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    eps: list[float] | None = None  # this attack's own eps sweep; None: the grid's ``eps``


@dataclass
class GridSpec:
    dataset: str
    models: list[ModelSpec]
    attacks: list[AttackSpec]
    eps: list[float]
    train: TrainConfig
    dataset_params: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    n_test: int | None = 1000
    eval_batch_size: int = 500
    grad_norm_images: int = 1000
    transfer: bool = True  # False: score each model only on its own examples (white-box), as sweeps do
    score_on: str = "test"  # or "validation": the images the data set held out of training
    #: how the options were read, for the user (a --param that set several plugins' values); not part of the grid
    notes: list[str] = field(default_factory=list, compare=False)

    def validate(self) -> None:
        ids = [m.id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise UsageError(f"model id(s) {', '.join(dupes)} appear twice; give each model of the grid its own id")
        from ..grid_values import eps_list_problem
        from ..results.grid import SCORED_SPLITS

        if problem := eps_list_problem(self.eps):
            raise UsageError(f"--eps {problem}")
        for a in self.attacks:
            if a.eps is not None and (problem := eps_list_problem(a.eps)):
                raise UsageError(f"the eps of attack {a.name} {problem}")
        if self.n_test is not None:
            check_at_least(self.n_test, 1, "--n-test")
        if self.score_on not in SCORED_SPLITS:
            raise UsageError(f"--score-on {self.score_on!r}: choose {' or '.join(SCORED_SPLITS)}")
        check_at_least(self.eval_batch_size, 1, "the evaluation batch size")


def plugin_packages(spec: GridSpec) -> dict[str, str | None]:
    """``{distribution: version}`` of the third-party packages that provide any plugin of the grid (its data
    set, architectures, defenses and attacks), so that a reader knows what to install to repeat it."""
    from ..environment import package_version

    reg = get_registry()
    used = [reg.get("dataset", spec.dataset)]
    for m in spec.models:
        used += [reg.get("defense", m.defense), reg.get("architecture", m.arch)]
    used += [reg.get("attack", a.name) for a in spec.attacks]
    sources = sorted({p.source for p in used if p.source and p.source != "igbench"})
    return {source: package_version(source) for source in sources}


def same_models_check(spec: GridSpec, data) -> None:
    """Refuse a grid that names one model twice (``gradreg`` beside ``gradreg[lambda=56234]``, its default;
    ``lambda=1000`` beside ``lambda=1e3``): their cell would read as transfer but be white-box."""
    seen: dict[str, str] = {}
    for m in spec.models:
        key = config_hash(model_config(m, data, spec.train))
        if key in seen:
            raise UsageError(f"models {seen[key]} and {m.id} are the same model (the same defense, parameters, "
                             f"architecture and training: checkpoint {key[:12]}); drop one, or give them different "
                             f"settings")
        seen[key] = m.id


def preflight(spec: GridSpec, note: Callable[[str], None],
              also_check: Sequence[tuple[Any, dict[str, Any]]] = ()) -> tuple[Any, list[tuple[Any, dict[str, Any], Any]]]:
    """What a run checks before it trains anything, in order, its notes said through ``note``: the spec, the
    data set (loaded), sizes the data cannot give, a model named twice, every attack's parameters, and each
    attack's own checks of them (ART's constructors; ``also_check``: a later step's attacks too). Returns the
    data and the attack units. ``--dry-run`` (:func:`igbench.engine.plan.plan_grid`) makes these very checks."""
    from ..datasets.loading import load_dataset
    from .attack import check_attacks

    spec.validate()
    data = load_dataset(spec.dataset, spec.data_dir, spec.dataset_params)
    _, y_scored = data.scored(spec.score_on)
    for line in size_notes(spec, len(data.train_y), len(y_scored), data.name):
        note(line)
    same_models_check(spec, data)
    units = attack_units(spec)  # resolves and checks every attack parameter before any training
    for line in [*eps_range_notes(units, data.clip_min, data.clip_max),
                 *training_eps_notes(spec.models, data.clip_min, data.clip_max), *monitor_eps_note(spec.train, data)]:
        note(line)
    check_attacks([(plugin, params) for plugin, params, _eps in units] + list(also_check), data, spec.train.seed)
    for line in short_schedule_notes(spec, data):  # after the checks: a refused grid gets its error alone
        note(line)
    return data, units


def grid_plan(spec: GridSpec, data, units, n_scored: int) -> dict[str, Any]:
    """:func:`~igbench.engine.replacing.planned_grid` of ``spec`` on ``data``, before anything trains."""
    models = [(m.id, config_hash(model_config(m, data, spec.train))) for m in spec.models]
    return planned_grid(models, _attack_records(spec, units), n_scored, spec.score_on, spec.transfer)


def _stable_seed(*parts: Any) -> int:
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


def grid_run_id(spec: GridSpec, data, records: list[dict[str, Any]], attack_records: list[dict[str, Any]],
                n_scored: int, device) -> str:
    """The hash that names a grid's result and journal: its data, its models (configuration and weights),
    attacks, scored images, seed, and the device type when not the CPU."""
    return config_hash({
        "dataset": data.describe(), "models": [[r["config_hash"], r["checkpoint_sha256"]] for r in records],
        # a result's own attack records give the same id: their `targeted` (added later) is left out
        "attacks": [{k: v for k, v in a.items() if k != "targeted"} for a in attack_records],
        "n_test": n_scored, "seed": spec.train.seed,
        "transfer": spec.transfer,
        # only when not the test set, so that the run ids of test-set grids stay what they were
        **({"scored_on": spec.score_on} if spec.score_on != "test" else {}),
        # a GPU draws other seeded random numbers and rounds otherwise than the CPU: a journal begun on one
        # must not be resumed on the other (only when not the CPU, so CPU run ids stay what they were)
        **({"attacked_on": device.type} if device.type != "cpu" else {}),
    })


def attack_units(spec: GridSpec) -> list[tuple[Any, dict[str, Any], float | None]]:
    """(attack plugin, resolved params, eps) for every attack and eps of the grid, in order.

    An attack that takes ``eps`` is swept over its own ``eps`` list when the grid file gives one, else
    over ``spec.eps``; when its ``eps`` parameter was set explicitly (``--param fgsm.eps=0.3``) it runs
    at that value only.
    """
    reg = get_registry()
    units = []
    for a in spec.attacks:
        plugin = reg.get("attack", a.name)
        params = plugin.resolve_params(a.params)
        if plugin.uses_eps:
            eps_values = [params["eps"]] if "eps" in a.params else (a.eps if a.eps is not None else spec.eps)
            new = [(plugin, plugin.resolve_params({**a.params, "eps": e}), float(e)) for e in eps_values]
        else:
            new = [(plugin, params, None)]
        if problem := _second_entry_problem(units, new):
            raise UsageError(f"attack {plugin.name} is listed twice{problem}")
        units += new
    return units


def _second_entry_problem(units, new) -> str:
    """Why ``new`` (one attack entry's units) cannot join ``units``: the grid keys units by attack name and
    eps, and records one parameter set per attack name. Two entries of one attack with the same parameters
    and other eps values are one sweep; the same eps twice was skipped as done, and other parameters were
    recorded as the first entry's."""
    plugin = new[0][0]
    earlier = [(params, eps) for p, params, eps in units if p.name == plugin.name]
    if not earlier:
        return ""
    def without_eps(params):
        return plugin.recorded_params({k: v for k, v in params.items() if k != "eps"})

    if without_eps(earlier[0][0]) != without_eps(new[0][1]):
        return (" with other parameters; the result records one parameter set per attack, so run the other set "
                "as a separate grid (its own --out)")
    same_eps = {eps for _, eps in earlier} & {eps for _, _, eps in new}
    if None in same_eps:
        return "; it takes no eps, so both entries are the same units: list it once"
    if same_eps:
        return (f" at the same eps ({', '.join(f'{e:g}' for e in sorted(same_eps))}); give each eps once (--eps "
                "gives every attack of a grid file the same eps values)")
    return ""


def run_grid(spec: GridSpec, out_path: Path | None = None, store: CheckpointStore | None = None,
             progress: bool = True, command: str | None = None,
             echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
             reuse: bool = False, also_check: Sequence[tuple[Any, dict[str, Any]]] = (),
             replace: bool = True) -> tuple[dict[str, Any], Path]:
    """Run (or resume) the grid and write the result file; returns ``(result, path)``.

    With ``reuse``, a valid result already at ``out_path`` with this grid's run id (same data, models,
    attacks, test images and seed) is returned as it is, without attacking again.

    ``also_check``: ``(attack plugin, resolved params)`` pairs a later step will run on this grid's data
    (``replicate``'s figure attack); they are checked with the grid's own attacks, before any training.

    Without ``replace``, a result of another grid at ``out_path`` is refused before any training
    (:func:`~igbench.engine.replacing.refuse_another_grids_work`), and so are another grid's finished units
    in its journal; with it, both are replaced, with a note.

    Every note said inside (the trainer's, the data loader's: :mod:`igbench.messages`) goes to ``echo`` too.
    """
    with said_through(echo):
        return _run_grid(spec, out_path, store, progress, command, echo, reuse, also_check, replace)


def _run_grid(spec: GridSpec, out_path: Path | None, store: CheckpointStore | None, progress: bool, command: str | None,
              echo: Callable[[str], None], reuse: bool,
              also_check: Sequence[tuple[Any, dict[str, Any]]], replace: bool) -> tuple[dict[str, Any], Path]:
    from ..environment import capture_environment, compute_device
    from ..results.io import write_result
    from .inference import inference_copy

    started = time.perf_counter()
    store = store or CheckpointStore()
    data, units = preflight(spec, echo, also_check)
    command = command_for_data(command or "igbench " + " ".join(sys.argv[1:]), spec.dataset, data.name)
    x_scored, y_scored = data.scored(spec.score_on)
    x_eval, y_eval = x_scored[: spec.n_test], y_scored[: spec.n_test]
    planned = grid_plan(spec, data, units, int(x_eval.shape[0]))
    if out_path is not None and not replace:
        refuse_another_grids_work(Path(out_path), planned)
    device = compute_device(spec.train.device)
    x_eval, y_eval = x_eval.to(device), y_eval.to(device)
    environment = capture_environment(str(device), spec.train.seed)  # the code and machine that start the run
    if packages := plugin_packages(spec):
        environment["plugin_packages"] = packages

    # ---- models: trained or loaded from the cache
    models: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    train_seconds = 0.0
    for k, m in enumerate(spec.models, 1):
        echo(m.heading(k, len(spec.models)))
        model, info = obtain_model(m, data, spec.train, store, progress=progress)
        if info["cached"]:
            echo(f"  loaded from cache ({store.path(info['config_hash'])})")
        else:
            train_seconds += info["train_seconds"]
        models[m.id] = model
        records.append(_model_record(m, model, info, x_eval, y_eval, spec, data))
        note = untrained_model_note(m.id, model, records[-1]["clean_accuracy"], info["steps"], data.num_classes,
                                    spec.train.total_steps(len(data.train_y)))
        if note:
            echo(note)

    for line in accuracy_gap_hints(records, next((m.id for m in spec.models if m.is_reference), None)):
        echo(line)
    attack_records = _attack_records(spec, units)
    # The weights' hashes too: a model retrained from the same configuration (another machine or thread
    # count) is a different run, whose attacks must not be mixed with, or reused from, the first one's.
    run_id = grid_run_id(spec, data, records, attack_records, int(x_eval.shape[0]), device)
    out_path = Path(out_path) if out_path else Path("runs") / f"{data.name}-{run_id[:12]}.json"
    if reuse and (previous := _complete_result(out_path, run_id)) is not None:
        edited = (" (or after editing a plugin package's code without bumping its version, which the run id "
                  "knows only by version)" if packages else "")
        echo(f"{out_path} already holds this grid (run {run_id[:12]}): reusing it (--rerun attacks again{edited})")
        return previous, out_path
    journal = Journal(journal_path(out_path), run_id, grid=planned)

    def say_what_is_replaced() -> None:  # under the lock: a running grid's journal is not this one's to drop
        if not replace:  # again: another process may have written a result there while this one trained
            refuse_another_grids_work(out_path, planned)
        for line in replacement_notes(out_path, journal, run_id):
            echo(line)

    with journal.locked(say_what_is_replaced):  # a second process on the same result stops with a one-line error
        for tmp in remove_orphan_temps(out_path):  # only the lock holder writes out_path
            echo(f"removed {tmp}, a half-written result that a killed run left")
        done = {(u["attack"], u["eps"], u["source"]): u for u in journal.read()}
        if done:
            echo(f"resuming: {len(done)} of {len(units) * len(models)} attack units already done ({journal.path})")

        # ---- the grid
        fast = {mid: inference_copy(m, x_eval) for mid, m in models.items()}  # same functions, faster
        clean_scores: dict[str, float] = {}  # fast[model]'s accuracy on x_eval, for attacks that change nothing
        total, position = len(units) * len(models), 0
        for plugin, params, eps in units:
            for source_id in models:
                position += 1
                key = (plugin.name, eps, source_id)
                if key in done:
                    continue
                label = f"{plugin.name}" + (f" eps={eps:g}" if eps is not None else "") + f" on {source_id}"
                echo(f"attack {label} (unit {position} of {total})")
                unit = _attack_unit(plugin, params, eps, source_id, fast, x_eval, y_eval, spec, data, clean_scores,
                                    progress)
                journal.append(unit)
                done[key] = unit
                white_box = next(c["accuracy"] for c in unit["cells"] if c["target"] == source_id)
                reached = (f", target reached on {100 * unit['stats']['success_rate']:.1f}%"
                           if plugin.is_targeted(params) else "")  # art: attacks are targeted by a parameter
                echo(f"  {unit['stats']['seconds']:.1f} s; white-box accuracy {100 * white_box:.1f}%{reached}")

        result = _result_document(spec, data, environment, records, attack_records, run_id, command, units,
                                  list(_in_grid_order(done, units, models)), int(x_eval.shape[0]),
                                  {"total_seconds": time.perf_counter() - started, "train_seconds": train_seconds})
        write_result(out_path, result)
        journal.remove()
    return result, out_path


def _model_record(m: ModelSpec, model, info: dict[str, Any], x_eval, y_eval, spec: GridSpec, data) -> dict[str, Any]:
    """A trained (or loaded) model's entry in the result: its configuration, how it trained, its clean
    accuracy and mean input-gradient norm on the scored images."""
    from .gradients import mean_input_grad_norm

    cfg = info["config"]
    return {
        "id": m.id,
        "defense": m.defense,
        "defense_params": cfg["defense_params"],
        "arch": m.arch,
        "arch_params": cfg["arch_params"],
        **({"arch_revision": cfg["arch_revision"]} if "arch_revision" in cfg else {}),
        # steps: batches actually taken (all stages, e.g. distillation's teacher and student);
        # max_steps: the configured --steps (null when --epochs decided the length)
        "train": {"epochs": cfg["train"]["epochs"], "steps": info["steps"], "max_steps": cfg["train"]["steps"],
                  "batch_size": cfg["train"]["batch_size"], "lr": cfg["train"]["lr"],
                  "adam_eps": cfg["train"]["adam_eps"], "seed": cfg["train"]["seed"],
                  **({"precision": cfg["train"]["precision"]} if "precision" in cfg["train"] else {}),
                  **({"ran_on": info["ran_on"]} if info.get("ran_on") else {}),
                  **({"monitor": info["monitor"]} if info.get("monitor") else {})},
        "config_hash": info["config_hash"],
        "checkpoint_sha256": info["checkpoint_sha256"],
        "clean_accuracy": accuracy(model, x_eval, y_eval, spec.eval_batch_size,
                                   arch=get_registry().get("architecture", m.arch), num_classes=data.num_classes),
        "input_grad_norm": mean_input_grad_norm(model, x_eval[: spec.grad_norm_images],
                                                y_eval[: spec.grad_norm_images], spec.eval_batch_size),
        "train_seconds": info["train_seconds"],
        "cached": info["cached"],
    }


def _attack_unit(plugin, params, eps, source_id: str, fast: dict[str, Any], x_eval, y_eval, spec: GridSpec, data,
                 clean_scores: dict[str, float], progress: bool) -> dict[str, Any]:
    """One attack unit: ``plugin`` at ``eps`` against ``fast[source_id]``, its examples scored on every model
    (only the source one without transfer), as the journal records it. ``clean_scores`` caches each model's clean accuracy, for attacks that change nothing (eps 0)."""
    import torch

    from .attack import make_context, run_attack

    ctx = make_context(data, x_eval.device, _stable_seed(spec.train.seed, plugin.name, eps, source_id))
    run = run_attack(plugin, params, fast[source_id], x_eval, y_eval, ctx,
                     batch_size=spec.eval_batch_size, progress=progress, optimize=False)
    x_adv, stats = run.x_adv, run.stats
    unchanged = x_adv.shape == x_eval.shape and torch.equal(x_adv, x_eval.to(x_adv.device))

    def score(tid: str) -> float:
        # The white-box cell is the attack's own accuracy: perturbation_stats computed it from the same
        # model's (fast[source_id]) predictions on the same batches (eval_batch_size).
        if tid == source_id:
            return float(stats["accuracy"])
        if not unchanged:
            return accuracy(fast[tid], x_adv, y_eval, spec.eval_batch_size)
        if tid not in clean_scores:  # an attack that changed nothing scores the clean images: once per model
            clean_scores[tid] = accuracy(fast[tid], x_eval, y_eval, spec.eval_batch_size)
        return clean_scores[tid]

    targets = list(fast) if spec.transfer else [source_id]
    cells = [{"target": tid, "count": int(x_eval.shape[0]), "accuracy": score(tid)} for tid in targets]
    return {"attack": plugin.name, "eps": eps, "source": source_id, "cells": cells,
            "stats": {k: float(stats[k]) for k in ("success_rate", "linf", "l2", "l0", "seconds")}}


def _result_document(spec: GridSpec, data, environment: dict[str, Any], records: list[dict[str, Any]],
                     attack_records: list[dict[str, Any]], run_id: str, command: str, planned,
                     units: list[tuple[tuple[str, float | None, str], dict[str, Any]]], n_scored: int,
                     timings: dict[str, float]) -> dict[str, Any]:
    """The result file's content. ``planned``: :func:`attack_units`' ``(plugin, params, eps)``; ``units``:
    ``((attack, eps, source), journal unit)`` in grid order, those a resumed run found in its journal
    included."""
    from ..environment import utc_timestamp

    return {
        "schema_version": "1",
        "igbench_version": __version__,
        "created": utc_timestamp(),
        "command": command,
        "run_id": run_id,
        "dataset": {**data.describe(), "params": dict(data.params),
                    **({"n_validation": len(data.validation_y)} if data.validation_y is not None else {})},
        "eval": {"n_test": n_scored, "batch_size": spec.eval_batch_size, "split": spec.score_on},
        "models": records,
        # targeted or not, as the attack ran: report reads it (the installed plugin may be another, or absent)
        "attacks": [{**rec, "targeted": next(bool(p.is_targeted(params)) for p, params, _ in planned
                                             if p.name == rec["name"])} for rec in attack_records],
        "cells": [{"attack": a, "eps": e, "source": s, **cell} for (a, e, s), unit in units for cell in unit["cells"]],
        "attack_stats": [{"attack": a, "eps": e, "source": s, **unit["stats"]} for (a, e, s), unit in units],
        "environment": environment,
        # every unit's own time, a resumed run's journaled units included (as train_seconds counts earlier
        # interrupted fits): it used to count only the last process's units
        "timings": {**timings, "attack_seconds": sum(unit["stats"]["seconds"] for _, unit in units)},
    }


def _complete_result(path: Path, run_id: str) -> dict[str, Any] | None:
    """The valid result at ``path`` when it is run ``run_id``'s, else None."""
    from ..results.io import ResultError, read_result

    if not path.is_file():
        return None
    try:
        previous = read_result(path)
    except ResultError:
        return None
    return previous if previous.get("run_id") == run_id else None


def _in_grid_order(done, units, models):
    for plugin, _params, eps in units:
        for source_id in models:
            key = (plugin.name, eps, source_id)
            yield key, done[key]


def _attack_records(spec: GridSpec, units) -> list[dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for plugin, params, eps in units:
        rec = records.setdefault(plugin.name, {
            "name": plugin.name,
            "params": {k: v for k, v in plugin.recorded_params(params).items() if k != "eps"},
            "eps": [] if eps is not None else None,
        })
        if eps is not None:
            rec["eps"].append(eps)
    return list(records.values())

