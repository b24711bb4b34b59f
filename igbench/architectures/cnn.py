"""Convolutional architectures: the paper's CNN (and its softplus variant) and the CleverHans tutorial CNN.

Both are shape-generic: the first dense layer is sized from the input shape at build time, so the same
plugin serves 28x28x1 (MNIST, notMNIST), 32x32x1 (the paper's greyscale SVHN) and 32x32x3 inputs.
"""

from __future__ import annotations

from typing import Any

from ..plugin_types import ArchitecturePlugin, Param

ACTIVATIONS = ("relu", "softplus")


def _activation(name: str):
    import torch.nn as nn

    return nn.ReLU() if name == "relu" else nn.Softplus()


def _flat_size(features, input_shape) -> int:
    import torch

    was_training = features.training
    features.eval()  # a train-mode probe would fold the zeros into BatchNorm's running statistics
    try:
        with torch.no_grad():
            return int(features(torch.zeros(1, *input_shape)).flatten(1).shape[1])
    finally:
        features.train(was_training)


#: Layer defaults of :func:`build_paper_cnn`: the study's TensorFlow-slim ones, or torch.nn's.
STYLES = ("tf-slim", "pytorch")


def build_paper_cnn(input_shape, num_classes: int, activation: str = "relu", dropout: float = 0.5,
                    lcn: bool = False, style: str = "tf-slim"):
    """The network of the original study (see PAPER_NOTES.md).

    conv 5x5/32 'same' -> BN -> act -> max-pool 2 -> conv 5x5/64 'same' -> BN -> act -> max-pool 2
    -> dense 1024 -> BN -> act -> dropout -> dense ``num_classes`` (with ReLU each max-pool is built in
    front of the activation before it: the same function and gradients, cheaper). BatchNorm momentum 0.1 is
    TensorFlow's decay 0.9; the BatchNorm layers are :mod:`.batchnorm`'s (``nn.BatchNorm`` with a cheap
    second derivative, for double backprop), the max-pools :mod:`.maxpool`'s (``nn.MaxPool2d`` with a forward
    pass about twice as fast on contiguous CPU tensors, bit for bit the same). ``lcn`` prepends LeCun local
    contrast normalization (the paper's SVHN model).

    ``style="tf-slim"`` (the default) gives the layers the defaults the study's code had through
    ``slim.conv2d`` / ``slim.fully_connected`` with ``normalizer_fn=slim.batch_norm``: BatchNorm with a
    learned shift but no learned scale and eps 1e-3, no bias on a layer that BatchNorm follows, and
    Xavier-uniform (Glorot) weights with zero biases. ``style="pytorch"`` keeps torch.nn's defaults
    (learned scale, eps 1e-5, biases everywhere, Kaiming-uniform init): igbench 0.1's network. They do
    not train alike under double backprop: at the paper's MNIST penalty strength, 200 batches of 64, the
    tf-slim network reached 95.3% test accuracy (mean of three seeds) and the pytorch one 81.4%, and the
    initialization alone accounts for the difference (``benchmarks/paper_cnn_style.py``, REPLICATION.md).
    """
    import torch.nn as nn

    from .batchnorm import BatchNorm1d, BatchNorm2d
    from .lcn import LocalContrastNorm
    from .maxpool import MaxPool2d

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {', '.join(STYLES)}")
    slim = style == "tf-slim"
    norm = {"momentum": 0.1, **({"eps": 1e-3, "scale": False} if slim else {})}
    channels = input_shape[0]

    def act_and_pool():
        # ReLU commutes with a max-pool exactly, gradients and second derivatives included (a window whose
        # maximum is not positive passes no gradient either way), so pooling first gives the same
        # network bit for bit with the ReLU and its derivatives on a quarter of the values: 2-4% off a
        # training step. Softplus is kept before the pool: rounding can tie values the pool then tells apart.
        pool = MaxPool2d(2)
        return [pool, _activation(activation)] if activation == "relu" else [_activation(activation), pool]

    features = nn.Sequential(
        *([LocalContrastNorm(channels)] if lcn else []),
        nn.Conv2d(channels, 32, 5, padding=2, bias=not slim), BatchNorm2d(32, **norm), *act_and_pool(),
        nn.Conv2d(32, 64, 5, padding=2, bias=not slim), BatchNorm2d(64, **norm), *act_and_pool(),
        nn.Flatten(),
    )
    flat = _flat_size(features, input_shape)
    model = nn.Sequential(
        features,
        nn.Linear(flat, 1024, bias=not slim), BatchNorm1d(1024, **norm), _activation(activation),
        nn.Dropout(dropout),
        nn.Linear(1024, num_classes),
    )
    if slim:
        glorot_init(model)
    return model


def relu_before_pool(model):
    """A copy of a ReLU paper CNN with each (max-pool, ReLU) pair put back in the textbook order (ReLU, then
    max-pool): the same function, for tests and benchmarks that check :func:`build_paper_cnn`'s order
    changes nothing. It raises ValueError for a model with no such pair (softplus keeps its order)."""
    import copy

    import torch.nn as nn

    old = copy.deepcopy(model)
    feats = old[0]
    pairs = [i for i in range(len(feats) - 1)
             if isinstance(feats[i], nn.MaxPool2d) and isinstance(feats[i + 1], nn.ReLU)]
    if not pairs:
        raise ValueError("no (max-pool, ReLU) pair to swap: not a ReLU paper CNN")
    for i in pairs:
        feats[i], feats[i + 1] = feats[i + 1], feats[i]
    return old


def glorot_init(model) -> None:
    """TF-slim's initialization of conv and dense layers: Xavier-uniform weights, zero biases."""
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_cleverhans_cnn(input_shape, num_classes: int, activation: str = "relu"):
    """The CleverHans MNIST tutorial CNN: conv 8x8/64 stride 2, conv 6x6/128 stride 2, conv 5x5/128, dense."""
    import torch.nn as nn

    channels = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(channels, 64, 8, stride=2, padding=3), _activation(activation),
        nn.Conv2d(64, 128, 6, stride=2), _activation(activation),
        nn.Conv2d(128, 128, 5), _activation(activation),
        nn.Flatten(),
    )
    flat = _flat_size(features, input_shape)
    return nn.Sequential(features, nn.Linear(flat, num_classes))


class PaperCNN(ArchitecturePlugin):
    """The network of the original study (Ross & Doshi-Velez 2018), used for all its models.

    conv 5x5/32 -> BatchNorm -> ReLU -> max-pool 2 -> conv 5x5/64 -> BatchNorm -> ReLU -> max-pool 2 ->
    dense 1024 -> BatchNorm -> ReLU -> dropout -> dense to the classes. The first dense layer is sized from
    the input, so the same network takes MNIST's 28x28 grey, the study's 32x32 grey SVHN and colour inputs.

    ``style=tf-slim`` (the default) gives the layers the defaults of the study's TensorFlow-slim code:
    BatchNorm without a learned scale and with eps 1e-3, no bias before BatchNorm, Xavier-uniform
    weights. ``style=pytorch`` keeps torch.nn's defaults (igbench 0.1's network), which trains far worse
    under double backprop (REPLICATION.md). ``lcn=true`` puts LeCun local contrast normalization first,
    as the study's SVHN network did (configs/paper-svhn.toml), with the study's 7x7 window, except that its
    floor is per image (:func:`.lcn.LocalContrastNorm`). ``dropout`` 0.5 is the study's;
    ``activation=softplus`` is the `paper-cnn-softplus` variant.
    """

    name = "paper-cnn"
    summary = "The study's CNN: conv5x5/32, pool, conv5x5/64, pool, dense 1024 (BN, ReLU, dropout); any input size"
    default_activation = "relu"

    @property
    def params(self):  # type: ignore[override]
        return (
            Param("activation", self.default_activation, "hidden activation", choices=ACTIVATIONS),
            Param("dropout", 0.5, "dropout before the last layer (training only)",
                  check=lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
            Param("lcn", False, "LeCun local contrast normalization first (the paper's SVHN network)"),
            Param("style", "tf-slim", "layer defaults: tf-slim = the study's code (BatchNorm without learned "
                  "scale, eps 1e-3; no bias before BatchNorm; Xavier-uniform init); pytorch = torch.nn's "
                  "defaults (igbench 0.1's paper-cnn)", choices=STYLES),
        )

    def build(self, input_shape, num_classes, params: dict[str, Any]):
        return build_paper_cnn(input_shape, num_classes, params["activation"], params["dropout"], params["lcn"],
                               params["style"])

    def revision(self, params: dict[str, Any]) -> str | None:
        # lcn=true took a 9x9 window of sigma 2 and replicate padding until the study's was adopted
        return "lcn-study-window" if params.get("lcn") else None


class PaperCNNSoftplus(PaperCNN):
    """`paper-cnn` with softplus in place of every ReLU; not in the study, which used ReLU.

    A ReLU network's logits are piecewise linear in its input: its second derivatives with respect to the
    input come from the softmax alone. Softplus makes the layers smooth (the max-pools stay), so double
    backprop sees every layer's curvature, and the finite differences of `gradreg-fd` track the exact
    penalty more closely (on ReLU and max-pool their weight gradients are noisy). Use it to see whether a
    result depends on the activation. Same parameters as `paper-cnn`, with ``activation`` defaulting to
    softplus.
    """

    name = "paper-cnn-softplus"
    summary = "The study's CNN with softplus activations: smooth, so double backprop has non-zero curvature"
    default_activation = "softplus"


class CleverhansCNN(ArchitecturePlugin):
    """The CNN of the CleverHans MNIST tutorial; not in the study.

    conv 8x8/64 stride 2 -> conv 6x6/128 stride 2 -> conv 5x5/128, each followed by the activation, then
    one dense layer to the classes: no BatchNorm, dropout or pooling. A widely used reference model in
    adversarial-robustness code, for checking whether a defense's effect carries over from `paper-cnn`
    to a different network. ``activation``: relu (the tutorial's) or softplus.
    """

    name = "cleverhans-cnn"
    summary = "CleverHans tutorial CNN: conv8x8/64 s2, conv6x6/128 s2, conv5x5/128, dense"
    params = (Param("activation", "relu", "hidden activation", choices=ACTIVATIONS),)

    def build(self, input_shape, num_classes, params):
        return build_cleverhans_cnn(input_shape, num_classes, params["activation"])
