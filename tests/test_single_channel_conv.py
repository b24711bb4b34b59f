"""The frozen single-channel conv of the inference copy: same outputs and input gradients as nn.Conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from igbench.engine.single_channel_conv import SingleChannelConv2d, eligible, fast_input_gradient_convs


def _pair(kernel, padding, bias=True, dtype=torch.float32):
    torch.manual_seed(0)
    ref = nn.Conv2d(1, 6, kernel, padding=padding, bias=bias).to(dtype).requires_grad_(False)
    fast = nn.Sequential(nn.Conv2d(1, 6, kernel, padding=padding, bias=bias).to(dtype))
    fast.load_state_dict({"0." + k: v for k, v in ref.state_dict().items()})
    fast.requires_grad_(False)
    assert fast_input_gradient_convs(fast) == 1
    assert type(fast[0]) is SingleChannelConv2d
    return ref, fast


@pytest.mark.parametrize("kernel, padding", [(5, 2), (3, 0), ((3, 5), (1, 2)), (4, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_and_input_gradients_match_conv2d(kernel, padding, channels_last):
    ref, fast = _pair(kernel, padding)
    x = torch.rand(7, 1, 13, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    w = torch.randn(ref(x).shape).contiguous(memory_format=fmt)  # the gradient arriving at the output
    outs = []
    for m in (ref, fast):
        xr = x.clone().requires_grad_(True)
        y = m(xr)
        (g,) = torch.autograd.grad(y, xr, w)
        outs.append((y, g))
    (y_ref, g_ref), (y_fast, g_fast) = outs
    assert y_fast.shape == y_ref.shape and torch.allclose(y_fast, y_ref, atol=1e-5)
    assert g_fast.shape == x.shape
    assert torch.allclose(g_fast, g_ref, atol=1e-5), (g_fast - g_ref).abs().max()


@pytest.mark.parametrize("kernel, padding", [(5, 2), (3, 0), ((3, 5), (1, 2)), (4, 1)])
def test_bfloat16_input_gradient_matches_float32(kernel, padding):
    """A bfloat16 copy (an attack's precision=bf16) takes its input gradient as a transposed convolution:
    the same values as float32's, to bfloat16 rounding, and the input's shape."""
    ref, fast = _pair(kernel, padding)
    fast = fast.to(torch.bfloat16)
    x = torch.rand(7, 1, 13, 11).contiguous(memory_format=torch.channels_last)
    w = torch.randn(ref(x).shape).contiguous(memory_format=torch.channels_last)
    xr, xb = x.clone().requires_grad_(True), x.bfloat16().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(ref(xr), xr, w)
    (g_fast,) = torch.autograd.grad(fast(xb), xb, w.bfloat16())
    assert g_fast.shape == x.shape and g_fast.dtype == torch.bfloat16
    err = (g_fast.float() - g_ref).abs().max() / g_ref.abs().max()
    assert err < 0.02, err


def test_second_derivative_with_respect_to_the_input():
    ref, fast = _pair(3, 1, dtype=torch.float64)
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: torch.tanh(fast(v)), (x,))
    assert torch.autograd.gradgradcheck(lambda v: torch.tanh(fast(v)), (x,))


def test_only_frozen_single_channel_stride_one_convs_are_eligible():
    def frozen(m):
        return m.requires_grad_(False)

    assert eligible(frozen(nn.Conv2d(1, 4, 3, padding=1)))
    assert not eligible(nn.Conv2d(1, 4, 3)), "trainable weights"
    assert not eligible(frozen(nn.Conv2d(3, 4, 3))), "several input channels"
    assert not eligible(frozen(nn.Conv2d(1, 4, 3, stride=2)))
    assert not eligible(frozen(nn.Conv2d(1, 4, 3, dilation=2)))
    assert not eligible(frozen(nn.Conv2d(1, 4, 3, padding="same")))
    assert not eligible(frozen(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect")))


def test_unfreezing_the_weights_is_refused_with_the_fix():
    _, fast = _pair(3, 1)
    fast.requires_grad_(True)
    with pytest.raises(RuntimeError, match="freeze its weights"):
        fast(torch.rand(1, 1, 5, 5))
