"""A frozen single-channel ``Conv2d`` whose input gradient is a matrix product and a ``fold``.

Attacks differentiate with respect to the image, so every step ends in the first convolution's input
gradient. For a greyscale image that is a convolution from many channels to one, which oneDNN computes
at a few GFLOP/s on the CPU (10 ms for 100 MNIST images through the paper CNN's 32-channel first layer,
seven times that layer's forward pass). The same gradient written as ``W^T @ grad_out`` (one GEMM to
``k*k`` values per pixel) followed by ``F.fold`` (summing each value into the pixel it came from) takes
about a third of that time (``benchmarks``' numbers are in the README).

:func:`fast_input_gradient_convs` swaps in :class:`SingleChannelConv2d` for every frozen ``nn.Conv2d``
with one input channel, stride 1, dilation 1, one group, zero padding given as numbers. The forward
pass is the ordinary convolution. The backward pass gives the input gradient only (the weights are
frozen) and is built from differentiable operations, so higher derivatives with respect to the input
still work.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def input_gradient(grad_out, weight, input_size, padding):
    """``d <grad_out, conv2d(x, weight)> / dx`` for one input channel and stride 1, as GEMM + fold.

    In bfloat16 it is a transposed convolution instead: there oneDNN's kernel (AMX on the Intel CPU it was
    measured on) takes about a quarter of the fold's time, which gains nothing from the lower precision.
    """
    if grad_out.dtype == torch.bfloat16:  # stride 1: the transposed convolution gives back input_size exactly
        return F.conv_transpose2d(grad_out, weight, padding=tuple(padding))
    n, c_out, h_out, w_out = grad_out.shape
    kh, kw = weight.shape[-2:]
    w = weight.reshape(c_out, kh * kw)
    if grad_out.is_contiguous(memory_format=torch.channels_last) and not grad_out.is_contiguous():
        cols = (grad_out.permute(0, 2, 3, 1).reshape(n, h_out * w_out, c_out) @ w).transpose(1, 2)
    else:
        cols = w.t() @ grad_out.reshape(n, c_out, h_out * w_out)
    return F.fold(cols, tuple(input_size), (kh, kw), padding=tuple(padding))


class _ConvWithGemmInputGrad(torch.autograd.Function):
    """``conv2d(x, weight, bias)``; the backward gives the input gradient only (frozen weights)."""

    @staticmethod
    def forward(x, weight, bias, padding):
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _, padding = inputs
        ctx.save_for_backward(weight)
        ctx.input_size = tuple(x.shape[-2:])
        ctx.padding = padding

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        return input_gradient(grad_out, weight, ctx.input_size, ctx.padding), None, None, None


class SingleChannelConv2d(nn.Conv2d):
    """``nn.Conv2d`` (one input channel, frozen weights) whose input gradient is a GEMM and a fold."""

    def forward(self, x):
        if self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad):
            raise RuntimeError("SingleChannelConv2d computes input gradients only: freeze its weights "
                               "(requires_grad_(False)) or use nn.Conv2d")
        return _ConvWithGemmInputGrad.apply(x, self.weight, self.bias, self.padding)


def eligible(conv) -> bool:
    """Whether ``conv`` is a frozen single-channel ``nn.Conv2d`` whose gradient the GEMM form reproduces."""
    return (type(conv) is nn.Conv2d and conv.in_channels == 1 and conv.groups == 1
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str) and not conv.weight.requires_grad
            and (conv.bias is None or not conv.bias.requires_grad))


def fast_input_gradient_convs(model) -> int:
    """Turn every :func:`eligible` conv of ``model`` (at any depth) into a :class:`SingleChannelConv2d`,
    in place (same parameters, same state dict); returns the count."""
    convs = [m for m in model.modules() if eligible(m)]
    for conv in convs:
        conv.__class__ = SingleChannelConv2d
    return len(convs)
