"""A max-pool whose forward pass is fast on contiguous CPU tensors: a drop-in ``nn.MaxPool2d``.

PyTorch's CPU max-pool kernel for NCHW-contiguous tensors is slow: on the paper CNN's first feature map
(256 x 32 x 28 x 28, one thread) it took about 36 ms, a quarter of the network's forward pass, where
its channels-last kernel takes about 4 ms. Its backward pass is cheap in either layout.

:class:`MaxPool2d` therefore pools a contiguous 4-D CPU tensor through a channels-last copy, and hands
the output and the argmax indices back contiguous (14-18 ms in all, conversions included). The
backward pass is PyTorch's contiguous one, fed those indices, so the gradient stays contiguous (a
channels-last gradient would send the BatchNorm before it to a ten times slower kernel) and double
backprop differentiates it with PyTorch's own formula. Both kernels take each window's first largest
value in row-major order, so outputs, indices and gradients are the same bit for bit, ties included (a
blank MNIST background gives many); ``tests/test_architectures.py`` checks that and that a training step
gives the same weights. Anything else (channels-last input, which is already fast; CUDA; a 3-D input;
``return_indices=True``) runs ``nn.MaxPool2d``'s own code. Parameters and state dict are
``nn.MaxPool2d``'s (it has none).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class _MaxPoolViaChannelsLast(torch.autograd.Function):
    """``max_pool2d(x)`` of a contiguous ``x``, computed on a channels-last copy; contiguous backward."""

    @staticmethod
    def forward(x, kernel, stride, padding, dilation, ceil_mode):
        out, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation, ceil_mode)
        return out.contiguous(), indices.contiguous()

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, *ctx.pool = inputs
        _, indices = output
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(x, indices)

    @staticmethod
    def backward(ctx, grad, _indices_grad):
        x, indices = ctx.saved_tensors
        return (torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *ctx.pool, indices),
                None, None, None, None, None)


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def via_channels_last(x) -> bool:
    """Whether pooling ``x`` through a channels-last copy pays: a contiguous 4-D floating-point CPU tensor
    with more than one channel (with one, the two layouts are the same)."""
    return (x.device.type == "cpu" and x.dim() == 4 and x.is_floating_point() and x.shape[1] > 1
            and x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last))


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools contiguous CPU tensors through PyTorch's channels-last kernel."""

    def forward(self, x):
        if self.return_indices or not via_channels_last(x):
            return super().forward(x)
        stride = self.stride if self.stride else self.kernel_size  # nn.MaxPool2d's stride=None means kernel
        return _MaxPoolViaChannelsLast.apply(x, _pair(self.kernel_size), _pair(stride), _pair(self.padding),
                                             _pair(self.dilation), self.ceil_mode)[0]


def torch_pools(model):
    """A copy of ``model`` with every :class:`MaxPool2d` turned back into a plain ``nn.MaxPool2d`` (the same
    function, PyTorch's code path): for tests and benchmarks that compare the two."""
    import copy

    old = copy.deepcopy(model)
    for m in old.modules():
        if type(m) is MaxPool2d:
            m.__class__ = nn.MaxPool2d
    return old
