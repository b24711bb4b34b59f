"""Held-out accuracy while a model trains (``--monitor-every``): the study's training-time report.

The study printed, during training, the accuracy on 512 test images and on FGSM examples at eps 0.2.
Every ``every`` steps (and after the last) a :class:`TrainingMonitor` measures the model being trained on
the first 512 held-out images, clean and under a white-box FGSM at ``eps``, and keeps the curve. The
study's FGSM examples were made against its unregularized model and transferred; here they are made
against the model itself, which needs no second model and shows the model's own robustness.

Monitoring does not change training: it runs in eval mode, outside autocast, takes no random numbers
and leaves the parameters' gradients alone, so a model trains to the same weights with or without it
and keeps its checkpoint key. The curve is stored with the checkpoint and recorded in results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The study's monitoring set: the first 512 images of the held-out split.
MONITOR_IMAGES = 512

#: The study's monitoring FGSM size.
DEFAULT_MONITOR_EPS = 0.2


@dataclass
class TrainingMonitor:
    """Measures a training model every ``every`` steps on ``(x, y)``, clean and under FGSM at ``eps``.

    ``curves`` holds one entry per ``fit`` of the training (distillation has two: teacher, student):
    ``{"label": ..., "points": [[step, clean accuracy, FGSM accuracy], ...]}``.
    """

    x: Any
    y: Any
    every: int
    eps: float
    split: str
    clip_min: float = 0.0
    clip_max: float = 1.0
    num_classes: int = 10
    curves: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: time spent measuring, which the training's own seconds leave out
    seconds: float = 0.0

    @classmethod
    def for_data(cls, data, every: int, eps: float, device) -> "TrainingMonitor":
        """The monitor of a training on ``data``: its validation images when it holds some out, else its
        test images (the study's), the first :data:`MONITOR_IMAGES` of them, on ``device``."""
        held_out = "validation" if data.validation_x is not None and len(data.validation_x) else "test"
        x, y = data.scored(held_out)
        return cls(x=x[:MONITOR_IMAGES].to(device), y=y[:MONITOR_IMAGES].to(device), every=int(every),
                   eps=float(eps), split=held_out, clip_min=float(data.clip_min), clip_max=float(data.clip_max),
                   num_classes=int(data.num_classes))

    def due(self, step: int, total: int) -> bool:
        return step % self.every == 0 or step == total

    def measure(self, model) -> tuple[float, float]:
        """``(clean accuracy, FGSM accuracy)`` of ``model`` on the monitoring images, in eval mode; the
        model's train/eval flags are restored."""
        import time

        import torch

        from ..attacks.common import sign_steps
        from ..plugin_types import AttackContext
        from ..torch_utils import eval_mode

        started = time.perf_counter()
        ctx = AttackContext(clip_min=self.clip_min, clip_max=self.clip_max, num_classes=self.num_classes)
        with eval_mode(model):
            with torch.no_grad():
                clean = model(self.x).argmax(1) == self.y
            x_adv = sign_steps(model, self.x, self.y, self.eps, 1, self.eps, ascend=True, ctx=ctx)
            with torch.no_grad():
                adv = model(x_adv).argmax(1) == self.y
        hits = torch.stack([clean.sum(), adv.sum()]).tolist()  # one host sync for both
        self.seconds += time.perf_counter() - started
        return hits[0] / len(self.y), hits[1] / len(self.y)

    def start(self, fit_index: int, label: str, points: list | None = None) -> None:
        """Open the curve of fit ``fit_index`` (``points``: those an interrupted attempt measured)."""
        self.curves[fit_index] = {"label": label, "points": [list(p) for p in points or []]}

    def record(self, fit_index: int, step: int, clean: float, adv: float) -> None:
        self.curves[fit_index]["points"].append([int(step), round(clean, 6), round(adv, 6)])

    def points(self, fit_index: int) -> list[list]:
        return self.curves.get(fit_index, {}).get("points", [])

    def line(self, label: str, step: int, total: int, clean: float, adv: float) -> str:
        """A measurement in words, for the log: ``gradreg: step 500/15000: accuracy 0.981 clean, 0.412 under
        FGSM eps 0.2 (512 test images)``."""
        return (f"{label}: step {step}/{total}: accuracy {clean:.3f} clean, {adv:.3f} under FGSM eps {self.eps:g} "
                f"({len(self.y)} {self.split} images)")

    def describe(self) -> dict[str, Any]:
        """The record stored with the checkpoint and in results (``models[].train.monitor``)."""
        return {"every": self.every, "eps": self.eps, "images": int(len(self.y)), "split": self.split,
                "attack": "fgsm (white-box)",
                "fits": [self.curves[i] for i in sorted(self.curves)]}
