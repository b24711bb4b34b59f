"""Jacobian-based saliency map attack (Papernot et al. 2016), batched over images in PyTorch.

The algorithm is CleverHans' ``jsma_symbolic`` (pairs of features, saliency from the Jacobian of the
*logits*, the same quantity ART's ``SaliencyMapMethod`` differentiates):

* per image, ``a = d z_target / dx`` and ``b = sum over the other classes of d z_j / dx``;
* for increasing features (``theta > 0``) the pair ``(p, q)``, ``p != q``, both still in the search domain,
  maximizing ``relu(a_p + a_q) * relu(-(b_p + b_q))`` (CleverHans' ``(A > 0) & (B < 0)`` mask times
  ``-A * B``) gets ``+theta`` (clipped); for ``theta < 0`` the signs of ``a`` and ``b`` flip;
* both features then leave the search domain; an image stops when it is classified as its target, when
  fewer than two features remain, or after ``floor(gamma * n_features / 2)`` pairs, so at most
  ``floor(gamma * n_features)`` features ever change.

When no pair satisfies the sign conditions (every score is 0) CleverHans would modify feature 0; here the
two domain features with the largest ``a`` are taken instead (ART's rule), which is never worse.

Speed: all active images advance together (one forward and two backward passes per iteration, masks for
per-image stopping, no Python loop over images), and the pair search is exact without scoring all
``n^2`` pairs: the score is non-decreasing in both ``a_q`` and ``-b_q``, so an optimal pair lies in the
first two Pareto layers ("skylines") of the points ``(a_i, -b_i)``, found per image with a sort and a
cumulative max. Only pairs among those few candidates are scored.
"""

from __future__ import annotations

import math
from typing import Any

from ..plugin_types import AttackContext, AttackPlugin, Param, in_unit_interval
from .common import choose_targets, eval_mode, target_param, targets_for

PAIR_BUDGET = 1 << 24  # most pair scores held at once (elements); the candidate sets are usually tiny


def _nonzero(v) -> str | None:
    return None if v != 0 else "must not be 0 (positive increases features, negative decreases them)"


def skyline(a, c, valid):
    """Mask of the Pareto-maximal points ``(a_i, c_i)`` among ``valid`` ones, per row.

    A point is kept when no earlier point in the order (``a`` descending, then ``c`` descending) has a
    ``c`` at least as large; exact duplicates keep only the first. Rows are independent.
    """
    import torch

    neg = torch.tensor(float("-inf"), dtype=a.dtype, device=a.device)
    a_ = torch.where(valid, a, neg)
    c_ = torch.where(valid, c, neg)
    by_c = torch.argsort(c_, dim=1, descending=True, stable=True)
    by_a = torch.argsort(a_.gather(1, by_c), dim=1, descending=True, stable=True)
    order = by_c.gather(1, by_a)
    cs = c_.gather(1, order)
    prev = torch.cummax(cs, dim=1).values
    prev = torch.cat([torch.full_like(prev[:, :1], float("-inf")), prev[:, :-1]], dim=1)
    keep = (cs > prev) & valid.gather(1, order)
    return torch.zeros_like(valid).scatter(1, order, keep)


def best_pairs(a, c, domain):
    """For each row, ``(p, q)`` maximizing ``relu(a_p + a_q) * relu(c_p + c_q)`` over ``p != q`` in ``domain``.

    Returns ``(p, q, score)``; where every score is 0 the pair is the two domain features with the largest
    ``a``. Rows need at least two domain features.
    """
    import torch

    first = skyline(a, c, domain)
    second = skyline(a, c, domain & ~first)
    cand = first | second
    k = max(2, int(cand.sum(1).max()))
    cand_idx = torch.argsort(cand.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
    ok = cand.gather(1, cand_idx)
    neg = torch.tensor(float("-inf"), dtype=a.dtype, device=a.device)
    ca = torch.where(ok, a.gather(1, cand_idx), neg)
    cc = torch.where(ok, c.gather(1, cand_idx), neg)
    n = a.shape[0]
    best = torch.empty(n, dtype=torch.long, device=a.device)
    score = torch.empty(n, dtype=a.dtype, device=a.device)
    rows = max(1, PAIR_BUDGET // (k * k))
    for i in range(0, n, rows):
        sa, sc = ca[i:i + rows], cc[i:i + rows]
        s = torch.relu(sa[:, :, None] + sa[:, None, :]) * torch.relu(sc[:, :, None] + sc[:, None, :])
        s.diagonal(dim1=1, dim2=2).zero_()
        score[i:i + rows], best[i:i + rows] = s.flatten(1).max(1)
    p = cand_idx.gather(1, (best // k)[:, None]).squeeze(1)
    q = cand_idx.gather(1, (best % k)[:, None]).squeeze(1)
    stuck = score <= 0
    if bool(stuck.any()):
        top2 = torch.where(domain[stuck], a[stuck], neg).topk(2, dim=1).indices
        p[stuck], q[stuck] = top2[:, 0], top2[:, 1]
    return p, q, score


def jsma(model, x, targets, theta: float, gamma: float, ctx: AttackContext):
    """Run the saliency-map attack on the batch ``x`` toward ``targets``; returns ``x_adv`` (detached).

    ``model`` must already be in eval mode (the caller's :func:`eval_mode`).
    """
    import torch

    n_img = x.shape[0]
    shape = tuple(x.shape[1:])
    n_feat = int(math.prod(shape))
    flat = x.detach().reshape(n_img, n_feat).clone()
    increase = theta > 0
    domain = flat < ctx.clip_max if increase else flat > ctx.clip_min
    active = torch.ones(n_img, dtype=torch.bool, device=x.device)
    rows_all = torch.arange(n_img, device=x.device)
    max_pairs = int(math.floor(n_feat * gamma / 2))
    for _ in range(max_pairs):
        idx = rows_all[active]
        if idx.numel() == 0:
            break
        xa = flat[idx].reshape(-1, *shape).requires_grad_(True)
        t = targets[idx]
        with torch.enable_grad():
            logits = model(xa)
            go = (logits.argmax(1) != t) & (domain[idx].sum(1) >= 2)
            active[idx] = go
            if not bool(go.any()):
                break
            # a = d z_t / dx, b = d (sum of the other logits) / dx: two backward passes, not C
            z_t = logits.gather(1, t[:, None]).sum()
            (g_t,) = torch.autograd.grad(z_t, xa, retain_graph=True)
            (g_all,) = torch.autograd.grad(logits.sum(), xa)
        g_t = g_t.reshape(-1, n_feat)[go]
        g_other = g_all.reshape(-1, n_feat)[go] - g_t
        rows = idx[go]
        dom = domain[rows]
        if increase:
            p, q, _ = best_pairs(g_t, -g_other, dom)
        else:
            p, q, _ = best_pairs(-g_t, g_other, dom)
        for f in (p, q):
            flat[rows, f] = (flat[rows, f] + theta).clamp(ctx.clip_min, ctx.clip_max)
            domain[rows, f] = False
    return flat.reshape(n_img, *shape).detach()


class JSMA(AttackPlugin):
    """Targeted saliency-map attack changing at most ``floor(gamma * n_features)`` features by ``theta``."""

    name = "jsma"
    summary = "Jacobian saliency map attack (Papernot et al.), targeted, pairs of features; paper: theta 1, gamma 0.25"
    targeted = True
    params = (
        Param("theta", 1.0, "change applied to each chosen feature (clipped); > 0 increases features",
              check=_nonzero),
        Param("gamma", 0.25, "largest fraction of the features that may change, in (0, 1]", check=in_unit_interval),
        target_param("next"),
    )

    def targets(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        return choose_targets(model, x, y, params["target"], ctx)

    def perturb(self, model, x, y, params: dict[str, Any], ctx: AttackContext):
        with eval_mode(model):
            t = targets_for(self, model, x, y, params, ctx)
            return jsma(model, x, t, float(params["theta"]), float(params["gamma"]), ctx)
