"""The built-in defenses on real MNIST: what each one is supposed to change, measured.

Training runs use the fast `mlp` on the 3,000-image slice; the BatchNorm-specific checks use one batch
through the paper CNN. One intra-op thread: on a shared 2-core machine small ops run far faster so.
"""

from __future__ import annotations

import math

import pytest
import torch

from igbench.engine.gradients import mean_input_grad_norm
from igbench.engine.train import TrainConfig, Trainer, accuracy, predict_logits
from igbench.environment import cpu_model
from igbench.errors import ParamError, TrainingError
from igbench.registry import get_registry

EPOCHS = 8
BATCH = 64
LR = 1e-3


@pytest.fixture(scope="module", autouse=True)
def _one_thread_for_module_fixtures():
    torch.set_num_threads(1)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_trainer(data, arch_name="mlp", arch_params=None, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=0,
                 precision="fp32", steps=None, memory_format="contiguous"):
    arch = get_registry().get("architecture", arch_name)
    return Trainer(data, arch, arch.resolve_params(arch_params or {}),
                   TrainConfig(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                               precision=precision, memory_format=memory_format),
                   progress=False)


def train_defense(data, name, params=None, **kw):
    plugin = get_registry().get("defense", name)
    return plugin.train(make_trainer(data, **kw), plugin.resolve_params(params or {}))


def build(arch_name, arch_params=None, seed=0):
    arch = get_registry().get("architecture", arch_name)
    torch.manual_seed(seed)
    return arch.build((1, 28, 28), 10, arch.resolve_params(arch_params or {}))


def fgsm_accuracy(model, x, y, eps):
    """Accuracy under FGSM (true labels, one step, clipped to [0, 1]), written out with torch."""
    model.eval()
    xr = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(xr), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xr)
    return accuracy(model, (x + eps * g.sign()).clamp(0, 1), y)


@pytest.fixture(scope="module")
def plain_mlp(mnist_slice):
    return train_defense(mnist_slice, "none")


# --------------------------------------------------------------------------- registry and params
def test_builtin_defenses_registered_without_importing_torch_at_module_level():
    import subprocess
    import sys

    code = ("import sys; from igbench.registry import get_registry; "
            "print(sorted(get_registry().names('defense'))); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "IGBENCH_PLUGINS": "none"}).stdout.splitlines()
    names = set(eval(out[0]))
    assert {"none", "gradreg", "gradreg-fd", "distillation", "advtrain", "advtrain+gradreg"} <= names
    assert out[1] == "False"


@pytest.mark.parametrize("name, params", [
    ("gradreg", {"lambda": -1}),
    ("gradreg", {"scaling": "batch"}),
    ("gradreg-fd", {"lambda": "-0.5"}),
    ("gradreg-fd", {"h": 0}),
    ("advtrain+gradreg", {"lambda": -10}),
    ("distillation", {"T": 0}),
    ("distillation", {"T": -50}),
    ("distillation", {"teacher_fraction": 1.5}),
    ("distillation", {"teacher_max_steps": 0}),
    ("advtrain", {"eps": -0.1}),
    ("advtrain", {"label": "random"}),
    ("advtrain", {"lamda": 1.0}),
    ("certainty-insensitivity", {"lambda": -1}),
    ("certainty-insensitivity", {"scaling": "batch"}),
])
def test_bad_params_raise_param_error(name, params):
    with pytest.raises(ParamError) as exc:
        get_registry().get("defense", name).resolve_params(params)
    assert "\n" not in str(exc.value)
    assert next(iter(params)) in str(exc.value)


@pytest.mark.parametrize("name", ["gradreg", "gradreg-fd", "advtrain+gradreg"])
def test_default_lambda_follows_scaling(name):
    plugin = get_registry().get("defense", name)
    assert plugin.resolve_params({})["lambda"] == 56234.0  # the paper's MNIST choice, paper scaling
    assert plugin.resolve_params({"scaling": "per-example"})["lambda"] == pytest.approx(56234.0 / 512)
    assert plugin.resolve_params({"lambda": "1e3", "scaling": "per-example"})["lambda"] == 1000.0


def test_certainty_insensitivity_defaults_to_the_studys_mnist_lambda():
    plugin = get_registry().get("defense", "certainty-insensitivity")
    assert plugin.resolve_params({})["lambda"] == 1000.0
    assert plugin.resolve_params({"scaling": "per-example"})["lambda"] == pytest.approx(1000.0 / 512)
    assert plugin.resolve_params({"lambda": 178})["lambda"] == 178.0  # the study's notMNIST choice


def test_certainty_insensitivity_penalizes_the_uniform_label_gradient(mnist_slice):
    """Its penalty is l2_loss of d(mean over the batch of -mean_k log p_k)/dX, written out here with
    torch (paper scaling); per-example = 2 * B * paper, as for gradreg; the training loss adds it to CE."""
    from igbench.defenses.common import gradreg_terms

    model = build("mlp").eval()
    x, y = mnist_slice.train_x[:32], mnist_slice.train_y[:32]
    xr = x.clone().requires_grad_(True)
    uniform = -torch.log_softmax(model(xr), dim=1).mean(dim=1).mean()
    (g,) = torch.autograd.grad(uniform, xr)
    ce, penalty, _ = gradreg_terms(model, x, y, "paper", create_graph=False, of="uniform")
    assert float(penalty) == pytest.approx(float(g.pow(2).sum() / 2), rel=1e-5)
    assert float(ce.detach()) == pytest.approx(float(torch.nn.functional.cross_entropy(model(x), y).detach()), rel=1e-6)
    _, per_example, _ = gradreg_terms(model, x, y, "per-example", create_graph=False, of="uniform")
    assert float(per_example) == pytest.approx(2 * 32 * float(penalty), rel=1e-5)
    _, label_penalty, _ = gradreg_terms(model, x, y, "paper", create_graph=False)
    assert float(label_penalty) != pytest.approx(float(penalty), rel=1e-2)  # a different quantity
    plugin = get_registry().get("defense", "certainty-insensitivity")
    loss, _ = plugin.loss(model, x, y, plugin.resolve_params({"lambda": 10.0}), None)
    assert float(loss.detach()) == pytest.approx(float(ce.detach()) + 10.0 * float(penalty), rel=1e-5)


# --------------------------------------------------------------------------- penalty conventions
def test_paper_and_per_example_scalings(mnist_slice):
    """per-example = 2 * B * paper, in train mode (BatchNorm, dropout) and as a training loss."""
    from igbench.defenses.common import gradreg_loss, gradreg_terms

    model = build("paper-cnn").train()
    x, y = mnist_slice.train_x[:32], mnist_slice.train_y[:32]
    torch.manual_seed(1)
    _, paper, _ = gradreg_terms(model, x, y, "paper", create_graph=False)
    torch.manual_seed(1)
    _, per_example, _ = gradreg_terms(model, x, y, "per-example", create_graph=False)
    assert float(paper) > 0
    assert float(per_example) == pytest.approx(2 * 32 * float(paper), rel=1e-4)

    torch.manual_seed(2)
    loss_paper, _ = gradreg_loss(model, x, y, 56234.0, "paper")
    torch.manual_seed(2)
    loss_pe, _ = gradreg_loss(model, x, y, 56234.0 / (2 * 32), "per-example")
    assert float(loss_pe.detach()) == pytest.approx(float(loss_paper.detach()), rel=1e-4)


def test_per_example_penalty_is_mean_of_each_examples_gradient(mnist_slice):
    """In eval mode the rows are the examples' own gradients: compare with one backward per example."""
    from igbench.defenses.common import cross_entropy, gradreg_terms

    model = build("paper-cnn").double().eval()
    x, y = mnist_slice.test_x[:8].double(), mnist_slice.test_y[:8]
    _, penalty, _ = gradreg_terms(model, x, y, "per-example", create_graph=False)
    norms = []
    for i in range(8):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(cross_entropy(model(xi), y[i:i + 1]), xi)
        norms.append(float(g.pow(2).sum()))
    assert float(penalty) == pytest.approx(sum(norms) / 8, rel=1e-9)
    # and the paper's l2_loss of the batch-mean gradient
    _, paper, _ = gradreg_terms(model, x, y, "paper", create_graph=False)
    assert float(paper) == pytest.approx(sum(norms) / (2 * 8 * 8), rel=1e-9)


# --------------------------------------------------------------------------- finite differences
@pytest.fixture(scope="module")
def smooth_batch(mnist_slice):
    """A softplus paper CNN (eval, float64) and 64 test images dithered by U(0, 0.05).

    The dither matters: on raw MNIST the blank background gives identical conv outputs, so the
    max-pools have ties and the loss has kinks exactly at the data; a finite difference then measures
    a one-sided derivative (about 50% off here, for every h), not the gradient norm.
    """
    gen = torch.Generator().manual_seed(0)
    x = mnist_slice.test_x[:64].double()
    x = x + 0.05 * torch.rand(x.shape, generator=gen, dtype=x.dtype)
    return build("paper-cnn-softplus").double().eval(), x, mnist_slice.test_y[:64]


def _fd_penalty(direction, model, x, y, h, scaling):
    from igbench.defenses.gradreg import fd_batch_loss, fd_terms

    if direction == "batch":
        return fd_batch_loss(model, x, y, 1.0, h, scaling)[2]
    return fd_terms(model, x, y, h, scaling)[1].detach()


@pytest.mark.parametrize("direction", ["batch", "example"])
@pytest.mark.parametrize("scaling", ["paper", "per-example"])
def test_fd_penalty_matches_exact_and_improves_with_h(smooth_batch, scaling, direction):
    """Both of gradreg-fd's estimators (one difference for the batch, or one per example) approximate the
    exact penalty, with an error first order in h."""
    from igbench.defenses.common import gradreg_terms

    model, x, y = smooth_batch
    _, exact, _ = gradreg_terms(model, x, y, scaling, create_graph=False)
    errors = []
    for h in (0.1, 0.01, 0.001):
        fd = _fd_penalty(direction, model, x, y, h, scaling)
        errors.append(abs(float(fd) - float(exact)) / float(exact))
    assert errors[1] < 0.05  # h = 0.01: within 5% (h = 0.1, the default tuned for ReLU nets: ~15%)
    assert errors[0] > errors[1] > errors[2]  # first order in h
    assert errors[2] < 0.2 * errors[0]


def test_fd_penalty_weight_gradient_matches_exact(mnist_slice):
    """The point of the approximation: its gradient w.r.t. the weights is that of the exact penalty.

    Checked on a smooth network (softplus MLP). With ReLU or max-pool the value still converges, but the
    weight gradient also sees activation-pattern switches between x and x + h d (see ``fd_terms``).
    """
    from igbench.defenses.common import gradreg_terms
    from igbench.defenses.gradreg import fd_terms

    model = build("mlp", {"activation": "softplus"}).double().eval()
    x, y = mnist_slice.test_x[:64].double(), mnist_slice.test_y[:64]
    params = list(model.parameters())
    _, exact, _ = gradreg_terms(model, x, y, "per-example")
    g_exact = torch.cat([g.flatten() for g in torch.autograd.grad(exact, params)])
    _, fd, _ = fd_terms(model, x, y, 0.01, "per-example")
    g_fd = torch.cat([g.flatten() for g in torch.autograd.grad(fd, params)])
    assert float(torch.nn.functional.cosine_similarity(g_exact, g_fd, dim=0)) > 0.999
    assert float(g_fd.norm() / g_exact.norm()) == pytest.approx(1.0, abs=0.01)


def test_fd_batch_loss_has_the_exact_loss_weight_gradient(mnist_slice):
    """Its value is CE + lambda * penalty, and its weight gradient (the clean one reused, scaled, plus one
    more backward pass) is the exact double-backprop loss's, on a smooth network."""
    from igbench.defenses.common import gradreg_terms
    from igbench.defenses.gradreg import fd_batch_loss

    model = build("mlp", {"activation": "softplus"}).double().eval()
    x, y = mnist_slice.test_x[:64].double(), mnist_slice.test_y[:64]
    params = list(model.parameters())
    lam = 30.0
    ce, exact, _ = gradreg_terms(model, x, y, "per-example")
    g_ce = torch.cat([g.flatten() for g in torch.autograd.grad(ce, params, retain_graph=True)])
    g_exact = torch.cat([g.flatten() for g in torch.autograd.grad(ce + lam * exact, params)]) - g_ce
    loss, logits, fd = fd_batch_loss(model, x, y, lam, 0.01, "per-example")
    assert float(loss.detach()) == pytest.approx(float(ce.detach()) + lam * float(fd), rel=1e-12)
    assert torch.equal(logits, model(x).detach())
    g_fd = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]) - g_ce
    assert float(g_exact.norm()) > 0.1 * float(g_ce.norm())  # the penalty's part is not negligible
    assert float(torch.nn.functional.cosine_similarity(g_exact, g_fd, dim=0)) > 0.999
    assert float(g_fd.norm() / g_exact.norm()) == pytest.approx(1.0, abs=0.01)


def test_fd_batch_loss_accepts_a_model_with_unused_weights(mnist_slice):
    """A plugin architecture may hold weights its forward pass does not use: they get no gradient, as
    with any other loss, instead of an autograd error."""
    from igbench.defenses.gradreg import fd_batch_loss

    model = torch.nn.Sequential(build("mlp"), torch.nn.Linear(2, 2))
    model[1].forward = lambda x: x  # type: ignore[method-assign]  # present, never used
    x, y = mnist_slice.train_x[:32], mnist_slice.train_y[:32]
    loss, _, penalty = fd_batch_loss(model, x, y, 100.0, 0.1)
    loss.backward()
    assert model[1].weight.grad is None and float(penalty) > 0
    assert all(p.grad is not None for p in model[0].parameters())


class _Recording(torch.nn.Module):
    """Wraps a model and keeps every input batch it is called on."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.inputs = inner, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.inner(x)


@pytest.mark.parametrize("direction", ["batch", "example"])
def test_fd_second_pass_moves_each_example_h_up_its_gradient(mnist_slice, direction):
    """The second forward pass is at the input moved *up* the loss's gradient, by h per example (batch: one
    direction for the whole batch, scaled so that the moves' root-mean-square L2 length is h)."""
    from igbench.defenses.common import cross_entropy

    model = _Recording(build("mlp").double().eval())
    x, y = mnist_slice.test_x[:16].double(), mnist_slice.test_y[:16]
    h = 0.05
    _fd_penalty(direction, model, x, y, h, "paper")
    assert len(model.inputs) == 2 and torch.equal(model.inputs[0], x)
    move = (model.inputs[1] - x).flatten(1)
    xr = x.clone().requires_grad_(True)
    if direction == "batch":
        (g,) = torch.autograd.grad(cross_entropy(model.inner(xr), y), xr)
        g = g.flatten()
        assert float(move.norm(dim=1).pow(2).mean().sqrt()) == pytest.approx(h, rel=1e-6)
        assert float(torch.nn.functional.cosine_similarity(move.flatten(), g, dim=0)) > 1 - 1e-9
    else:
        (g,) = torch.autograd.grad(cross_entropy(model.inner(xr), y, reduction="sum"), xr)
        assert torch.allclose(move.norm(dim=1), torch.full((16,), h, dtype=move.dtype))
        assert bool((torch.nn.functional.cosine_similarity(move, g.flatten(1), dim=1) > 1 - 1e-9).all())


# --------------------------------------------------------------------------- BatchNorm statistics
def _bn_layers(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name", ["gradreg-fd", "advtrain", "advtrain+gradreg"])
def test_extra_forward_passes_leave_batchnorm_statistics_alone(mnist_slice, name):
    """One training loss = one update of the running statistics, from the clean batch, as with `none`."""
    plugin = get_registry().get("defense", name)
    trainer = make_trainer(mnist_slice, "paper-cnn")
    x, y = mnist_slice.train_x[:32], mnist_slice.train_y[:32]
    ref, model = build("paper-cnn").train(), build("paper-cnn").train()
    with torch.no_grad():
        ref(x)
    plugin.loss(model, x, y, plugin.resolve_params({"lambda": 10.0} if name != "advtrain" else {}), trainer)
    for a, b in zip(_bn_layers(ref), _bn_layers(model)):
        assert int(b.num_batches_tracked) == int(a.num_batches_tracked)
        assert torch.allclose(a.running_mean, b.running_mean, atol=1e-6)
        assert torch.allclose(a.running_var, b.running_var, rtol=1e-5)
        assert b.momentum == 0.1 and b.training


@pytest.mark.parametrize("name", ["advtrain", "advtrain+gradreg"])
def test_bn_stats_both_updates_running_statistics_from_the_fgsm_batch_too(mnist_slice, name):
    """The study's code: each step's clean and FGSM forward passes both move the running statistics."""
    plugin = get_registry().get("defense", name)
    trainer = make_trainer(mnist_slice, "paper-cnn")
    x, y = mnist_slice.train_x[:32], mnist_slice.train_y[:32]
    clean_only, both = build("paper-cnn").train(), build("paper-cnn").train()
    extra = {"lambda": 10.0} if name != "advtrain" else {}
    torch.manual_seed(0)
    plugin.loss(clean_only, x, y, plugin.resolve_params(extra), trainer)
    torch.manual_seed(0)
    plugin.loss(both, x, y, plugin.resolve_params({**extra, "bn_stats": "both"}), trainer)
    for a, b in zip(_bn_layers(clean_only), _bn_layers(both)):
        assert int(a.num_batches_tracked) == 1 and int(b.num_batches_tracked) == 2
        assert float((a.running_mean - b.running_mean).abs().max()) > 1e-4
        assert b.momentum == 0.1


def test_advtrain_gradreg_averages_the_penalised_loss_with_the_fgsm_loss(mnist_slice):
    """The study's combination: (CE + lambda * penalty + CE(FGSM)) / 2, so lambda counts half."""
    from igbench.defenses.advtrain import adversarial_loss
    from igbench.defenses.common import gradreg_terms

    model = build("paper-cnn", {"dropout": 0.0}).train()
    x, y = mnist_slice.train_x[:32], mnist_slice.train_y[:32]
    plain, _ = adversarial_loss(model, x, y, 0.3, "predicted", 0.0, 1.0)
    combined, _ = adversarial_loss(model, x, y, 0.3, "predicted", 0.0, 1.0, lam=1000.0, scaling="paper")
    _, penalty, _ = gradreg_terms(model, x, y, "paper", create_graph=False)
    assert float(penalty) > 0
    assert float((combined - plain).detach()) == pytest.approx(1000.0 * float(penalty) / 2, rel=1e-4)


@pytest.mark.parametrize("label", ["predicted", "true"])
def test_advtrain_loss_is_the_mean_of_clean_and_fgsm_cross_entropy_at_its_eps(mnist_slice, plain_mlp, label):
    """advtrain's loss, written out with torch: (CE(x) + CE(clip(x + eps * sign(grad CE(x, labels))))) / 2,
    the FGSM labels being the model's own predictions (the paper) or the true ones, at the eps it is given."""
    plugin = get_registry().get("defense", "advtrain")
    trainer = make_trainer(mnist_slice)
    model = plain_mlp.eval()
    with torch.no_grad():
        wrong = predict_logits(model, mnist_slice.test_x).argmax(1) != mnist_slice.test_y
    # half the batch misclassified, so that the two label rules make different examples
    pick = torch.cat([wrong.nonzero().flatten()[:24], (~wrong).nonzero().flatten()[:24]])
    assert pick.numel() == 48
    x, y = mnist_slice.test_x[pick], mnist_slice.test_y[pick]
    with torch.no_grad():
        predicted = model(x).argmax(1)

    def written_out(eps, labels):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), labels, reduction="sum"), xr)
        x_adv = (x + eps * g.sign()).clamp(0, 1)
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy
            return float((ce(model(x), y) + ce(model(x_adv), y)) / 2)

    losses = {}
    for eps in (0.05, 0.2):
        loss, logits = plugin.loss(model, x, y, plugin.resolve_params({"eps": eps, "label": label}), trainer)
        assert torch.equal(logits.detach(), model(x).detach())
        losses[eps] = float(loss.detach())
        assert losses[eps] == pytest.approx(written_out(eps, predicted if label == "predicted" else y), rel=1e-5)
    assert losses[0.2] > 1.2 * losses[0.05]  # a bigger step, a larger adversarial loss
    other = written_out(0.2, y if label == "predicted" else predicted)
    assert losses[0.2] != pytest.approx(other, rel=1e-3)  # the two label rules give different examples


def test_fgsm_for_training_helper(mnist_slice):
    from igbench.defenses.common import fgsm_for_training

    model = build("paper-cnn").train()
    x = mnist_slice.train_x[:16]
    before = [b.running_mean.clone() for b in _bn_layers(model)]
    x_adv = fgsm_for_training(model, x, None, 0.3, 0.0, 1.0)
    assert not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    moved = (x_adv - x).abs()
    assert float(moved.max()) == pytest.approx(0.3, abs=1e-6)
    # only pixels that the clip stopped move by less than eps
    inner = (x > 0.3) & (x < 0.7)
    assert torch.allclose(moved[inner], torch.full_like(moved[inner], 0.3), atol=1e-6)
    assert all(torch.equal(a, b.running_mean) for a, b in zip(before, _bn_layers(model)))
    assert model.training


def test_mean_input_grad_norm_is_the_mean_of_each_examples_l2_norm_in_eval_mode(mnist_slice):
    """The recorded input_grad_norm: mean over images of ||dCE_i/dx_i||_2 (not squared, not summed), with
    BatchNorm and dropout in eval mode whatever mode the model is in, over batches of any size."""
    from igbench.defenses.common import cross_entropy

    model = build("paper-cnn").double().train()
    x, y = mnist_slice.test_x[:20].double(), mnist_slice.test_y[:20]
    norms = []
    model.eval()
    for i in range(20):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(cross_entropy(model(xi), y[i:i + 1]), xi)
        norms.append(float(g.norm()))
    model.train()
    assert mean_input_grad_norm(model, x, y, batch_size=7) == pytest.approx(sum(norms) / 20, rel=1e-9)
    assert model.training and all(m.training for m in model.modules())


# --------------------------------------------------------------------------- training effects
@pytest.fixture(scope="module")
def gradreg_models(mnist_slice):
    return {name: train_defense(mnist_slice, name, {"lambda": 300.0}) for name in ("gradreg", "gradreg-fd")}


@pytest.mark.parametrize("name", ["gradreg", "gradreg-fd"])
def test_gradreg_shrinks_input_gradients_at_similar_accuracy(mnist_slice, plain_mlp, gradreg_models, name):
    data = mnist_slice
    model = gradreg_models[name]
    norm_plain = mean_input_grad_norm(plain_mlp, data.test_x, data.test_y)
    norm_reg = mean_input_grad_norm(model, data.test_x, data.test_y)
    acc_plain = accuracy(plain_mlp, data.test_x, data.test_y)
    acc_reg = accuracy(model, data.test_x, data.test_y)
    assert acc_plain > 0.85
    assert norm_reg * 2 < norm_plain, (norm_reg, norm_plain)
    assert abs(acc_reg - acc_plain) < 0.05, (acc_reg, acc_plain)


def test_bf16_training_keeps_what_each_defense_is_for(mnist_slice, plain_mlp):
    """Under bfloat16 autocast the plain model is as accurate as in fp32 and gradreg (double backprop
    through bf16 matrix products) still shrinks the input gradient; the weights stay float32 and are not
    the fp32 model's (autocast really ran)."""
    data = mnist_slice
    none16 = train_defense(data, "none", precision="bf16")
    reg16 = train_defense(data, "gradreg", {"lambda": 300.0}, precision="bf16")
    assert all(p.dtype == torch.float32 for p in none16.parameters())
    assert not torch.equal(next(none16.parameters()), next(plain_mlp.parameters()))
    acc16, acc32 = accuracy(none16, data.test_x, data.test_y), accuracy(plain_mlp, data.test_x, data.test_y)
    assert abs(acc16 - acc32) < 0.03, (acc16, acc32)
    norm_none = mean_input_grad_norm(none16, data.test_x, data.test_y)
    norm_reg = mean_input_grad_norm(reg16, data.test_x, data.test_y)
    assert norm_reg * 2 < norm_none, (norm_reg, norm_none)
    assert abs(accuracy(reg16, data.test_x, data.test_y) - acc16) < 0.05


def test_precision_is_part_of_a_models_configuration():
    """bf16 models get their own checkpoint hashes; fp32 configurations describe themselves as before
    the option existed (so their cached checkpoints keep their keys); a typo is a one-line error."""
    from igbench.errors import UsageError

    assert "precision" not in TrainConfig().describe()
    assert TrainConfig(precision="bf16").describe() == {**TrainConfig().describe(), "precision": "bf16"}
    with pytest.raises(UsageError, match=r"^--precision must be one of fp32, bf16, got 'fp16'$"):
        TrainConfig(precision="fp16")


def test_memory_format_is_recorded_where_the_model_ran_not_hashed():
    """Like the thread count, the layout changes rounding only: a cached model serves either layout."""
    from igbench.errors import UsageError

    assert TrainConfig(memory_format="channels_last").describe() == TrainConfig().describe()
    with pytest.raises(UsageError, match=r"^--memory-format must be one of contiguous, channels_last, got 'nhwc'$"):
        TrainConfig(memory_format="nhwc")


@pytest.mark.parametrize("name", ["none", "gradreg", "advtrain+gradreg"])
def test_channels_last_training_is_the_same_arithmetic(mnist_slice, name):
    """One training step's loss and weight gradients are the same laid out channels-last as
    contiguously, up to float rounding (double backprop included): within 1% in norm, where a wrong
    layout anywhere gives errors of order one.

    Rounding moves more than the last digits here: the two layouts' kernels sum in other orders
    (channels-last BatchNorm statistics are ten times further from float64), and a max-pool or ReLU
    whose inputs are within that of a tie or a kink routes a whole gradient entry elsewhere. Hence
    noise images (MNIST's blank background makes exact ties), the softplus paper CNN (no ReLU kinks;
    0.2% apart in norm, against up to 0.9% with ReLU), and no `gradreg-fd`, whose finite difference divides
    such flips by its step."""
    from igbench.engine.memory_format import as_layout, training_layout
    from igbench.engine.train import backward_to_weights

    plugin = get_registry().get("defense", name)
    params = plugin.resolve_params({"lambda": 1000.0} if "gradreg" in name else {})
    trainer = make_trainer(mnist_slice, "paper-cnn-softplus", steps=1)
    x, y = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)), mnist_slice.train_y[:64]
    results = {}
    for layout in ("contiguous", "channels_last"):
        model = trainer.new_model().train()
        with training_layout(model, layout):
            loss, _ = plugin.loss(model, as_layout(x, layout), y, params, trainer)
            backward_to_weights(loss, model)
        results[layout] = float(loss.detach()), [p.grad.clone() for p in model.parameters()]
    (loss_c, grads_c), (loss_cl, grads_cl) = results["contiguous"], results["channels_last"]
    assert loss_cl == pytest.approx(loss_c, rel=1e-4)
    errors = [float((g_cl - g_c).norm() / g_c.norm()) for g_c, g_cl in zip(grads_c, grads_cl)]
    assert max(errors) < 1e-2, errors


def test_a_channels_last_training_records_its_layout_and_returns_a_contiguous_model(mnist_slice):
    trainer = make_trainer(mnist_slice, "paper-cnn", steps=2, memory_format="channels_last")
    plugin = get_registry().get("defense", "none")
    model = plugin.train(trainer, plugin.resolve_params({}))
    assert all(p.is_contiguous() for p in model.parameters()), "checkpoints, evaluation and attacks as usual"
    assert trainer.ran_on == [{"device": "cpu", "torch_threads": 1, "memory_format": "channels_last",
                               "cpu": cpu_model()}]


def test_a_model_that_cannot_run_channels_last_is_a_one_line_error_naming_the_fix(registry, install, mnist_slice):
    """A third-party architecture that flattens with ``.view`` fails on a channels-last activation; the
    training stops with one line naming both ways out, not torch's traceback."""
    import torch.nn as nn

    from igbench.plugin_types import ArchitecturePlugin

    class ViewFlatten(nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], -1)

    class ViewCNN(ArchitecturePlugin):
        name = "view-cnn"
        summary = "a conv layer, then .view"

        def build(self, input_shape, num_classes, params):
            return nn.Sequential(nn.Conv2d(input_shape[0], 4, 3, padding=1), ViewFlatten(),
                                 nn.Linear(4 * input_shape[1] * input_shape[2], num_classes))

    install(ViewCNN())
    plugin = registry.get("defense", "none")
    with pytest.raises(TrainingError) as err:
        plugin.train(make_trainer(mnist_slice, "view-cnn", steps=1, memory_format="channels_last"), {})
    msg = str(err.value)
    assert "\n" not in msg and "--memory-format contiguous" in msg and ".reshape" in msg, msg
    model = plugin.train(make_trainer(mnist_slice, "view-cnn", steps=1), {})  # contiguous: fine
    assert isinstance(model, nn.Sequential)


def test_certainty_insensitivity_flattens_the_gradient_the_paper_draws(mnist_slice, plain_mlp):
    """After the same training as `none`, the gradient of the summed log-probabilities (the paper's
    gradient figures, the quantity this penalty differentiates) is much smaller, at similar accuracy."""
    from igbench.interpret.measures import input_gradients

    data = mnist_slice
    model = train_defense(data, "certainty-insensitivity", {"lambda": 300.0})
    x = data.test_x[:500]
    norm = {name: float(input_gradients(m, x).flatten(1).norm(dim=1).mean())
            for name, m in (("none", plain_mlp), ("certainty", model))}
    acc_plain = accuracy(plain_mlp, data.test_x, data.test_y)
    acc_ci = accuracy(model, data.test_x, data.test_y)
    assert norm["certainty"] * 2 < norm["none"], norm
    assert abs(acc_ci - acc_plain) < 0.05, (acc_ci, acc_plain)


def test_advtrain_resists_fgsm_at_its_eps(mnist_slice, plain_mlp):
    data = mnist_slice
    adv = train_defense(data, "advtrain", {"eps": 0.3}, epochs=5)
    x, y = data.test_x, data.test_y
    acc_plain, acc_adv = fgsm_accuracy(plain_mlp, x, y, 0.3), fgsm_accuracy(adv, x, y, 0.3)
    assert acc_adv > acc_plain + 0.2, (acc_adv, acc_plain)
    assert accuracy(adv, x, y) > 0.8


class RecordingTrainer(Trainer):
    """A Trainer that remembers every fit call's targets and steps."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = []
        self.offsets = []

    def new_model(self, offset=0):
        self.offsets.append(offset)
        return super().new_model(offset)

    def fit(self, model, loss_fn, desc=None, targets=None, steps=None):
        self.calls.append({"desc": desc, "targets": targets, "steps": steps})
        return super().fit(model, loss_fn, desc, targets, steps)


def test_distillation(mnist_slice, plain_mlp, tmp_path):
    """Teacher's soft labels are soft; the student follows them at T and is very sharp at T = 1.

    (Compared at the same temperature T, a hard-label model is *softer* than the student: its logits are
    about T times smaller. The known effect of defensive distillation is the reverse at T = 1.)
    """
    data = mnist_slice
    T = 20.0
    plugin = get_registry().get("defense", "distillation")
    arch = get_registry().get("architecture", "mlp")
    trainer = RecordingTrainer(data, arch, arch.resolve_params({}),
                               TrainConfig(epochs=5, batch_size=BATCH, lr=3e-3), progress=False)
    student = plugin.train(trainer, plugin.resolve_params({"T": T, "teacher_fraction": 0.5,
                                                           "teacher_max_steps": 100}))
    total = trainer.config.total_steps(data.train_x.shape[0])
    teacher_call, student_call = trainer.calls
    assert teacher_call["steps"] == min(100, round(0.5 * total)) and teacher_call["targets"] is None
    assert "teacher" in teacher_call["desc"] and "student" in student_call["desc"]
    assert trainer.offsets == [0, 1]  # the student is a fresh network, not the teacher's initial weights

    soft = student_call["targets"]
    assert soft.shape == (data.train_x.shape[0], 10)
    assert torch.allclose(soft.sum(1), torch.ones(soft.shape[0]), atol=1e-5)
    assert 0.3 < float(soft.max(1).values.mean()) < 0.99  # genuinely soft, not one-hot
    assert float((soft.argmax(1) == data.train_y).float().mean()) > 0.85

    def sharpness(model, temperature):
        p = torch.softmax(predict_logits(model, data.test_x) / temperature, dim=1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(1).mean()
        return float(p.max(1).values.mean()), float(entropy)

    max_student, ent_student = sharpness(student, 1.0)
    max_plain, ent_plain = sharpness(plain_mlp, 1.0)
    assert max_student > max_plain and ent_student < 0.5 * ent_plain
    # at T the student reproduces the teacher's soft labels closely (KL much below that of uniform)
    p_student = torch.softmax(predict_logits(student, data.train_x) / T, dim=1)
    kl = float((soft * (soft.clamp_min(1e-30).log() - p_student.clamp_min(1e-30).log())).sum(1).mean())
    kl_uniform = float((soft * (soft.clamp_min(1e-30).log() + math.log(10))).sum(1).mean())
    assert kl < 0.25 * kl_uniform, (kl, kl_uniform)
    assert accuracy(student, data.test_x, data.test_y) > 0.8

    # a trained model's weights round-trip through torch.save / torch.load(weights_only=True)
    path = tmp_path / "student.pt"
    torch.save(student.state_dict(), path)
    fresh = build("mlp", seed=5)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(predict_logits(fresh, data.test_x[:50]), predict_logits(student, data.test_x[:50]))


@pytest.mark.parametrize("fraction, cap, expected", [(0.25, 10000, 0.25), (1.0, 10000, 1.0), (0.5, 7, None)])
def test_distillation_teacher_steps_are_its_fraction_of_the_run_at_most_the_cap(mnist_slice, fraction, cap, expected):
    plugin = get_registry().get("defense", "distillation")
    trainer = make_trainer(mnist_slice, steps=200)
    steps = plugin.teacher_steps(trainer, plugin.resolve_params({"teacher_fraction": fraction,
                                                                 "teacher_max_steps": cap}))
    assert steps == (cap if expected is None else round(expected * 200))


def test_the_seed_decides_the_initial_weights_and_the_batch_order(mnist_slice):
    """Same seed: the same initial weights and batches; another seed (or a second model's offset): others."""
    def first_weights(trainer, offset=0):
        return next(trainer.new_model(offset).parameters()).detach().clone()

    def labels_seen(trainer):
        seen = []

        def loss(model, x, y):
            seen.append(y.clone())
            logits = model(x)
            return torch.nn.functional.cross_entropy(logits, y), logits

        trainer.fit(build("mlp"), loss, steps=3)
        return torch.cat(seen)

    a, b, c = (make_trainer(mnist_slice, seed=s, steps=3) for s in (0, 0, 1))
    assert torch.equal(first_weights(a), first_weights(b))
    assert not torch.equal(first_weights(a), first_weights(c))
    assert not torch.equal(first_weights(a), first_weights(a, offset=1))
    assert torch.equal(first_weights(a, offset=1), first_weights(b, offset=1))
    assert torch.equal(labels_seen(a), labels_seen(b))
    assert not torch.equal(labels_seen(a), labels_seen(c))


def test_paper_cnn_state_dict_loads_weights_only(mnist_slice, tmp_path):
    """The BatchNorm buffers too (num_batches_tracked is an int64 tensor)."""
    model = train_defense(mnist_slice.subset(n_train=128), "gradreg-fd", {"lambda": 10.0}, arch_name="paper-cnn",
                          epochs=1, batch_size=64)
    path = tmp_path / "cnn.pt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    fresh = build("paper-cnn", seed=3)
    fresh.load_state_dict(state)
    fresh.eval()
    assert torch.equal(predict_logits(fresh, mnist_slice.test_x[:20]), predict_logits(model, mnist_slice.test_x[:20]))


# --------------------------------------------------------------------------- failures
def test_infinite_lambda_raises_training_error_naming_defense_and_step(mnist_slice, registry):
    # inf itself is refused with the other parameters, before anything trains ...
    with pytest.raises(ParamError, match="parameter 'lambda' of defense 'gradreg' must be a finite number"):
        registry.get("defense", "gradreg").resolve_params({"lambda": "inf"})
    # ... a finite lambda past float32's range still makes the loss infinite: stopped at its first step
    with pytest.raises(TrainingError) as exc:
        train_defense(mnist_slice, "gradreg", {"lambda": 1e300})
    msg = str(exc.value)
    assert "gradreg" in msg and "step 1/" in msg and "\n" not in msg


def test_nan_loss_in_distillation_names_the_stage(mnist_slice, monkeypatch):
    import igbench.defenses.distillation as distillation

    calls = {"n": 0}
    real = distillation.cross_entropy

    def nan_on_third(logits, targets, **kw):
        calls["n"] += 1
        out = real(logits, targets, **kw)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(distillation, "cross_entropy", nan_on_third)
    with pytest.raises(TrainingError) as exc:
        train_defense(mnist_slice, "distillation", {"T": 10})
    msg = str(exc.value)
    assert "distillation teacher" in msg and "step 3/" in msg


@pytest.mark.parametrize("failing_step", [1, 3])
def test_a_step_out_of_memory_is_one_line_naming_the_batch_size(mnist_slice, monkeypatch, failing_step):
    """torch's CPU allocator raises a RuntimeError (`--batch-size 30000` on full MNIST under a 12 GB limit):
    it was a traceback from the model's max-pool; at step 1 it must not be blamed on the architecture."""
    import igbench.defenses.plain as plain

    calls = {"n": 0}
    real = plain.plain_loss

    def allocation_fails(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == failing_step:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 3010560000 bytes. Error code 12")
        return real(*args, **kwargs)

    monkeypatch.setattr(plain, "plain_loss", allocation_fails)
    with pytest.raises(TrainingError) as exc:
        train_defense(mnist_slice, "none", steps=5, batch_size=32)
    assert str(exc.value) == (f"none: ran out of memory at step {failing_step}/5, training on batches of 32 images; "
                              f"lower --batch-size (the paper used 256)")
    if failing_step == 3:  # while --monitor-every measures the model, --batch-size is not the advice
        from igbench.engine.monitor import TrainingMonitor

        monkeypatch.setattr(plain, "plain_loss", real)
        monkeypatch.setattr(TrainingMonitor, "measure", lambda self, model: (_ for _ in ()).throw(MemoryError()))
        plugin = get_registry().get("defense", "none")
        trainer = make_trainer(mnist_slice, steps=5, batch_size=32)
        trainer.monitor = TrainingMonitor.for_data(mnist_slice, 2, 0.2, trainer.device)  # --monitor-every 2
        with pytest.raises(TrainingError, match=r"^none: ran out of memory at step 2/5, measuring it for "
                                                r"--monitor-every; free some memory or monitor less often$"):
            plugin.train(trainer, plugin.resolve_params({}))
    monkeypatch.setattr(plain, "plain_loss", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):  # any other error is not called memory
        train_defense(mnist_slice, "none", steps=5, batch_size=32)


def test_predict_logits_runs_in_eval_mode_and_gives_the_model_back_as_it_was(mnist_slice):
    """It left a model in eval mode (its sibling helpers restore the caller's flags) and found the device
    through the first parameter, which a parameterless model lacks."""
    model = build("paper-cnn").train()
    x = mnist_slice.test_x[:16]
    with torch.no_grad():
        want = model.eval()(x)
    model.train()
    assert torch.allclose(predict_logits(model, x, batch_size=5), want, atol=1e-6)  # eval mode: no dropout, BN stats
    assert model.training and all(m.training for m in model.modules())
    flat = torch.nn.Flatten()
    assert torch.equal(predict_logits(flat, x), x.flatten(1))
