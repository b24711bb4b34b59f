"""BatchNorm layers whose second derivative is cheap: drop-in ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``.

Double backprop (the ``gradreg`` defenses) differentiates the backward pass of every layer. For a
training-mode BatchNorm, PyTorch builds that second derivative from a generic formula of some thirty
full-size tensor operations; on the paper CNN at batch 256 on one CPU thread it was about 45% of a
``gradreg`` step. Here the backward pass is itself an autograd function whose backward is written out
(per channel, ``M`` values, ``x^ = (x - mean) * r`` with ``r = 1/sqrt(var + eps)``, ``s1 = sum gy``,
``s2 = sum gy x^``, backward ``gx = w r (gy - s1/M - x^ s2/M)``). Given ``u``, the gradient arriving at
``gx``:

* ``d/dgy = w r (u - mean u - x^ sum(u x^)/M)`` (the backward is a symmetric projection);
* ``d/dw = r (sum u gy - mean(u) s1 - sum(u x^) s2/M)``;
* ``d/dx = (w r^2 / M) [(3 s2 sum(u x^)/M - A) x^ - sum(u x^) (gy - s1/M) - s2 (u - mean u)]`` with
  ``A = sum u gy - mean(u) s1``;

plus the terms for gradients arriving at ``gw`` and ``gb`` (``d gw/dgy = x^``, ``d gw/dx = r (gy - s1/M
- x^ s2/M)``, ``d gb/dgy = 1``). That is three reductions and a handful of fused multiply-adds.
``tests/test_batchnorm.py`` checks it with ``gradgradcheck`` and against ``nn.BatchNorm`` to float
precision. Eval mode and ``affine=False`` are left to PyTorch's own code; asking for a third derivative
raises (it is not implemented here).

Channels-last training (:mod:`igbench.engine.memory_format`): the backward lays the incoming gradient
out like the activation before PyTorch's kernel runs (that kernel is ten times slower on a mix). With
contiguous tensors nothing changes.

State dicts, parameters and buffers are those of ``nn.BatchNorm*`` (checkpoints load either way).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..engine.memory_format import layout_of


def _per_channel(x):
    """Reduction dims (all but the channel dim 1) and the shape that broadcasts a per-channel vector."""
    return [0, *range(2, x.dim())], [1, x.shape[1]] + [1] * (x.dim() - 2)


class _BatchNormBackward(torch.autograd.Function):
    """``(gx, gw, gb)`` of training-mode BatchNorm; its own backward is the closed form above."""

    @staticmethod
    def forward(ctx, gy, x, weight, mean, invstd, eps):
        if layout_of(x) is torch.channels_last:  # a mix of layouts takes a slow kernel
            gy = gy.contiguous(memory_format=torch.channels_last)
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gy, x, weight, None, None, mean, invstd, True, eps, [True, True, True])
        ctx.save_for_backward(gy, x, weight, mean, invstd, gw, gb)
        return gx, gw, gb

    @staticmethod
    def backward(ctx, u, u_gw, u_gb):
        if torch.is_grad_enabled():  # create_graph=True here would ask for a third derivative
            raise RuntimeError("igbench's BatchNorm has no third derivative; build the model with "
                               "torch.nn.BatchNorm1d/2d for third-order autograd")
        with torch.no_grad():
            return _BatchNormBackward._second_derivative(ctx, u, u_gw, u_gb)

    @staticmethod
    def _second_derivative(ctx, u, u_gw, u_gb):
        gy, x, weight, mean, invstd, s2, s1 = ctx.saved_tensors
        low = x.dtype != invstd.dtype  # bfloat16 activations under autocast, float32 statistics
        if low:  # compute in float32: ops that mix the two dtypes are several times slower than converting
            x_dtype, gy_dtype = x.dtype, gy.dtype
            x, gy = x.float(), gy.float()
            u = None if u is None else u.float()
        dims, view = _per_channel(x)
        m = x.numel() // x.shape[1]
        r = invstd
        xhat = (x - mean.view(view)) * r.view(view)
        zero = torch.zeros_like(r)
        # d/dx = c_x * x^ + c_g * gy + c_u * u + c_0 ; d/dgy = k_x * x^ + k_u * u + k_0 (per channel)
        c_x, c_g, c_0, k_x, k_0 = zero, zero, zero, zero, zero
        c_u = k_u = g_w = None
        if u is not None:
            u_mean = u.sum(dims) / m
            u_xhat = (u * xhat).sum(dims)
            a = (u * gy).sum(dims) - u_mean * s1
            scale = weight * r * r / m
            c_x = scale * (3 * s2 * u_xhat / m - a)
            c_g = -scale * u_xhat
            c_u = -scale * s2
            c_0 = scale * (u_xhat * s1 / m + s2 * u_mean)
            k_u = weight * r
            k_x = -k_u * u_xhat / m
            k_0 = -k_u * u_mean
            g_w = r * (a - u_xhat * s2 / m)
        if u_gw is not None:
            c_x = c_x - u_gw * r * s2 / m
            c_g = c_g + u_gw * r
            c_0 = c_0 - u_gw * r * s1 / m
            k_x = k_x + u_gw
        if u_gb is not None:
            k_0 = k_0 + u_gb
        g_gy = g_x = None
        if ctx.needs_input_grad[1]:
            g_x = torch.addcmul(c_0.view(view), xhat, c_x.view(view))
            g_x.addcmul_(gy, c_g.view(view))
            if c_u is not None:
                g_x.addcmul_(u, c_u.view(view))
        if ctx.needs_input_grad[0]:
            g_gy = torch.addcmul(k_0.view(view), xhat, k_x.view(view))
            if k_u is not None:
                g_gy.addcmul_(u, k_u.view(view))
        if low:
            g_x = None if g_x is None else g_x.to(x_dtype)
            g_gy = None if g_gy is None else g_gy.to(gy_dtype)
        if not ctx.needs_input_grad[2]:
            g_w = None
        elif g_w is None:
            g_w = zero
        return g_gy, g_x, g_w, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode BatchNorm forward (PyTorch's kernel, running statistics updated in place)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = _BatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps)
        return gx, gw, gb, None, None, None, None


class _CheapSecondDerivative:
    """Mixin for ``nn.BatchNorm*``: training mode goes through :class:`_BatchNormTrain`.

    ``scale=False`` is TensorFlow-slim's default BatchNorm (learned shift, no learned scale): ``weight``
    becomes a buffer of ones instead of a parameter, so the state dict keeps ``nn.BatchNorm``'s keys and
    the cheap second derivative still applies (PyTorch's ``affine=False`` would drop the shift too).
    """

    def __init__(self, num_features, *args, scale: bool = True, **kwargs):
        super().__init__(num_features, *args, **kwargs)
        self.scale = True
        if not scale:
            drop_learned_scale(self)

    def extra_repr(self):
        return super().extra_repr() + ("" if getattr(self, "scale", True) else ", scale=False")

    def forward(self, x):
        if not (self.training and self.affine) or torch.jit.is_scripting():
            return super().forward(x)
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                factor = 1.0 / float(self.num_batches_tracked)
        return _BatchNormTrain.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                     factor, self.eps)


def drop_learned_scale(bn) -> None:
    """Turn ``bn``'s learned scale into a fixed one: ``weight`` becomes a buffer of ones (``scale=False``)."""
    if not bn.affine:
        raise ValueError("scale=False keeps the learned shift; it needs affine=True")
    del bn.weight
    bn.register_buffer("weight", torch.ones(bn.num_features))
    bn.scale = False


class BatchNorm1d(_CheapSecondDerivative, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with a cheap second derivative in training mode (see the module docstring)."""


class BatchNorm2d(_CheapSecondDerivative, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with a cheap second derivative in training mode (see the module docstring)."""
