"""The paper CNN in the study's TF-slim form, and why that form matters for double backprop."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from igbench.architectures.batchnorm import BatchNorm1d, BatchNorm2d
from igbench.architectures.cnn import relu_before_pool
from igbench.engine.train import TrainConfig, Trainer, accuracy
from igbench.errors import ParamError
from igbench.registry import get_registry


def _build(style: str):
    arch = get_registry().get("architecture", "paper-cnn")
    torch.manual_seed(0)
    return arch.build((1, 28, 28), 10, arch.resolve_params({"style": style}))


def _layers(model, kinds):
    return [m for m in model.modules() if isinstance(m, kinds)]


def test_tf_slim_style_has_the_study_layer_defaults():
    model = _build("tf-slim")
    norms = _layers(model, (BatchNorm1d, BatchNorm2d))
    assert len(norms) == 3
    assert all(bn.eps == 1e-3 and bn.momentum == 0.1 and not bn.scale for bn in norms)
    assert all(not any(name == "weight" for name, _ in bn.named_parameters()) for bn in norms)
    conv1, conv2, dense, logits = _layers(model, (nn.Conv2d, nn.Linear))
    assert conv1.bias is None and conv2.bias is None and dense.bias is None  # BatchNorm follows them
    assert torch.equal(logits.bias, torch.zeros(10))
    # Xavier-uniform: every weight inside +-sqrt(6 / (fan_in + fan_out)), and spread out to near that bound
    for layer in (conv1, conv2, dense, logits):
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert float(layer.weight.detach().abs().max()) <= bound
        assert float(layer.weight.detach().abs().max()) > 0.95 * bound


def test_pytorch_style_keeps_torch_defaults_and_both_styles_share_state_dict_shapes():
    slim, torch_style = _build("tf-slim"), _build("pytorch")
    assert all(bn.eps == 1e-5 and bn.scale for bn in _layers(torch_style, (BatchNorm1d, BatchNorm2d)))
    assert all(layer.bias is not None for layer in _layers(torch_style, (nn.Conv2d, nn.Linear)))
    assert set(slim.state_dict()) <= set(torch_style.state_dict())
    x = torch.rand(4, 1, 28, 28)
    assert slim.eval()(x).shape == torch_style.eval()(x).shape == (4, 10)


def test_unknown_style_is_a_one_line_error_naming_the_choices():
    arch = get_registry().get("architecture", "paper-cnn")
    with pytest.raises(ParamError) as exc:
        arch.resolve_params({"style": "keras"})
    assert "style" in str(exc.value) and "tf-slim" in str(exc.value) and "\n" not in str(exc.value)


def test_tf_slim_form_keeps_its_accuracy_under_the_papers_penalty(mnist_slice):
    """The reason the default is the study's form: with the paper's MNIST penalty strength (lambda 56,234
    at batch 256 is 14,058 at batch 64, paper scaling) the torch.nn-initialised network loses accuracy
    while the penalty takes hold; the TF-slim one does not. Same data, seed, optimizer and steps (measured:
    95.0% against 86.0%; benchmarks/paper_cnn_style.py shows that the initialisation is what matters)."""
    torch.set_num_threads(1)
    reg = get_registry()
    arch, gradreg = reg.get("architecture", "paper-cnn"), reg.get("defense", "gradreg")
    acc = {}
    for style in ("tf-slim", "pytorch"):
        trainer = Trainer(mnist_slice, arch, arch.resolve_params({"style": style}),
                          TrainConfig(steps=150, batch_size=64, lr=2e-4, adam_eps=1e-4, seed=0), progress=False)
        model = gradreg.train(trainer, gradreg.resolve_params({"lambda": 14058.0})).eval()
        acc[style] = accuracy(model, mnist_slice.test_x, mnist_slice.test_y)
    assert acc["tf-slim"] >= 0.92, acc
    assert acc["tf-slim"] - acc["pytorch"] >= 0.04, acc


def test_pooling_before_relu_is_the_same_network_bit_for_bit_under_double_backprop(mnist_slice):
    """The ReLU paper CNN is built pool-then-ReLU (cheaper); a training step of gradreg, which
    differentiates the backward pass too, gives exactly the weights the ReLU-then-pool order gives."""
    reg = get_registry()
    arch, gradreg = reg.get("architecture", "paper-cnn"), reg.get("defense", "gradreg")
    data = mnist_slice.subset(n_train=32, n_test=0)
    trainer = Trainer(data, arch, arch.resolve_params({}), TrainConfig(batch_size=32), progress=False)
    x, y = trainer.train_x[:32], trainer.train_y[:32]
    params = gradreg.resolve_params({"lambda": 1e5})  # a strong penalty: its second-order terms matter
    torch.manual_seed(0)
    new = trainer.new_model()
    old = relu_before_pool(new)
    swapped = [type(m).__name__ for m in old[0]]
    assert swapped.count("ReLU") == 2 and [type(m).__name__ for m in new[0]] != swapped, "the ReLU paper CNN pools first"
    for model in (new, old):
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(3):
            torch.manual_seed(step)  # the same dropout masks for both
            opt.zero_grad()
            loss, _ = gradreg.loss(model, x, y, params, trainer)
            loss.backward()
            opt.step()
    new_state, old_state = new.state_dict(), old.state_dict()
    assert new_state.keys() == old_state.keys()  # checkpoints of either order load into the other
    assert all(torch.equal(new_state[k], old_state[k]) for k in new_state)
    assert not torch.equal(new_state["1.weight"], trainer.new_model().state_dict()["1.weight"])  # it trained


def test_softplus_cnn_keeps_the_activation_before_the_pool():
    arch = get_registry().get("architecture", "paper-cnn-softplus")
    feats = arch.build((1, 28, 28), 10, arch.resolve_params({}))[0]
    kinds = [type(m).__name__ for m in feats]
    assert kinds[:4] == ["Conv2d", "BatchNorm2d", "Softplus", "MaxPool2d"]
