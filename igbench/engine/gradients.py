"""Input gradients: the quantity that gradient regularization penalizes and `igbench explain` shows."""

from __future__ import annotations


def loss_input_gradient(model, x, y, create_graph: bool = False):
    """d CE / d x where CE is the *sum* over the batch of per-example cross-entropy.

    With the sum, row ``i`` is exactly the gradient of example ``i``'s own loss (no 1/batch factor), as
    long as the model treats examples independently (eval mode; in train mode BatchNorm couples them).
    Returns ``(grad, logits)``.
    """
    import torch
    import torch.nn.functional as F

    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x, create_graph=create_graph)
    return grad, logits


def logprob_sum_gradient(model, x):
    """Gradient of the sum of log-probabilities over all classes (the paper's gradient figures)."""
    import torch

    x = x.detach().requires_grad_(True)
    logp = torch.log_softmax(model(x), dim=1)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    return grad


def mean_input_grad_norm(model, x, y, batch_size: int = 512) -> float:
    """Mean over examples of ||d CE_i / d x_i||_2, in eval mode (the model's own modes are restored)."""
    from ..torch_utils import eval_mode, model_device

    device = model_device(model)
    total, n = 0.0, 0
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            grad, _ = loss_input_gradient(model, xb, yb)
            total += float(grad.flatten(1).norm(dim=1).sum())
            n += xb.shape[0]
    return total / max(n, 1)
