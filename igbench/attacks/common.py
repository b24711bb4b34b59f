"""Pieces shared by the native attacks: input gradients, target choice, parameters, clipping.

Everything that needs torch imports it inside the function (plugin modules stay cheap to import).
"""

from __future__ import annotations

from typing import Any

from ..plugin_types import TARGETS_KEY, AttackContext, Param, non_negative, positive
from ..torch_utils import eval_mode, model_device

#: still importable from here, where attack plugins found them before igbench.torch_utils existed
REEXPORTED = (eval_mode, model_device)

TARGET_CHOICES = ("next", "random", "least-likely")


def eps_param(default: float = 0.1) -> Param:
    return Param("eps", default, "L-inf bound of the perturbation (in the data's units)", check=non_negative)


def target_param(default: str = "next") -> Param:
    return Param(
        "target", default,
        "target class: next = (y+1) mod C (the paper's), random = a uniformly drawn other class (seeded), "
        "least-likely = the class with the lowest clean logit",
        choices=TARGET_CHOICES,
    )


PRECISIONS = ("fp32", "bf16")


def precision_param() -> Param:
    """Which dtype an iterative attack computes its input gradients in (``bf16``: see :func:`lowered_copy`)."""
    return Param(
        "precision", "fp32",
        "dtype of the attack's gradient computations: fp32 (default) or bf16, 2-3x faster on CPUs with "
        "AMX or AVX512-BF16 and on recent GPUs (slower on other CPUs); the images, the stopping test and the "
        "scoring stay float32", choices=PRECISIONS, recorded_at_default=False,
    )


def lowered_copy(model, precision: str):
    """``model`` itself for ``fp32``; for ``bf16`` a bfloat16 copy of it (weights converted once, so no
    per-step casts), to be fed bfloat16 inputs. The original is not modified."""
    if precision == "fp32":
        return model
    import copy

    import torch

    return copy.deepcopy(model).to(torch.bfloat16)


def on_target(logits, labels, model, x, lowered: bool):
    """Rows whose ``logits`` put them on their ``labels``. When the logits come from a lowered (bfloat16)
    copy, a row counts only if ``model`` itself, on the float32 inputs ``x``, agrees: rounding never stops
    an attack early."""
    import torch

    hit = logits.argmax(1) == labels
    if lowered and bool(hit.any()):
        claimed = hit.clone()
        with torch.no_grad():
            hit[claimed] = model(x[claimed]).argmax(1) == labels[claimed]
    return hit


def steps_param(default: int, help_text: str) -> Param:
    return Param("steps", default, help_text, check=positive)


def step_size_param(help_text: str) -> Param:
    return Param("step_size", None, help_text, type=float, check=positive)


def ce_input_grad(model, x, labels, with_logits: bool = False):
    """d CE / d x with CE summed over the batch, so each row is its own example's gradient; with
    ``with_logits``, ``(grad, logits)`` from the same forward pass."""
    import torch
    import torch.nn.functional as F

    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x).float()  # a bfloat16 model's logits: the softmax in float32
        loss = F.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return (grad, logits.detach()) if with_logits else grad


def given_targets(ctx: AttackContext):
    """Targets the runner already chose for this batch (``ctx.extra['targets']``), or ``None``."""
    return (ctx.extra or {}).get(TARGETS_KEY)


def choose_targets(model, x, y, how: str, ctx: AttackContext):
    """One target class per input, never equal to ``y``.

    ``next``: ``(y + 1) mod C``; ``random``: ``(y + k) mod C`` with ``k`` uniform in ``1..C-1`` drawn from
    ``ctx.generator``; ``least-likely``: the lowest clean logit among the classes other than ``y``.
    """
    import torch

    c = int(ctx.num_classes)
    if how == "next":
        return (y + 1) % c
    if how == "random":
        gen = ctx.generator
        dev = gen.device if gen is not None else y.device
        k = torch.randint(1, c, tuple(y.shape), generator=gen, device=dev).to(y.device)
        return (y + k) % c
    if how == "least-likely":
        with torch.no_grad(), eval_mode(model):
            logits = model(x).detach().clone()
        logits.scatter_(1, y.view(-1, 1), float("inf"))
        return logits.argmin(1)
    raise ValueError(f"unknown target rule {how!r}")  # resolve_params rejects it before this


def targets_for(attack, model, x, y, params: dict[str, Any], ctx: AttackContext):
    """The runner's targets when given, else the attack's own choice."""
    t = given_targets(ctx)
    if t is not None:
        return t.to(y.device)
    return attack.targets(model, x, y, params, ctx)


def sign_steps(model, x, labels, eps: float, steps: int, step_size: float, ascend: bool, ctx: AttackContext,
               start=None, stop_at_target: bool = False, precision: str = "fp32"):
    """Iterated gradient-sign steps on CE(labels), projected to the L-inf ``eps`` ball and the clip range.

    ``ascend`` raises the loss (untargeted, true labels); otherwise it lowers it (targeted). One step with
    ``step_size == eps`` and no ``start`` is FGSM (or one-step TGSM). With ``stop_at_target`` (targeted
    only) an image the model already classifies as its label is not moved again, so each example is the
    first iterate that reached its target; the loop ends early once every image has. ``precision="bf16"``
    takes the gradients on a bfloat16 copy of the model (:func:`lowered_copy`); the iterates stay in the
    inputs' dtype, and with ``stop_at_target`` an image stops only when ``model`` itself agrees.
    """
    import torch

    if stop_at_target and ascend:
        raise ValueError("stop_at_target is for targeted steps (ascend=False)")
    lo = (x - eps).clamp(min=ctx.clip_min)
    hi = (x + eps).clamp(max=ctx.clip_max)
    x_adv = x.detach() if start is None else torch.max(torch.min(start.detach(), hi), lo)
    sign = 1.0 if ascend else -1.0
    grad_model = lowered_copy(model, precision)
    dtype = next(grad_model.parameters(), x).dtype
    for _ in range(int(steps)):
        if stop_at_target:
            grad, logits = ce_input_grad(grad_model, x_adv.to(dtype), labels, with_logits=True)
            moving = ~on_target(logits, labels, model, x_adv, lowered=grad_model is not model)
            if not bool(moving.any()):
                break
            direction = grad.sign().to(x.dtype) * moving.view(-1, *([1] * (x.dim() - 1)))
        else:
            direction = ce_input_grad(grad_model, x_adv.to(dtype), labels).sign().to(x.dtype)
        x_adv = torch.max(torch.min(x_adv + (sign * step_size) * direction, hi), lo).detach()
    return x_adv
