"""How image-like are a model's input gradients? Batched measures, one value per image.

Every measure takes ``grads`` and ``images`` shaped ``(N, C, H, W)`` (``images`` only where needed) and
returns a float tensor of shape ``(N,)``. They work on the per-pixel gradient *magnitude*
``a = sum_c |g_c|`` and the per-pixel intensity ``m = mean_c x_c``, so they apply to one or several
channels alike. All are invariant to the scale of the gradient (a model with tiny gradients is not
"more interpretable" for that reason alone). Where a measure is undefined for an image (an all-zero
gradient; a constant image for the image-based ones) its value is NaN; :func:`interpretability_summary`
averages over the images where it is defined.

The paper (Ross & Doshi-Velez 2018) argues that gradient-regularized models have input gradients that
look like the digits themselves: smooth, on the strokes, shaped like the image. The measures turn that
visual claim into numbers:

==================  =========================================================  =====================
key                 what                                                       more interpretable
==================  =========================================================  =====================
``grad_tv``         total variation of the gradient magnitude (sum-normalized)  lower (smoother)
``grad_on_object``  share of gradient mass on the object's (digit's) pixels     higher
``grad_image_corr`` Pearson correlation of |gradient| with the image            higher
``grad_entropy``    normalized Shannon entropy of the gradient-mass map         lower (concentrated)
``grad_gini``       Gini coefficient of the gradient-mass map (sparsity)        higher (sparser)
==================  =========================================================  =====================
"""

from __future__ import annotations

from typing import Any

_TINY = 1e-12

#: Keys of :func:`interpretability_summary`, in table order, with the direction that reads as
#: "more interpretable" (+1: higher is better, -1: lower is better).
MEASURES: dict[str, int] = {
    "grad_tv": -1,
    "grad_on_object": +1,
    "grad_image_corr": +1,
    "grad_entropy": -1,
    "grad_gini": +1,
}


def _check(grads, images=None) -> None:
    from ..errors import UsageError

    if grads.dim() != 4:
        raise UsageError(f"gradients must be shaped (N, C, H, W), got {tuple(grads.shape)}")
    if images is not None and tuple(images.shape) != tuple(grads.shape):
        raise UsageError(f"gradients {tuple(grads.shape)} and images {tuple(images.shape)} must have the same shape")


def gradient_magnitude(grads):
    """Per-pixel gradient magnitude ``sum_c |g_c|``: ``(N, H, W)``, float."""
    _check(grads)
    return grads.detach().float().abs().sum(dim=1)


def _mass(grads):
    """Gradient magnitude normalized to sum 1 per image (all zeros stay zeros): ``(N, H, W)``."""
    a = gradient_magnitude(grads)
    total = a.flatten(1).sum(1).clamp_min(_TINY)
    return a / total.view(-1, 1, 1)


def _defined(values, ok):
    """``values`` where ``ok``, NaN elsewhere."""
    import torch

    return torch.where(ok, values, torch.full_like(values, float("nan")))


def _nonzero(grads):
    """Per image: does the gradient have any non-zero entry?"""
    return gradient_magnitude(grads).flatten(1).amax(1) > 0


def _nonconstant(images):
    """Per image: does the intensity vary at all?"""
    m = images.detach().float().mean(dim=1).flatten(1)
    return m.amax(1) > m.amin(1)


def total_variation(grads):
    """Anisotropic total variation of the sum-normalized gradient magnitude, per image.

    ``TV = sum |p[i+1, j] - p[i, j]| + sum |p[i, j+1] - p[i, j]|`` with ``p = |g| / sum |g|``. Normalizing
    makes it independent of the gradient's scale; it lies in ``[0, 4]``: 4 for a single isolated spike,
    about 1.3-1.6 for independent noise on 28x28, about 1.1 for an MNIST digit itself (thin strokes have
    much border). **Lower = more interpretable**: smooth, contiguous regions read as shapes, while
    pixel-to-pixel flicker is what unregularized models show and what reads as noise.
    """
    p = _mass(grads)
    dv = (p[:, 1:, :] - p[:, :-1, :]).abs().flatten(1).sum(1)
    dh = (p[:, :, 1:] - p[:, :, :-1]).abs().flatten(1).sum(1)
    return _defined(dv + dh, _nonzero(grads))


def object_mask(images, threshold: float = 0.5):
    """Pixels of the object (the digit's strokes): intensity above ``min + threshold * (max - min)`` of
    that image, so it works whatever the data's range (MNIST ``[0, 1]``, notMNIST ``[-0.5, 0.5]``).
    Returns a bool tensor ``(N, H, W)``.
    """
    m = images.detach().float().mean(dim=1)
    flat = m.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)
    cut = lo + float(threshold) * (hi - lo)
    return (m > cut.view(-1, 1, 1)) & (hi > lo).view(-1, 1, 1)


def mass_on_object(grads, images, threshold: float = 0.5):
    """Share of the gradient's mass on the object's pixels (:func:`object_mask`), per image, in ``[0, 1]``.

    ``sum |g| over object pixels / sum |g|``. A gradient that ignores the image scores about the share
    of object pixels (0.13 over MNIST's 10,000 test digits at the default threshold). **Higher = more
    interpretable**: the explanation points at the digit the model is classifying rather than at the
    empty background, where changes are what adversarial perturbations exploit.
    """
    _check(grads, images)
    mask = object_mask(images, threshold).float()
    share = (_mass(grads) * mask).flatten(1).sum(1)
    return _defined(share, _nonzero(grads) & _nonconstant(images))


def image_correlation(grads, images):
    """Pearson correlation between the gradient magnitude and the image intensity, per image, in ``[-1, 1]``.

    About 0 for a gradient unrelated to the image (NaN for a constant gradient or image). **Higher = more
    interpretable**: the paper's regularized gradients "look like the digits", i.e. are large where the
    strokes are; this measures that resemblance directly, with no threshold.
    """
    _check(grads, images)
    a = gradient_magnitude(grads).flatten(1)
    m = images.detach().float().mean(dim=1).flatten(1)
    a = a - a.mean(1, keepdim=True)
    m = m - m.mean(1, keepdim=True)
    denom = a.norm(dim=1) * m.norm(dim=1)
    return _defined((a * m).sum(1) / denom.clamp_min(_TINY), denom > 0)


def entropy(grads):
    """Shannon entropy of the gradient-mass map, normalized by ``log(H * W)``, per image, in ``[0, 1]``.

    1 when the mass is spread evenly over all pixels (white noise comes close), 0 when it sits on one
    pixel (NaN for an all-zero gradient). **Lower = more interpretable**, in the sense of concentrated on
    fewer pixels; read it together with :func:`mass_on_object`, since a gradient concentrated on the
    wrong pixels also scores low.
    """
    import math

    p = _mass(grads).flatten(1)
    h = -(p * p.clamp_min(_TINY).log()).sum(1)
    n = p.shape[1]
    h = h / math.log(n) if n > 1 else h * 0
    return _defined(h, _nonzero(grads))


def gini(grads):
    """Gini coefficient of the per-pixel gradient magnitude, per image, in ``[0, 1]`` (a sparsity score).

    0 when every pixel carries the same magnitude, close to 1 when a few pixels carry all of it; NaN for
    an all-zero gradient. **Higher = more interpretable** (a sparse map is easier to read); like entropy, it
    says nothing about *where* the mass is.
    """
    import torch

    a = gradient_magnitude(grads).flatten(1)
    n = a.shape[1]
    s, _ = torch.sort(a, dim=1)
    total = s.sum(1)
    ranks = torch.arange(1, n + 1, dtype=s.dtype, device=s.device)
    # G = sum_i (2i - n - 1) s_i / (n * sum s), with s sorted ascending, i = 1..n
    g = ((2 * ranks - n - 1) * s).sum(1) / (n * total.clamp_min(_TINY))
    return _defined(g, total > 0)


def all_measures(grads, images, threshold: float = 0.5) -> dict[str, Any]:
    """Every measure, per image: ``{key of MEASURES: tensor (N,)}``."""
    _check(grads, images)
    return {
        "grad_tv": total_variation(grads),
        "grad_on_object": mass_on_object(grads, images, threshold),
        "grad_image_corr": image_correlation(grads, images),
        "grad_entropy": entropy(grads),
        "grad_gini": gini(grads),
    }


def input_gradients(model, x, y=None, gradient: str = "logprob_sum", batch_size: int = 256):
    """Input gradients of ``model`` on ``x`` in batches (eval mode, on the model's device), on the CPU.

    ``gradient="logprob_sum"``: the gradient of the sum of log-probabilities over all classes (the
    paper's figures; ``y`` unused). ``gradient="loss"``: the gradient of the cross-entropy at ``y``.
    """
    import torch

    from ..torch_utils import eval_mode, model_device
    from ..engine.gradients import logprob_sum_gradient, loss_input_gradient
    from ..errors import UsageError

    if gradient not in ("logprob_sum", "loss"):
        raise UsageError(f"unknown gradient {gradient!r}; use logprob_sum or loss")
    if gradient == "loss" and y is None:
        raise UsageError("gradient='loss' needs the labels y")
    device = model_device(model)
    out = []
    with eval_mode(model), torch.enable_grad():
        for i in range(0, int(x.shape[0]), max(1, int(batch_size))):
            xb = x[i:i + batch_size].to(device)
            if gradient == "logprob_sum":
                g = logprob_sum_gradient(model, xb)
            else:
                g, _ = loss_input_gradient(model, xb, y[i:i + batch_size].to(device))
            out.append(g.detach().cpu())
    return torch.cat(out) if out else torch.zeros_like(x)


def summarize(per_image: dict[str, Any]) -> dict[str, float | None]:
    """Mean of each per-image measure over the images where it is defined; ``None`` where it is nowhere."""
    out: dict[str, float | None] = {}
    for key, values in per_image.items():
        finite = values[values.isfinite()]
        out[key] = float(finite.mean()) if finite.numel() else None
    return out


def interpretability_summary(model, x, y=None, gradient: str = "logprob_sum", threshold: float = 0.5,
                             batch_size: int = 256) -> dict[str, float | None]:
    """Means over the images of every measure of :data:`MEASURES`, on ``model``'s input gradients.

    The gradient is the paper's (sum of log-probabilities) unless ``gradient="loss"`` (then ``y`` is
    needed). Returns plain floats keyed like :data:`MEASURES` (``None`` for a measure undefined on
    every image, e.g. a model whose gradient is exactly zero), ready for a result's
    ``interpretability`` entry.
    """
    grads = input_gradients(model, x, y, gradient=gradient, batch_size=batch_size)
    return summarize(all_measures(grads, x.detach().cpu(), threshold))
