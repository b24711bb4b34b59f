"""Train a defended model, or load it from the checkpoint cache when its configuration was seen before."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..atomic import remove_orphan_temps
from ..environment import package_version
from ..locks import exclusive_lock
from ..plugin_calls import plugin_call
from ..plugin_types import LossDefense
from ..registry import get_registry
from .cache import CheckpointStore, config_hash, weights_sha256
from .model_checks import build_model, trained_model
from .snapshots import TrainingSnapshots
from .train import TrainConfig, Trainer, describe_setup


@dataclass
class ModelSpec:
    """One model of a grid: an id unique in the grid, a defense with parameters, an architecture."""

    id: str
    defense: str
    defense_params: dict[str, Any] = field(default_factory=dict)
    arch: str = "paper-cnn"
    arch_params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        """The undefended reference model every grid includes: defense ``none`` without parameters."""
        return self.defense == "none" and not self.defense_params

    def heading(self, k: int, total: int) -> str:
        """The log line that opens this model's training or loading: ``model gradreg (4 of 5): gradreg on ...``."""
        return f"model {self.id} ({k} of {total}): {self.defense} on {self.arch}"


def model_config(spec: ModelSpec, data, train: TrainConfig) -> dict[str, Any]:
    """Everything that determines the trained weights; its hash addresses the checkpoint.

    Parameters are the *resolved* ones (defaults filled in), so ``--param lambda=100`` and a default of
    100 share a checkpoint, and changing a default changes the key.
    """
    reg = get_registry()
    defense = reg.get("defense", spec.defense)
    arch = reg.get("architecture", spec.arch)
    config = {
        "dataset": {"name": data.name, "variant": data.variant, "checksum": data.checksum},
        "arch": spec.arch,
        "arch_params": arch.resolve_params(spec.arch_params),
        "defense": spec.defense,
        "defense_params": defense.resolve_params(spec.defense_params),
        "defense_source": defense.source,
        "train": train.describe(),
        "versions": {"igbench": __version__, "torch": package_version("torch"),
                     "defense_package": package_version(defense.source) if defense.source != "igbench" else None},
    }
    if arch.source != "igbench":
        # A third-party architecture's code is versioned by its package, as a defense's is: without this a
        # changed `build` reused the old weights. Only then, so that built-in models keep their keys.
        config["arch_source"] = arch.source
        config["versions"]["arch_package"] = package_version(arch.source)
    return config


def obtain_model(spec: ModelSpec, data, train: TrainConfig, store: CheckpointStore, progress: bool = True):
    """Return ``(model, info)``: the trained model (eval mode, on ``train.device``) and its record.

    ``info`` has ``config``, ``config_hash``, ``checkpoint_sha256``, ``steps``, ``train_seconds`` (of the
    original training when cached, summed over interrupted attempts), ``cached`` and ``ran_on`` (every
    device, torch thread count, memory format and processor model the training used, see :attr:`Trainer.ran_on`;
    ``None`` if unknown).
    Training keeps snapshots beside the checkpoint (:mod:`.snapshots`): an interrupted training resumes
    when the same model is asked for again. While one process trains a model it holds
    ``store.lock_path(key)``; another process that asks for the same model waits for it and loads the
    checkpoint.
    """
    reg = get_registry()
    defense = reg.get("defense", spec.defense)
    arch = reg.get("architecture", spec.arch)
    config = model_config(spec, data, train)
    key = config_hash(config)
    arch_params, defense_params = config["arch_params"], config["defense_params"]
    if store.has(key):
        return _load_cached(store, key, config, arch, arch_params, data, train)

    def wait(lock_path):
        print(f"{spec.id}: another igbench process is training this model ({key[:12]}, lock {lock_path}); "
              "waiting for it to finish, then loading its checkpoint", file=sys.stderr, flush=True)

    # One trainer per model: a second process that needs it (a grid while `igbench train --model` runs,
    # two grids sharing a model) waits and then loads the checkpoint instead of training it again.
    with exclusive_lock(store.lock_path(key), on_busy=wait) as lock_path:
        if store.has(key):
            return _load_cached(store, key, config, arch, arch_params, data, train)
        snapshots = TrainingSnapshots(store.path(key).parent, key)
        # A training killed mid-write (SIGKILL, power loss) left temporary files; only their writer's lock
        # holder may remove them, and that is this process now.
        snapshots.remove_orphan_temps()
        remove_orphan_temps(store.path(key))
        trainer = Trainer(data, arch, arch_params, train, label=spec.id, progress=progress, snapshots=snapshots,
                          defense=defense)
        if type(defense).train is LossDefense.train:  # igbench's code: its loss is wrapped inside
            model = defense.train(trainer, defense_params)
        else:
            with plugin_call(defense, "train"):
                model = defense.train(trainer, defense_params)
        model = trained_model(defense, model)
        model.eval()
        meta = {"config": config, "steps": trainer.steps_done, "train_seconds": trainer.train_seconds,
                "ran_on": trainer.ran_on}
        store.save(key, model, meta)
        snapshots.clear()
        lock_path.unlink(missing_ok=True)  # only once the checkpoint exists: a waiter then finds it
    return model, _record(model, config, key, meta, cached=False)


def _load_cached(store: CheckpointStore, key: str, config, arch, arch_params, data, train: TrainConfig):
    import torch

    model = build_model(arch, tuple(data.input_shape), data.num_classes, arch_params)
    meta = store.load(key, model)
    model.to(torch.device(train.device)).eval()
    return model, _record(model, config, key, meta, cached=True)


def _record(model, config: dict[str, Any], key: str, meta: dict[str, Any], cached: bool) -> dict[str, Any]:
    """``obtain_model``'s ``info`` from the checkpoint's metadata (just written, or loaded)."""
    return {"config": config, "config_hash": key, "checkpoint_sha256": weights_sha256(model),
            "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"), "cached": cached,
            "ran_on": ran_on_of(meta)}


def ran_on_of(meta: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Where a model trained: its ``ran_on`` list, or for a checkpoint written before igbench recorded
    it, the ``device`` and ``torch_threads`` of the process that finished it (``None`` when unknown)."""
    if meta.get("ran_on"):
        return meta["ran_on"]
    if meta.get("device") is None:
        return None
    return [{"device": str(meta["device"]), "torch_threads": meta.get("torch_threads")}]


def trained_on(ran_on: list[dict[str, Any]] | None) -> str | None:
    """``ran_on`` in words (:func:`describe_setup`; a resumed training's setups joined by "then"), or None
    when unknown."""
    return " then ".join(describe_setup(s) for s in ran_on) if ran_on else None


def _where_each_trained(cached_ran_on, rec: dict[str, Any], result: dict[str, Any]) -> str:
    """Why a cached checkpoint may hold other weights than a result's: where each trained, as far as known.

    A result from before igbench recorded the CPU model per model names the CPU its run had."""
    recorded_ran_on = rec.get("train", {}).get("ran_on")
    cached, recorded = trained_on(cached_ran_on), trained_on(recorded_ran_on)
    if not cached or not recorded:
        return "retrained since?"
    if cached == recorded:
        return f"both trained on [{cached}]: another torch build or code version?"
    run_cpu = result.get("environment", {}).get("cpu")
    if run_cpu and any(s.get("device") == "cpu" and "cpu" not in s for s in recorded_ran_on):
        recorded += f" (the result ran on {run_cpu})"
    return (f"this one trained on [{cached}], the result's on [{recorded}]: another CPU model, thread count or "
            "device gives other weights")


def missing_checkpoint(model_id: str, key: str, store: CheckpointStore, command: str) -> str:
    """The one-line error for a result's model whose checkpoint is not in ``store``, with both fixes."""
    return (f"checkpoint of model '{model_id}' ({key[:12]}) is not in the cache {store.root}; re-run `{command}` "
            "(same --cache-dir) to recreate it, or `igbench cache import` the archive `igbench cache export` made of it")


def load_result_models(result: dict[str, Any], store: CheckpointStore, device: str = "cpu") -> dict[str, Any]:
    """The trained models of a result file, from the checkpoint cache, keyed by model id (eval mode).

    A checkpoint missing from the cache is a one-line error that says how to recreate it (re-run the
    result's command: the cache key is the same, so only the missing models are retrained). So is one
    whose weights are not the ones the result recorded (``checkpoint_sha256``): the same configuration
    retrained elsewhere (another machine, thread count or torch build) gives other weights, and figures
    or scores from them would not belong to the result's numbers.
    """
    import torch

    from ..errors import IgbenchError

    reg = get_registry()
    shape = tuple(result["dataset"]["input_shape"])
    num_classes = int(result["dataset"]["num_classes"])
    models: dict[str, Any] = {}
    for rec in result["models"]:
        key = rec["config_hash"]
        if not store.has(key):
            raise IgbenchError(missing_checkpoint(rec["id"], key, store, result["command"]))
        model = build_model(reg.get("architecture", rec["arch"]), shape, num_classes, rec["arch_params"])
        meta = store.load(key, model)
        if weights_sha256(model) != rec["checkpoint_sha256"]:
            raise IgbenchError(
                f"checkpoint of model '{rec['id']}' ({key[:12]}) in {store.root} holds other weights than the "
                f"result was made with ({_where_each_trained(ran_on_of(meta), rec, result)}); re-run "
                f"`{result['command']}` to remake the result from the cached models, or restore the original "
                "checkpoint (`igbench cache import --replace` an archive of it)"
            )
        models[rec["id"]] = model.to(torch.device(device)).eval()
    return models


def select_models(spec, ids: tuple[str, ...] | list[str] = ()) -> list[ModelSpec]:
    """The grid's models with these ids (all of them when ``ids`` is empty), in grid order; an unknown id
    is a one-line error listing the grid's ids."""
    from ..errors import UsageError

    known = [m.id for m in spec.models]
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UsageError(f"no model '{unknown[0]}' in this grid; its models are {', '.join(known)}")
    return [m for m in spec.models if not ids or m.id in ids]


def train_models(spec, store: CheckpointStore, ids: tuple[str, ...] | list[str] = (), progress: bool = True,
                 echo=print) -> list[dict[str, Any]]:
    """Train (or find in the cache) the grid's models, without attacking them.

    The checkpoints are addressed exactly as :func:`~igbench.engine.grid.run_grid` addresses them, so a
    later run or replicate of the same grid loads them. Returns one record per model: id, config hash,
    steps, training seconds, whether it was cached, and clean accuracy on the grid's first ``n_test``
    test images (``n_scored`` of them: fewer when the split holds fewer, which a note says).
    """
    import torch

    from ..datasets.loading import load_dataset
    from .train import accuracy

    chosen = select_models(spec, ids)
    data = load_dataset(spec.dataset, spec.data_dir, spec.dataset_params)
    device = torch.device(spec.train.device)
    x_scored, y_scored = data.scored(spec.score_on)
    x_eval, y_eval = x_scored[: spec.n_test].to(device), y_scored[: spec.n_test].to(device)
    from .grid import size_notes  # grid imports this module

    for note in size_notes(spec, len(data.train_y), len(y_scored), data.name):
        echo(note)
    records = []
    for k, m in enumerate(chosen, 1):
        echo(m.heading(k, len(chosen)))
        model, info = obtain_model(m, data, spec.train, store, progress=progress)
        records.append({"id": m.id, "config_hash": info["config_hash"], "steps": info["steps"],
                        "train_seconds": info["train_seconds"], "cached": info["cached"],
                        "checkpoint": str(store.path(info["config_hash"])), "n_scored": len(y_eval),
                        "clean_accuracy": accuracy(model, x_eval, y_eval, spec.eval_batch_size,
                                                   arch=get_registry().get("architecture", m.arch),
                                                   num_classes=data.num_classes)})
    return records
