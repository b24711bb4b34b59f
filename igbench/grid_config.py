"""Build a :class:`~igbench.engine.grid.GridSpec` from a TOML grid file and command-line options.

A grid file (see ``configs/paper-mnist.toml``)::

    [run]
    dataset = "mnist"
    arch = "paper-cnn"
    steps = 15000          # or epochs = ...
    eps = [0.1, 0.2, 0.3]

    [[models]]
    id = "gradreg"
    defense = "gradreg"
    params = { lambda = 56234 }

    [[attacks]]
    name = "jsma"
    params = { theta = 1.0, gamma = 0.25 }

    [[attacks]]
    name = "pgd"
    eps = [0.1, 0.3]       # this attack's own eps sweep instead of [run]'s (attacks that take eps only)
    params = { steps = 20 }

Options given on the command line override the file's ``[run]`` values (``--eps`` also replaces an
attack's own ``eps``); a relative ``data_dir`` is relative to the file's folder; ``--defense`` adds to its models, ``--attack`` replaces its attacks. The reference
model (defense ``none``) is always part of the grid.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import UsageError, did_you_mean
from .engine.grid import AttackSpec, GridSpec
from .grid_values import check_entry_values, check_run_values, eps_list_problem, repeated_values_problem
from .engine.models import ModelSpec
from .engine.monitor import DEFAULT_MONITOR_EPS
from .engine.train import TrainConfig
from .param_options import distribute_params, shared_param_notes
from .registry import get_registry
from .selections import parse_defense, split_list

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUN_KEYS = {"dataset", "dataset_params", "arch", "arch_params", "epochs", "steps", "batch_size", "lr",
            "adam_eps", "seed", "eps", "n_test", "device", "data_dir", "eval_batch_size", "precision",
            "memory_format", "score_on", "monitor_every", "monitor_eps"}

MODEL_KEYS = {"id", "defense", "params", "arch", "arch_params"}
ATTACK_KEYS = {"name", "params", "eps"}

DEFAULTS: dict[str, Any] = {
    "dataset": "mnist", "arch": "paper-cnn", "epochs": 1.0, "steps": None, "batch_size": 64, "lr": 1e-3,
    "adam_eps": 1e-4, "seed": 0, "eps": [0.1, 0.2, 0.3], "n_test": 1000, "device": None, "data_dir": None,
    "eval_batch_size": 500, "precision": "fp32", "memory_format": "contiguous", "score_on": "test",
    "monitor_every": 0, "monitor_eps": DEFAULT_MONITOR_EPS,
}


def _closest(unknown, known) -> str:
    """``did_you_mean`` for the first of several unknown names that has a close known one."""
    return next((hint for word in sorted(unknown) if (hint := did_you_mean(word, sorted(known)))), "")


def _check_shapes(doc: dict[str, Any], path: Path) -> None:
    """``[run]`` is a table and ``models``/``attacks`` are arrays of tables. TOML takes ``[attacks]`` (one
    bracket: a single table) or ``attacks = "fgsm"`` as well, which igbench used to read key by key or
    letter by letter."""
    if "run" in doc and not isinstance(doc["run"], dict):
        raise UsageError(f"--config {path}: run must be the table [run] with keys such as dataset = \"mnist\", "
                         f"got run = {doc['run']!r}")
    for table, example in (("models", 'defense = "gradreg"'), ("attacks", 'name = "fgsm"')):
        if table not in doc:
            continue
        entries = doc[table]
        if isinstance(entries, dict):
            raise UsageError(f"--config {path}: [{table}] is one table; write [[{table}]] (two brackets) above "
                             f"each entry, one per {table[:-1]}")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UsageError(f"--config {path}: {table} must be [[{table}]] entries (two brackets, one per "
                             f"{table[:-1]}, e.g. [[{table}]] then {example}), got {table} = {entries!r}")


def read_grid_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = path.read_bytes()
        # a UTF-8 byte-order mark (Windows editors write one) is no content; TOML's parser refused it as an
        # "invalid statement"
        doc = tomllib.loads(raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--config {path}: is a folder; name a .toml file") from None
    except UnicodeDecodeError:
        kind = " (it looks like UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise UsageError(f"--config {path}: not UTF-8 text{kind}; save it as UTF-8 (TOML files are)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: invalid TOML ({exc})") from None
    _check_shapes(doc, path)
    unknown = set(doc) - {"run", "models", "attacks"}
    if unknown:
        raise UsageError(f"--config {path}: unknown table(s) {', '.join(sorted(unknown))}"
                         f"{_closest(unknown, ('run', 'models', 'attacks'))}; use [run], [[models]], [[attacks]]")
    bad = set(doc.get("run", {})) - RUN_KEYS
    if bad:
        tables = {"models": "[[models]]", "attacks": "[[attacks]]", "model": "[[models]]", "attack": "[[attacks]]"}
        misplaced = sorted(tables[k] for k in bad if k in tables)
        hint = f" ({' and '.join(misplaced)} is a table of its own, not a [run] key)" if misplaced else _closest(bad, RUN_KEYS)
        raise UsageError(f"--config {path}: unknown [run] key(s) {', '.join(sorted(bad))}{hint}; "
                         f"known: {', '.join(sorted(RUN_KEYS))}")
    problem = check_run_values(doc.get("run", {}), f"--config {path}")
    if problem:
        raise UsageError(problem)
    if "data_dir" in doc.get("run", {}):  # a path in a file is relative to the file, not to where igbench runs
        doc["run"]["data_dir"] = str(path.parent / Path(doc["run"]["data_dir"]).expanduser())
    for table, known, required in (("models", MODEL_KEYS, "defense"), ("attacks", ATTACK_KEYS, "name")):
        for i, entry in enumerate(doc.get(table, []), start=1):
            where = f"--config {path}: [[{table}]] number {i}"
            bad = set(entry) - known
            if bad:
                raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(bad))}{_closest(bad, known)}; "
                                 f"known: {', '.join(sorted(known))}")
            if required not in entry:
                raise UsageError(f"{where} has no {required} = ...; every [[{table}]] entry needs one")
            if problem := check_entry_values(entry):
                raise UsageError(f"{where}: {problem}")
            eps = entry.get("eps")  # only [[attacks]] can have one: the key check above
            if eps is not None and (problem := eps_list_problem(eps)):
                raise UsageError(f"{where} ({entry['name']}): eps {problem}")
    return doc


def resolve_device(requested: str | None) -> str:
    """``None`` -> cuda when available, else cpu; a CUDA device without a GPU is a one-line error."""
    import torch

    if not requested:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UsageError(f"--device {requested!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {requested}: no CUDA GPU is available here; use --device cpu")
    if device.type != "cpu":  # mps, xpu, cuda:N beyond the last GPU, meta: fail here, not inside the work
        try:
            (torch.ones(1, device=device) + 1).cpu()
        except (RuntimeError, AssertionError, NotImplementedError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
            raise UsageError(f"--device {requested}: PyTorch cannot compute on it here ({why}); use --device cpu"
                             + (" or cuda" if torch.cuda.is_available() else "")) from None
    return requested


def build_grid_spec(cli: dict[str, Any], config_file: str | Path | None = None) -> GridSpec:
    """Merge defaults, the grid file and CLI values (``None``/empty means "not given on the command line")."""
    doc = read_grid_file(config_file) if config_file else {}
    run = {**DEFAULTS, **doc.get("run", {})}
    for key, value in cli.items():
        if key in RUN_KEYS and value not in (None, (), []):
            run[key] = list(value) if isinstance(value, tuple) else value
    if cli.get("epochs") is not None and cli.get("steps") is None:
        run["steps"] = None  # --epochs on the command line replaces a file's steps
    reg = get_registry()

    # models: the file's, then --defense, with `none` first as the reference
    models = [ModelSpec(id=m.get("id", m["defense"]), defense=m["defense"], defense_params=dict(m.get("params", {})),
                        arch=m.get("arch", run["arch"]), arch_params=dict(m.get("arch_params", run.get("arch_params", {}))))
              for m in doc.get("models", [])]
    pinned: dict[str, dict[str, str]] = {}  # model id -> the settings written in its --defense NAME[...]
    elsewhere: set[str] = set()  # ids of --defense NAME@ARCH models: none@mlp is not the grid's reference
    repeated: list[str] = []  # notes of names given twice on the command line (they are one model or attack)
    defense_items = split_list(cli.get("defense") or (), "--defense")
    if twice := repeated_values_problem(defense_items):
        repeated.append(f"note: --defense {twice}; each is one model")
    for item in defense_items:
        parsed = parse_defense(item)
        if item not in {m.id for m in models}:
            # the file's [run] arch_params belong to --arch, so to none@ARCH too when ARCH is --arch's
            arch_params = dict(run.get("arch_params", {})) if parsed.arch in (None, run["arch"]) else {}
            models.append(ModelSpec(id=item, defense=parsed.name, defense_params=dict(parsed.settings),
                                    arch=parsed.arch or run["arch"], arch_params=arch_params))
            pinned[item] = parsed.settings
            if parsed.arch is not None:
                elsewhere.add(item)
    if not any(m.is_reference for m in models if m.id not in elsewhere):
        models.insert(0, ModelSpec(id="none", defense="none", arch=run["arch"], arch_params=dict(run.get("arch_params", {}))))
    # --attack replaces the file's attacks (a file's entry of the same name keeps its parameters), so the
    # models of a grid file can be attacked anew without retraining or re-running its own attacks
    cli_eps = cli.get("eps") not in (None, (), [])
    attacks = [AttackSpec(a["name"], dict(a.get("params", {})),
                          None if cli_eps or a.get("eps") is None else [float(e) for e in a["eps"]])
               for a in doc.get("attacks", [])]
    if cli.get("attack"):
        by_name = {a.name: a for a in attacks}
        attack_items = split_list(cli["attack"], "--attack")
        if twice := repeated_values_problem(attack_items):
            repeated.append(f"note: --attack {twice}; each runs once")
        attacks = [by_name.get(name) or AttackSpec(name) for name in dict.fromkeys(attack_items)]

    # look every name up now: an unknown name is a one-line error before anything runs
    reg.get("dataset", run["dataset"])
    reg.get("architecture", run["arch"])
    selected: dict[str, Any] = {}
    for m in models:
        selected.setdefault(m.id, reg.get("defense", m.defense))
        reg.get("architecture", m.arch)
    for a in attacks:
        plugin = reg.get("attack", a.name)
        selected.setdefault(a.name, plugin)
        if a.eps is not None and not plugin.uses_eps:
            raise UsageError(f"--config {config_file}: attack {a.name} takes no eps; remove its eps = [...]")
    if cli_eps and attacks and not any(reg.get("attack", a.name).uses_eps for a in attacks):
        raise UsageError(f"--eps has no effect: none of the selected attacks ({', '.join(a.name for a in attacks)}) "
                         f"takes eps; drop --eps, or add an attack that does (fgsm, tgsm, pgd)")
    selected.setdefault(run["dataset"], reg.get("dataset", run["dataset"]))
    for arch in dict.fromkeys([run["arch"], *(m.arch for m in models)]):  # --param mlp.hidden=64 reaches none@mlp
        selected.setdefault(arch, reg.get("architecture", arch))
    given = distribute_params(cli.get("param") or (), selected)
    notes = repeated + shared_param_notes(cli.get("param") or (), selected)
    if cli.get("steps") is not None and cli.get("epochs") is not None:
        notes.append(f"note: --steps {cli['steps']} and --epochs {cli['epochs']:g} both given; --steps wins, and "
                     f"--epochs is not used (drop one)")
    for m in models:
        if clash := sorted(set(pinned.get(m.id, {})) & set(given.get(m.id, {}))):
            raise UsageError(f"--defense {m.id} sets {', '.join(clash)} itself, and --param sets it too; drop one")
        m.defense_params.update(given.get(m.id, {}))
        m.arch_params.update(given.get(m.arch, {}))
    for a in attacks:
        if cli_eps and "eps" in given.get(a.name, {}):
            raise UsageError(f"both --eps and --param set the eps of attack {a.name}; sweep it with --eps alone, and "
                             f"give a defense's training eps as --param DEFENSE.eps=VALUE (e.g. advtrain.eps=0.3)")
        a.params.update(given.get(a.name, {}))
    dataset_params = {**run.get("dataset_params", {}), **given.get(run["dataset"], {})}
    for m in models:  # check every value now, before any training starts
        reg.get("defense", m.defense).resolve_params(m.defense_params)
        reg.get("architecture", m.arch).resolve_params(m.arch_params)
    reg.get("dataset", run["dataset"]).resolve_params(dataset_params)

    if not run["monitor_every"] and (cli.get("monitor_eps") is not None or "monitor_eps" in doc.get("run", {})):
        raise UsageError("--monitor-eps has no effect without --monitor-every STEPS (monitor_every in [run]); add it, "
                         "or drop --monitor-eps")
    train = TrainConfig(epochs=float(run["epochs"]), steps=run["steps"], batch_size=int(run["batch_size"]),
                        lr=float(run["lr"]), adam_eps=float(run["adam_eps"]), seed=int(run["seed"]),
                        device=resolve_device(run["device"]), precision=str(run["precision"]),
                        memory_format=str(run["memory_format"]), monitor_every=int(run["monitor_every"]),
                        monitor_eps=float(run["monitor_eps"]))
    spec = GridSpec(dataset=run["dataset"], dataset_params=dataset_params, data_dir=run["data_dir"],
                    models=models, attacks=attacks, eps=[float(e) for e in run["eps"]], train=train,
                    n_test=run["n_test"], eval_batch_size=int(run["eval_batch_size"]), score_on=str(run["score_on"]),
                    notes=notes)
    spec.validate()
    return spec
