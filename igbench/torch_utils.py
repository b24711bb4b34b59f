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


#: How torch's CPU allocator words a failed allocation (a RuntimeError, not a MemoryError).
_CPU_ALLOCATION_FAILED = ("can't allocate memory", "not enough memory", "DefaultCPUAllocator")


def out_of_memory(exc: BaseException) -> str | None:
    """What ran out when ``exc`` is an allocation that failed ("GPU memory" or "memory"), else None.
    Failed allocations are Python's ``MemoryError``, torch's GPU out-of-memory error (``torch.OutOfMemoryError``
    from torch 2.5, ``torch.cuda.OutOfMemoryError`` before) and the CPU allocator's RuntimeError."""
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError):
        return "GPU memory"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, RuntimeError) and any(words in str(exc) for words in _CPU_ALLOCATION_FAILED):
        return "memory"
    return None


@contextmanager
def seeded_global_randomness(seed: int, device):
    """Python's, NumPy's and torch's global random numbers (torch's on the CPU and on ``device``'s GPU)
    seeded with ``seed`` for the block, and restored afterwards: code that draws from them (a library, a
    third-party attack) then gives the same numbers on every run without disturbing anyone else's."""
    import random

    import numpy as np
    import torch

    device = torch.device(device)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":  # only this GPU: fork_rng restores that one, and the others are not ours
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
