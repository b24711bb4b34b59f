"""Small helpers on torch modules that the engine and the plugins share. Imports torch only inside."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def eval_mode(model):
    """Put every submodule of ``model`` in eval mode for the block, then restore each one's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in flags:
            m.training = was_training


def model_device(model):
    """The device of the model's first parameter or buffer (CPU for a parameterless model)."""
    import torch

    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
