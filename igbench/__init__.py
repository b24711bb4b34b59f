"""igbench: adversarial robustness and interpretability benchmark harness.

Reference experiment: Ross & Doshi-Velez (AAAI 2018), "Improving the Adversarial Robustness and
Interpretability of Deep Neural Networks by Regularizing their Input Gradients".

Importing this package is cheap: torch, torchvision and ART are imported lazily where they are used.
"""

__version__ = "0.2.0"

import pluggy as _pluggy

#: Decorator for plugin hook implementations: ``@igbench.hookimpl def igbench_defenses(register): ...``
hookimpl = _pluggy.HookimplMarker("igbench")
