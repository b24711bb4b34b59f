"""Training in PyTorch's channels-last memory format (``--memory-format channels_last``).

The same network and the same arithmetic with weights and activations laid out NHWC instead of NCHW:
oneDNN's convolutions are faster that way on the CPU. PyTorch's BatchNorm backward kernel, however,
is ten times slower when the incoming gradient and the saved activation are laid out differently (one
contiguous, one channels-last), and a double-backprop step meets that mix; igbench's own BatchNorm
(:mod:`igbench.architectures.batchnorm`) therefore matches the two layouts before calling it.

Only speed and float rounding change (other kernels sum in other orders), as with another thread count:
the layout is recorded beside the device and thread count a model was trained on, not in its
configuration hash.
"""

from __future__ import annotations

import contextlib

MEMORY_FORMATS = ("contiguous", "channels_last")


def layout_of(x):
    """``torch.channels_last`` for a 4-d tensor laid out that way (and not also contiguous), else
    ``torch.contiguous_format``."""
    import torch

    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@contextlib.contextmanager
def training_layout(model, memory_format: str):
    """Inside, ``model``'s 4-d weights are laid out in ``memory_format``; after a channels-last training
    they are contiguous again, so checkpoints, evaluation and attacks see the usual model. The caller lays
    out the batches (:func:`as_layout`). Contiguous: nothing happens."""
    if memory_format == "contiguous":
        yield model
        return
    import torch

    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


def is_view_layout_error(err: BaseException) -> bool:
    """Whether ``err`` is PyTorch refusing ``.view`` on a channels-last activation."""
    return isinstance(err, RuntimeError) and "view size is not compatible" in str(err)


@contextlib.contextmanager
def layout_errors_explained(desc: str, memory_format: str):
    """A model that calls ``.view`` on a channels-last activation fails deep inside torch; say what to do
    instead, in one line."""
    from ..errors import PluginCrashed

    try:
        yield
    except (RuntimeError, PluginCrashed) as err:
        cause = err.original if isinstance(err, PluginCrashed) else err  # a third-party loss's, wrapped
        if memory_format != "channels_last" or not is_view_layout_error(cause):
            raise
        from ..errors import TrainingError

        raise TrainingError(f"{desc}: the model does not run laid out channels-last (it calls .view on an "
                            "activation); train it with --memory-format contiguous, or have its architecture "
                            "use .reshape or .flatten instead of .view") from err


def as_layout(x, memory_format: str):
    """The batch ``x`` in ``memory_format`` (a 4-d batch only; anything else is returned as it is)."""
    if memory_format == "contiguous" or x.dim() != 4:
        return x
    import torch

    return x.contiguous(memory_format=torch.channels_last)
