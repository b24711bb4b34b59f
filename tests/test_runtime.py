"""Runtime settings of the training loop: the allocator setting and the weights-only backward pass."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from igbench.engine.train import backward_to_weights


def _tuned_in_fresh_process(env_value):
    code = "from igbench.engine.allocator import keep_freed_memory as k; print(k(), k())"
    env = {"IGBENCH_MALLOC_TUNING": env_value} if env_value is not None else {}
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_allocator_is_tuned_once_and_can_be_turned_off():
    assert _tuned_in_fresh_process(None) == ["True", "True"]
    assert _tuned_in_fresh_process("0") == ["False", "False"]


def test_backward_reaches_the_weights_but_not_the_input_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    x = torch.randn(5, 4, requires_grad=True)  # as double backprop leaves it
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    loss = model(x).pow(2).mean() + g.pow(2).sum()
    backward_to_weights(loss, model)
    assert x.grad is None
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
