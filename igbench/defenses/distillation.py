"""Defensive distillation (Papernot et al. 2016), as the original study ran it."""

from __future__ import annotations

from ..plugin_types import DefensePlugin, Param, in_unit_interval, positive
from .common import cross_entropy


def soft_labels(model, x, temperature: float, batch_size: int = 1024):
    """``softmax(model(x) / T)`` over ``x``, batched, with the model in eval mode and no gradients."""
    import torch

    from ..engine.train import predict_logits

    return torch.softmax(predict_logits(model, x, batch_size) / temperature, dim=1)


class Distillation(DefensePlugin):
    """Defensive distillation (Papernot et al. 2016), one of the defenses the study compared with.

    A teacher is trained on the hard labels with its logits divided by the temperature ``T``; then a
    fresh network, the student, is trained at the same ``T`` on the teacher's softened predictions for
    the training set, and is attacked and scored at T = 1 (raw logits). The study used T = 50 and
    trained the teacher 10,000 batches and the student 15,000. Here the student gets the run's steps and
    the teacher ``teacher_fraction`` of them, at most ``teacher_max_steps``. At T = 1 the distilled
    model's softmax saturates, which masks gradients: it looks robust to gradient attacks made on itself,
    even PGD, but not to examples transferred from other models (REPLICATION.md).
    """

    name = "distillation"
    summary = "Defensive distillation: teacher at temperature T on hard labels, student at T on its soft labels, used at T=1"
    params = (
        Param("T", 50.0, "distillation temperature (the paper: 50)", type=float, check=positive),
        Param("teacher_fraction", 1.0, "teacher steps relative to the run's steps", type=float, check=in_unit_interval),
        Param("teacher_max_steps", 10000, "cap on the teacher's steps (the paper: 10,000 batches)", type=int,
              check=positive),
    )

    def teacher_steps(self, trainer, params) -> int:
        """The teacher's number of batches: ``teacher_fraction`` of the run's, at most ``teacher_max_steps``."""
        total = trainer.config.total_steps(trainer.train_x.shape[0])
        return max(1, min(params["teacher_max_steps"], round(params["teacher_fraction"] * total)))

    def train(self, trainer, params):
        """Teacher (seed offset 0) at T on hard labels; student (offset 1) at T on the teacher's soft labels.

        The returned student outputs raw logits, i.e. it is evaluated at T = 1.
        """
        T = params["T"]

        def at_temperature(model, x, y):
            logits = model(x)
            return cross_entropy(logits, y, temperature=T), logits

        teacher = trainer.fit(trainer.new_model(offset=0), at_temperature, desc=f"{self.name} teacher",
                              steps=self.teacher_steps(trainer, params))
        soft = soft_labels(teacher, trainer.train_x, T)
        del teacher
        student = trainer.new_model(offset=1)
        return trainer.fit(student, at_temperature, desc=f"{self.name} student", targets=soft)
