"""The BatchNorm layers with a hand-written second derivative agree with nn.BatchNorm to float precision."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from igbench.architectures.batchnorm import BatchNorm1d, BatchNorm2d, _BatchNormTrain


@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (7, 4), (5, 3, 6)])
def test_first_and_second_derivatives_pass_gradcheck(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(shape[1], dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(shape[1], dtype=torch.float64).requires_grad_()

    def bn(x, w, b):
        return _BatchNormTrain.apply(x, w, b, None, None, 0.1, 1e-5)

    assert torch.autograd.gradcheck(bn, (x, w, b))
    assert torch.autograd.gradgradcheck(bn, (x, w, b))


def _double_backprop_grads(bn, x, proj):
    """Weight and input gradients of a double-backprop loss through ``bn`` (the gradreg pattern)."""
    x = x.detach().requires_grad_(True)
    y = bn(x)
    loss = (torch.tanh(y) * proj).sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    total = loss + (gx ** 2).sum()
    return torch.autograd.grad(total, [x, bn.weight, bn.bias])


@pytest.mark.parametrize("cls, ref_cls, shape", [(BatchNorm2d, nn.BatchNorm2d, (8, 3, 5, 5)),
                                                 (BatchNorm1d, nn.BatchNorm1d, (9, 6))])
def test_matches_torch_batchnorm_in_double_backprop(cls, ref_cls, shape):
    torch.manual_seed(1)
    ref = ref_cls(shape[1], momentum=0.1)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.normal_()
    ours = cls(shape[1], momentum=0.1)
    ours.load_state_dict(ref.state_dict())
    x, proj = torch.randn(*shape), torch.randn(*shape)
    for got, want in zip(_double_backprop_grads(ours, x, proj), _double_backprop_grads(ref, x, proj)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()
    # the training-mode side effects are nn.BatchNorm's too
    assert torch.allclose(ours.running_mean, ref.running_mean)
    assert torch.allclose(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 1


def test_channels_last_activations_meet_gradients_in_their_own_layout():
    """Channels-last training: the same derivatives, and PyTorch's BatchNorm backward kernel always gets
    the incoming gradient in the activation's layout, even when it arrives contiguous (the kernel is ten
    times slower on such a mix, as a double-backprop step of the paper CNN met it)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Layouts(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.native_batch_norm_backward.default:
                gy, x = args[0], args[1]
                self.seen.append(tuple(t.is_contiguous(memory_format=torch.channels_last) for t in (gy, x)))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(3)
    ref = BatchNorm2d(4, momentum=0.1)
    x, proj = torch.randn(6, 4, 5, 5), torch.randn(6, 4, 5, 5)
    want = _double_backprop_grads(copy.deepcopy(ref), x, proj)
    with Layouts() as layouts:  # proj, the gradient arriving at the layer's output, is contiguous
        got = _double_backprop_grads(copy.deepcopy(ref), x.contiguous(memory_format=torch.channels_last), proj)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5), (g - w).abs().max()
    assert layouts.seen and all(s == (True, True) for s in layouts.seen), layouts.seen


def test_momentum_none_and_eval_mode_follow_torch():
    torch.manual_seed(2)
    ref = nn.BatchNorm2d(4, momentum=None)
    ours = copy.deepcopy(ref)
    ours.__class__ = BatchNorm2d
    for _ in range(3):
        x = torch.randn(5, 4, 3, 3) * 2 + 1
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
    assert torch.allclose(ours.running_mean, ref.running_mean, atol=1e-6)
    ours.eval(), ref.eval()
    x = torch.randn(5, 4, 3, 3)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_third_derivative_is_refused():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    y = _BatchNormTrain.apply(x, w, torch.zeros(3, dtype=torch.float64), None, None, 0.1, 1e-5)
    (gx,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
    torch.autograd.grad((gx ** 2).sum(), x, retain_graph=True)  # second order: fine
    with pytest.raises(RuntimeError, match="third derivative"):  # a graph of it would be wrong: refused
        torch.autograd.grad((gx ** 2).sum(), x, create_graph=True)


@pytest.mark.parametrize("cls, shape", [(BatchNorm2d, (8, 3, 5, 5)), (BatchNorm1d, (9, 6))])
def test_without_scale_is_torch_batchnorm_with_a_fixed_unit_scale(cls, shape):
    """scale=False (TF-slim's BatchNorm): a learned shift only; the state dict keeps nn.BatchNorm's keys."""
    torch.manual_seed(3)
    ours = cls(shape[1], momentum=0.1, eps=1e-3, scale=False)
    assert [name for name, _ in ours.named_parameters()] == ["bias"]
    ref = getattr(nn, cls.__name__)(shape[1], momentum=0.1, eps=1e-3)
    assert set(ours.state_dict()) == set(ref.state_dict())
    with torch.no_grad():
        ref.bias.normal_()
    ref.weight.requires_grad_(False)
    ours.load_state_dict(ref.state_dict())
    x, proj = torch.randn(*shape), torch.randn(*shape)

    def grads(bn):
        x_ = x.detach().requires_grad_(True)
        loss = (torch.tanh(bn(x_)) * proj).sum()
        (gx,) = torch.autograd.grad(loss, x_, create_graph=True)
        return torch.autograd.grad(loss + (gx ** 2).sum(), [x_, bn.bias])

    for got, want in zip(grads(ours), grads(ref)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()
    assert torch.equal(ours.weight, torch.ones(shape[1]))
    assert "scale=False" in repr(ours)
    with pytest.raises(ValueError, match="affine"):
        cls(3, affine=False, scale=False)


def test_bfloat16_activations_keep_their_dtype_and_the_float32_result():
    """Under bf16 autocast BatchNorm gets bfloat16 activations and keeps float32 statistics; the second
    derivative runs in float32 and hands back gradients in each input's own dtype."""
    torch.manual_seed(4)
    ours = BatchNorm2d(3, momentum=0.1)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
    x = torch.randn(8, 3, 5, 5).bfloat16()
    proj = torch.randn(8, 3, 5, 5)
    low = _double_backprop_grads(ours, x, proj.bfloat16())
    ref = _double_backprop_grads(copy.deepcopy(ours), x.float(), proj.bfloat16().float())
    assert low[0].dtype == torch.bfloat16 and low[1].dtype == low[2].dtype == torch.float32
    for got, want in zip(low, ref):
        err = (got.float() - want).abs().max() / want.abs().max()
        assert err < 0.05, err  # bfloat16 carries 8 bits of mantissa; a wrong formula is off by O(1)
