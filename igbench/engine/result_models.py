"""A result file's trained models, loaded from the checkpoint cache and checked against the weights the
result recorded."""

from __future__ import annotations

from typing import Any

from ..registry import get_registry
from .cache import CheckpointStore, weights_sha256
from .model_checks import build_model
from .models import ran_on_of, trained_on


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


def load_result_models(result: dict[str, Any], store: CheckpointStore, device: str = "cpu",
                       ids: list[str] | None = None) -> dict[str, Any]:
    """The trained models of a result file (those in ``ids``, default all), from the checkpoint cache, keyed
    by model id (eval mode).

    A checkpoint missing from the cache is a one-line error that says how to recreate it (re-run the
    result's command: the cache key is the same, so only the missing models are retrained). So is one
    whose weights are not the ones the result recorded (``checkpoint_sha256``): the same configuration
    retrained elsewhere (another machine, thread count or torch build) gives other weights, and figures
    or scores from them would not belong to the result's numbers.
    """
    import torch

    from ..errors import IgbenchError, ParamError

    reg = get_registry()
    shape = tuple(result["dataset"]["input_shape"])
    num_classes = int(result["dataset"]["num_classes"])
    models: dict[str, Any] = {}
    for rec in result["models"]:
        if ids is not None and rec["id"] not in ids:
            continue
        key = rec["config_hash"]
        if not store.has(key):
            raise IgbenchError(missing_checkpoint(rec["id"], key, store, result["command"]))
        arch = reg.get("architecture", rec["arch"])
        try:  # a hand-edited record: a KeyError from inside build otherwise
            arch_params = arch.resolve_params(rec["arch_params"])
        except ParamError as exc:
            raise IgbenchError(f"model '{rec['id']}' of the result: {exc}; its arch or arch_params are not what "
                               f"{rec['arch']} builds here (was the result file edited, or made by another igbench "
                               f"or plugin version? it records igbench {result.get('igbench_version', '?')})") from None
        model = build_model(arch, shape, num_classes, arch_params)
        # retraining gives other weights than the result's: only the code that made the result can load these
        meta = store.load(key, model, fix=f"install the igbench (and plugin) versions that made the result "
                                         f"(igbench {result.get('igbench_version', '?')}) to use it")
        if weights_sha256(model) != rec["checkpoint_sha256"]:
            raise IgbenchError(
                f"checkpoint of model '{rec['id']}' ({key[:12]}) in {store.root} holds other weights than the "
                f"result was made with ({_where_each_trained(ran_on_of(meta), rec, result)}); re-run "
                f"`{result['command']}` to remake the result from the cached models, or restore the original "
                "checkpoint (`igbench cache import --replace` an archive of it)"
            )
        models[rec["id"]] = model.to(torch.device(device)).eval()
    return models
