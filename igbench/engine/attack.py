"""Running one attack over a set of inputs: batching, targets, timing and perturbation metrics."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

from ..errors import PluginError
from ..plugin_calls import named, plugin_call
from ..plugin_types import AttackContext

L0_TOL = 1e-6  # a feature counts as changed when |x_adv - x| > L0_TOL


def make_context(data, device="cpu", seed: int = 0) -> AttackContext:
    """An :class:`AttackContext` for ``data`` (a DataSplits): its clip range and class count, and a
    ``torch.Generator`` on ``device`` seeded with ``seed``."""
    import torch

    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    return AttackContext(clip_min=float(data.clip_min), clip_max=float(data.clip_max),
                         num_classes=int(data.num_classes), generator=gen)


def check_attacks(attacks, data, seed: int = 0) -> None:
    """Let each ``(plugin, resolved params)`` of ``attacks`` judge its parameters for ``data``'s inputs
    (:meth:`~igbench.plugin_types.AttackPlugin.check`: ART's constructors), before any model trains or
    loads. A value the attack refuses stops here, as a one-line error."""
    from ..plugin_checks import DEFINE_TARGETS, defines
    from ..plugin_types import AttackPlugin

    preflight = make_context(data, device="cpu", seed=seed)
    for plugin, params in attacks:
        if plugin.is_targeted(params) and not defines(plugin, "targets", AttackPlugin):
            raise PluginError(f"{named(plugin)} is targeted with these parameters but does not define targets(); "
                              f"{DEFINE_TARGETS}")
        with plugin_call(plugin, "check"):
            plugin.check(params, data.input_shape, preflight)


def success_mask(pred_adv, y, targets=None):
    """Per input, did the attack succeed: predicted as its target (targeted, ``targets`` given), or as
    anything but ``y`` (untargeted; inputs already misclassified count). On ``pred_adv``'s device."""
    if targets is not None:
        return pred_adv == targets.to(pred_adv.device)
    return pred_adv != y.to(pred_adv.device)


def perturbation_stats(x, x_adv, y, pred_adv, targets=None) -> dict[str, Any]:
    """Success and size of a perturbation, as plain floats (means over the inputs).

    ``success_rate``: untargeted, the share predicted as anything but ``y`` (inputs already misclassified
    count); targeted (``targets`` given), the share predicted as their target. ``accuracy``: share still
    predicted as ``y``. ``linf``/``l2``: mean norms of ``x_adv - x``; ``l0``: mean count of changed features
    (``|delta| > 1e-6``), ``l0_fraction`` the same over the feature count; ``*_max`` the largest per input.
    """
    n = int(x.shape[0])
    if n == 0:
        nan = float("nan")
        return {"n": 0, "targeted": targets is not None, "success_rate": nan, "accuracy": nan, "linf": nan,
                "l2": nan, "l0": nan, "l0_fraction": nan, "linf_max": nan, "l0_max": nan}
    delta = (x_adv.detach().float() - x.detach().float().to(x_adv.device)).flatten(1)
    n_feat = delta.shape[1]
    pred_adv = pred_adv.to(delta.device)
    y = y.to(delta.device)
    linf = delta.abs().amax(1)
    l2 = delta.norm(dim=1)
    l0 = (delta.abs() > L0_TOL).sum(1).float()
    success = success_mask(pred_adv, y, targets)
    return {
        "n": n,
        "targeted": targets is not None,
        "success_rate": float(success.float().mean()),
        "accuracy": float((pred_adv == y).float().mean()),
        "linf": float(linf.mean()),
        "l2": float(l2.mean()),
        "l0": float(l0.mean()),
        "l0_fraction": float(l0.mean() / n_feat),
        "linf_max": float(linf.max()),
        "l0_max": float(l0.max()),
    }


class AttackRun(NamedTuple):
    """What :func:`run_attack` returns (all tensors on the model's device)."""

    x_adv: Any
    #: :func:`perturbation_stats` plus ``seconds`` (wall time of targets + perturb, without the predictions).
    stats: dict[str, Any]
    #: The target class of each input; ``None`` for an untargeted attack.
    targets: Any
    #: The attacked model's class for each adversarial input (what ``stats`` was computed from).
    predictions: Any


def run_attack(attack, params: dict[str, Any] | None, model, x, y, ctx: AttackContext, batch_size: int = 500,
               progress: bool = True, optimize: bool = True, label: str | None = None) -> AttackRun:
    """Attack ``(x, y)`` in batches on the model's device.

    ``params`` are resolved (and checked) by the plugin first. For each batch the attack's ``targets``
    are chosen, then ``perturb`` runs with them in ``ctx.extra["targets"]``, then the model predicts the
    adversarial batch. The model's train/eval flags are restored afterwards. With ``optimize`` (default)
    the attack runs on :func:`~igbench.engine.inference.inference_copy` of the model (the same function,
    faster; native and ``art:`` attacks alike), which also makes the predictions; ``model`` itself is
    never modified. ``label`` (a model id) names the model on the progress bar.
    """
    import torch

    from ..plugin_types import TARGETS_KEY
    from ..torch_utils import eval_mode, model_device
    from ..progress import progress as progress_bar
    from .allocator import keep_freed_memory
    from .inference import inference_copy

    params = attack.resolve_params(params or {})
    device = model_device(model)
    if device.type == "cpu":
        keep_freed_memory()
    x, y = x.to(device), y.to(device)
    n = int(x.shape[0])
    if int(y.shape[0]) != n:
        raise PluginError(f"run_attack got {n} inputs but {int(y.shape[0])} labels")
    batch_size = max(1, int(batch_size))
    outs, tgts, preds = [], [], []
    seconds = 0.0
    bar = progress_bar(n, f"attack {attack.name}" + (f" on {label}" if label else ""), unit="img", enabled=progress)
    try:
        with eval_mode(model):
            if optimize:
                model = inference_copy(model, x)
            for i in range(0, n, batch_size):
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                _sync(device)
                t0 = time.perf_counter()
                # copies: an attack that edits its inputs in place must not change the clean images and
                # labels that every later attack and score uses
                with _global_randomness(ctx, i // batch_size, device):
                    with plugin_call(attack, "targets"):
                        tb = attack.targets(model, xb.clone(), yb.clone(), params, ctx)
                    tb = _checked_targets(attack, tb, yb, params, ctx.num_classes)
                    bctx = ctx if tb is None else dataclasses.replace(ctx, extra={**(ctx.extra or {}), TARGETS_KEY: tb})
                    with plugin_call(attack, "perturb"):
                        xa = attack.perturb(model, xb.clone(), yb.clone(), params, bctx)
                _sync(device)
                seconds += time.perf_counter() - t0
                xa = _checked(attack, xa, xb, ctx, attack.linf_bound(params))
                with torch.no_grad():
                    preds.append(model(xa).argmax(1))
                outs.append(xa)
                if tb is not None:
                    tgts.append(tb.to(device))
                bar.update(int(xb.shape[0]))
    finally:
        bar.close()
    x_adv = torch.cat(outs) if outs else x.clone()
    pred = torch.cat(preds) if preds else y.clone()
    targets = torch.cat(tgts) if tgts else None
    stats = perturbation_stats(x, x_adv, y, pred, targets)
    stats["seconds"] = seconds
    return AttackRun(x_adv, stats, targets, pred)


def _global_randomness(ctx: AttackContext, batch: int, device):
    """The global random generators seeded for batch ``batch`` of a run whose ``ctx.generator`` was seeded
    with the unit's seed (:func:`~igbench.torch_utils.seeded_global_randomness`), without drawing from that
    generator: an attack that draws from ``torch.rand`` or ``np.random`` rather than ``ctx.generator`` (a
    third-party one, say) then makes the same examples on every run, and a resumed grid's. Nothing is
    seeded without a generator."""
    from contextlib import nullcontext

    from ..torch_utils import seeded_global_randomness

    if ctx.generator is None:
        return nullcontext()
    return seeded_global_randomness((ctx.generator.initial_seed() * 1_000_003 + batch) % 2**31, device)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _checked_targets(attack, tb, yb, params: dict[str, Any], num_classes: int):
    """``targets``' answer as int64 on ``yb``'s device; a PluginError when it does not fit what
    ``is_targeted(params)`` says (targets for an untargeted attack, none for a targeted one), or is not one
    class index per input other than its label (an int32 tensor failed inside perturb, blamed on perturb)."""
    import torch

    who = named(attack)
    targeted = attack.is_targeted(params)
    if tb is None:
        if targeted:
            raise PluginError(f"{who} is targeted but its targets() returned None; return one target class per "
                              f"input (a LongTensor shaped like y), or make it untargeted (targeted = False)")
        return None
    if not targeted:
        raise PluginError(f"{who} returned targets from targets() but is not targeted with these parameters; set "
                          f"targeted = True on its class (or make is_targeted(params) say so), or return None")
    if not isinstance(tb, torch.Tensor) or tuple(tb.shape) != tuple(yb.shape):
        shape = tuple(tb.shape) if isinstance(tb, torch.Tensor) else type(tb).__name__
        raise PluginError(f"{who} returned {shape} from targets() for {int(yb.shape[0])} labels; return one target "
                          f"class per input, a LongTensor of shape {tuple(yb.shape)}")
    if tb.is_floating_point() or tb.is_complex() or tb.dtype == torch.bool:
        raise PluginError(f"{who} returned a {str(tb.dtype).replace('torch.', '')} tensor from targets(); return "
                          f"class indices as a LongTensor (int64)")
    tb = tb.to(yb.device, torch.int64)
    if tb.numel() and not (0 <= int(tb.min()) and int(tb.max()) < num_classes):
        raise PluginError(f"{who} returned targets outside 0..{num_classes - 1} from targets(); return class "
                          f"indices of the data set's {num_classes} classes")
    same = int((tb == yb).sum())
    if same:
        raise PluginError(f"{who} chose the true label as the target of {same} input(s); a target must differ from "
                          f"its input's label (e.g. (y + 1) % num_classes)")
    return tb


def _checked(attack, xa, xb, ctx: AttackContext, linf_bound: float | None = None):
    """The attack's output, detached; a wrong shape, a value outside the clip range or a move larger than
    ``linf_bound`` (the attack's eps, when that bounds the L-inf norm) is a PluginError."""
    import torch

    who = named(attack)
    if not isinstance(xa, torch.Tensor) or tuple(xa.shape) != tuple(xb.shape):
        shape = tuple(xa.shape) if isinstance(xa, torch.Tensor) else type(xa).__name__
        raise PluginError(f"{who} returned {shape} for inputs of shape {tuple(xb.shape)}; "
                          "perturb must return a tensor of the input's shape")
    if not xa.is_floating_point():  # a uint8 image was reported as values outside the clip range
        raise PluginError(f"{who} returned a {str(xa.dtype).replace('torch.', '')} tensor; perturb must return a "
                          f"floating-point tensor like its input ({str(xb.dtype).replace('torch.', '')})")
    xa = xa.detach().to(xb.device, xb.dtype)
    tol = 1e-6
    if bool((xa < ctx.clip_min - tol).any()) or bool((xa > ctx.clip_max + tol).any()):
        raise PluginError(f"{who} returned values outside the clip range "
                          f"[{ctx.clip_min}, {ctx.clip_max}]; clamp its output")
    if not bool(torch.isfinite(xa).all()):
        raise PluginError(f"{who} returned NaN or infinite values")
    if linf_bound is not None and xa.numel():
        moved = float((xa - xb).abs().max())
        if moved > linf_bound * (1 + 1e-5) + tol:
            raise PluginError(f"{who} moved an input by {moved:.4g} in L-inf, more than its eps "
                              f"{linf_bound:g}; keep x_adv within x +- eps (or, if its eps bounds another norm, "
                              f"set eps_is_linf = False on the plugin class)")
    return xa
