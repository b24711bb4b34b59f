"""LeCun-style local contrast normalization as a torch module (the paper's SVHN preprocessing)."""

from __future__ import annotations


def LocalContrastNorm(channels: int, size: int = 9, sigma: float = 2.0):
    """Subtract a Gaussian-weighted local mean, divide by the local standard deviation.

    The divisor is ``max(local_std, mean(local_std))`` per image (Jarrett et al. 2009), so flat regions are
    not blown up. Differentiable, so attacks and double backprop go through it.
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
            mean = F.conv2d(F.pad(x, [self.pad] * 4, mode="replicate"), self.kernel)
            centered = x - mean
            var = F.conv2d(F.pad(centered**2, [self.pad] * 4, mode="replicate"), self.kernel)
            std = torch.sqrt(var + 1e-8)
            floor = std.mean(dim=(1, 2, 3), keepdim=True)
            return centered / torch.maximum(std, floor)

    return _LCN()
