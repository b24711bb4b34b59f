"""Third-party plugins that return the wrong thing or raise: one line naming the plugin, its package and
the fix, instead of a traceback from inside torch or igbench.

Throwaway plugins are registered from a fake package through the ``registry`` fixture; each training is
a step or two of the `mlp` on 256 real MNIST digits.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from igbench.engine.attack import make_context, run_attack
from igbench.engine.cache import CheckpointStore
from igbench.engine.models import ModelSpec, obtain_model
from igbench.engine.train import TrainConfig, Trainer, accuracy
from igbench.errors import ParamError, PluginCrashed, PluginError, TrainingError
from igbench.plugin_types import ArchitecturePlugin, AttackPlugin, DefensePlugin, LossDefense, Param

PACKAGE = "igbench-broken"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small(mnist_slice):
    return mnist_slice.subset(n_train=256, n_test=64)


@pytest.fixture
def five_classes(small):
    """The same digits relabelled into 5 classes."""
    return replace(small, train_y=small.train_y % 5, test_y=small.test_y % 5, num_classes=5)


@pytest.fixture
def install(install):
    """The shared ``install``, with this module's fake package as the default source."""
    return functools.partial(install, source=PACKAGE)


def trainer(data, arch="mlp", steps=2, **kw):
    from igbench.registry import get_registry

    plugin = get_registry().get("architecture", arch)
    return Trainer(data, plugin, plugin.resolve_params({}), TrainConfig(steps=steps, batch_size=32, **kw),
                   progress=False)


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


class ReturnsLoss(LossDefense):
    """A LossDefense whose ``loss`` returns ``make(model, x, y)``."""

    summary = "test defense"

    def __init__(self, name, make):
        self.name, self.make = name, make

    def loss(self, model, x, y, params, trainer):
        return self.make(model, x, y)


def _ce(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits, y), logits


class Builds(ArchitecturePlugin):
    summary = "test architecture"

    def __init__(self, name, make):
        self.name, self.make = name, make

    def build(self, input_shape, num_classes, params):
        return self.make(input_shape, num_classes)


def _mlp(input_shape, num_classes, dtype=torch.float32):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes, dtype=dtype))


# --------------------------------------------------------------------------- exceptions inside plugins
class Raises(LossDefense):
    summary = "test defense"

    def __init__(self, name, exc):
        self.name, self.exc = name, exc

    def loss(self, model, x, y, params, trainer):
        raise self.exc


class RaisingTrain(DefensePlugin):
    name = "raising-train"
    summary = "test defense"

    def train(self, trainer, params):
        raise RuntimeError("no GPU here\nsecond line")


class RaisingAttack(AttackPlugin):
    name = "raising-attack"
    summary = "test attack"

    def perturb(self, model, x, y, params, ctx):
        raise ZeroDivisionError("division by zero")


TAIL = (" (raised in that package's code, not igbench's: check the plugin's parameters, or report it to its "
        "authors; run with IGBENCH_DEBUG=1 for the traceback)")


def test_an_exception_inside_a_third_party_loss_is_one_line_naming_plugin_package_and_method(install, small):
    (defense,) = install(Raises("boom", ValueError("bad shape for lambda")))
    with pytest.raises(PluginCrashed) as err:
        defense.train(trainer(small), {})
    assert one_line(err) == f"defense 'boom' from package '{PACKAGE}' failed in loss: ValueError: bad shape for lambda" + TAIL
    assert isinstance(err.value.original, ValueError) and err.value.__cause__ is err.value.original


def test_igbench_debug_lets_the_original_exception_through(install, small, monkeypatch):
    (defense,) = install(Raises("boom", ValueError("bad shape for lambda")))
    monkeypatch.setenv("IGBENCH_DEBUG", "1")
    with pytest.raises(ValueError, match="bad shape for lambda"):
        defense.train(trainer(small), {})


def test_a_plugin_call_out_of_memory_is_one_line_for_built_in_and_third_party_plugins(install, registry, small):
    """Out of memory where no other handler looks (an architecture's build, an attack's perturb) was a
    traceback from a built-in plugin and 'report it to its authors' from a third-party one."""
    from igbench.engine.model_checks import build_model
    from igbench.errors import UsageError

    class Huge(ArchitecturePlugin):
        name = "huge"
        summary = "test architecture"

        def build(self, input_shape, num_classes, params):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                               "tried to allocate 400000000000 bytes")

    for source in ("igbench", "huge-pkg"):
        (arch,) = install(Huge(), source=source)
        with pytest.raises(UsageError) as err:
            build_model(arch, (1, 28, 28), 10, {})
        assert one_line(err).startswith("architecture 'huge'") and "report it to its authors" not in one_line(err)
        assert "ran out of memory in build (RuntimeError: [enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator" \
            in one_line(err) and one_line(err).endswith("; free some, or choose smaller settings (--batch-size, "
                                                        "--n-test, the plugins' parameters)")
        registry.refresh()


def test_igbench_errors_and_builtin_plugins_are_not_wrapped(install, small):
    (param_error,) = install(Raises("says-param", ParamError("parameter 'x' must be > 0")))
    with pytest.raises(ParamError, match="^parameter 'x' must be > 0$"):
        param_error.train(trainer(small), {})
    (builtin,) = install(Raises("builtin-boom", ValueError("an igbench bug")), source="igbench")
    with pytest.raises(ValueError, match="an igbench bug"):
        builtin.train(trainer(small), {})


def test_exceptions_in_train_and_perturb_name_the_plugin(install, registry, small, tmp_path):
    install(RaisingTrain(), RaisingAttack())
    spec = ModelSpec(id="raising-train", defense="raising-train", arch="mlp")
    with pytest.raises(PluginCrashed) as err:
        obtain_model(spec, small, TrainConfig(steps=1, batch_size=32), CheckpointStore(tmp_path), progress=False)
    assert one_line(err) == f"defense 'raising-train' from package '{PACKAGE}' failed in train: RuntimeError: no GPU here" + TAIL

    model = _mlp((1, 28, 28), 10).eval()
    with pytest.raises(PluginCrashed) as err:
        run_attack(registry.get("attack", "raising-attack"), {}, model, small.test_x[:4], small.test_y[:4],
                   make_context(small), progress=False)
    assert one_line(err) == (f"attack 'raising-attack' from package '{PACKAGE}' failed in perturb: "
                             "ZeroDivisionError: division by zero" + TAIL)


def test_a_third_party_loss_on_a_view_model_still_gets_the_channels_last_advice(install, small):
    class ViewFlatten(nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], -1)

    def view_cnn(s, k):
        return nn.Sequential(nn.Conv2d(s[0], 4, 3, padding=1), ViewFlatten(), nn.Linear(4 * s[1] * s[2], k))

    _, defense = install(Builds("view-cnn", view_cnn), ReturnsLoss("plain-ce", _ce))
    with pytest.raises(TrainingError) as err:
        defense.train(trainer(small, "view-cnn", steps=1, memory_format="channels_last"), {})
    assert "--memory-format contiguous" in one_line(err)


# --------------------------------------------------------------------------- DefensePlugin.train
class ReturnsFromTrain(DefensePlugin):
    summary = "test defense"

    def __init__(self, name, value):
        self.name, self.value = name, value

    def train(self, trainer, params):
        model = trainer.new_model()
        return self.value(model)


@pytest.mark.parametrize("value, expected", [
    (lambda m: None, "train returned None; return a torch.nn.Module"),
    (lambda m: (m, {"acc": 1.0}), "train returned a tuple of 2; return a torch.nn.Module"),
    (lambda m: m.forward, "train returned the function forward; return a torch.nn.Module"),
])
def test_a_defense_whose_train_returns_no_model_is_named(install, small, tmp_path, value, expected):
    install(ReturnsFromTrain("no-model", value))
    spec = ModelSpec(id="no-model", defense="no-model", arch="mlp")
    with pytest.raises(PluginError) as err:
        obtain_model(spec, small, TrainConfig(steps=1, batch_size=32), CheckpointStore(tmp_path), progress=False)
    msg = one_line(err)
    assert msg.startswith(f"defense 'no-model' from package '{PACKAGE}': {expected}"), msg
    assert not list(tmp_path.glob("models/*.pt")), "nothing is cached"


# --------------------------------------------------------------------------- ArchitecturePlugin.build
class _NoParams(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


@pytest.mark.parametrize("make, expected", [
    (lambda s, k: nn.Sequential, "build returned the class Sequential, not a model; return an instance: Sequential(...)"),
    (lambda s, k: None, "build returned None; return a torch.nn.Module"),
    (lambda s, k: _mlp, "build returned the function _mlp; return a torch.nn.Module"),
    (lambda s, k: _NoParams(), "build returned a model without parameters"),
    (lambda s, k: _mlp(s, k, torch.float64), "build returned a model with float64 parameters"),
])
def test_an_architecture_that_builds_no_usable_model_is_named(install, registry, small, make, expected):
    install(Builds("bad-build", make))
    none = registry.get("defense", "none")
    with pytest.raises(PluginError) as err:
        none.train(trainer(small, "bad-build"), {})
    msg = one_line(err)
    assert msg.startswith(f"architecture 'bad-build' from package '{PACKAGE}': {expected}"), msg

class RaisingBuild(ArchitecturePlugin):
    name = "raising-build"
    summary = "test architecture"

    def build(self, input_shape, num_classes, params):
        return {}["width"]


def test_an_exception_inside_a_third_party_build_is_named(install, registry, small):
    install(RaisingBuild())
    with pytest.raises(PluginCrashed) as err:
        registry.get("defense", "none").train(trainer(small, "raising-build"), {})
    assert one_line(err) == f"architecture 'raising-build' from package '{PACKAGE}' failed in build: KeyError: 'width'" + TAIL


# --------------------------------------------------------------------------- what a loss returns, model outputs
BAD_LOSSES = {
    "scalar-only": (lambda m, x, y: _ce(m, x, y)[0], "got a tensor of shape ()"),
    "swapped": (lambda m, x, y: _ce(m, x, y)[::-1], "are loss and logits swapped?"),
    "per-example": (lambda m, x, y: (F.cross_entropy(m(x), y, reduction="none"), m(x)),
                    "got a loss of shape (32,); reduce it with .mean()"),
    "python-float": (lambda m, x, y: (_ce(m, x, y)[0].item(), m(x)), "got a float as the loss"),
    "detached": (lambda m, x, y: (_ce(m, x, y)[0].detach(), m(x)), "does not require grad"),
    "sliced-logits": (lambda m, x, y: (_ce(m, x, y)[0], m(x)[:, :5]), "got logits of shape (32, 5)"),
}


@pytest.mark.parametrize("case", sorted(BAD_LOSSES))
def test_a_loss_that_returns_the_wrong_thing_names_the_defense_and_what_to_return(install, small, case):
    make, expected = BAD_LOSSES[case]
    (defense,) = install(ReturnsLoss(f"bad-{case}", make))
    with pytest.raises(PluginError) as err:
        defense.train(trainer(small), {})
    msg = one_line(err)
    assert msg.startswith(f"defense 'bad-{case}' from package '{PACKAGE}': loss must return "
                          "(scalar loss tensor, logits of shape (batch, num_classes) = (32, 10))"), msg
    assert expected in msg, msg


def test_a_one_element_loss_still_trains_as_before(install, small):
    """A loss of shape (1,) always worked (backward and float() accept it): the check lets it through."""
    (defense,) = install(ReturnsLoss("one-element", lambda m, x, y: (_ce(m, x, y)[0].reshape(1), m(x))))
    model = defense.train(trainer(small), {})
    assert isinstance(model, nn.Module)


def test_a_model_with_the_wrong_number_of_outputs_is_caught_on_the_first_step_and_in_evaluation(
        install, registry, five_classes):
    (arch,) = install(Builds("ten-out", lambda s, k: _mlp(s, 10)))
    none = registry.get("defense", "none")
    with pytest.raises(PluginError) as err:  # cross-entropy accepts 10 logits for labels 0..4: it trained
        none.train(trainer(five_classes, "ten-out"), {})
    msg = one_line(err)
    assert msg.startswith(f"architecture 'ten-out' from package '{PACKAGE}' built a model with 10 outputs for "
                          "5 classes; its model must output logits of shape (batch, num_classes)"), msg
    model = _mlp((1, 28, 28), 10)
    with pytest.raises(PluginError, match="built a model with 10 outputs for 5 classes"):
        accuracy(model, five_classes.test_x, five_classes.test_y, arch=arch, num_classes=5)
    assert 0 <= accuracy(model, five_classes.test_x, five_classes.test_y) <= 1  # unchecked, as before


def test_a_model_with_one_dimensional_output_is_named_although_the_loss_fails_first(install, registry, small):
    install(Builds("flat-out", lambda s, k: nn.Sequential(_mlp(s, k), nn.Flatten(0))))
    none = registry.get("defense", "none")
    with pytest.raises(PluginError) as err:  # the built-in loss's cross_entropy fails on it first
        none.train(trainer(small, "flat-out"), {})
    msg = one_line(err)
    assert msg.startswith(f"architecture 'flat-out' from package '{PACKAGE}' built a model whose output has shape "
                          "(320,) for a batch of 32 and 10 classes"), msg


# --------------------------------------------------------------------------- NaN
class Lambda(LossDefense):
    name = "with-lambda"
    summary = "test defense"
    params = (Param("lambda", 1.0, "penalty weight"),)

    def loss(self, model, x, y, params, trainer):
        loss, logits = _ce(model, x, y)
        return loss * float("inf"), logits


class NoParams(Lambda):
    name = "no-params"
    params = ()


def test_a_nan_loss_mentions_lambda_only_for_a_defense_that_has_one(install, small):
    with_lambda, no_params = install(Lambda(), NoParams())
    with pytest.raises(TrainingError) as err:
        no_params.train(trainer(small), {})
    msg = one_line(err)
    assert msg.startswith("no-params: loss became inf at step 1/2; lower the learning rate (--lr)") and "lambda" not in msg, msg
    with pytest.raises(TrainingError) as err:
        with_lambda.train(trainer(small), with_lambda.resolve_params({}))
    assert f"or the penalty weight of defense 'with-lambda' from package '{PACKAGE}' (--param lambda=...)" in one_line(err)


def test_a_nan_loss_from_nan_in_the_data_blames_the_data_set(registry, small):
    x = small.train_x.clone()
    x[:, :, 0, 0] = float("nan")
    with pytest.raises(TrainingError) as err:
        registry.get("defense", "none").train(trainer(replace(small, train_x=x)), {})
    msg = one_line(err)
    assert msg.startswith("none: loss became nan at step 1/2 because the training batch contains NaN or infinite "
                          "values: dataset 'mnist' produced them"), msg
    assert "lambda" not in msg and "--lr" not in msg, msg


# --------------------------------------------------------------------------- a third-party model that raises
def _no_flatten(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Conv2d(c, 2, 3, padding=1), nn.ReLU(), nn.Linear(2 * h * w, num_classes))


def test_a_third_party_model_that_cannot_run_is_named_when_a_built_in_defense_trains_it(install, registry, small):
    """A forgotten nn.Flatten failed inside torch's Linear under a built-in defense: a 70-line traceback that
    named neither the architecture nor its package."""
    install(Builds("no-flatten", _no_flatten))
    with pytest.raises(PluginCrashed) as err:
        registry.get("defense", "gradreg").train(trainer(small, "no-flatten"), {"lambda": 1.0})
    assert one_line(err).startswith(
        f"architecture 'no-flatten' from package '{PACKAGE}' built a model that fails on a batch of shape "
        "(32, 1, 28, 28): RuntimeError: mat1 and mat2 shapes cannot be multiplied"), one_line(err)


class CallsTheModel(AttackPlugin):
    name = "calls-the-model"
    summary = "test attack"

    def perturb(self, model, x, y, params, ctx):
        model(x)
        return x


class _FailsInEval(nn.Module):
    """Trains, then raises in its own forward once in eval mode (as an attack runs it)."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)

    def forward(self, x):
        if not self.training:
            raise ValueError("eval mode is not supported")
        return self.fc(x.flatten(1))


def test_an_error_in_a_third_party_models_forward_is_blamed_on_its_architecture_not_the_attack(install, registry, small):
    """It was reported as the attack's ("attack ... failed in perturb"), for a built-in attack as a traceback,
    and for an art: attack as a parameter problem ("check them against ART's documentation")."""
    (attack,) = install(CallsTheModel(), source="igbench-attacks")
    install(Builds("fails-in-eval", _FailsInEval), source="igbench-models")
    model = _FailsInEval((1, 28, 28), 10)
    x, y = small.test_x[:8], small.test_y[:8]
    for chosen in (attack, registry.get("attack", "fgsm"), registry.get("attack", "art:FastGradientMethod")):
        params = chosen.resolve_params({"eps": 0.1} if chosen.uses_eps else {})
        with pytest.raises(PluginCrashed) as err:
            run_attack(chosen, params, model, x, y, make_context(small), progress=False)
        msg = one_line(err)
        assert msg.startswith("architecture 'fails-in-eval' from package 'igbench-models' failed (in forward, "
                              "test_plugin_errors.py line "), msg
        assert f"while attack '{chosen.name}'" in msg and "ran perturb: ValueError: eval mode is not supported" in msg


# --------------------------------------------------------------------------- CONTRIBUTING's example, run
def test_contributing_attack_and_architecture_example_trains_attacks_and_reproduces(registry, small):
    """CONTRIBUTING.md shows an attack and an architecture in one module; its code is taken from the file
    as written, registered as a package would be, trained and attacked twice with the same seed."""
    import re
    import types
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("CONTRIBUTING.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "class RandomSign" in b]
    assert len(blocks) == 1, "the attack and architecture example is gone from CONTRIBUTING.md"
    module = types.ModuleType("contributing_example")
    exec(compile(blocks[0], "CONTRIBUTING.md", "exec"), module.__dict__)
    registry.register(module, source="igbench-contributing-example")
    arch, attack = registry.get("architecture", "tiny-cnn"), registry.get("attack", "random-sign")
    assert attack.uses_eps and arch.resolve_params({}) == {"width": 8} and registry.problems == []
    model = registry.get("defense", "none").train(trainer(small, "tiny-cnn", steps=30), {})
    x, y = small.test_x, small.test_y
    first = run_attack(attack, {"eps": 0.3}, model, x, y, make_context(small, seed=3), progress=False)[0]
    again = run_attack(attack, {"eps": 0.3}, model, x, y, make_context(small, seed=3), progress=False)[0]
    assert torch.equal(first, again) and abs(float((first - x).abs().max()) - 0.3) < 1e-5
    assert accuracy(model, first, y) < accuracy(model, x, y)  # noise at eps 0.3 costs the tiny model accuracy


class BadTargets(AttackPlugin):
    """Targeted (or not) as told; its targets() returns what ``make(y)`` makes."""

    summary = "test attack"

    def __init__(self, name, make, targeted=True):
        self.name, self.make, self.targeted = name, make, targeted

    def targets(self, model, x, y, params, ctx):
        return self.make(y)

    def perturb(self, model, x, y, params, ctx):
        return x


@pytest.mark.parametrize("make, targeted, expected", [
    (lambda y: None, True, "is targeted but its targets() returned None; return one target class per input"),
    (lambda y: (y + 1) % 10, False, "returned targets from targets() but is not targeted with these parameters"),
    (lambda y: ((y + 1) % 10)[:2], True, "returned (2,) from targets() for 4 labels; return one target class per "
                                         "input, a LongTensor of shape (4,)"),
    (lambda y: ((y + 1) % 10).float(), True, "returned a float32 tensor from targets(); return class indices as a "
                                             "LongTensor (int64)"),
    (lambda y: y + 10, True, "returned targets outside 0..9 from targets()"),
    (lambda y: y.clone(), True, "chose the true label as the target of 4 input(s); a target must differ"),
])
def test_targets_that_do_not_fit_the_attack_are_one_line(install, registry, small, make, targeted, expected):
    """An int32 or out-of-range target failed inside perturb (blamed on perturb); a targeted attack whose
    targets() returned None was recorded as targeted, with a success rate of 1.0."""
    (attack,) = install(BadTargets("bad-targets", make, targeted))
    with pytest.raises(PluginError) as err:
        run_attack(attack, {}, _mlp((1, 28, 28), 10).eval(), small.test_x[:4], small.test_y[:4], make_context(small),
                   progress=False)
    assert one_line(err).startswith(f"attack 'bad-targets' from package '{PACKAGE}' ") and expected in one_line(err)


def test_int32_targets_are_taken_as_class_indices(install, registry, small):
    (attack,) = install(BadTargets("int32-targets", lambda y: ((y + 1) % 10).int()))
    run = run_attack(attack, {}, _mlp((1, 28, 28), 10).eval(), small.test_x[:4], small.test_y[:4],
                     make_context(small), progress=False)
    assert run.targets.dtype == torch.int64 and torch.equal(run.targets, (small.test_y[:4] + 1) % 10)


class GlobalNoise(AttackPlugin):
    """Draws its noise from torch's and NumPy's global generators, not from ctx.generator."""

    name = "global-noise"
    summary = "test attack"
    params = (Param("eps", 0.3, "noise size"),)

    def perturb(self, model, x, y, params, ctx):
        import numpy as np

        shift = float(np.random.uniform(-0.05, 0.05))
        noise = (torch.rand_like(x) * 2 - 1) * (params["eps"] - 0.05) + shift
        return (x + noise).clamp(ctx.clip_min, ctx.clip_max)


def test_an_attack_drawing_from_the_global_generators_makes_the_same_examples_every_run(install, registry, small):
    """Three identical runs of such an attack gave 34%, 32% and 30%."""
    (attack,) = install(GlobalNoise())
    model = _mlp((1, 28, 28), 10).eval()

    def examples(seed):
        return run_attack(attack, {}, model, small.test_x[:40], small.test_y[:40], make_context(small, seed=seed),
                          batch_size=16, progress=False).x_adv

    torch.manual_seed(1)
    first = examples(seed=5)
    torch.manual_seed(2)  # the caller's own random state does not matter
    assert torch.equal(first, examples(seed=5))
    assert not torch.equal(first, examples(seed=6)), "another unit's seed, other noise"
    assert not torch.equal(first[:16], first[16:32]), "each batch draws its own"
    before = torch.random.get_rng_state()
    examples(seed=5)
    assert torch.equal(before, torch.random.get_rng_state()), "the caller's random state is restored"


class SoftmaxOut(ArchitecturePlugin):
    name = "softmax-out"
    summary = "test architecture whose model ends in a softmax"

    def build(self, input_shape, num_classes, params):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes), nn.Softmax(dim=1))


def test_a_model_that_outputs_probabilities_gets_a_note(install, small, capsys):
    (arch,) = install(SoftmaxOut())
    accuracy(_mlp((1, 28, 28), 10).eval(), small.test_x, small.test_y, arch=arch, num_classes=10)
    assert "probabilities" not in capsys.readouterr().err, "logits get no note"
    model = arch.build((1, 28, 28), 10, {}).eval()
    accuracy(model, small.test_x, small.test_y, arch=arch, num_classes=10)
    assert (f"note: architecture 'softmax-out' from package '{PACKAGE}' outputs probabilities (each row sums to 1), "
            "but igbench reads a model's output as logits; remove its final softmax") in capsys.readouterr().err
    accuracy(model, small.test_x, small.test_y, arch=arch, num_classes=10)
    assert "probabilities" not in capsys.readouterr().err, "once per architecture, not once per model"
