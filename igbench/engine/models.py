"""Train a defended model, or load it from the checkpoint cache when its configuration was seen before.

A result's models are loaded by :mod:`.result_models`; `igbench train`'s loop over a grid is :mod:`.train_grid`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..atomic import remove_orphan_temps
from ..environment import package_version
from ..locks import exclusive_lock
from ..messages import say
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


def arch_revision(arch, params: dict[str, Any]) -> str | None:
    """The architecture's :meth:`~igbench.plugin_types.ArchitecturePlugin.revision` for these params, checked
    (a third-party one that raises is named, one that returns anything but text or None is a PluginError)."""
    from ..errors import PluginError
    from ..plugin_calls import named

    with plugin_call(arch, "revision"):
        revision = arch.revision(copy.deepcopy(params))
    if revision is not None and not (isinstance(revision, str) and revision):
        raise PluginError(f"{named(arch)} returned {revision!r} from revision(); return a non-empty str or None")
    return revision


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
    if (revision := arch_revision(arch, config["arch_params"])) is not None:
        config["arch_revision"] = revision
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
    ``None`` if unknown), and ``monitor`` when the training was monitored (:mod:`.monitor`).
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
    # the plugins get copies: one that edits its parameters in place changed the configuration stored with
    # its checkpoint, which then no longer hashed to the checkpoint's key
    arch_params, defense_params = copy.deepcopy(config["arch_params"]), copy.deepcopy(config["defense_params"])
    if store.has(key):
        return _load_cached(store, key, config, arch, arch_params, data, train)

    def wait(lock_path):
        say(f"{spec.id}: another igbench process is training this model ({key[:12]}, lock {lock_path}); "
            "waiting for it to finish, then loading its checkpoint")

    # One trainer per model: a second process that needs it (a grid while `igbench train --model` runs,
    # two grids sharing a model) waits and then loads the checkpoint instead of training it again.
    with exclusive_lock(store.lock_path(key), on_busy=wait) as lock_path:
        if store.has(key):
            return _load_cached(store, key, config, arch, arch_params, data, train)
        store.check_writable()
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
        if trainer.monitor is not None and trainer.monitor.curves:
            meta["monitor"] = trainer.monitor.describe()
        elif trainer.monitor is not None:  # a defense with its own training loop: nothing went through fit
            say(f"note: {spec.id}: --monitor-every has nothing to measure, since {defense.name} trains without "
                f"the shared training loop (trainer.fit)")
        store.save(key, model, meta)
        snapshots.clear()
        lock_path.unlink(missing_ok=True)  # only once the checkpoint exists: a waiter then finds it
    return model, _record(model, config, key, meta, cached=False)


def _load_cached(store: CheckpointStore, key: str, config, arch, arch_params, data, train: TrainConfig):
    import torch

    model = build_model(arch, tuple(data.input_shape), data.num_classes, arch_params)
    meta = store.load(key, model)
    stored = stored_curve(meta)
    if train.monitor_every and stored is None and not meta.get("steps"):
        say(f"note: model {key[:12]} comes from the cache; its defense trained in its own loop, so it has no "
            f"training curve to show (--monitor-every measures the shared training loop only)")
    elif train.monitor_every and stored is None:
        say(f"note: model {key[:12]} comes from the cache and was trained without --monitor-every, so it has no "
            f"training curve; delete {store.path(key)} (or use another --cache-dir) to train it again with one")
    elif train.monitor_every and (stored["every"], stored["eps"]) != (train.monitor_every, train.monitor_eps):
        say(f"note: model {key[:12]} comes from the cache with the curve of its training, measured every "
            f"{stored['every']} steps at eps {stored['eps']:g}, not every {train.monitor_every} at "
            f"{train.monitor_eps:g}")
    model.to(torch.device(train.device)).eval()
    return model, _record(model, config, key, meta, cached=True)


def _record(model, config: dict[str, Any], key: str, meta: dict[str, Any], cached: bool) -> dict[str, Any]:
    """``obtain_model``'s ``info`` from the checkpoint's metadata (just written, or loaded)."""
    return {"config": config, "config_hash": key, "checkpoint_sha256": weights_sha256(model),
            "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"), "cached": cached,
            "ran_on": ran_on_of(meta), **({"monitor": curve} if (curve := stored_curve(meta)) else {})}


def stored_curve(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The training curve a checkpoint's metadata holds (:mod:`.monitor`), or None when it has none with a
    fit in it."""
    curve = meta.get("monitor")
    return curve if curve and curve.get("fits") else None


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
