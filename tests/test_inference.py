"""The inference copy used by attacks computes the same function as the trained model, faster."""

from __future__ import annotations

import torch
import torch.nn as nn

from igbench.engine.inference import fold_batchnorm, inference_copy, pool_before_activation
from igbench.registry import get_registry


def _trained_looking_cnn():
    """A paper CNN whose BatchNorm layers have non-trivial running statistics and affine parameters."""
    arch = get_registry().get("architecture", "paper-cnn")
    torch.manual_seed(0)
    model = arch.build((1, 28, 28), 10, arch.resolve_params({}))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return model.train()


def test_same_outputs_and_input_gradients_and_original_untouched():
    model = _trained_looking_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_copy(model)
    assert model.training, "the original keeps its mode"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the original is not modified"
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules()), "all 3 folded"
    assert not any(p.requires_grad for p in fast.parameters())
    kinds = [type(m).__name__ for m in fast[0]]
    assert kinds.index("MaxPool2d") < kinds.index("ReLU"), kinds
    assert kinds[0] == "SingleChannelConv2d", "the greyscale first conv gets the GEMM input gradient"

    model.eval()
    x = torch.rand(16, 1, 28, 28)
    t = torch.arange(16) % 10
    grads = []
    for m in (model, fast):
        xr = x.clone().requires_grad_(True)
        out = m(xr)
        (g,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), xr)
        grads.append((out.detach(), g))
    (out_ref, g_ref), (out_fast, g_fast) = grads
    assert torch.allclose(out_fast, out_ref, atol=1e-4), (out_fast - out_ref).abs().max()
    assert torch.allclose(g_fast, g_ref, atol=1e-5, rtol=1e-3), (g_fast - g_ref).abs().max()


def test_only_adjacent_sequential_pairs_are_folded():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    for bn in (model[2], model[4]):
        bn.running_mean.normal_()
    model.eval()
    x = torch.rand(3, 1, 8, 8)
    want = model(x)
    assert fold_batchnorm(model) == 1, "BN after ReLU is not a linear layer's: left alone"
    assert isinstance(model[2], nn.BatchNorm2d) and isinstance(model[4], nn.Identity)
    assert torch.allclose(model(x), want, atol=1e-5)


def test_pool_moves_before_monotone_activations_only():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 3, 3), nn.Tanh(),
                          nn.MaxPool2d(2, padding=1), nn.Conv2d(3, 3, 1), nn.GELU(), nn.MaxPool2d(2))
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    want = model(x)
    (g_want,) = torch.autograd.grad(want.sum(), x)
    assert pool_before_activation(model) == 2, "GELU is not monotone: left alone"
    assert [type(m).__name__ for m in model][1:3] == ["MaxPool2d", "ReLU"]
    assert isinstance(model[7], nn.GELU)
    got = model(x)
    (g_got,) = torch.autograd.grad(got.sum(), x)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(g_got, g_want, atol=1e-6)


class _FlattensWithView(nn.Module):
    """What many PyTorch models do: ``z.view(z.shape[0], -1)``, which fails on channels-last activations."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        z = torch.relu(self.conv(x))
        return self.fc(z.view(z.shape[0], -1))


def test_a_model_that_calls_view_keeps_contiguous_weights_and_is_attacked():
    """The copy's channels-last weights stopped every CPU attack on such a (third-party) architecture with
    "view size is not compatible", though it trained fine; given example inputs, the copy stays contiguous."""
    from igbench.engine.attack import run_attack
    from igbench.plugin_types import AttackContext

    torch.manual_seed(0)
    model = _FlattensWithView().eval()
    x = torch.rand(6, 1, 28, 28)
    y = torch.arange(6)
    with torch.no_grad():
        ref = model(x)
    unchecked = inference_copy(model)
    try:
        unchecked(x)
        raise AssertionError("the channels-last copy was expected to fail on .view")
    except RuntimeError as err:
        assert "view size is not compatible" in str(err)
    checked = inference_copy(model, x)
    assert torch.allclose(checked(x), ref, atol=1e-5)
    ctx = AttackContext(0.0, 1.0, 10, torch.Generator().manual_seed(0))
    x_adv = run_attack(get_registry().get("attack", "fgsm"), {"eps": 0.1}, model, x, y, ctx, progress=False)[0]
    assert x_adv.shape == x.shape and 0.099 < (x_adv - x).abs().max() <= 0.1 + 1e-6
    # a model that runs channels-last keeps the fast layout
    cnn = inference_copy(_trained_looking_cnn(), torch.rand(2, 1, 28, 28))
    weights = [p for p in cnn.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
