"""A third-party igbench plugin: Gaussian-noise data augmentation as a defense.

Copy this package to start your own defense (see CONTRIBUTING.md). What makes it a plugin:

1. an ``igbench_defenses(register)`` hook implementation, marked with ``igbench.hookimpl``;
2. the entry point ``[project.entry-points.igbench] example_defense = "igbench_example_defense"`` in
   ``pyproject.toml``, so ``pip install`` makes igbench discover it.

Keep module import cheap: torch is imported inside ``loss``, not at the top.
"""

from igbench import hookimpl
from igbench.plugin_types import LossDefense, Param, non_negative


class NoiseAugment(LossDefense):
    """Train on inputs with Gaussian noise added (clipped to the data range).

    A classic, weak but real defense, not in the study: it smooths the decision function around
    training points (randomized smoothing trains the same way). Loss: ``clean_weight * CE(clean) +
    (1 - clean_weight) * CE(noisy)``, the noise having standard deviation ``sigma`` in pixel units. It
    is also the template for a third-party defense: see CONTRIBUTING.md.
    """

    name = "noise-augment"
    summary = "Gaussian-noise data augmentation (template third-party defense)"
    params = (
        Param("sigma", 0.3, "standard deviation of the added noise, in pixel units", check=non_negative),
        Param("clean_weight", 0.5, "weight of the clean-input loss (the noisy loss gets 1 - clean_weight)",
              check=lambda v: None if 0 <= v <= 1 else "must be in [0, 1]"),
    )

    def loss(self, model, x, y, params, trainer):
        import torch
        import torch.nn.functional as F

        noisy = (x + params["sigma"] * torch.randn_like(x)).clamp(trainer.data.clip_min, trainer.data.clip_max)
        both = model(torch.cat([x, noisy]))
        clean_logits, noisy_logits = both[: x.shape[0]], both[x.shape[0]:]
        w = params["clean_weight"]
        loss = w * F.cross_entropy(clean_logits, y) + (1 - w) * F.cross_entropy(noisy_logits, y)
        return loss, clean_logits


@hookimpl
def igbench_defenses(register):
    register(NoiseAugment())
