"""A plain multi-layer perceptron, a fast baseline for any input shape."""

from __future__ import annotations

from ..plugin_types import ArchitecturePlugin, Param, positive
from .cnn import ACTIVATIONS, _activation


class MLP(ArchitecturePlugin):
    """A plain multi-layer perceptron; not in the study.

    Flattens the input, then ``depth`` hidden layers of ``hidden`` units, each followed by
    ``activation``, then a dense layer to the classes (no BatchNorm, no dropout). The default, 2 x 256
    ReLU, trains in seconds on a CPU: a fast baseline for trying a defense, an attack or a data set
    before paying for the CNNs, on any input size.
    """

    name = "mlp"
    summary = "Multi-layer perceptron: flatten, `depth` hidden layers of `hidden` units, dense"
    params = (
        Param("hidden", 256, "units per hidden layer", check=positive),
        Param("depth", 2, "number of hidden layers", check=positive),
        Param("activation", "relu", "hidden activation", choices=ACTIVATIONS),
    )

    def build(self, input_shape, num_classes, params):
        import torch.nn as nn

        c, h, w = input_shape
        layers: list = [nn.Flatten()]
        width = c * h * w
        for _ in range(params["depth"]):
            layers += [nn.Linear(width, params["hidden"]), _activation(params["activation"])]
            width = params["hidden"]
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)
