"""Gradient-sign attacks in plain PyTorch: FGSM, TGSM (one-step or iterated) and PGD (L-inf)."""

from __future__ import annotations

from typing import Any

from ..plugin_types import AttackContext, AttackPlugin, Param
from ..torch_utils import eval_mode
from .common import (
    choose_targets,
    eps_param,
    precision_param,
    sign_steps,
    step_size_param,
    steps_param,
    target_param,
    targets_for,
)


class FGSM(AttackPlugin):
    """Fast gradient sign method (Goodfellow et al. 2015): ``clip(x + eps * sign(d CE(x, y) / dx))``.

    One step of size ``eps`` (L-inf, in the data's units: pixels are in [0, 1]) up the cross-entropy of
    the true label, clipped to the data range; untargeted. The study's main attack, with eps swept from
    0 to 0.7 in steps of 0.1 (the paper configurations' eps list), both white-box and transferred from
    the other models. Being one step, it can overrate a defense that masks its gradients: compare with
    `pgd`.
    """

    name = "fgsm"
    summary = "Fast gradient sign method, untargeted L-inf: x + eps*sign(grad CE(true label)), clipped"
    params = (eps_param(0.1),)

    def perturb(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        eps = float(params["eps"])
        with eval_mode(model):
            return sign_steps(model, x, y, eps, 1, eps, ascend=True, ctx=ctx)


class TGSM(AttackPlugin):
    """Targeted gradient sign method: ``clip(x - eps * sign(d CE(x, target) / dx))``.

    ``steps > 1`` gives the iterated form (basic iterative method toward the target): ``steps`` moves of
    ``step_size`` each (default ``eps / steps``), projected back to the L-inf ``eps`` ball and the clip
    range after every move. The study's iterated TGSM moved 0.1 per step: ``step_size=0.1`` with
    ``steps = eps / 0.1`` reproduces it. ``stop_at_target`` stops moving each image once the model
    classifies it as its target, so every successful example is the first iterate that fooled the model
    (many small steps, e.g. ``steps=30 step_size=0.01`` at eps 0.3, approach the smallest such change):
    the kind of example a person is shown in the study's human-subject test.
    """

    name = "tgsm"
    summary = "Targeted gradient sign method (target = next class by default), one step or iterated"
    targeted = True
    params = (
        eps_param(0.1),
        target_param("next"),
        steps_param(1, "number of gradient-sign moves (1 = the one-step TGSM)"),
        step_size_param("size of each move (default eps/steps); the study's iterated form used 0.1"),
        Param("stop_at_target", False, "stop moving each image once the model classifies it as its target "
              "(iterated form: each success is the first iterate that reached the target)"),
        precision_param(),
    )

    def targets(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        return choose_targets(model, x, y, params["target"], ctx)

    def perturb(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        eps, steps = float(params["eps"]), int(params["steps"])
        step = float(params["step_size"]) if params.get("step_size") is not None else eps / steps
        with eval_mode(model):
            t = targets_for(self, model, x, y, params, ctx)
            return sign_steps(model, x, t, eps, steps, step, ascend=False, ctx=ctx,
                              stop_at_target=bool(params["stop_at_target"]), precision=params["precision"])


class PGD(AttackPlugin):
    """Projected gradient descent (Madry et al. 2018), untargeted, L-inf.

    ``steps`` sign-gradient moves of ``step_size`` (default ``2.5 * eps / steps``) on CE(true label), each
    projected to the ``eps`` ball and the clip range; ``random_start`` begins at a uniform point of the ball
    drawn from the run's seeded generator.

    Not in the study: the paper configurations add 20-step PGD at eps 0.1, 0.2, 0.3 and 0.5 as the check
    against gradient masking, which one-step attacks miss (FGSM-trained models are the known case;
    distilled ones stay masked even under PGD, REPLICATION.md). The default is 40 steps.
    """

    name = "pgd"
    summary = "Projected gradient descent, untargeted L-inf (Madry et al.), random start"
    params = (
        eps_param(0.1),
        steps_param(40, "number of projected gradient-sign moves"),
        step_size_param("size of each move (default 2.5*eps/steps)"),
        Param("random_start", True, "start from a uniform random point of the eps ball (seeded)"),
        precision_param(),
    )

    def perturb(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        import torch

        eps, steps = float(params["eps"]), int(params["steps"])
        step = float(params["step_size"]) if params.get("step_size") is not None else 2.5 * eps / steps
        start = None
        if params["random_start"] and eps > 0:
            gen = ctx.generator
            dev = gen.device if gen is not None else x.device
            noise = torch.rand(tuple(x.shape), generator=gen, device=dev, dtype=x.dtype).to(x.device)
            start = x + (2 * noise - 1) * eps
        with eval_mode(model):
            return sign_steps(model, x, y, eps, steps, step, ascend=True, ctx=ctx, start=start,
                              precision=params["precision"])

