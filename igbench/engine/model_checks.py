"""Checks of what plugins hand the engine: the model an architecture builds, the model a defense trains,
the ``(loss, logits)`` pair a loss returns and the shape of a model's output.

Each turns what would be a traceback from deep inside torch (``'NoneType' object has no attribute
'eval'``, ``iteration over a 0-d tensor``...) into one line naming the plugin, its package and the fix.
They look only at values the engine already has (types, shapes, dtypes, ``requires_grad``): no forward
pass, no random draw, so a valid training is bit-for-bit what it was. The one forward pass here,
:func:`output_problem_of`, runs only once a training step has already failed, to say whose fault it was.
"""

from __future__ import annotations

from typing import Any

from ..errors import PluginError
from ..plugin_calls import named, plugin_call


def describe_value(obj: Any) -> str:
    """What ``obj`` is, for "returned ..." messages: ``None``, ``a tuple of 2``, ``the class Net``..."""
    import torch

    if obj is None:
        return "None"
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)}"
    if callable(obj) and hasattr(obj, "__name__"):
        return f"the function {obj.__name__}"
    return f"a {type(obj).__name__}"


def _not_a_module(obj: Any, what: str) -> str:
    import torch

    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        return f"{what} returned the class {obj.__name__}, not a model; return an instance: {obj.__name__}(...)"
    return f"{what} returned {describe_value(obj)}; return a torch.nn.Module"


def build_model(arch, input_shape: tuple[int, ...], num_classes: int, params: dict[str, Any]):
    """``arch.build(input_shape, num_classes, params)``, checked: a :class:`torch.nn.Module` with
    parameters, all of them float32 (igbench's batches are). Anything else is a :class:`PluginError`
    naming the architecture; an exception inside a third-party ``build`` is one line too."""
    import torch

    with plugin_call(arch, "build"):
        model = arch.build(tuple(input_shape), num_classes, params)
    if not isinstance(model, torch.nn.Module):
        raise PluginError(f"{named(arch)}: {_not_a_module(model, 'build')} that outputs (batch, num_classes) logits")
    first = next(iter(model.parameters()), None)
    if first is None:
        raise PluginError(f"{named(arch)}: build returned a model without parameters (nothing to train); "
                          "give it trainable layers (nn.Linear, nn.Conv2d...) registered as submodules")
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()
                     if p.dtype.is_floating_point and p.dtype != torch.float32})
    if dtypes:
        raise PluginError(f"{named(arch)}: build returned a model with {', '.join(dtypes)} parameters, but igbench "
                          "trains and attacks float32 models on float32 batches; build it in float32 "
                          "(no .double(), .half() or dtype=...)")
    return model


def trained_model(defense, model):
    """``model`` when it is a :class:`torch.nn.Module`, else a :class:`PluginError` naming the defense."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise PluginError(f"{named(defense)}: {_not_a_module(model, 'train')} (the trained model "
                          "trainer.fit returns)")
    return model


def output_problem(logits, batch: int, num_classes: int) -> str | None:
    """What is wrong with a model output that should be ``(batch, num_classes)`` logits, or ``None``."""
    import torch

    if not isinstance(logits, torch.Tensor):
        return f"a model whose output is {describe_value(logits)}, not a tensor of logits"
    shape = tuple(logits.shape)
    if len(shape) == 2 and shape[0] == batch and shape[1] != num_classes:
        return f"a model with {shape[1]} outputs for {num_classes} classes"
    if shape != (batch, num_classes):
        return f"a model whose output has shape {shape} for a batch of {batch} and {num_classes} classes"
    return None


def output_error(arch, problem: str) -> PluginError:
    """The one-line error for an architecture whose model's output is wrong (``problem`` from
    :func:`output_problem`)."""
    return PluginError(f"{named(arch)} built {problem}; its model must output logits of shape "
                       "(batch, num_classes): size the last layer by build's num_classes argument")


def check_output(arch, logits, batch: int, num_classes: int) -> None:
    """Raise :func:`output_error` when ``logits`` (already computed) are not ``(batch, num_classes)``."""
    problem = output_problem(logits, batch, num_classes)
    if problem:
        raise output_error(arch, problem)


def probabilities_note(arch, logits) -> str | None:
    """A note when a model's outputs look like probabilities (every row in [0, 1] summing to 1: a final
    softmax), which cross-entropy and the attacks would treat as logits, training and attacking badly."""
    import torch

    if logits.ndim != 2 or logits.shape[0] < 2 or logits.shape[1] < 2:
        return None
    rows = logits.detach().float()
    if bool(((rows >= 0) & (rows <= 1)).all()) and bool(torch.allclose(rows.sum(1), torch.ones(len(rows),
                                                                                              device=rows.device),
                                                                           atol=1e-4)):
        return (f"note: {named(arch)} outputs probabilities (each row sums to 1), but igbench reads a model's "
                f"output as logits; remove its final softmax")
    return None


def eval_forward(model, x) -> tuple[Any, Exception | None]:
    """``(output, None)`` of ``model`` on the batch ``x`` (eval mode, no gradients), or ``(None, the
    exception)`` when the model cannot run on it. Only for explaining a training step that has already
    failed: it changes the model's mode."""
    import torch

    try:
        model.eval()
        with torch.no_grad():
            return model(x), None
    except Exception as exc:  # noqa: BLE001 - any failure of the model itself is the answer
        return None, exc


def output_problem_of(model, x, num_classes: int) -> str | None:
    """:func:`output_problem` of ``model`` on the batch ``x`` (:func:`eval_forward`), or ``None`` when the
    output is right or the model cannot run at all (the step's own error is the better message then)."""
    out, failure = eval_forward(model, x)
    return None if failure is not None else output_problem(out, int(x.shape[0]), num_classes)


def loss_pair_problem(out, batch: int, num_classes: int) -> str | None:
    """What is wrong with a loss function's return value, which should be ``(loss, logits)``: a scalar
    tensor attached to the graph and ``(batch, num_classes)`` logits; ``None`` when it is right.
    The logits' shape is left to the caller when only it is wrong (``"logits"``), so that it can tell
    a defense's mistake from its architecture's."""
    import torch

    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return f"got {describe_value(out)}"
    loss, logits = out
    if not isinstance(loss, torch.Tensor):
        return f"got {describe_value(loss)} as the loss (a Python number has no gradient: keep the tensor)"
    if loss.numel() != 1:
        hint = "; are loss and logits swapped?" if isinstance(logits, torch.Tensor) and logits.numel() == 1 \
            else "; reduce it with .mean()"
        return f"got a loss of shape {tuple(loss.shape)}{hint}"
    if not loss.requires_grad:
        return ("got a loss that does not require grad (detached from the model's weights: computed under "
                "torch.no_grad, or through .detach() or .item()?)")
    if not isinstance(logits, torch.Tensor):
        return f"got {describe_value(logits)} as the logits"
    if tuple(logits.shape) != (batch, num_classes):
        return "logits"
    return None
