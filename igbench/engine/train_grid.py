"""``igbench train``: a grid's models trained into the cache (or found there), without attacks."""

from __future__ import annotations

import sys
from typing import Any

from ..messages import said_through
from ..registry import get_registry
from .cache import CheckpointStore
from .grid import same_models_check
from .grid_notes import monitor_eps_note, short_schedule_notes, size_notes, untrained_model_note
from .models import ModelSpec, obtain_model


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
                 echo=lambda s: print(s, file=sys.stderr)) -> list[dict[str, Any]]:
    """Train (or find in the cache) the grid's models, without attacking them.

    The checkpoints are addressed exactly as :func:`~igbench.engine.grid.run_grid` addresses them, so a
    later run or replicate of the same grid loads them. Returns one record per model: id, config hash,
    steps, training seconds, whether it was cached, and clean accuracy on the grid's first ``n_test``
    test images (``n_scored`` of them: fewer when the split holds fewer, which a note says), and the
    training's ``monitor`` record when it was monitored (else None). Every note said inside
    (:mod:`igbench.messages`) goes to ``echo`` too.
    """
    with said_through(echo):
        return _train_models(spec, store, ids, progress, echo)


def _train_models(spec, store: CheckpointStore, ids, progress: bool, echo) -> list[dict[str, Any]]:
    from ..datasets.loading import load_dataset
    from ..environment import compute_device
    from .train import accuracy

    chosen = select_models(spec, ids)
    data = load_dataset(spec.dataset, spec.data_dir, spec.dataset_params)
    same_models_check(spec, data)  # as run_grid does: one model under two ids is a mistake
    device = compute_device(spec.train.device)
    x_scored, y_scored = data.scored(spec.score_on)
    x_eval, y_eval = x_scored[: spec.n_test].to(device), y_scored[: spec.n_test].to(device)
    for note in [*size_notes(spec, len(data.train_y), len(y_scored), data.name), *short_schedule_notes(spec, data),
                 *monitor_eps_note(spec.train, data)]:
        echo(note)
    records = []
    for k, m in enumerate(chosen, 1):
        echo(m.heading(k, len(chosen)))
        model, info = obtain_model(m, data, spec.train, store, progress=progress)
        records.append({"id": m.id, "config_hash": info["config_hash"], "steps": info["steps"],
                        "train_seconds": info["train_seconds"], "cached": info["cached"],
                        "checkpoint": str(store.path(info["config_hash"])), "n_scored": len(y_eval),
                        "monitor": info.get("monitor"),
                        "clean_accuracy": accuracy(model, x_eval, y_eval, spec.eval_batch_size,
                                                   arch=get_registry().get("architecture", m.arch),
                                                   num_classes=data.num_classes)})
        note = untrained_model_note(m.id, model, records[-1]["clean_accuracy"], info["steps"], data.num_classes,
                                    spec.train.total_steps(len(data.train_y)))
        if note:
            echo(note)
    return records
