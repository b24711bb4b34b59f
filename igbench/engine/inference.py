"""An eval-mode copy of a trained model that computes the same function faster (for attacks and scoring).

Attacks spend nearly all their time in forward and input-gradient passes of a model in eval mode, where
a BatchNorm layer is a fixed per-channel affine map. :func:`inference_copy` folds each such BatchNorm into
the convolution or linear layer right before it (``W' = W * s``, ``b' = (b - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``), moves a monotone activation that comes right before a max-pool behind
it (``pool(relu(x)) == relu(pool(x))`` exactly, gradients included, on a quarter of the values), freezes
the weights (no weight gradients are ever computed), and on the CPU gives every greyscale first
convolution an input gradient computed as a GEMM and a fold (:mod:`.single_channel_conv`) and stores
4-D weights channels-last (the layout oneDNN's convolutions and PyTorch's max-pool kernels vectorize
best). Outputs and input gradients equal the original's up to float rounding
(``tests/test_inference.py``).

Both rewrites look at consecutive children of ``nn.Sequential`` containers (at any depth); a model built
otherwise is copied and frozen unchanged. The original model is never modified.
"""

from __future__ import annotations

import copy


def _fold(layer, bn) -> bool:
    """Fold eval-mode ``bn`` into ``layer`` (Conv*d or Linear) in place; False when they do not fit."""
    import torch
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _BatchNorm

    if not isinstance(bn, _BatchNorm) or bn.running_mean is None or bn.running_var is None:
        return False
    conv = isinstance(layer, nn.modules.conv._ConvNd) and not layer.transposed and layer.groups == 1
    if not (conv or isinstance(layer, nn.Linear)) or layer.weight.shape[0] != bn.num_features:
        return False
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
        bias = shift if layer.bias is None else layer.bias * scale + shift
        layer.bias = nn.Parameter(bias.to(layer.weight.dtype))
    return True


def _neighbours(model):
    """``(children, first, second)`` for every two consecutive children of every ``nn.Sequential`` in
    ``model``: ``children`` is the container's name -> module dict, read and replaced live, so a pair
    sees what the previous pair put in place."""
    import torch.nn as nn

    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                yield module._modules, first, second


def fold_batchnorm(model):
    """Fold every (conv or linear, BatchNorm) pair of consecutive ``nn.Sequential`` children, in place.

    Valid only for a model used in eval mode. Returns the number of BatchNorm layers folded.
    """
    import torch.nn as nn

    folded = 0
    for children, layer, bn in _neighbours(model):
        if _fold(children[layer], children[bn]):
            children[bn] = nn.Identity()
            folded += 1
    return folded


def _monotone(act) -> bool:
    """Elementwise and non-decreasing: such an activation commutes with a max-pool."""
    import torch.nn as nn

    if isinstance(act, nn.LeakyReLU):
        return act.negative_slope >= 0
    return isinstance(act, (nn.ReLU, nn.ReLU6, nn.Softplus, nn.Tanh, nn.Sigmoid))


def pool_before_activation(model):
    """Swap every (monotone activation, max-pool) pair of consecutive ``nn.Sequential`` children, in place.

    ``max(f(a)) = f(max(a))`` for non-decreasing ``f``, and the gradient reaches the same input (for
    ReLU, a window whose maximum is not positive passes no gradient either way). Returns the count.
    """
    import torch.nn as nn

    pools = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
    swapped = 0
    for children, first, second in _neighbours(model):
        act, pool = children[first], children[second]
        if _monotone(act) and isinstance(pool, pools) and not pool.return_indices:
            children[first], children[second] = pool, act
            swapped += 1
    return swapped


def inference_copy(model, example=None):
    """A frozen eval-mode copy of ``model``: BatchNorm folded, max-pools before activations; on the CPU
    also single-channel convs with the GEMM input gradient and channels-last weights (both measured on
    the CPU only).

    ``example`` (a few inputs of the model's shape) checks that the model runs laid out channels-last. A
    third-party architecture that calls ``.view`` on an activation trains fine contiguous but fails on
    channels-last activations ("view size is not compatible"), which stopped every attack on it with a
    traceback; such a model keeps its weights contiguous here (slower, same function)."""
    import torch

    from ..torch_utils import model_device
    from .single_channel_conv import fast_input_gradient_convs

    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    pool_before_activation(fast)
    fast.requires_grad_(False)
    if model_device(fast).type == "cpu":
        fast_input_gradient_convs(fast)
        fast.to(memory_format=torch.channels_last)
        if example is not None and not _runs(fast, example):
            fast.to(memory_format=torch.contiguous_format)
    return fast.eval()


def _runs(model, example) -> bool:
    """Whether ``model`` computes ``example`` laid out channels-last, input gradient included; False only
    for the layout's own failure (any other error is left for the real call to raise)."""
    import torch

    from .memory_format import is_view_layout_error

    x = example[:2].detach().clone().contiguous(memory_format=torch.channels_last) if example.dim() == 4 \
        else example[:2].detach().clone()
    try:
        with torch.enable_grad():
            x.requires_grad_(True)
            torch.autograd.grad(model(x).float().sum(), x)
    except Exception as err:  # noqa: BLE001 - only the layout's failure counts; the attack reports the rest
        return not is_view_layout_error(err)
    return True
