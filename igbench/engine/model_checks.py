"""Checks of what plugins hand the engine: the model an architecture builds, the model a defense trains.

Each turns what would be a traceback from deep inside torch (``'NoneType' object has no attribute
'eval'``, ``iteration over a 0-d tensor``...) into one line naming the plugin, its package and the fix.
They look only at values the engine already has (types, parameters, dtypes): no forward pass, no
random draw, so a valid training is bit-for-bit what it was.
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
