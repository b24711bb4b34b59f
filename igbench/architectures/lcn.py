"""LeCun local contrast normalization as a torch module (the study's SVHN preprocessing, per image)."""

from __future__ import annotations


def LocalContrastNorm(channels: int, size: int = 7, sigma: float = 3.0):
    """Subtract a Gaussian-weighted local mean, divide by the local standard deviation (Jarrett et al. 2009).

    As the study's ``LecunLCN``: a ``size`` x ``size`` Gaussian of standard deviation ``sigma`` (7 and 3),
    normalized to sum 1 over the window and the channels, zero padding ('SAME'), and a divisor of
    ``max(local_std, floor)`` so that flat regions are not blown up. One difference, on purpose: the floor
    is each image's mean local standard deviation. The study's was the mean over the whole batch, so an
    image came out differently with other batch-mates, and a model's accuracy and attacks would depend
    on the evaluation batch size. On a batch of one image the two agree (to 1e-5: ``sqrt(var + 1e-12)``
    keeps the gradient finite on a flat image), and the divisor is never below the study's 1e-4.
    Differentiable, so attacks and double backprop go through it.
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class _LCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
            g = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
            g = g / (g.sum() * channels)
            self.register_buffer("kernel", g.expand(1, channels, size, size).clone())
            self.pad = size // 2

        def forward(self, x):
            mean = F.conv2d(x, self.kernel, padding=self.pad)
            centered = x - mean
            std = torch.sqrt(F.conv2d(centered**2, self.kernel, padding=self.pad) + 1e-12)  # finite gradient at 0
            floor = std.mean(dim=(1, 2, 3), keepdim=True)
            return centered / torch.maximum(torch.maximum(std, floor), std.new_tensor(1e-4))

    return _LCN()
