"""Do adversarial examples look like the class they were pushed into? A model-free stand-in for the
paper's human-subject study.

Ross & Doshi-Velez asked people which of several models' adversarial examples looked more like the
target class, and gradient-regularized models' examples won. Without participants, igbench scores the
same question against a fixed, model-independent reference: the class-mean images of the training set.
For an image ``x`` of class ``y`` turned into ``x_adv`` toward class ``t``, the perturbation
``d = x_adv - x`` is compared with the difference of the class templates ``mu_t - mu_y`` (the pixels
that, on average, the target class has and the true class lacks)::

    target_alignment = cos(d, mu_t - mu_y)   in [-1, 1]; higher: the change draws the target class

Noise-like perturbations score near :func:`random_sign_alignment`, the value of random signs of the
same size (positive, not zero: clipping to the valid range makes every perturbation brighten the
background, where ``mu_t - mu_y`` is often positive); a perturbation that adds the target's strokes and
erases the true class's scores higher. For a targeted attack ``t`` is its target; for an untargeted one it is the class the model
predicts on ``x_adv``, and images the attack did not move off ``y`` are left out. Images whose
perturbation is zero are left out too. It is a proxy: it rewards any perturbation that resembles the
average target, which is what the human study asked about, but it knows nothing about strokes or shape
beyond the average.

The mean runs over every scored image, whether or not its example fooled the model. A model that one
gradient step rarely moves to the target (adversarially trained ones) then scores perturbations that
mostly failed, so each model also records the share of examples that reached their target
(``adv_target_reached``) and the mean over only those (``adv_target_alignment_reached``); an iterated
attack (``tgsm`` with ``steps > 1``) reaches more of them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

#: Key of the mean alignment in a result's ``interpretability`` entries (higher: more target-like).
KEY = "adv_target_alignment"
#: Key of the share of examples the model classifies as their target (the attack's success against it).
REACHED_KEY = "adv_target_reached"
#: Key of the mean alignment over only the examples that reached their target.
REACHED_ALIGNMENT_KEY = "adv_target_alignment_reached"
#: Every key :func:`adversarial_alignment` fills in an ``interpretability`` entry, in display order.
KEYS = (KEY, REACHED_KEY, REACHED_ALIGNMENT_KEY)


def class_means(x, y, num_classes: int):
    """Mean image of each class, ``(num_classes, *x.shape[1:])``, float; a class without images is zeros."""
    import torch

    flat = x.detach().float().flatten(1)
    sums = torch.zeros(num_classes, flat.shape[1], dtype=flat.dtype, device=flat.device)
    sums.index_add_(0, y.to(flat.device).long(), flat)
    counts = torch.bincount(y.long().cpu(), minlength=num_classes).to(flat.device).clamp_min(1)
    return (sums / counts[:, None].to(flat.dtype)).reshape(num_classes, *x.shape[1:])


def target_alignment(x, x_adv, y, targets, means):
    """Per-image ``cos(x_adv - x, means[targets] - means[y])``: ``(N,)``, NaN where undefined.

    Undefined: a zero perturbation, a target equal to the true class, or identical class templates.
    """
    import torch

    # both to the CPU before subtracting: explain passes the clean images on the CPU and the adversarial
    # ones on the model's device, which on a GPU was a device-mismatch crash after the whole grid had run
    d = (x_adv.detach().float().cpu() - x.detach().float().cpu()).flatten(1)
    y, targets = y.long().cpu(), targets.long().cpu()
    m = means.float().cpu().flatten(1)
    template = m[targets] - m[y]
    dn, tn = d.norm(dim=1), template.norm(dim=1)
    cos = (d * template).sum(1) / (dn * tn).clamp_min(1e-12)
    undefined = (dn == 0) | (tn == 0) | (targets == y)
    return torch.where(undefined, torch.full_like(cos, float("nan")), cos)


class Alignment(NamedTuple):
    """What :func:`adversarial_alignment` measured for one model."""

    #: Mean :func:`target_alignment` over the images where it is defined (None: no such image).
    mean: float | None
    #: How many images that mean is over.
    count: int
    #: Share of all images whose example the model classifies as its target class (targeted attacks; for
    #: an untargeted one: as any class other than the label, its success rate).
    reached: float
    #: Mean alignment over only those images (None when none reached its target). A model that the attack
    #: rarely moves to the target gives :attr:`mean` over mostly failed perturbations; this separates
    #: "the perturbation does not look like the target" from "the perturbation did not get there".
    mean_reached: float | None

    def entry(self) -> dict[str, float | None]:
        """The values under their ``interpretability`` keys (:data:`KEYS`)."""
        return dict(zip(KEYS, (self.mean, self.reached, self.mean_reached)))


def adversarial_alignment(model, attack, params: dict[str, Any], x, y, ctx, means, batch_size: int = 256,
                          progress: bool = False, label: str | None = None) -> Alignment:
    """:func:`target_alignment` of ``attack``'s examples against ``model``, summarized as an
    :class:`Alignment`: over every image where it is defined, and over those whose example reached its target."""
    from ..engine.attack import run_attack, success_mask

    run = run_attack(attack, params, model, x, y, ctx, batch_size=batch_size, progress=progress, label=label)
    # untargeted: the class each example was pushed into
    targets = run.predictions if run.targets is None else run.targets
    per_image = target_alignment(x, run.x_adv, y, targets, means)
    defined = per_image.isfinite()
    # the attack's own success rule: its target, or (untargeted) any class but the label
    hit = success_mask(run.predictions.cpu(), y.cpu(), None if run.targets is None else run.targets.cpu())
    hit_defined = defined & hit
    return Alignment(
        mean=_mean_or_none(per_image[defined]), count=int(defined.sum()),
        reached=int(hit.sum()) / hit.numel() if hit.numel() else float("nan"),  # exact: 288 / 1000 = 0.288
        mean_reached=_mean_or_none(per_image[hit_defined]),
    )


def _mean_or_none(values) -> float | None:
    return float(values.mean()) if values.numel() else None


def random_sign_alignment(x, y, eps: float, clip: tuple[float, float], means, seed: int = 0) -> float | None:
    """The reference level: mean :func:`target_alignment` of random ``+-eps`` signs (seeded, clipped to
    ``clip``) toward every class other than the true one. ``None`` when no image has a defined value."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    x = x.detach().float().cpu()
    y = y.long().cpu()
    signs = torch.randint(0, 2, tuple(x.shape), generator=gen).to(x.dtype) * 2 - 1
    x_rand = (x + float(eps) * signs).clamp(float(clip[0]), float(clip[1]))
    k = int(means.shape[0])
    values = torch.stack([target_alignment(x, x_rand, y, (y + shift) % k, means) for shift in range(1, k)])
    finite = values[values.isfinite()]
    return float(finite.mean()) if finite.numel() else None
