"""The plugin registry: built-ins through the hooks, third-party discovery, errors that name the fix."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import json
import math
import re

import pytest
from click.testing import CliRunner

from igbench import hookimpl, hookspecs
from igbench.cli import cli
from igbench.errors import ParamError, PluginError, UnknownPluginError
from igbench.param_options import distribute_params, parse_param_option
from igbench.plugin_types import (ArchitecturePlugin, AttackPlugin, DatasetPlugin, DefensePlugin, LossDefense, Param,
                                  positive)
from igbench.registry import HOOK_FOR_KIND, get_registry, reset_registry

BUILTINS = {
    "dataset": {"mnist", "fashion-mnist", "notmnist", "svhn", "mnist-sample"},
    "architecture": {"paper-cnn", "paper-cnn-softplus", "cleverhans-cnn", "mlp"},
    "defense": {"none", "gradreg", "gradreg-fd", "certainty-insensitivity", "distillation", "advtrain", "advtrain+gradreg"},
    "attack": {"fgsm", "tgsm", "pgd", "jsma"},
}


class Shout(LossDefense):
    name = "shout"
    summary = "test defense"
    params = (Param("volume", 1.0, "how loud", check=positive),)

    def loss(self, model, x, y, params, trainer):
        raise AssertionError("registry tests never call loss")


class ShoutPlugin:
    """A throwaway plugin object implementing one hook."""

    @hookimpl
    def igbench_defenses(self, register):
        register(Shout())


def test_builtins_register_through_the_hooks(registry):
    for kind, names in BUILTINS.items():
        got = set(registry.names(kind))
        assert names <= got, f"missing {kind}s: {names - got}"
        assert all(p.source == "igbench" for p in registry.plugins(kind) if p.name in names)
        assert all(p.summary for p in registry.plugins(kind)), f"a {kind} has no summary"
    assert [p.prefix for p in registry.providers()] == ["art:"]


def test_every_hook_is_documented_and_implemented_by_a_builtin(registry):
    for kind, hookname in HOOK_FOR_KIND.items():
        spec = getattr(hookspecs, hookname)
        assert inspect.getdoc(spec) and "register" in inspect.signature(spec).parameters
        impls = getattr(registry.pm.hook, hookname).get_hookimpls()
        assert any(i.plugin_name.startswith("igbench.") for i in impls), hookname


def test_throwaway_plugin_is_found_then_gone_after_unregister(registry):
    plugin = ShoutPlugin()
    registry.register(plugin, source="test-suite")
    try:
        found = registry.get("defense", "shout")
        assert found.source == "test-suite"
        assert found.resolve_params({"volume": "2.5"}) == {"volume": 2.5}
    finally:
        registry.unregister(plugin)
    with pytest.raises(UnknownPluginError):
        registry.get("defense", "shout")


def test_unknown_name_is_one_line_with_choices_and_suggestion(registry):
    with pytest.raises(UnknownPluginError) as err:
        registry.get("defense", "gradrg")
    msg = str(err.value)
    assert "\n" not in msg and "gradreg" in msg and "did you mean 'gradreg'" in msg
    assert "distillation" in msg  # the choices are listed
    with pytest.raises(UnknownPluginError, match="art:<Name>"):
        registry.get("attack", "nosuch")


class _ImpostorGradreg(DefensePlugin):
    name = "gradreg"
    summary = "impostor"

    def train(self, trainer, params):
        raise AssertionError("registry tests never call train")


def test_duplicate_name_keeps_the_builtin_and_warns_naming_both_providers(registry, install, monkeypatch):
    (kept,) = install(_ImpostorGradreg(), source="impostor-pkg")
    assert kept.source == "igbench" and registry.get("defense", "gradreg").source == "igbench"
    assert any("impostor-pkg" in x and "'igbench'" in x for x in registry.problems)
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    registry.refresh()
    with pytest.raises(PluginError, match="impostor-pkg"):
        registry.plugins("defense")


@pytest.mark.parametrize("order", [{"trylast": True}, {"tryfirst": True}])
def test_hook_order_marks_do_not_let_a_package_shadow_a_builtin(registry, order):
    """pluggy lists trylast implementations before the built-ins' ones: an impostor marked trylast used to
    replace the built-in gradreg, with a warning that claimed the opposite."""
    class Impostor:
        @hookimpl(**order)
        def igbench_defenses(self, register):
            register(_ImpostorGradreg())

    registry.register(Impostor(), source="impostor-pkg")
    assert registry.get("defense", "gradreg").source == "igbench"
    assert any("keeping 'igbench's" in p for p in registry.problems)


def test_a_wrapper_hook_or_one_that_returns_its_objects_is_reported(registry):
    """Both registered nothing, without a word: the registry calls each hook with ``register`` and
    ignored what it returned, and a wrapper's call only made a generator."""
    class Returns:
        @hookimpl
        def igbench_defenses(self, register):
            return [_ImpostorGradreg()]

    class Wraps:
        @hookimpl(wrapper=True)
        def igbench_attacks(self, register):
            register(Shout())
            yield

    class RegistersAndReturns:  # what it registers works; what it returns would be lost without a word
        @hookimpl
        def igbench_architectures(self, register):
            register(_TinyArch())
            return [_TinyArch()]

    registry.register(Returns(), source="returns-pkg")
    registry.register(Wraps(), source="wraps-pkg")
    class RegistersAndReturnsNothing:  # `return []` loses nothing: not reported
        @hookimpl
        def igbench_datasets(self, register):
            return []

    registry.register(RegistersAndReturns(), source="both-pkg")
    registry.register(RegistersAndReturnsNothing(), source="empty-pkg")
    text = " | ".join(registry.problems)
    assert "(returns-pkg) returned list from igbench_defenses and registered nothing; igbench ignores" in text
    assert "(wraps-pkg) marks igbench_attacks as a wrapper, so it registers nothing" in text
    assert "(both-pkg) returned list from igbench_architectures beside the 1 it registered; igbench ignores" in text
    assert registry.get("architecture", "tiny-arch").source == "both-pkg" and "empty-pkg" not in text


def test_registration_order_holds_after_an_unregister(registry):
    """The order was the count of registered plugins, which repeats after an unregister: a later trylast
    package then came first and shadowed an earlier one."""
    def package(trylast=False):
        class Package:
            @hookimpl(trylast=trylast)
            def igbench_defenses(self, register):
                register(_Named("dup"))
        return Package()

    a, b = package(), package()
    registry.register(a, source="pkg-a")
    registry.register(b, source="pkg-b")
    registry.unregister(a)
    registry.register(package(trylast=True), source="pkg-c")
    assert registry.get("defense", "dup").source == "pkg-b"


@pytest.mark.parametrize("command", [["run", "--defense", "gradreg"], ["train"], ["plugins", "--kind", "defense"]])
def test_commands_warn_about_a_duplicate_before_their_first_lookup(registry, install, command):
    """The warning used to be printed before the hooks were collected, so only `igbench plugins` showed it."""
    install(_ImpostorGradreg(), source="impostor-pkg", look_up=False)  # the command's lookup must find it
    result = CliRunner().invoke(cli, command)
    assert "warning: defense 'gradreg' is registered by both 'igbench' and 'impostor-pkg'" in result.output


def test_wrong_type_and_class_instead_of_instance_are_reported(registry):
    class Bad:
        @hookimpl
        def igbench_attacks(self, register):
            register(Shout)        # a class, not an instance
            register(Shout())      # a defense registered as an attack
            register(42)           # no plugin at all

    b = Bad()
    registry.register(b, source="bad-pkg")
    try:
        registry.plugins("attack")
        text = " | ".join(registry.problems)
        assert "register an instance" in text
        assert "registered the defense 'shout' in igbench_attacks; register it in igbench_defenses" in text
        assert "registered 42 as an attack, but it is not an AttackPlugin" in text
        assert "fgsm" in registry.names("attack")  # the others still work
    finally:
        registry.unregister(b)


def test_registry_messages_use_the_right_article_and_say_when_a_package_repeats_itself(registry):
    """"registered the class TinyCNN as a architecture", and a package that registers one name twice
    read "registered by both 'pkg' and 'pkg'"."""
    from igbench.plugin_types import ArchitecturePlugin

    class TinyCNN(ArchitecturePlugin):
        name = "tiny-cnn"
        summary = "test architecture"

        def build(self, input_shape, num_classes, params):
            raise AssertionError("registry tests never call build")

    class Twice:
        @hookimpl
        def igbench_architectures(self, register):
            register(TinyCNN)
            register(TinyCNN())
            register(TinyCNN())

    registry.register(Twice(), source="tiny-pkg")
    registry.plugins("architecture")
    text = " | ".join(registry.problems)
    assert "registered the class TinyCNN as an architecture" in text, text
    assert "tiny-pkg registers architecture 'tiny-cnn' twice" in text, text
    assert "both 'tiny-pkg' and 'tiny-pkg'" not in text
    assert registry.get("architecture", "tiny-cnn").source == "tiny-pkg"  # the first is kept


def test_misspelled_hook_names_the_package_and_the_closest_hook(registry):
    """pluggy's check_pending reported "plugin '<module ...>' implements an unknown hook"; only entry
    points were checked at all, and a plugin registered directly was never checked."""

    class Misspelled:
        @hookimpl
        def igbench_defense(self, register):
            register(Shout())

    registry.register(Misspelled(), source="typo-pkg", name="typo")
    problems = [p for p in registry.problems if "igbench_defense," in p]
    assert len(problems) == 1, registry.problems
    assert "plugin 'typo' from package 'typo-pkg'" in problems[0]
    assert "did you mean 'igbench_defenses'?" in problems[0] and "<" not in problems[0]


def test_unmarked_hook_function_is_reported_not_silently_ignored(registry, monkeypatch):
    """A hook function without @hookimpl is invisible to pluggy: the plugin registered nothing and
    nobody said why."""
    import types

    module = types.ModuleType("igbench_unmarked")

    def igbench_defenses(register):
        register(Shout())

    def igbench_helper():  # shares the prefix only: not reported
        return None

    module.igbench_defenses = igbench_defenses
    module.igbench_helper = igbench_helper
    registry.register(module, source="unmarked-pkg", name="unmarked")
    text = " | ".join(registry.problems)
    assert ("function igbench_defenses in plugin 'unmarked' from package 'unmarked-pkg' is not marked "
            "@igbench.hookimpl; igbench ignores it") in text, text
    assert "igbench_helper" not in text
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    other = types.ModuleType("igbench_unmarked2")
    other.igbench_attacks = igbench_defenses
    with pytest.raises(PluginError, match="igbench_attacks in plugin 'unmarked2'"):
        registry.register(other, source="unmarked-pkg", name="unmarked2")
    assert not registry.pm.has_plugin("unmarked2")  # nothing half-registered


def _below_one(v):
    return None if v < 1 else "must be < 1"


class _BadDefault(LossDefense):
    name = "bad-default"
    summary = "test defense with a default its own check rejects"
    params = (Param("smoothing", 1.5, "label smoothing", check=_below_one), Param("volume", 1.0, "how loud"))

    def loss(self, model, x, y, params, trainer):
        raise AssertionError("registry tests never call loss")


class _BadChoice(LossDefense):
    name = "bad-choice"
    summary = "test defense with a default outside its choices"
    params = (Param("mode", "fast", "how", choices=("slow", "careful")),)

    def loss(self, model, x, y, params, trainer):
        raise AssertionError("registry tests never call loss")


class _GoodDefaults(LossDefense):
    name = "good-defaults"
    summary = "test defense whose defaults pass"
    params = (Param("smoothing", 0.1, "label smoothing", check=_below_one), Param("steps", None, "n", type=int))

    def loss(self, model, x, y, params, trainer):
        raise AssertionError("registry tests never call loss")


class _DefaultsPlugin:
    @hookimpl
    def igbench_defenses(self, register):
        register(_BadDefault())
        register(_BadChoice())
        register(_GoodDefaults())


class _ArchInAttackHook:
    @hookimpl
    def igbench_attacks(self, register):
        from igbench.plugin_types import ArchitecturePlugin

        class Tiny(ArchitecturePlugin):
            name = "tiny"

            def build(self, input_shape, num_classes, params):
                raise AssertionError("registry tests never call build")

        register(Tiny())


def test_a_plugin_registered_in_another_kinds_hook_is_told_which_hook(registry):
    """It said "registered <Tiny 'tiny' from ?> as an attack, but it is not an AttackPlugin"."""
    registry.register(_ArchInAttackHook(), source="hooks-pkg")
    assert "tiny" not in registry.names("attack") and "tiny" not in registry.names("architecture")
    assert any(p.endswith("registered the architecture 'tiny' in igbench_attacks; register it in "
                          "igbench_architectures") for p in registry.problems), registry.problems


def test_a_default_its_own_check_rejects_leaves_the_plugin_out(registry, monkeypatch):
    """Defaults were never checked: smoothing=1.5 was listed by `igbench plugins` and used as is."""
    registry.register(_DefaultsPlugin(), source="defaults-pkg")
    assert "good-defaults" in registry.names("defense")
    assert "bad-default" not in registry.names("defense") and "bad-choice" not in registry.names("defense")
    text = " | ".join(registry.problems)
    assert ("defense 'bad-default' from package 'defaults-pkg' is left out: the default of parameter "
            "'smoothing'") in text and "must be < 1; got 1.5" in text, text
    assert "defense 'bad-choice' from package 'defaults-pkg' is left out" in text and "'mode'" in text
    out = CliRunner().invoke(cli, ["plugins", "--kind", "defense"])
    assert "warning: defense 'bad-default'" in out.output
    # asked for by name, it says why it is missing (it said "unknown defense", under a warning saying otherwise)
    with pytest.raises(UnknownPluginError, match=r"^defense 'bad-default' from package 'defaults-pkg' is left out: "
                                                 r"the default of parameter 'smoothing'"):
        registry.get("defense", "bad-default")
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    registry.refresh()
    with pytest.raises(PluginError, match="smoothing"):
        registry.plugins("defense")


def test_every_builtin_default_passes_its_own_check(registry):
    for kind in HOOK_FOR_KIND:
        for plugin in registry.plugins(kind):
            assert plugin.default_problem() is None, (kind, plugin.name)
    assert registry.problems == []


@pytest.fixture
def plugins_env(monkeypatch):
    """``plugins_env(value)``: ``IGBENCH_PLUGINS=value`` and a registry loaded afresh (reset again after the
    test), for tests of what loads through the entry points."""
    def _load(value: str) -> None:
        monkeypatch.setenv("IGBENCH_PLUGINS", value)
        reset_registry()

    yield _load
    reset_registry()


def test_broken_entry_point_is_reported_and_others_still_load(monkeypatch, plugins_env):
    broken = md.EntryPoint(name="broken", value="igbench_no_such_module_xyz", group="igbench")
    monkeypatch.setattr(md, "entry_points", lambda group=None: [broken] if group == "igbench" else [])
    plugins_env("all")
    reg = get_registry()
    assert any("'broken'" in p and "failed to load" in p and "ModuleNotFoundError" in p for p in reg.problems)
    assert "gradreg" in reg.names("defense")
    result = CliRunner().invoke(cli, ["plugins", "--kind", "defense"])
    assert result.exit_code == 0, result.output
    assert "warning: plugin 'broken'" in result.output
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    reset_registry()
    with pytest.raises(PluginError, match="broken"):
        get_registry()


@pytest.mark.parametrize("command", [["plugins", "ifgsm"], ["explain", "no-such-result.json", "--attack", "ifgsm"],
                                     ["study", "make", "no-such-result.json", "--attack", "ifgsm"],
                                     ["run", "--attack", "ifgsm"]])
def test_unknown_name_points_at_the_package_that_failed_to_load(monkeypatch, plugins_env, command):
    """`igbench plugins ifgsm` and `igbench explain` printed no load warnings, so the name of an attack
    whose package failed to import was only "no plugin called 'ifgsm'"."""
    broken = md.EntryPoint(name="ifgsm_pkg", value="igbench_no_such_module_xyz", group="igbench")
    monkeypatch.setattr(md, "entry_points", lambda group=None: [broken] if group == "igbench" else [])
    plugins_env("all")
    result = CliRunner().invoke(cli, command)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert lines[0].startswith("igbench: warning: plugin 'ifgsm_pkg'") and "failed to load" in lines[0]
    assert lines[-1].startswith("Error: ") and "'ifgsm'" in lines[-1]
    assert lines[-1].endswith("(1 plugin package failed to load: see the warnings above)"), lines[-1]


def test_a_name_looked_up_under_another_kind_says_which_kind_it_is(registry):
    """`igbench plugins mnist --kind attack` said only "no plugin called 'mnist'"."""
    result = CliRunner().invoke(cli, ["plugins", "mnist", "--kind", "attack"])
    assert result.exit_code == 2 and result.output.strip() == (
        "Error: no attack called 'mnist'; 'mnist' is a dataset: use --kind dataset, or drop --kind"), result.output


def test_unknown_name_without_load_failures_has_no_hint(registry):
    result = CliRunner().invoke(cli, ["plugins", "ifgsm"])
    assert result.exit_code == 2 and "failed to load" not in result.output, result.output


def test_example_plugin_is_discovered_through_its_entry_point(plugins_env):
    """CI installs plugins/igbench-example-defense; discovery must work through the entry point."""
    eps = [ep for ep in md.entry_points(group="igbench") if ep.name == "example_defense"]
    assert eps, "plugins/igbench-example-defense is not installed: run the README's install command"
    plugins_env("example_defense")
    plugin = get_registry().get("defense", "noise-augment")
    assert plugin.source == "igbench-example-defense"
    out = CliRunner().invoke(cli, ["plugins", "--json"])
    data = json.loads(out.output)
    names = {d["name"]: d["source"] for d in data["defenses"]}
    assert names["noise-augment"] == "igbench-example-defense"
    assert {"mnist", "notmnist", "svhn"} <= {d["name"] for d in data["datasets"]}
    assert "FastGradientMethod" in data["attack_providers"][0]["available"]


@pytest.mark.parametrize("chosen", ["example_defense", "igbench-example-defense", "IGBENCH_EXAMPLE_DEFENSE",
                                    "igbench_example_defense"])
def test_plugins_env_takes_the_entry_point_package_or_module_name(plugins_env, chosen):
    """The module name (igbench_example_defense) used to load nothing, without a word."""
    plugins_env(chosen)
    reg = get_registry()
    assert reg.get("defense", "noise-augment").source == "igbench-example-defense" and reg.problems == []


def test_plugins_env_naming_no_installed_plugin_is_a_plugin_problem(monkeypatch, plugins_env):
    """IGBENCH_PLUGINS=exmple_defense used to load no third-party plugin without a word, strict mode too."""
    plugins_env("exmple_defense,example_defense")
    reg = get_registry()
    assert "noise-augment" in reg.names("defense")  # the name that exists still loads
    assert reg.problems == ["IGBENCH_PLUGINS names 'exmple_defense', which no installed plugin is called (did you "
                            "mean 'example_defense'?); installed: example_defense (package igbench-example-defense)"]
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    reset_registry()
    with pytest.raises(PluginError, match="IGBENCH_PLUGINS names 'exmple_defense'"):
        get_registry()


def test_cli_unknown_dataset_and_defense_are_one_line_errors(registry):
    runner = CliRunner()
    for args, choices in ((["--dataset", "nosuch"], "mnist"), (["--defense", "nosuch"], "gradreg"),
                          (["--attack", "nosuch"], "fgsm")):
        result = runner.invoke(cli, ["run", *args, "--attack", "fgsm"] if "--attack" not in args else ["run", *args])
        assert result.exit_code == 2, result.output
        lines = [l for l in result.output.strip().splitlines() if l]
        assert len(lines) == 1 and lines[0].startswith("Error: unknown") and choices in lines[0], result.output


def test_param_options_are_distributed_and_typos_rejected(registry):
    gradreg, fgsm = registry.get("defense", "gradreg"), registry.get("attack", "fgsm")
    assert parse_param_option("gradreg.lambda=1e3") == ("gradreg", "lambda", "1e3")
    assert parse_param_option("art:CarliniL2Method.max_iter=5") == ("art:CarliniL2Method", "max_iter", "5")
    got = distribute_params(["lambda=100", "fgsm.eps=0.3"], {"gradreg": gradreg, "fgsm": fgsm})
    assert got == {"gradreg": {"lambda": "100"}, "fgsm": {"eps": "0.3"}}
    with pytest.raises(ParamError, match="no selected plugin takes 'lamda'"):
        distribute_params(["lamda=100"], {"gradreg": gradreg})
    with pytest.raises(ParamError, match="NAME=VALUE"):
        parse_param_option("lambda")
    with pytest.raises(ParamError, match="unknown parameter 'lamda'.*did you mean 'lambda'"):
        gradreg.resolve_params({"lamda": 1})
    with pytest.raises(ParamError, match="parameter 'eps' of attack 'fgsm'"):
        fgsm.resolve_params({"eps": "-1"})


def test_a_param_that_sets_several_plugins_says_so(registry):
    """`--param eps=0.25` set advtrain's training eps and replaced fgsm's sweep, without a word."""
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({"defense": ("advtrain",), "attack": ("fgsm",), "param": ("eps=0.25", "mnist.validation=100"),
                            "device": "cpu"})
    assert spec.notes == ["note: --param eps=0.25 sets eps of advtrain, fgsm; write PLUGIN.eps=0.25 (e.g. "
                          "advtrain.eps=0.25) to set it for one of them"]
    assert build_grid_spec({"defense": ("advtrain",), "attack": ("fgsm",), "param": ("advtrain.eps=0.25",),
                            "device": "cpu"}).notes == []


def test_unqualified_param_typo_suggests_the_closest_name_of_the_selected_plugins(registry):
    """`gradreg.lamda=10` got "did you mean 'lambda'" from the plugin, but plain `lamda=10`, which no
    selected plugin takes, only listed every plugin's parameters."""
    gradreg, fgsm = registry.get("defense", "gradreg"), registry.get("attack", "fgsm")
    selected = {"none": registry.get("defense", "none"), "gradreg": gradreg, "fgsm": fgsm}
    with pytest.raises(ParamError, match=r"no selected plugin takes 'lamda' \(did you mean 'lambda'\?\)"):
        distribute_params(["lamda=10"], selected)
    with pytest.raises(ParamError, match=r"takes 'esp' \(did you mean 'eps'\?\)"):
        distribute_params(["esp=0.3"], selected)
    with pytest.raises(ParamError) as far_off:
        distribute_params(["zzz=1"], selected)
    assert "did you mean" not in str(far_off.value) and "'gradreg' takes lambda, scaling" in str(far_off.value)
    assert "'none' takes" not in str(far_off.value)  # a plugin without parameters is not listed
    result = CliRunner().invoke(cli, ["run", "--defense", "gradreg", "--attack", "fgsm", "--param", "lamda=10"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "no selected plugin takes 'lamda' (did you mean 'lambda'?)" in lines[0]

def test_cli_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from igbench.cli import cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plugins_name_describes_one_plugin_and_its_parameters(registry):
    """`igbench plugins pgd` explains what a parameter such as step_size=None means; a typo is a
    one-line error with the closest name; --json gives the same description."""
    out = CliRunner().invoke(cli, ["plugins", "pgd"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("pgd (attack, from igbench)")
    row = next(line for line in out.output.splitlines() if line.startswith("step_size"))
    assert row.split()[:3] == ["step_size", "None", "float"] and "2.5*eps/steps" in row
    jsma = CliRunner().invoke(cli, ["plugins", "jsma"]).output
    assert "probs | logits" in next(line for line in jsma.splitlines() if line.startswith("jacobian"))
    typo = CliRunner().invoke(cli, ["plugins", "pdg"])
    lines = [line for line in typo.output.splitlines() if line.strip()]
    assert typo.exit_code != 0 and len(lines) == 1 and "did you mean 'pgd'" in lines[0]
    data = json.loads(CliRunner().invoke(cli, ["plugins", "gradreg", "--json"]).output)
    assert [d["kind"] for d in data] == ["defense"] and data[0]["params"]["lambda"]["type"] == "float"
    jsma_json = json.loads(CliRunner().invoke(cli, ["plugins", "jsma", "--json"]).output)[0]["params"]["jacobian"]
    assert jsma_json["choices"] == ["probs", "logits"] and jsma_json["type"] == "str"


def test_plugins_name_shows_the_plugin_classes_own_docstring_only(install):
    """inspect.getdoc fell back to a base class's docstring, so a defense without one of its own was
    described by LossDefense ("A defense that is just a per-batch training loss...") and a mixin's
    docstring stood in for gradreg's. A class without a docstring shows its summary alone; its own
    docstring is shown with the Sphinx roles turned into plain backquoted names."""

    class Base(LossDefense):
        """Base docstring that describes how to write a plugin, not this one."""

        def loss(self, model, x, y, params, trainer):
            raise AssertionError("registry tests never call loss")

    class Undocumented(Base):
        name = "undocumented"
        summary = "one-line summary of the undocumented defense"

    class Documented(Base):
        """Trains with :func:`fd_batch_loss` and ``lambda``; see :class:`~igbench.data.DataSplits`."""

        name = "documented"
        summary = "one-line summary of the documented defense"

    install(Undocumented(), Documented())
    out = CliRunner().invoke(cli, ["plugins", "undocumented"])
    assert out.exit_code == 0, out.output
    assert "one-line summary of the undocumented defense" in out.output
    assert "Base docstring" not in out.output and "per-batch training loss" not in out.output
    doc = CliRunner().invoke(cli, ["plugins", "documented"]).output
    assert "Trains with `fd_batch_loss` and `lambda`; see `DataSplits`." in doc, doc
    assert ":func:" not in doc and "``" not in doc


@pytest.mark.parametrize("name", sorted({n for names in BUILTINS.values() for n in names}))
def test_every_builtin_plugin_class_has_its_own_docstring(registry, name):
    """`igbench plugins NAME` shows the class's own docstring: every built-in has one, in plain text."""
    from igbench.cli.plugins_cmd import _own_doc

    kind = next(k for k, names in BUILTINS.items() if name in names)
    plugin = registry.get(kind, name)
    doc = _own_doc(plugin)
    assert doc and len(doc) > len(plugin.summary) // 2, f"{kind} {name!r} has no docstring of its own"
    out = CliRunner().invoke(cli, ["plugins", name, "--kind", kind])
    assert out.exit_code == 0, out.output
    assert ":func:" not in out.output and ":class:" not in out.output and "``" not in out.output


def test_param_coercion_never_cuts_a_fraction_or_takes_a_bool_as_a_number():
    """A TOML 0.3 for a parameter declared int (default 0) used to become 0 silently, and true became 1."""
    from igbench.errors import ParamError
    from igbench.plugin_types import Param

    whole = Param("smoothing", 0, "declared int by its default")
    assert whole.coerce(2.0, "defense d") == 2 and whole.coerce("2", "defense d") == 2
    for bad in (0.3, "0.3"):
        # the user reads what to give first; the plugin's author what to change after it
        with pytest.raises(ParamError, match=r"must be a whole number, got .*0\.3.* \(its default is 0; if the plugin "
                                             r"is yours .* float default such as 0\.0\)"):
            whole.coerce(bad, "defense d")
    number = Param("lr", 0.1, "a float")
    for param in (whole, number):
        with pytest.raises(ParamError, match="got True"):
            param.coerce(True, "defense d")
    assert number.coerce(1, "defense d") == 1.0
    for bad in ("inf", float("-inf"), "1e400", "nan"):  # lambda=inf used to train the other models, then fail
        with pytest.raises(ParamError, match="parameter 'lr' of defense d must be a finite number"):
            number.coerce(bad, "defense d")


class _TinyArch(ArchitecturePlugin):
    name, summary = "tiny-arch", "test architecture"

    def build(self, input_shape, num_classes, params):
        raise AssertionError("registry tests never call build")


class _Named(DefensePlugin):
    summary = "test defense"

    def __init__(self, name):
        self.name = name

    def train(self, trainer, params):
        raise AssertionError("registry tests never call train")


def test_third_party_attack_providers_resolve_collide_and_crash_with_their_name(registry):
    """A second provider of a prefix was dropped without a word, and a provider's own bug in resolve was a
    raw traceback."""
    from igbench.errors import PluginCrashed
    from igbench.plugin_types import AttackPlugin, AttackProvider

    class Identity(AttackPlugin):
        summary = "test attack"

        def perturb(self, model, x, y, params, ctx):
            return x

    class Doubles(AttackProvider):
        name, summary = "doubles", "test provider"

        def __init__(self, prefix):
            self.prefix = prefix

        def resolve(self, suffix):
            if suffix == "boom":
                raise KeyError(suffix)
            attack = Identity()
            attack.name = self.prefix + suffix
            return attack

    class Package:
        def __init__(self, *providers):
            self.providers = providers

        @hookimpl
        def igbench_attacks(self, register):
            for p in self.providers:
                register(p)

    registry.register(Package(Doubles("dbl:")), source="first-pkg")
    registry.register(Package(Doubles("dbl:"), Doubles("art:")), source="second-pkg")
    assert registry.get("attack", "dbl:x").name == "dbl:x"
    text = " | ".join(registry.problems)
    assert "attack prefix 'dbl:' is served by both 'first-pkg' and 'second-pkg'; keeping 'first-pkg's" in text
    assert "attack prefix 'art:' is served by both 'igbench' and 'second-pkg'; keeping 'igbench's" in text
    registry.register(Package(Doubles("dbl:x")), source="third-pkg")  # dbl:x... names would never reach it
    assert "attack prefixes 'dbl:' and 'dbl:x' overlap, served by 'first-pkg' and 'third-pkg'" in " | ".join(
        registry.problems)
    with pytest.raises(PluginCrashed) as err:
        registry.get("attack", "dbl:boom")
    assert str(err.value).startswith("attack provider 'dbl:' from package 'first-pkg' failed in resolve: KeyError: "
                                     "'boom' (raised in that package's code, not igbench's: report it to its authors")


class _NoPerturb(AttackPlugin):
    name = "no-perturb"
    summary = "forgot perturb"


class _TargetedWithoutTargets(AttackPlugin):
    name = "own-targets"
    targeted = True

    def perturb(self, model, x, y, params, ctx):
        raise AssertionError("registry tests never call perturb")


class _NoLoss(LossDefense):
    name = "no-loss"


class _NoBuild(ArchitecturePlugin):
    name = "no-build"


class _NoLoad(DatasetPlugin):
    name = "no-load"


def _declared(cls_name="Declared", **attrs):
    return type(cls_name, (Shout,), {"name": "declared", **attrs})()


@pytest.mark.parametrize("plugin, message", [
    (_declared(params=Param("volume", 1.0, "x")),
     "its params is one Param, not a tuple of them (parentheses alone make no tuple): write params = (Param(...),)"),
    (_declared(params={"volume": 1.0}), "its params must be a tuple of igbench Param objects, got dict"),
    (_declared(params=(Param("volume", 1.0, "x"), "gain")), "its params must hold igbench Param objects only"),
    (_declared(params=(Param("volume", 1.0, "x"), Param("volume", 2.0, "y"))), "declares parameter 'volume' twice"),
    (_declared(params=(Param("strength", None, "x"),)), "parameter 'strength' has the default None and no type"),
    (_declared(params=(Param("two words", 1.0, "x"),)), "its parameter name 'two words' is not a plain name"),
    (_declared(name="My Def"), "its name 'My Def' is not a plain name; use letters, digits, '-', '_', '+' and '.' "
                               "only (e.g. 'My-Def')"),
    (_TargetedWithoutTargets(), "_TargetedWithoutTargets is targeted but does not define targets; define "
                                "targets(self, model, x, y, params, ctx)"),
    (_declared(name="art:mine"), "its name 'art:mine' is not a plain name"),
    (_NoPerturb(), "_NoPerturb does not define perturb; define perturb(self, model, x, y, params, ctx)"),
    (_NoLoss(), "_NoLoss does not define loss; define loss(self, model, x, y, params, trainer)"),
    (_NoBuild(), "_NoBuild does not define build; define build(self, input_shape, num_classes, params)"),
    (_NoLoad(), "_NoLoad does not define load; define load(self, data_dir, params)"),
])
def test_a_declaration_mistake_leaves_the_plugin_out_with_the_fix(registry, install, plugin, message):
    """A params that was one Param crashed every command (igbench plugins too) with a traceback; a missing
    perturb was found after every model of a grid had trained, and blamed on the plugin's authors."""
    install(plugin, source="mistakes-pkg", look_up=False)
    assert plugin.name not in registry.names(plugin.kind) and "fgsm" in registry.names("attack")
    assert any(p.startswith(f"{plugin.kind} '{plugin.name}' from package 'mistakes-pkg' is left out: ") and message in p
               for p in registry.problems), registry.problems
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0 and "is left out" in result.output, result.output


def test_names_and_methods_the_checks_must_accept(registry, install, mnist_slice):
    """A dotted name works with --param's PLUGIN.NAME form (it splits at the last dot), a hyphenated parameter
    name with NAME=VALUE, and a method set on the instance is a method."""
    class Dotted(Shout):
        name = "cifar10.1"
        params = (Param("max-iter", 3, "iterations"),)

    wrapped = _NoPerturb()
    wrapped.perturb = lambda model, x, y, params, ctx: x

    class TargetedByParam(_NoPerturb):  # untargeted by default: checked when a run makes it targeted
        name = "targeted-by-param"
        params = (Param("targeted", False, "aim at targets"),)

        def is_targeted(self, params):
            return bool(params["targeted"])

        def perturb(self, model, x, y, params, ctx):
            return x

    _, _, targeted_by_param = install(Dotted(), wrapped, TargetedByParam())
    assert registry.problems == []
    # made targeted by its parameters, it is refused with the other attack checks, before any training
    from igbench.engine.attack import check_attacks

    check_attacks([(targeted_by_param, {"targeted": False})], mnist_slice)
    with pytest.raises(PluginError, match="is targeted with these parameters but does not define targets"):
        check_attacks([(targeted_by_param, {"targeted": True})], mnist_slice)


def test_a_loss_defense_with_its_own_train_needs_no_loss(registry, install):
    class OwnTrain(LossDefense):
        name = "own-train"

        def train(self, trainer, params):
            return trainer.fit(trainer.new_model(), lambda m, x, y: (m(x).sum() * 0, m(x)))

    install(OwnTrain())
    assert registry.problems == []


@pytest.mark.parametrize("value, named", [
    ("igbench.plugin_types:LossDefense", "names the class LossDefense, which has no @hookimpl igbench_* function "
                                         "(a plugin object is registered from a hook"),
    ("json", "names the module json, which has no @hookimpl igbench_* function;"),
])
def test_an_entry_point_that_registers_nothing_is_reported(monkeypatch, plugins_env, value, named):
    """Pointing the entry point at a plugin class (or a module without hooks) loaded without a word, even
    under IGBENCH_STRICT_PLUGINS, and the plugin was simply missing."""
    ep = md.EntryPoint(name="epobj", value=value, group="igbench")
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep] if group == "igbench" else [])
    plugins_env("all")
    problems = get_registry().problems
    assert any(p.startswith(f"plugin 'epobj' from package 'epobj' registers nothing: its entry point {value!r} ")
               and named in p and p.endswith("point the entry point at the module that defines them")
               for p in problems), problems
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    reset_registry()
    with pytest.raises(PluginError, match="registers nothing"):
        get_registry()


def test_a_hook_with_another_argument_name_is_one_line(registry):
    class WrongArgument:
        @hookimpl
        def igbench_defenses(self, reg):
            reg(Shout())

    with pytest.raises(PluginError) as info:
        registry.register(WrongArgument(), source="wrong-arg-pkg")
    assert str(info.value).endswith("its igbench_defenses takes arguments igbench does not pass; define it as "
                                    "def igbench_defenses(register)") and "\n" not in str(info.value)


def test_defense_and_attack_take_comma_lists_and_a_defense_its_own_settings(registry):
    """`--defense gradreg,advtrain` was 'unknown defense (did you mean advtrain?)', and one command line could not
    hold gradreg at two lambdas, although sweep names its models gradreg[lambda=1000]."""
    from igbench.errors import UsageError
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({"defense": ("gradreg[lambda=1000],gradreg[lambda=56234, scaling=paper]", "advtrain"),
                            "attack": ("fgsm,pgd", "tgsm"), "device": "cpu"})
    assert [(m.id, m.defense, m.defense_params) for m in spec.models] == [
        ("none", "none", {}), ("gradreg[lambda=1000]", "gradreg", {"lambda": "1000"}),
        ("gradreg[lambda=56234, scaling=paper]", "gradreg", {"lambda": "56234", "scaling": "paper"}),
        ("advtrain", "advtrain", {})]
    assert [a.name for a in spec.attacks] == ["fgsm", "pgd", "tgsm"]
    for defense, message in [("gradreg[lambda=1000", "opens a '[' it never closes"),
                             ("gradreg,,advtrain", "has an empty item"),
                             ("gradreg[lambda]", "each setting inside [...] is PARAM=VALUE"),
                             ("gradreg[lamda=3]", "unknown parameter 'lamda' for defense 'gradreg'"),
                             ("gradreg]", "closes a ']' it never opened"),
                             ("gradreg[lambda=1][scaling=paper]", "write all its settings inside one [...]")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            build_grid_spec({"defense": (defense,), "device": "cpu"})
    # --param reaches one of them by its id, and the shared-name note says so in a form --param reads
    spec = build_grid_spec({"defense": ("gradreg[lambda=1000],gradreg[lambda=56234]",), "device": "cpu",
                            "param": ("scaling=per-example", "gradreg[lambda=1000].scaling=paper")})
    assert [m.defense_params.get("scaling") for m in spec.models[1:]] == ["paper", "per-example"]
    assert spec.notes == []  # scaling=per-example set only gradreg[lambda=56234]: the other's own value won
    spec = build_grid_spec({"defense": ("gradreg[lambda=1000],gradreg[lambda=56234]",), "device": "cpu",
                            "param": ("scaling=per-example",)})
    assert "write PLUGIN.scaling=per-example (e.g. gradreg[lambda=1000].scaling=per-example)" in spec.notes[0]
    with pytest.raises(UsageError, match=re.escape("this grid names the models of gradreg gradreg[lambda=0.5]: address one as "
                                                      "gradreg[lambda=0.5].scaling=VALUE")):
        build_grid_spec({"defense": ("gradreg[lambda=0.5]",), "param": ("gradreg.scaling=paper",), "device": "cpu"})
    # a model whose [...] sets the parameter is not offered as ID.NAME: --param would be refused there too
    with pytest.raises(UsageError, match=re.escape("names the models of gradreg gradreg[lambda=0.5]: give lambda inside "
                                                      "its [...]")):
        build_grid_spec({"defense": ("gradreg[lambda=0.5]",), "param": ("gradreg.lambda=7",), "device": "cpu"})
    with pytest.raises(UsageError, match=re.escape("--defense gradreg[lambda=10] sets lambda itself, and --param")):
        build_grid_spec({"defense": ("gradreg[lambda=10]",), "param": ("lambda=5",), "device": "cpu"})


def test_a_defense_at_another_architecture_is_a_model_of_its_own(registry):
    """A cross-architecture transfer grid needed a grid file: --defense set only a defense's parameters, and
    --param reached the --arch architecture's alone."""
    from igbench.errors import UsageError
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({"defense": ("gradreg,none@mlp,gradreg[lambda=1000]@cleverhans-cnn",), "device": "cpu",
                            "param": ("mlp.hidden=32", "activation=softplus")})
    assert [(m.id, m.defense, m.defense_params, m.arch) for m in spec.models] == [
        ("none", "none", {}, "paper-cnn"), ("gradreg", "gradreg", {}, "paper-cnn"), ("none@mlp", "none", {}, "mlp"),
        ("gradreg[lambda=1000]@cleverhans-cnn", "gradreg", {"lambda": "1000"}, "cleverhans-cnn")]
    archs = {m.id: m.arch_params for m in spec.models}
    assert archs["none@mlp"] == {"hidden": "32", "activation": "softplus"}
    assert archs["none"] == archs["gradreg"] == archs["gradreg[lambda=1000]@cleverhans-cnn"] == {"activation": "softplus"}
    assert "sets activation of paper-cnn, mlp, cleverhans-cnn" in spec.notes[0]
    # none@mlp is a model beside the reference, not the reference: `none` on --arch is still added
    spec = build_grid_spec({"defense": ("none@mlp",), "arch": "cleverhans-cnn", "device": "cpu"})
    assert [(m.id, m.arch) for m in spec.models] == [("none", "cleverhans-cnn"), ("none@mlp", "mlp")]
    for defense, message in [("gradreg@", "write a defense on another architecture as DEFENSE@ARCH"),
                             ("@mlp", "write a defense on another architecture as DEFENSE@ARCH"),
                             ("none@mlp@mlp", "write a defense on another architecture as DEFENSE@ARCH"),
                             ("gradreg@mlp[lambda=3]", "write a defense on another architecture as DEFENSE@ARCH"),
                             ("gradreg@mpl", "unknown architecture 'mpl'"),
                             ("gradreg[lamda=3]@mlp", "unknown parameter 'lamda' for defense 'gradreg'")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            build_grid_spec({"defense": (defense,), "device": "cpu"})
    with pytest.raises(UsageError, match=re.escape("unknown parameter 'hiden'")):
        build_grid_spec({"defense": ("none@mlp",), "param": ("mlp.hiden=3",), "device": "cpu"})
    # NAME@ARCH on --arch's own architecture keeps a grid file's [run] arch_params (paper-svhn's lcn=true)
    spec = build_grid_spec({"defense": ("gradreg@paper-cnn,none@mlp",), "device": "cpu"}, "configs/paper-svhn.toml")
    archs = {m.id: m.arch_params for m in spec.models}
    assert archs["gradreg@paper-cnn"] == archs["none"] == {"lcn": True} and archs["none@mlp"] == {}
    from igbench.selections import DefenseItem, parse_defense

    assert parse_defense("gradreg[tag=a@b]") == DefenseItem("gradreg", {"tag": "a@b"}, None)  # an @ in [...] is a value's
    assert (parse_defense("gradreg[scaling=a@b]").arch, parse_defense("gradreg[scaling=a@b]@mlp").arch) == (None, "mlp")


def test_what_a_command_line_sets_twice_is_said_or_refused(registry):
    """A repeated --param kept its last value, a name given twice in --defense or --attack and --epochs beside
    --steps were dropped, all without a word; float() read --eps 1_0 as 10 and --lr inf trained one step."""
    from igbench.engine.grid_notes import training_eps_notes
    from igbench.errors import UsageError
    from igbench.grid_config import build_grid_spec

    for params in (("lambda=5", "lambda=6"), ("gradreg.lambda=5", "gradreg.lambda=6")):
        with pytest.raises(UsageError, match=re.escape(f"--param {params[0]} and --param {params[1]} both set "
                                                       f"lambda of gradreg; keep one")):
            build_grid_spec({"defense": ("gradreg",), "param": params, "device": "cpu"})
    for params in (("lambda=5", "gradreg.lambda=6"), ("gradreg.lambda=6", "lambda=5")):  # one plugin's wins
        spec = build_grid_spec({"defense": ("gradreg",), "param": params, "device": "cpu"})
        assert spec.models[1].defense_params == {"lambda": "6"}
    spec = build_grid_spec({"defense": ("gradreg",), "param": ("lambda=5", "lambda=5.0"), "device": "cpu"})
    assert spec.models[1].defense_params == {"lambda": "5"}  # one value written two ways
    # the shared-name note leaves out the plugin a PLUGIN.NAME form set: it said eps=0.25 set advtrain's too
    spec = build_grid_spec({"defense": ("advtrain",), "attack": ("fgsm,pgd",), "device": "cpu",
                            "param": ("eps=0.25", "advtrain.eps=0.3")})
    assert spec.models[1].defense_params == {"eps": "0.3"} and spec.notes == [
        "note: --param eps=0.25 sets eps of fgsm, pgd; write PLUGIN.eps=0.25 (e.g. fgsm.eps=0.25) to set it for one "
        "of them"]
    spec = build_grid_spec({"defense": ("gradreg,advtrain", "gradreg"), "attack": ("fgsm,fgsm",), "steps": 5,
                            "epochs": 3.0, "param": ("lambda=5", "gradreg.lambda=5"), "device": "cpu"})
    assert [m.id for m in spec.models] == ["none", "gradreg", "advtrain"] and [a.name for a in spec.attacks] == ["fgsm"]
    assert spec.models[1].defense_params == {"lambda": "5"}  # the same value twice is no conflict
    assert spec.notes == ["note: --defense lists gradreg more than once; each is one model",
                          "note: --attack lists fgsm more than once; each runs once",
                          "note: --steps 5 and --epochs 3 both given; --steps wins, and --epochs is not used (drop one)"]
    for cli_values, message in (({"lr": math.inf}, "--lr must be a finite number > 0, got inf"),
                                ({"param": ("lambda=1_0",), "defense": ("gradreg",)},
                                 "must be float, got '1_0' (write it without _, e.g. 10)")):
        with pytest.raises(UsageError, match=re.escape(message)):
            build_grid_spec({**cli_values, "device": "cpu"})
    spec = build_grid_spec({"defense": ("advtrain[eps=50],advtrain[eps=0.3]",), "device": "cpu"})
    assert training_eps_notes(spec.models, 0.0, 1.0) == [
        "note: model advtrain[eps=50] trains at eps 50, more than the data's whole range [0, 1]; eps is in the "
        "data's units: for 8 of 255 grey levels write eps=8/255"]


def test_strict_mode_errors_do_not_claim_to_keep_anything(registry, install, monkeypatch):
    class Twin(Shout):
        name = "gradreg"

    install(Twin(), look_up=False)
    assert any(p.endswith("is registered by both 'igbench' and 'test-suite'; keeping 'igbench's; rename one of them")
               for p in registry.problems), registry.problems
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    registry.refresh()
    with pytest.raises(PluginError) as err:
        registry.plugins("defense")
    assert str(err.value) == ("defense 'gradreg' is registered by both 'igbench' and 'test-suite'; rename one of "
                              "them")


def test_strict_mode_calls_a_declaration_problem_a_refusal(registry, install, monkeypatch):
    install(_NoPerturb(), look_up=False)
    monkeypatch.setenv("IGBENCH_STRICT_PLUGINS", "1")
    registry.refresh()
    with pytest.raises(PluginError, match=r"^attack 'no-perturb' from package 'test-suite' is refused "
                                          r"\(IGBENCH_STRICT_PLUGINS\): _NoPerturb does not define perturb"):
        registry.plugins("attack")
