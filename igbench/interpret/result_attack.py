"""What ``igbench explain`` and ``igbench study make`` both start from: a result's data (checked to be the
result's own), some of its trained models from the cache, and an attack checked on that data, ready to run on
the first scored images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ResultAttack:
    """A result set up for attacking its models on its scored images."""

    plugin: Any
    #: the attack's resolved parameters
    params: dict[str, Any]
    data: Any
    seed: int
    device: str
    #: the split the result scored (``test`` or ``validation``)
    split: str
    #: the first scored images and their labels (on the CPU)
    x: Any
    y: Any
    #: trained models by id, eval mode, on ``device``
    models: dict[str, Any]

    def context(self):
        """A fresh seeded :class:`~igbench.plugin_types.AttackContext` (each model's attack starts alike)."""
        from ..engine.attack import make_context

        return make_context(self.data, self.device, self.seed)

    def class_means(self):
        """The training set's class-mean images (the stand-in's templates)."""
        from .target_alignment import class_means

        return class_means(self.data.train_x, self.data.train_y, self.data.num_classes)


def default_out_dir(result_path: str | Path, kind: str) -> Path:
    """``runs/mnist-abc.json`` -> ``runs/mnist-abc-<kind>/`` (``explain``, ``study``)."""
    p = Path(result_path)
    return p.with_name(f"{p.stem}-{kind}")


def prepare(result: dict[str, Any], attack: str, attack_params: dict[str, Any] | None, dataset_params=None,
            data_dir=None, cache_dir=None, device: str = "cpu", n_images: int | None = None,
            model_ids: list[str] | None = None) -> ResultAttack:
    """Load the result's data (its exact variant), resolve and check the attack on it (ART's checks, before
    any work), and load the models in ``model_ids`` (default all) from the cache. ``x, y`` are the first
    ``n_images`` scored images (all when None)."""
    from ..engine.attack import check_attacks
    from ..engine.cache import CheckpointStore
    from ..engine.result_models import load_result_models
    from ..environment import compute_device
    from ..registry import get_registry
    from ..results.grid import scored_split
    from .explain import load_result_data

    plugin = get_registry().get("attack", attack)
    params = plugin.resolve_params(attack_params or {})
    data = load_result_data(result, data_dir, dataset_params)
    seed = int(result["environment"]["seed"])
    check_attacks([(plugin, params)], data, seed)
    device = compute_device(device)
    split = scored_split(result)
    x, y = data.scored(split)
    if n_images is not None:
        x, y = x[:n_images], y[:n_images]
    models = load_result_models(result, CheckpointStore(cache_dir), device, ids=model_ids)
    return ResultAttack(plugin, params, data, seed, device, split, x.cpu(), y.cpu(), models)
