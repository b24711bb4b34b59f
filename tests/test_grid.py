"""The transfer grid: cache keys, checkpoint reuse, resume after an interruption, the run command."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from igbench.cli import cli
from igbench.engine.cache import CheckpointStore, config_hash
from igbench.engine.grid import AttackSpec, GridSpec, run_grid
from igbench.engine.models import ModelSpec, model_config
from igbench.engine.train import TrainConfig
from igbench.environment import cpu_model
from igbench.errors import UsageError
from igbench.results.io import read_result


def tiny_spec(data_dir, **over) -> GridSpec:
    spec = GridSpec(
        dataset="mnist", data_dir=str(data_dir),
        models=[ModelSpec("none", "none", arch="mlp"), ModelSpec("gradreg", "gradreg", {"lambda": 10.0}, arch="mlp")],
        attacks=[AttackSpec("fgsm")], eps=[0.1, 0.3],
        train=TrainConfig(steps=30, batch_size=64, lr=1e-3, seed=0), n_test=200, grad_norm_images=200,
    )
    return dataclasses.replace(spec, **over)


def test_cache_key_changes_with_every_configuration_field(mnist_slice, registry):
    base_spec = ModelSpec("m", "gradreg", {"lambda": 10.0}, arch="mlp", arch_params={"hidden": 32})
    base_train = TrainConfig(epochs=1.0, batch_size=64, lr=1e-3, seed=0)
    base = config_hash(model_config(base_spec, mnist_slice, base_train))
    assert base == config_hash(model_config(base_spec, mnist_slice, base_train))  # stable
    # the id, the device and the memory format do not define the weights; everything else does
    assert base == config_hash(model_config(dataclasses.replace(base_spec, id="other"), mnist_slice, base_train))
    assert base == config_hash(model_config(base_spec, mnist_slice, dataclasses.replace(base_train, device="cpu:0")))
    assert base == config_hash(model_config(base_spec, mnist_slice,
                                            dataclasses.replace(base_train, memory_format="channels_last")))
    assert base == config_hash(model_config(base_spec, mnist_slice,
                                            dataclasses.replace(base_train, monitor_every=5, monitor_eps=0.3)))
    # a revision of what an architecture builds (lcn's window) changes only its own models' keys
    cnn = dataclasses.replace(base_spec, arch="paper-cnn", arch_params={})
    assert "arch_revision" not in model_config(cnn, mnist_slice, base_train)
    assert model_config(dataclasses.replace(cnn, arch_params={"lcn": True}), mnist_slice, base_train)[
        "arch_revision"] == "lcn-study-window"
    # with --steps the length is set: --epochs changes nothing, and used to retrain the same model
    stepped = dataclasses.replace(base_train, steps=10)
    assert config_hash(model_config(base_spec, mnist_slice, stepped)) == config_hash(
        model_config(base_spec, mnist_slice, dataclasses.replace(stepped, epochs=3.0)))
    variants = {
        "dataset checksum": (base_spec, dataclasses.replace(mnist_slice, checksum="0" * 64), base_train),
        "dataset variant": (base_spec, dataclasses.replace(mnist_slice, variant="other"), base_train),
        "dataset name": (base_spec, dataclasses.replace(mnist_slice, name="fashion-mnist"), base_train),
        "arch": (dataclasses.replace(base_spec, arch="paper-cnn", arch_params={}), mnist_slice, base_train),
        "arch params": (dataclasses.replace(base_spec, arch_params={"hidden": 64}), mnist_slice, base_train),
        "defense": (dataclasses.replace(base_spec, defense="gradreg-fd"), mnist_slice, base_train),
        "defense params": (dataclasses.replace(base_spec, defense_params={"lambda": 11.0}), mnist_slice, base_train),
        "epochs": (base_spec, mnist_slice, dataclasses.replace(base_train, epochs=2.0)),
        "steps": (base_spec, mnist_slice, dataclasses.replace(base_train, steps=10)),
        "batch size": (base_spec, mnist_slice, dataclasses.replace(base_train, batch_size=32)),
        "lr": (base_spec, mnist_slice, dataclasses.replace(base_train, lr=2e-4)),
        "adam eps": (base_spec, mnist_slice, dataclasses.replace(base_train, adam_eps=1e-8)),
        "seed": (base_spec, mnist_slice, dataclasses.replace(base_train, seed=1)),
    }
    keys = {name: config_hash(model_config(*args)) for name, args in variants.items()}
    for name, key in keys.items():
        assert key != base, f"changing the {name} did not change the cache key"
    assert len(set(keys.values())) == len(keys)
    cfg = model_config(base_spec, mnist_slice, base_train)
    assert cfg["versions"]["torch"] and cfg["versions"]["igbench"]  # library versions are part of the key
    # a default filled in explicitly is the same configuration
    explicit = dataclasses.replace(base_spec, defense_params={"lambda": 10.0, **{
        p.name: p.default for p in registry.get("defense", "gradreg").params if p.name != "lambda"}})
    assert base == config_hash(model_config(explicit, mnist_slice, base_train))


def test_a_third_party_architectures_package_version_is_in_the_key_and_built_ins_keep_theirs(
        mnist_slice, install, monkeypatch):
    """A changed third-party `build` used to reuse the old weights (only a defense's package was keyed)."""
    import igbench.engine.models as models_mod
    from igbench.architectures.mlp import MLP

    class Theirs(MLP):
        name = "their-mlp"

    install(Theirs(), source="their-package")
    spec, train = ModelSpec("m", "none", arch="their-mlp"), TrainConfig(steps=5)
    versions = {"their-package": "1.0"}
    monkeypatch.setattr(models_mod, "package_version", lambda dist: versions.get(dist, "x"))
    first = model_config(spec, mnist_slice, train)
    assert first["arch_source"] == "their-package" and first["versions"]["arch_package"] == "1.0"
    versions["their-package"] = "1.1"
    assert config_hash(model_config(spec, mnist_slice, train)) != config_hash(first)
    built_in = model_config(dataclasses.replace(spec, arch="mlp"), mnist_slice, train)
    assert "arch_source" not in built_in and "arch_package" not in built_in["versions"]


def test_a_result_names_the_third_party_packages_its_plugins_come_from(registry, monkeypatch):
    """A colleague reading a result of a third-party plugin could not tell which package to install."""
    from importlib import metadata

    from igbench.registry import reset_registry

    monkeypatch.setenv("IGBENCH_PLUGINS", "example_defense")  # the tests load no third-party plugin otherwise
    reset_registry()

    from igbench.engine.grid import plugin_packages
    from igbench.grid_config import build_grid_spec
    from igbench.results.io import validate_result

    assert plugin_packages(build_grid_spec({"defense": ("gradreg",), "attack": ("fgsm", "pgd")})) == {}
    with_art = plugin_packages(build_grid_spec({"attack": ("art:FastGradientMethod",)}))
    assert with_art == {"adversarial-robustness-toolbox": metadata.version("adversarial-robustness-toolbox")}
    spec = build_grid_spec({"defense": ("noise-augment",), "attack": ("fgsm",)})
    packages = plugin_packages(spec)
    assert packages == {"igbench-example-defense": metadata.version("igbench-example-defense")}
    result = json.loads(next(Path("tests/fixtures/results").glob("*.json")).read_text())
    result["environment"]["plugin_packages"] = packages
    validate_result(result)


def test_grid_resumes_after_interruption_and_reuses_checkpoints(shared_data, tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "cache")
    out = tmp_path / "r.json"
    calls: list[tuple] = []

    from igbench.engine import attack as attack_mod

    real_run_attack = attack_mod.run_attack

    def flaky(plugin, params, model, x, y, ctx, **kw):
        calls.append((plugin.name, params.get("eps")))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the third unit
        return real_run_attack(plugin, params, model, x, y, ctx, **kw)

    monkeypatch.setattr(attack_mod, "run_attack", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_grid(tiny_spec(shared_data), out, store, progress=False, echo=lambda s: None)
    journal = out.with_name(out.name + ".partial.jsonl")
    assert journal.exists() and not out.exists()
    assert len(journal.read_text().strip().splitlines()) == 1 + 2  # header + two finished units
    # A run killed (SIGKILL) while writing its result leaves the temporary file; the next run removes it.
    orphan, neighbour = tmp_path / ".r.json.k1ll3d_x.tmp", tmp_path / ".r.json.other.json.k1ll3d_x.tmp"
    orphan.write_text("{half"), neighbour.write_text("{another result's")

    calls.clear()
    said: list[str] = []
    result, path = run_grid(tiny_spec(shared_data), out, store, progress=False, echo=said.append)
    assert len(calls) == 2, "the two finished units must not be redone"
    assert not orphan.exists() and f"removed {orphan}, a half-written result that a killed run left" in said
    assert neighbour.exists(), "another result's temporary file is not this run's to remove"
    assert all(m["cached"] for m in result["models"]), "the models must come from the checkpoint cache"
    assert not journal.exists()
    assert len(result["cells"]) == 2 * 2 * 2  # eps x source x target
    assert read_result(path) == result
    # the attack time counts the units the first, interrupted run finished too (it counted only the last 2)
    assert result["timings"]["attack_seconds"] == pytest.approx(sum(s["seconds"] for s in result["attack_stats"]))

    # an uninterrupted run from scratch gives the same cells (determinism of the resumed result)
    monkeypatch.setattr(attack_mod, "run_attack", real_run_attack)
    fresh, _ = run_grid(tiny_spec(shared_data), tmp_path / "fresh.json", CheckpointStore(tmp_path / "cache2"),
                        progress=False, echo=lambda s: None)
    assert [c["accuracy"] for c in fresh["cells"]] == [c["accuracy"] for c in result["cells"]]
    assert [m["checkpoint_sha256"] for m in fresh["models"]] == [m["checkpoint_sha256"] for m in result["models"]]


def test_attacks_that_change_nothing_score_each_model_on_the_clean_images_once(shared_data, tmp_path, monkeypatch):
    """At eps 0 FGSM and TGSM return their input: every such unit's transfer cells are the targets' clean
    accuracies, computed once per target model instead of once per unit."""
    import igbench.engine.grid as grid_mod

    calls = []
    real_accuracy = grid_mod.accuracy

    def counting(model, x, y, batch_size=1024, **output_check):
        calls.append(x.shape[0])
        return real_accuracy(model, x, y, batch_size, **output_check)

    monkeypatch.setattr(grid_mod, "accuracy", counting)
    spec = tiny_spec(shared_data, attacks=[AttackSpec("fgsm"), AttackSpec("tgsm")], eps=[0.0, 0.3])
    result, _ = run_grid(spec, tmp_path / "r.json", CheckpointStore(tmp_path / "c"), progress=False,
                         echo=lambda s: None)
    # 2 clean accuracies of the records + 2 attacks x 2 sources x 1 transfer target at eps 0.3
    # + the eps-0 transfer cells: one clean scoring per target model (2), not one per unit (4)
    assert len(calls) == 2 + 4 + 2
    cells = {(c["attack"], c["eps"], c["source"], c["target"]): c["accuracy"] for c in result["cells"]}
    clean = {m["id"]: m["clean_accuracy"] for m in result["models"]}
    for attack in ("fgsm", "tgsm"):
        for source in clean:
            for target in clean:
                assert cells[(attack, 0.0, source, target)] == pytest.approx(clean[target], abs=0.01)
    assert cells[("fgsm", 0.0, "none", "gradreg")] == cells[("tgsm", 0.0, "none", "gradreg")]


def test_grid_numbers_make_sense(shared_data, tmp_path, monkeypatch):
    import igbench.engine.grid as grid_mod
    from igbench.engine import attack as attack_mod

    models, crafted = {}, []
    real_obtain, real_run_attack = grid_mod.obtain_model, attack_mod.run_attack

    def keep_model(spec, *a, **kw):
        models[spec.id] = out = real_obtain(spec, *a, **kw)
        return out

    def keep_examples(plugin, params, model, x, y, ctx, **kw):
        crafted.append(out := real_run_attack(plugin, params, model, x, y, ctx, **kw))
        return out

    monkeypatch.setattr(grid_mod, "obtain_model", keep_model)
    monkeypatch.setattr(attack_mod, "run_attack", keep_examples)
    # eps 0.1: where the two models' examples and accuracies differ (at 0.3 every accuracy is about 0)
    result, _ = run_grid(tiny_spec(shared_data, eps=[0.0, 0.1, 0.3]), tmp_path / "r.json",
                         CheckpointStore(tmp_path / "c"), progress=False, echo=lambda s: None)
    clean = {m["id"]: m["clean_accuracy"] for m in result["models"]}
    cells = {(c["eps"], c["source"], c["target"]): c["accuracy"] for c in result["cells"]}
    # every cell is its target model's accuracy on the examples crafted against its source (in grid order:
    # eps, then source), against the true labels; transfer cells are not the white-box ones
    from igbench.datasets.loading import load_dataset

    y_eval = load_dataset("mnist", shared_data).test_y[:200]
    units = [(eps, source) for eps in (0.0, 0.1, 0.3) for source in ("none", "gradreg")]
    assert len(crafted) == len(units)
    for (eps, source), run in zip(units, crafted):
        for target, (model, _) in models.items():
            with torch.no_grad():
                acc = float((model(run.x_adv).argmax(1) == y_eval).float().mean())
            assert cells[(eps, source, target)] == pytest.approx(acc, abs=0.006), (eps, source, target)
    for mid in clean:
        assert clean[mid] > 0.7
        assert cells[(0.0, mid, mid)] == pytest.approx(clean[mid])  # eps 0 changes nothing
        assert cells[(0.3, mid, mid)] < clean[mid] - 0.2  # white-box FGSM at 0.3 hurts a lot
    # the white-box cell and the attack's success rate come from the same predictions of the source model
    for st in result["attack_stats"]:
        assert cells[(st["eps"], st["source"], st["source"])] == pytest.approx(1 - st["success_rate"])
    grads = {m["id"]: m["input_grad_norm"] for m in result["models"]}
    assert grads["gradreg"] < grads["none"]
    env = result["environment"]
    assert env["torch"] and env["seed"] == 0 and env["device"] == "cpu"
    here = [{"device": "cpu", "torch_threads": torch.get_num_threads(), "cpu": cpu_model()}]
    assert all(m["train"]["ran_on"] == here for m in result["models"]), "where each model trained"


def test_a_run_that_fell_back_to_the_sample_records_a_command_that_uses_it(registry, monkeypatch, tmp_path):
    """The recorded command lacked --dataset mnist-sample: run again where MNIST is found, it trained on full
    MNIST and replaced this result under the same --out."""
    from igbench.engine.replacing import command_for_data
    from igbench.errors import DatasetNotFound

    def missing(data_dir, params):
        raise DatasetNotFound("MNIST not found")

    monkeypatch.setattr(registry.get("dataset", "mnist"), "load", missing)
    monkeypatch.delenv("IGBENCH_DATA_DIR", raising=False)
    out = tmp_path / "r.json"
    ran = CliRunner().invoke(cli, ["run", "--arch", "mlp", "--attack", "fgsm", "--eps", "0.1", "--steps", "3",
                                   "--n-test", "20", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                                   "--no-progress"])
    assert ran.exit_code == 0, ran.output
    result = json.loads(out.read_text())
    assert result["dataset"]["name"] == "mnist-sample"
    assert result["command"] == (f"igbench run --arch mlp --attack fgsm --eps 0.1 --steps 3 --n-test 20 --out {out} "
                                 f"--dataset mnist-sample")
    assert command_for_data("igbench run --dataset mnist --steps 3", "mnist", "mnist-sample") == (
        "igbench run --dataset mnist-sample --steps 3")
    assert command_for_data("igbench run --dataset=mnist", "mnist", "mnist-sample") == (
        "igbench run --dataset=mnist-sample")
    assert command_for_data("igbench run --defense 'gradreg[lambda=5]'", "mnist", "mnist") == (
        "igbench run --defense 'gradreg[lambda=5]'")  # no fallback: as given


def test_run_command_end_to_end(shared_data, tmp_path):
    out = tmp_path / "res.json"
    args = ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp", "--defense", "gradreg",
            "--attack", "fgsm", "--eps", "0.2", "--steps", "20", "--n-test", "100", "--param", "lambda=10",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "fgsm eps=0.2" in first.output and "crafted on" in first.output
    data = json.loads(out.read_text())
    assert {m["id"] for m in data["models"]} == {"none", "gradreg"}
    assert data["models"][1]["defense_params"]["lambda"] == 10.0
    assert data["command"].startswith("igbench run")
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "loaded from cache" in second.output
    # An ART attack in a grid (its parameters are resolved twice there): ART's FGM gives native FGSM's cells.
    art_out = tmp_path / "art.json"
    art_args = [a if a != "fgsm" else "art:FastGradientMethod" for a in args[:-5]] + [
        "--out", str(art_out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    third = CliRunner().invoke(cli, art_args)
    assert third.exit_code == 0, third.output
    art = json.loads(art_out.read_text())
    assert art["attacks"][0]["name"] == "art:FastGradientMethod" and art["attacks"][0]["eps"] == [0.2]
    assert [(c["source"], c["target"], c["accuracy"]) for c in art["cells"]] == \
        [(c["source"], c["target"], c["accuracy"]) for c in data["cells"]]


def test_run_command_rejects_bad_input_in_one_line(shared_data, tmp_path):
    runner = CliRunner()
    base = ["run", "--data-dir", str(shared_data), "--cache-dir", str(tmp_path), "--no-progress"]
    cases = [
        (["--attack", "fgsm", "--param", "lamda=3", "--defense", "gradreg"], "no selected plugin takes 'lamda'"),
        (["--attack", "fgsm", "--param", "fgsm.eps=-1"], "parameter 'eps' of attack 'fgsm'"),
        (["--attack", "fgsm", "--eps", "-0.1"], "--eps must hold numbers >= 0, found -0.1"),
        (["--attack", "fgsm", "--device", "cuda:7"], "--device"),
        # a device torch knows but cannot compute on (meta everywhere; mps or xpu on most builds)
        (["--attack", "fgsm", "--device", "meta"], "--device meta: PyTorch cannot compute on it here"),
        (["--defense", "gradreg"], "no attack selected"),
        (["--attack", "fgsm", "--config", str(tmp_path / "missing.toml")], "no such file"),
        # ART judges its own parameters in its constructor: checked on a stand-in before any training
        (["--attack", "art:FastGradientMethod", "--param", "eps=-1", "--steps", "1"],
         "art:FastGradientMethod rejected its parameters"),
        # each used to be a traceback (OverflowError, torch's "Overflow when unpacking long long"), or to pass
        # this check and fail after training (No module named 'tensorflow')
        (["--attack", "fgsm", "--epochs", "inf"], "Invalid value for '--epochs': 'inf' is not a finite number"),
        (["--attack", "fgsm", "--seed", "99999999999999999999999"], "--seed must be a whole number with at most 18 digits"),
        (["--attack", "art:ProjectedGradientDescentTensorFlowV2", "--steps", "1"],
         "is written for TensorFlow models, and igbench's models are PyTorch ones; use art:ProjectedGradientDescentPyTorch"),
    ]
    for extra, expected in cases:
        result = runner.invoke(cli, base + extra)
        lines = [l for l in result.output.splitlines() if l.strip()]
        assert result.exit_code != 0 and len(lines) == 1 and expected in lines[0], (extra, result.output)
    assert not list(tmp_path.rglob("*.pt")), "no model was trained"


def test_paper_configs_parse_into_the_paper_grid(registry):
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({}, "configs/paper-mnist.toml")
    assert [m.id for m in spec.models] == ["none", "distillation", "advtrain", "gradreg", "advtrain+gradreg"]
    assert spec.train.steps == 15000 and spec.train.batch_size == 256 and spec.train.lr == 2e-4
    assert spec.eps == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert [a.name for a in spec.attacks] == ["fgsm", "tgsm", "jsma", "pgd"]
    short = build_grid_spec({"steps": 100, "n_test": 50}, "configs/paper-notmnist.toml")
    assert short.train.steps == 100 and short.n_test == 50 and short.dataset == "notmnist"


def test_paper_svhn_config_runs_the_paper_network_on_grey_svhn(registry, tmp_path, write_svhn):
    """No SVHN here: the config is checked on tiny random .mat files (a handful of steps), so a user with
    the real files gets the study's grey, LCN-first network, its lambda and the whole grid."""
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({}, "configs/paper-svhn.toml")
    assert spec.dataset == "svhn" and spec.dataset_params == {"grayscale": True}
    assert all(m.arch == "paper-cnn" and m.arch_params == {"lcn": True} for m in spec.models)
    lambdas = {m.id: m.defense_params.get("lambda") for m in spec.models}
    assert lambdas["gradreg"] == lambdas["advtrain+gradreg"] == 10000.0
    assert spec.train == build_grid_spec({}, "configs/paper-mnist.toml").train

    write_svhn(tmp_path / "data" / "svhn", n_train=40, n_test=10)
    out = tmp_path / "svhn.json"
    result = CliRunner().invoke(cli, [
        "run", "--config", "configs/paper-svhn.toml", "--steps", "2", "--batch-size", "16", "--n-test", "10",
        "--attack", "fgsm", "--eps", "0.1", "--param", "svhn.verify_md5=false", "--data-dir", str(tmp_path / "data"),
        "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert result.exit_code == 0, result.output
    data = read_result(out)
    assert data["dataset"]["variant"] == "grayscale" and data["eval"]["n_test"] == 10
    assert [m["id"] for m in data["models"]] == ["none", "distillation", "advtrain", "gradreg", "advtrain+gradreg"]
    assert len(data["cells"]) == 5 * 5  # fgsm at one eps: every source scored on every target


def test_an_attack_of_a_grid_file_can_have_its_own_eps_sweep(registry, tmp_path):
    """PGD (20 gradient steps per eps) gets a shorter eps list than the one-step attacks; --eps on the
    command line replaces both, and the attack records carry each attack's own list."""
    from igbench.engine.grid import attack_units
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({}, "configs/paper-mnist.toml")
    eps_of = {}
    for plugin, params, eps in attack_units(spec):
        eps_of.setdefault(plugin.name, []).append(eps)
        assert eps is None or params["eps"] == eps
    assert eps_of["fgsm"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert eps_of["pgd"] == [0.1, 0.2, 0.3, 0.5] and eps_of["jsma"] == [None]
    assert {p.name: p for p, _, _ in attack_units(spec)}["pgd"].resolve_params({"steps": 20})["steps"] == 20
    override = build_grid_spec({"eps": (0.25,)}, "configs/paper-mnist.toml")
    assert {(p.name, e) for p, _, e in attack_units(override) if e is not None} == {
        ("fgsm", 0.25), ("tgsm", 0.25), ("pgd", 0.25)}

    bad = tmp_path / "bad.toml"
    for attack, expected in (
        ('name = "jsma"\neps = [0.1]', "attack jsma takes no eps"),
        ('name = "pgd"\neps = 0.1', "eps must be a non-empty list of numbers"),
        ('name = "pgd"\nesp = [0.1]', "unknown key(s) esp (did you mean 'eps'?); known: eps, name, params"),
        ('params = { steps = 5 }', "[[attacks]] number 1 has no name"),
        ('name = "pgd"\neps = [-0.1]', "eps must hold numbers >= 0, found -0.1"),
        ('name = "pgd"\neps = [0.1, 0.1]', "eps lists 0.1 more than once"),
    ):
        bad.write_text(f'[run]\ndataset = "mnist"\n\n[[attacks]]\n{attack}\n')
        with pytest.raises(UsageError) as err:
            build_grid_spec({}, bad)
        assert expected in str(err.value), (attack, str(err.value))
    for text, expected in (  # misspelled keys and tables get the closest name, a table put in [run] its place
        ("[run]\nstepz = 3\n", "unknown [run] key(s) stepz (did you mean 'steps'?); known: adam_eps"),
        ('[run]\nattacks = "fgsm"\n', "unknown [run] key(s) attacks ([[attacks]] is a table of its own, not a [run] key)"),
        ('[[model]]\ndefense = "none"\n', "unknown table(s) model (did you mean 'models'?); use [run], [[models]]"),
    ):
        bad.write_text(text)
        with pytest.raises(UsageError) as err:
            build_grid_spec({}, bad)
        assert expected in str(err.value), (text, str(err.value))
    bad.write_text('[run]\ndataset = "mnist"\n\n[[models]]\nid = "g"\ndefence = "gradreg"\n')
    with pytest.raises(UsageError, match=r"\[\[models\]\] number 1: unknown key\(s\) defence"):
        build_grid_spec({}, bad)


def test_an_attack_listed_twice_is_refused_before_any_training_unless_it_is_one_sweep(registry, tmp_path):
    """A second entry at an eps of the first was skipped as journaled, and the result then failed its schema
    after the whole grid had run (a rerun failed the same way); one with other parameters was recorded as
    the first's. Two entries of one attack with the same parameters and other eps values are one sweep."""
    from igbench.engine.grid import attack_units
    from igbench.grid_config import build_grid_spec

    grid = tmp_path / "twice.toml"

    def units(*entries):
        grid.write_text('[run]\ndataset = "mnist"\n' + "".join(f"\n[[attacks]]\n{e}\n" for e in entries))
        return attack_units(build_grid_spec({"eps": ()}, grid))

    with pytest.raises(UsageError, match=r"attack pgd is listed twice at the same eps \(0.1\); give each eps once"):
        units('name = "pgd"\neps = [0.1, 0.2]', 'name = "pgd"\neps = [0.1]')
    with pytest.raises(UsageError, match="attack pgd is listed twice with other parameters; the result records one"):
        units('name = "pgd"\neps = [0.1]', 'name = "pgd"\neps = [0.2]\nparams = { steps = 5 }')
    with pytest.raises(UsageError, match="attack jsma is listed twice; it takes no eps, so both entries are the same"):
        units('name = "jsma"', 'name = "jsma"')
    with pytest.raises(UsageError, match="attack jsma is listed twice with other parameters"):
        units('name = "jsma"', 'name = "jsma"\nparams = { jacobian = "logits" }')
    swept = units('name = "fgsm"\neps = [0.1]', 'name = "pgd"\neps = [0.3]', 'name = "fgsm"\neps = [0.2]')
    assert [(p.name, e) for p, _, e in swept] == [("fgsm", 0.1), ("pgd", 0.3), ("fgsm", 0.2)]


@pytest.mark.parametrize("line, expected", [
    ('steps = "abc"', "[run] steps must be a whole number >= 1, got 'abc'"),
    ("eps = 0.1", "[run] eps must be a non-empty list of numbers"),
    ('eps = "01"', "[run] eps must be a non-empty list of numbers"),  # was read as [0.0, 1.0]
    ("eps = [0.1, 0.1]", "[run] eps lists 0.1 more than once"),
    ("eps = [0.1, inf]", "[run] eps must hold finite numbers only, found inf"),
    ('seed = "x"', "[run] seed must be a whole number with at most 18 digits, got 'x'"),
    ('lr = "fast"', "[run] lr must be a number > 0, got 'fast'"),
    ("arch_params = 5", "[run] arch_params must be a table"),
    ("eval_batch_size = 0", "[run] eval_batch_size must be a whole number >= 1, got 0"),
    ("adam_eps = -1", "[run] adam_eps must be a number > 0, got -1"),
    ("batch_size = 0", "[run] batch_size must be a whole number >= 1, got 0"),  # not "--batch-size must ..."
    ("epochs = -1", "[run] epochs must be a number > 0, got -1"),  # was caught by the schema after the run
    ('precision = "fp16"', "[run] precision must be one of fp32, bf16"),
])
def test_grid_file_values_are_checked_when_read_naming_file_and_key(registry, tmp_path, line, expected):
    """Each of these used to be a traceback from deep in the run, an error blaming a flag, or a schema error
    after the whole grid had run."""
    from igbench.grid_config import build_grid_spec

    bad = tmp_path / "bad.toml"
    bad.write_text(f'[run]\n{line}\n\n[[attacks]]\nname = "fgsm"\n')
    with pytest.raises(UsageError) as err:
        build_grid_spec({}, bad)
    assert str(err.value).startswith(f"--config {bad}: ") and expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ('[[models]]\ndefense = "gradreg"\nparams = "lambda=3"\n', '[[models]] number 1: params must be a table, e.g. { lambda = 100 }, got \'lambda=3\''),
    ('[[models]]\ndefense = "gradreg"\narch_params = "x"\n', "[[models]] number 1: arch_params must be a table"),
    ('[[models]]\ndefense = ["gradreg"]\n', "[[models]] number 1: defense must be a defense name, e.g. \"gradreg\", got ['gradreg']"),
    ('[[models]]\nid = 3\ndefense = "none"\n', "[[models]] number 1: id must be a name"),
    ('[[attacks]]\nname = 3\n', "[[attacks]] number 1: name must be an attack name"),
    ('[[attacks]]\nname = "pgd"\nparams = "x"\n', "[[attacks]] number 1: params must be a table"),
    ("run = 3\n", "run must be the table [run]"),
    # one bracket: TOML reads a single table, whose keys igbench used to take for entries (letter by letter)
    ('[attacks]\nname = "fgsm"\n', "[attacks] is one table; write [[attacks]] (two brackets) above each entry"),
    ('[models]\nid = "g"\ndefense = "gradreg"\n', "[models] is one table; write [[models]] (two brackets)"),
    ('attacks = "fgsm"\n', "attacks must be [[attacks]] entries (two brackets, one per attack, e.g. [[attacks]] then "
                           "name = \"fgsm\"), got attacks = 'fgsm'"),
    ("models = [1, 2]\n", "models must be [[models]] entries"),
    ("[run]\nseed = 99999999999999999999\n", "[run] seed must be a whole number with at most 18 digits"),
])
def test_grid_file_tables_and_entries_of_the_wrong_type_are_one_line_errors(registry, tmp_path, text, expected):
    """Each used to be a traceback (ValueError from dict(), TypeError: unhashable type, AttributeError) or,
    for one bracket instead of two, an error listing the entry's keys letter by letter."""
    from igbench.grid_config import build_grid_spec

    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(UsageError) as err:
        build_grid_spec({}, bad)
    assert str(err.value).startswith(f"--config {bad}: ") and expected in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_grid_files_saved_by_windows_editors_and_a_sweep_beyond_floats(registry, tmp_path):
    """A UTF-8 byte-order mark was "invalid statement (line 1, column 1)", UTF-16 a UnicodeDecodeError
    traceback, and logspace(2,500,3) an OverflowError."""
    from igbench.engine.sweep import parse_sweep
    from igbench.errors import UsageError
    from igbench.grid_config import read_grid_file

    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[run]\nseed = 3\n")
    assert read_grid_file(bom)["run"]["seed"] == 3
    utf16 = tmp_path / "u16.toml"
    utf16.write_text("[run]\nseed = 3\n", encoding="utf-16")
    with pytest.raises(UsageError, match=r"u16\.toml: not UTF-8 text \(it looks like UTF-16\); save it as UTF-8"):
        read_grid_file(utf16)
    for sweep in ("lambda=logspace(2,500,3)", "lambda=logspace(-400,2,3)"):  # OverflowError; 10^-400 read as 0
        with pytest.raises(UsageError, match=r"powers of ten, from -300 to 300"):
            parse_sweep(sweep)
    assert parse_sweep("lambda=logspace(-300,300,2)")[1] == [1e-300, 1e300]


def test_grid_file_data_dir_is_relative_to_the_file(registry, tmp_path, monkeypatch):
    from igbench.grid_config import build_grid_spec

    (tmp_path / "configs").mkdir()
    grid = tmp_path / "configs" / "g.toml"
    grid.write_text('[run]\ndata_dir = "../data"\n\n[[attacks]]\nname = "fgsm"\n')
    monkeypatch.chdir(tmp_path / "configs")
    assert Path(build_grid_spec({}, "g.toml").data_dir) == Path("../data")
    monkeypatch.chdir(tmp_path)
    assert Path(build_grid_spec({}, "configs/g.toml").data_dir) == Path("configs/../data")
    assert build_grid_spec({"data_dir": "elsewhere"}, "configs/g.toml").data_dir == "elsewhere"  # --data-dir wins


def test_igbench_data_dir_replacing_a_grid_files_data_dir_says_so(shared_data, tmp_path, monkeypatch):
    """The environment variable counts as --data-dir and wins over the file: that used to happen silently."""
    grid = tmp_path / "g.toml"
    grid.write_text('[run]\ndata_dir = "nowhere"\narch = "mlp"\n')
    args = ["train", "--config", str(grid), "--steps", "1", "--n-test", "10", "--cache-dir", str(tmp_path / "c"),
            "--no-progress"]
    monkeypatch.setenv("IGBENCH_DATA_DIR", str(shared_data))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"note: IGBENCH_DATA_DIR={shared_data} replaces {grid}'s data_dir ({tmp_path / 'nowhere'})" in result.output
    flag = CliRunner().invoke(cli, args + ["--data-dir", str(shared_data)])  # chosen on the command line: no note
    assert flag.exit_code == 0 and "note: IGBENCH_DATA_DIR" not in flag.output, flag.output


def test_cli_eps_must_be_finite_and_distinct_and_not_also_set_by_param(registry):
    from igbench.grid_config import build_grid_spec

    assert CliRunner().invoke(cli, ["run", "--attack", "fgsm", "--eps", "inf"]).exit_code == 2
    with pytest.raises(UsageError, match="--eps lists 0.1 more than once"):
        build_grid_spec({"attack": ("fgsm",), "eps": (0.1, 0.10)})
    # --param eps=0.2 used to replace the --eps sweep silently (and set advtrain's training eps too)
    with pytest.raises(UsageError, match="both --eps and --param set the eps of attack fgsm"):
        build_grid_spec({"attack": ("fgsm",), "defense": ("advtrain",), "eps": (0.1, 0.3), "param": ("eps=0.2",)})
    spec = build_grid_spec({"attack": ("fgsm",), "defense": ("advtrain",), "eps": (0.1, 0.3),
                            "param": ("advtrain.eps=0.2",)})
    assert spec.eps == [0.1, 0.3] and spec.models[-1].defense_params == {"eps": "0.2"}  # resolved later


def test_what_used_to_be_dropped_silently_is_said(registry):
    from igbench.engine.grid_notes import size_notes
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({"attack": ("fgsm",), "n_test": 5000, "batch_size": 5000})
    notes = size_notes(spec, n_train=4000, n_test=1000, dataset="mnist-sample")
    assert notes == ["note: --n-test 5000 is more than the 1000 test images of mnist-sample; scoring all 1000 "
                     "(the result records 1000)",
                     "note: --batch-size 5000 is more than the 4000 training images of mnist-sample; every step "
                     "takes all of them"]
    assert size_notes(build_grid_spec({"attack": ("fgsm",)}), 4000, 1000, "mnist-sample") == []
    with pytest.raises(UsageError, match=r"--eps has no effect: none of the selected attacks \(jsma\) takes eps"):
        build_grid_spec({"attack": ("jsma",), "eps": (0.1, 0.2)})
    build_grid_spec({"attack": ("jsma", "fgsm"), "eps": (0.1, 0.2)})  # fgsm takes it

    base = ["sweep", "--sweep", "lambda=1,2", "--attack", "fgsm"]
    two = CliRunner().invoke(cli, base + ["--defense", "gradreg", "--defense", "advtrain"])
    assert two.exit_code == 2 and "sweeps one defense, got --defense gradreg --defense advtrain" in two.output
    clash = CliRunner().invoke(cli, base + ["--defense", "gradreg", "--param", "lambda=5"])
    assert clash.exit_code == 2 and "--param lambda=5 and --sweep lambda=1,2 both set gradreg's lambda" in clash.output
    from igbench.engine.sweep import swept_ids

    assert swept_ids("gradreg", "lambda", [100.0, 56234.0]) == ["gradreg[lambda=100]", "gradreg[lambda=56234]"]
    assert swept_ids("gradreg", "lambda", [1e-7, 1.0000001e-7]) == ["gradreg[lambda=1e-07]",
                                                                   "gradreg[lambda=1.0000001e-07]"]
    # every digit a value needs: `run --defense` with the id then trains the sweep's very model
    assert swept_ids("gradreg", "lambda", [10 ** 4.75]) == ["gradreg[lambda=56234.13251903491]"]
    twice = CliRunner().invoke(cli, ["sweep", "--sweep", "lambda=1,1.0,2", "--defense", "gradreg"])
    assert twice.exit_code == 2 and "--sweep 'lambda=1,1.0,2' lists 1 more than once" in twice.output


def test_an_unwritable_out_is_a_usage_error_before_any_work(registry, tmp_path):
    """These were tracebacks (FileExistsError, or the journal's lock file after the models had trained)."""
    (tmp_path / "file.txt").write_text("x")
    blocked = CliRunner().invoke(cli, ["run", "--attack", "fgsm", "--out", str(tmp_path / "file.txt" / "r.json")])
    assert blocked.exit_code == 2 and f"{tmp_path / 'file.txt'} is a file, not a folder" in blocked.output
    # /proc takes no new files, even from root (a chmod-ed folder would not stop root)
    ro = CliRunner().invoke(cli, ["run", "--attack", "fgsm", "--out", "/proc/r.json"])
    assert ro.exit_code == 2 and "--out /proc/r.json: cannot write in /proc" in ro.output
    # an existing file that is not a result is kept (it was replaced); an empty --out (an unset variable) wrote
    # to the default place, or was a traceback with --dry-run
    (tmp_path / "notes.md").write_text("# notes")
    for extra in ((), ("--dry-run",)):
        kept = CliRunner().invoke(cli, ["run", "--attack", "fgsm", "--out", str(tmp_path / "notes.md"), *extra])
        assert kept.exit_code == 2 and "notes.md exists and is not an igbench result, so it is kept" in kept.output
        empty = CliRunner().invoke(cli, ["run", "--attack", "fgsm", "--out", "", *extra])
        assert empty.exit_code == 2 and "'--out': is empty; give a path" in empty.output, empty.output
    assert (tmp_path / "notes.md").read_text() == "# notes"


def test_run_loads_every_model_from_a_read_only_cache(shared_data, tmp_path, monkeypatch):
    """A shared cache that this user cannot write still serves the models it holds (as before the cache
    folder was checked up front); only a model that needs training needs a writable cache."""
    import tempfile

    cache = tmp_path / "cache"
    args = ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp", "--attack", "fgsm",
            "--eps", "0.2", "--steps", "5", "--n-test", "20", "--cache-dir", str(cache), "--no-progress"]
    first = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "a.json")])
    assert first.exit_code == 0, first.output
    real = tempfile.NamedTemporaryFile

    def read_only_cache(*a, dir=None, **kw):  # what writing into a read-only cache folder meets
        if dir is not None and Path(dir).resolve().is_relative_to(cache.resolve()):
            raise PermissionError(30, "Read-only file system", str(dir))
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only_cache)
    second = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "b.json")])
    assert second.exit_code == 0 and "loaded from cache" in second.output, second.output
    # a model that must be trained stops before its training (it used to train, then fail to save it)
    longer = [("6" if prev == "--steps" else a) for prev, a in zip([None] + args, args)]
    third = CliRunner().invoke(cli, longer + ["--out", str(tmp_path / "c.json")])
    assert third.exit_code != 0 and "train " not in third.output, third.output
    assert f"Error: cannot write in the cache's models folder {cache / 'models'} (Read-only file system)" in third.output


def test_lambda_sweep_is_one_command_recording_accuracy_and_gradient_norm(shared_data, tmp_path):
    """`igbench sweep` trains one model per lambda next to `none` and records clean accuracy and the
    input-gradient norm per lambda; with --config it takes the file's settings, not its other models."""
    config = tmp_path / "grid.toml"
    config.write_text('[run]\ndataset = "mnist"\narch = "mlp"\nsteps = 40\nbatch_size = 64\nn_test = 200\n'
                      'eps = [0.2]\n\n[[models]]\nid = "advtrain"\ndefense = "advtrain"\n\n'
                      '[[models]]\nid = "gradreg"\ndefense = "gradreg"\nparams = { scaling = "per-example" }\n\n'
                      '[[attacks]]\nname = "jsma"\n')
    out = tmp_path / "sweep.json"
    args = ["sweep", "--config", str(config), "--defense", "gradreg", "--sweep", "lambda=0.1,30",
            "--attack", "fgsm", "--data-dir", str(shared_data), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "mean ‖dCE/dx‖" in result.output and "gradreg[lambda=30]" in result.output
    data = read_result(out)
    models = {m["id"]: m for m in data["models"]}
    assert set(models) == {"none", "gradreg[lambda=0.1]", "gradreg[lambda=30]"}  # not the file's advtrain
    assert [a["name"] for a in data["attacks"]] == ["fgsm"]  # --attack replaced the file's jsma
    assert models["gradreg[lambda=30]"]["defense_params"] == {"lambda": 30.0, "scaling": "per-example"}
    assert all({c["source"]} == {c["target"]} for c in data["cells"])  # white-box only
    grad = {k: m["input_grad_norm"] for k, m in models.items()}
    assert grad["gradreg[lambda=30]"] < 0.5 * grad["gradreg[lambda=0.1]"]  # stronger penalty, flatter model
    assert all(m["clean_accuracy"] > 0.5 for m in models.values())


def test_a_sweep_takes_any_parameter_in_its_own_type(shared_data, tmp_path):
    """Not only numbers: a choice (gradreg's scaling) is swept by naming its values, typed and checked as
    --param would; per-example scaling is 2 * batch size times paper's, so it flattens the model more."""
    out = tmp_path / "scaling.json"
    args = ["sweep", "--defense", "gradreg", "--param", "lambda=10", "--sweep", "scaling=paper,per-example",
            "--arch", "mlp", "--steps", "40", "--n-test", "200", "--data-dir", str(shared_data), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    models = {m["id"]: m for m in read_result(out)["models"]}
    assert set(models) == {"none", "gradreg[scaling=paper]", "gradreg[scaling=per-example]"}
    assert models["gradreg[scaling=per-example]"]["defense_params"] == {"lambda": 10.0, "scaling": "per-example"}
    grad = {k: m["input_grad_norm"] for k, m in models.items()}
    assert grad["gradreg[scaling=per-example]"] < 0.5 * grad["gradreg[scaling=paper]"]

    from igbench.engine.sweep import swept_ids

    assert swept_ids("d", "flag", [True, False]) == ["d[flag=true]", "d[flag=false]"]
    assert swept_ids("d", "n", [3, 30]) == ["d[n=3]", "d[n=30]"]
    for sweep, expected in [
        ("scaling=paper,nope", "--sweep 'scaling=paper,nope': parameter 'scaling' of defense 'gradreg' must be one of"),
        ("scaling=logspace(1,2,3)", "logspace and linspace need a numeric parameter, and scaling takes str values"),
        # a malformed logspace was reported as "must be float, got 'logspace(2'"; a huge NUM hung, building the list
        ("lambda=logspace(2,5)", "--sweep 'lambda=logspace(2,5)': write logspace(START,STOP,NUM) or linspace("),
        ("lambda=logspace(a,b,c)", "write logspace(START,STOP,NUM)"),
        ("lambda=logspace(2,5,13.5)", "write logspace(START,STOP,NUM)"),
        ("lambda=logspace(2,5,100000000)", "logspace needs NUM from 2 to 100 (each value trains a model), got 100000000"),
        ("lambda=1,,2", "--sweep 'lambda=1,,2' has an empty value"),
        ("gradreg.lambda=1,x", "parameter 'lambda' of defense 'gradreg' must be float, got 'x'"),  # --param's form
        ("lamda=1,2", "defense 'gradreg' has no parameter 'lamda' (did you mean 'lambda'?)"),
        ("direction=batch,example", "defense 'gradreg' has no parameter 'direction'"),
        ("scaling=paper,paper", "--sweep 'scaling=paper,paper' lists paper more than once"),
        ("lambda=1,x", "--sweep 'lambda=1,x': parameter 'lambda' of defense 'gradreg' must be float, got 'x'"),
    ]:
        bad = CliRunner().invoke(cli, ["sweep", "--defense", "gradreg", "--sweep", sweep, "--attack", "fgsm"])
        assert bad.exit_code == 2 and expected in bad.output, (sweep, bad.output)
    from igbench.engine.sweep import parse_sweep

    assert parse_sweep("lambda=linspace(0, 1, 5)") == ("lambda", [0.0, 0.25, 0.5, 0.75, 1.0])
    assert parse_sweep("lambda=logspace(2,4,3)") == ("lambda", [100.0, 1000.0, 10000.0])
    assert parse_sweep("lambda=logspace(-1e0, .5, 2)")[1] == pytest.approx([0.1, 10 ** 0.5])


def test_three_seeds_of_a_grid_and_their_spread(shared_data, tmp_path):
    """The seed changes the trained models (their checkpoints and gradient norms differ), and `igbench
    spread` reports the mean and sample standard deviation over the three result files."""
    import statistics

    paths = []
    for seed in (0, 1, 2):
        paths.append(tmp_path / f"s{seed}.json")
        result = CliRunner().invoke(cli, [
            "run", "--defense", "gradreg", "--param", "lambda=10", "--param", "scaling=per-example", "--arch", "mlp",
            "--steps", "30", "--n-test", "200", "--attack", "fgsm", "--eps", "0.2", "--seed", str(seed),
            "--data-dir", str(shared_data), "--out", str(paths[-1]), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"])
        assert result.exit_code == 0, result.output
    runs = [read_result(p) for p in paths]
    assert len({m["checkpoint_sha256"] for r in runs for m in r["models"]}) == 6
    norms = [next(m for m in r["models"] if m["id"] == "gradreg")["input_grad_norm"] for r in runs]
    out = CliRunner().invoke(cli, ["spread", str(tmp_path)])
    assert out.exit_code == 0, out.output
    row = next(ln for ln in out.output.splitlines() if ln.startswith("gradreg "))
    assert row.split()[-3:] == [f"{statistics.fmean(norms):.4g}", "±", f"{statistics.stdev(norms):.2g}"]
    assert statistics.stdev(norms) > 0 and "white-box" in out.output and "transfer (eps > 0)" in out.output


def test_cli_attack_replaces_the_config_attacks_and_defense_adds(registry):
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({"attack": ("pgd", "jsma"), "defense": ("gradreg-fd",)}, "configs/paper-mnist.toml")
    assert [a.name for a in spec.attacks] == ["pgd", "jsma"]
    assert spec.attacks[1].params == {"theta": 1.0, "gamma": 0.25, "target": "next"}  # the file's jsma settings
    assert [m.id for m in spec.models][-1] == "gradreg-fd" and len(spec.models) == 6


def test_fashion_mnist_config_is_the_mnist_grid_on_other_data(registry):
    from igbench.grid_config import build_grid_spec

    mnist = build_grid_spec({}, "configs/paper-mnist.toml")
    fashion = build_grid_spec({}, "configs/paper-fashion-mnist.toml")
    assert fashion.dataset == "fashion-mnist" and mnist.dataset == "mnist"
    assert [(m.id, m.defense_params) for m in fashion.models] == [(m.id, m.defense_params) for m in mnist.models]
    assert fashion.train == mnist.train and fashion.eps == mnist.eps


def _unit(i):
    return {"attack": "fgsm", "eps": 0.1 * i, "source": "none", "cells": [], "stats": {}}


def test_journal_survives_a_torn_line_and_refuses_a_second_writer(tmp_path):
    from igbench.engine.journal import Journal
    from igbench.errors import UsageError

    path = tmp_path / "r.json.partial.jsonl"
    first = Journal(path, "run-1")
    with first.locked():
        first.append(_unit(1))
        with open(path, "a") as fh:
            fh.write('{"attack": "fgsm", "cel')  # killed mid-write
        with pytest.raises(UsageError, match="another igbench process is running a grid into this result"):
            with Journal(path, "run-1").locked():
                pass
        said = []  # another grid's notes on what it replaces wait for the lock: they spoke of dropping units
        with pytest.raises(UsageError, match="another igbench process"):
            with Journal(path, "run-2").locked(lambda: said.append("replacing run-1's units")):
                pass
        assert said == []
    again = Journal(path, "run-1")
    with again.locked():
        again.append(_unit(3))
    assert again.read() == [_unit(1), _unit(3)]  # the torn unit is redone, the next one kept
    # another grid at the same path resumes nothing of this one's and replaces its journal
    other = Journal(path, "run-2")
    assert other.read() == [] and other.other_run() == ("run-1", 2)
    with other.locked():
        other.append(_unit(9))
    assert other.read() == [_unit(9)] and Journal(path, "run-1").read() == []
    again.remove()
    assert not path.exists()


def test_damaged_journal_lines_are_redone_not_a_traceback(tmp_path):
    """Bytes that are not UTF-8 raised UnicodeDecodeError, a line `5` a TypeError and an object without
    the unit's keys a KeyError, each when the grid resumed."""
    from igbench.engine.journal import Journal

    path = tmp_path / "r.json.partial.jsonl"
    journal = Journal(path, "run-1")
    with journal.locked():
        journal.append(_unit(1))
    with open(path, "ab") as fh:
        fh.write(b"\xff\xfe not utf-8\n5\n[1, 2]\n" + b'{"attack": "fgsm"}\n')
    with journal.locked():
        journal.append(_unit(2))
    assert journal.read() == [_unit(1), _unit(2)]


def test_accuracy_gap_hint_names_model_gap_and_fix():
    from igbench.engine.grid_notes import accuracy_gap_hints

    def rec(mid, defense, params, acc):
        return {"id": mid, "defense": defense, "defense_params": params, "clean_accuracy": acc,
                "train": {"steps": 63, "batch_size": 64}}

    records = [rec("none", "none", {}, 0.968), rec("gradreg", "gradreg", {"lambda": 56234.0, "scaling": "paper"}, 0.593),
               rec("advtrain", "advtrain", {"eps": 0.3}, 0.95), rec("distillation", "distillation", {"T": 50.0}, 0.70)]
    hints = accuracy_gap_hints(records, "none")
    assert len(hints) == 2, hints  # advtrain is within 15 points: no hint
    assert "gradreg is 37.5 points less accurate than none" in hints[0]
    assert "smaller lambda" in hints[0] and "4x stronger per example" in hints[0]
    assert hints[1].startswith("note: distillation is 26.8 points") and "--steps" in hints[1]
    assert "lambda" not in hints[1]
    assert accuracy_gap_hints(records[1:], "none") == [], "no reference model, no comparison"
    assert accuracy_gap_hints(records, None) == []


def test_replicate_refuses_destinations_that_are_not_its_own_before_training(shared_data, tmp_path, monkeypatch):
    """A shortened trial used to land in leaderboards/results (ranked beside full-length runs) and redraw
    another result's figures; --out outside --results-dir failed only after the whole grid had run."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "tiny.toml"
    config.write_text('[run]\ndataset = "mnist"\narch = "mlp"\nsteps = 20\n\n[[models]]\nid = "none"\n'
                      'defense = "none"\n\n[[attacks]]\nname = "fgsm"\n')
    base = ["replicate", "--config", str(config), "--data-dir", str(shared_data), "--cache-dir", str(tmp_path / "c"),
            "--no-progress"]

    def refused(*extra):
        result = CliRunner().invoke(cli, base + list(extra))
        assert result.exit_code == 2, result.output
        assert not (tmp_path / "c").exists() and not (tmp_path / "leaderboards").exists(), "it ran before refusing"
        return result.output

    text = refused("--steps", "5", "--n-test", "50")
    assert "--steps --n-test make this a variant" in text and "--results-dir runs/trial/results" in text
    refused("--steps", "5", "--results-dir", "t/results")  # the leaderboards would still be the default ones
    # the figures too: a user who named the first two met this as a second error
    text = refused("--steps", "5", "--results-dir", "t/results", "--leaderboards", "t/boards")
    assert "--steps make this a variant of" in text and "the default --figures would put it beside" in text
    assert "--score-on make this a variant" in refused("--score-on", "validation")  # not a test-set score
    assert "--explain-eps has no effect with --no-explain" in refused("--no-explain", "--explain-eps", "8/255")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mnist.md").write_text("# my notes\n")  # replaced at the very end, after training
    text = refused("--results-dir", "mine/results", "--leaderboards", "mine", "--figures", "mine/figs")
    assert "mine/mnist.md exists and was not written by `igbench leaderboard`" in text and "--leaderboards" in text
    # the leaderboards rendered at the end are every data set's of --results-dir, not this config's alone
    (tmp_path / "mine" / "results").mkdir()
    published = Path(__file__).resolve().parents[1] / "leaderboards" / "results" / "paper-notmnist-full.json"
    shutil.copy(published, tmp_path / "mine" / "results")
    (tmp_path / "mine" / "mnist.md").unlink()
    (tmp_path / "mine" / "notmnist.md").write_text("# my notmnist notes\n")
    text = refused("--results-dir", "mine/results", "--leaderboards", "mine", "--figures", "mine/figs")
    assert "mine/notmnist.md exists and was not written by `igbench leaderboard`" in text
    (tmp_path / "mine" / "notmnist.md").unlink()
    (tmp_path / "mine" / "results" / "broken.json").write_text('{"schema_version": 1}')  # render_all would fail on it
    text = refused("--results-dir", "mine/results", "--leaderboards", "mine", "--figures", "mine/figs")
    assert "broken.json" in text and len(text.strip().splitlines()) == 1
    shutil.rmtree(tmp_path / "mine")
    # every option that changes what is trained or scored; it replaced the config's published result
    for extra in (("--seed", "1"), ("--lr", "0.05"), ("--param", "hidden=7"), ("--arch", "paper-cnn"),
                  ("--batch-size", "32"), ("--defense", "gradreg"), ("--precision", "bf16")):
        assert f"{extra[0]} make this a variant of" in refused(*extra)
    text = refused("--out", "elsewhere/tiny.json", "--results-dir", "t/results")
    assert "--out elsewhere/tiny.json is not in --results-dir t/results" in text
    refused("--out", "elsewhere/tiny.json")  # the default --results-dir, leaderboards/results

    owned = tmp_path / "figs" / "tiny" / "explain-scores.json"
    owned.parent.mkdir(parents=True)
    owned.write_text(json.dumps({"result": "leaderboards/short/results/tiny.json"}))
    text = refused("--results-dir", "t/results", "--figures", "figs")
    assert "figs/tiny holds the figures of leaderboards/short/results/tiny.json" in text and "--figures DIR" in text

    # The figure attack is checked before training too (these errors came after the whole grid).
    dest = ["--results-dir", "t/results", "--leaderboards", "t/boards", "--figures", "t/figs"]
    assert "unknown attack 'nosuch'" in refused(*dest, "--explain-attack", "nosuch")
    assert "--explain-eps 0.2: attack 'jsma' takes no eps" in refused(*dest, "--explain-attack", "jsma",
                                                                       "--explain-eps", "0.2")
    assert "parameter 'eps' of attack 'tgsm' must be >= 0" in refused(*dest, "--explain-eps", "-1")
    # ART's own checks need the data's input shape: the grid runs them with its attacks', before training
    result = CliRunner().invoke(cli, base + dest + ["--explain-attack", "art:AutoProjectedGradientDescent",
                                                   "--explain-eps", "0"])
    assert result.exit_code == 2, result.output
    assert "art:AutoProjectedGradientDescent rejected its parameters" in result.output
    assert "larger than zero" in result.output
    assert not (tmp_path / "c" / "models").exists(), "it trained before refusing"
    assert not list((tmp_path / "t").rglob("*.json")), "it wrote a result"


def test_replicate_publishes_and_a_rerun_reuses_the_finished_grid(shared_data, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('''
[run]
dataset = "mnist"
arch = "mlp"
steps = 20
batch_size = 64
n_test = 60
eps = [0.2]

[[models]]
id = "none"
defense = "none"

[[models]]
id = "gradreg"
defense = "gradreg"
params = { lambda = 10.0 }

[[attacks]]
name = "fgsm"
''')
    out = tmp_path / "results" / "tiny.json"
    args = ["replicate", "--config", str(config), "--data-dir", str(shared_data), "--cache-dir", str(tmp_path / "c"),
            "--results-dir", str(tmp_path / "results"), "--leaderboards", str(tmp_path / "boards"),
            "--figures", str(tmp_path / "figs"), "--explain-attack", "fgsm", "--no-progress"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    result = json.loads(out.read_text())
    assert result["interpretability"], "explain scored the gradients into the result"
    assert (tmp_path / "boards" / "mnist.md").is_file()
    assert list((tmp_path / "figs" / "tiny").glob("*.png"))
    assert "--rerun" not in result["command"]

    again = CliRunner().invoke(cli, args)  # e.g. after an interrupted explain step
    assert again.exit_code == 0, again.output
    assert "already holds this grid" in again.output and "attack fgsm" not in again.output
    assert json.loads(out.read_text())["created"] == result["created"], "the grid was not run again"

    # The same configuration trained again with other weights (another machine, thread count) is not the
    # same run: `explain` refuses to draw it as the old result's, and the command remakes the grid.
    import torch

    from igbench.engine.cache import CheckpointStore
    store = CheckpointStore(tmp_path / "c")
    key = result["models"][0]["config_hash"]
    blob = torch.load(store.path(key), map_location="cpu", weights_only=True)
    blob["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    blob["meta"]["ran_on"] = [{"device": "cpu", "torch_threads": 7, "cpu": "Other CPU 9000"}]
    torch.save(blob, store.path(key))
    explain = CliRunner().invoke(cli, ["explain", str(out), "--data-dir", str(shared_data), "--cache-dir",
                                       str(tmp_path / "c"), "--no-update-result", "--out", str(tmp_path / "e")])
    assert explain.exit_code == 1 and "holds other weights than the result was made with" in explain.output
    recorded = result["models"][0]["train"]["ran_on"]
    assert recorded[0]["cpu"] == cpu_model(), "the CPU model is recorded with where each model trained"
    assert "this one trained on [cpu with 7 torch thread(s), Other CPU 9000]" in explain.output, explain.output
    assert f"the result's on [cpu with {recorded[0]['torch_threads']} torch thread(s), {cpu_model()}]" in explain.output
    remade = CliRunner().invoke(cli, args)
    assert remade.exit_code == 0, remade.output
    assert "already holds this grid" not in remade.output and "attack fgsm eps=0.2 on none" in remade.output
    new = json.loads(out.read_text())
    assert new["run_id"] != result["run_id"]
    assert new["models"][0]["checkpoint_sha256"] != result["models"][0]["checkpoint_sha256"]
    assert new["models"][1]["checkpoint_sha256"] == result["models"][1]["checkpoint_sha256"]

    forced = CliRunner().invoke(cli, args + ["--rerun"])
    assert forced.exit_code == 0 and "attack fgsm eps=0.2 on none" in forced.output
    # a log shows how far the grid is and what each unit gave
    assert re.search(r"attack fgsm eps=0\.2 on none \(unit 1 of \d+\)\n  \d+\.\d s; white-box accuracy \d+\.\d%\n",
                     forced.output), forced.output


def _small_fgsm_run(shared_data, tmp_path, out, *extra):
    """``igbench run`` of one FGSM eps on MNIST into ``tmp_path / out``, with its own cache; the result,
    read back and validated against the schema."""
    from igbench.results.io import read_result

    args = ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--attack", "fgsm", "--eps", "0.2",
            "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return read_result(tmp_path / out)


def test_run_reuses_its_finished_result_unless_rerun(shared_data, tmp_path):
    """Running the same command again attacked the whole grid again (hours for a paper grid) to write the
    same numbers; `replicate` already reused a finished result."""
    args = ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp", "--steps", "5",
            "--n-test", "50", "--attack", "fgsm", "--eps", "0.2", "--out", str(tmp_path / "r.json"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and "attack fgsm eps=0.2 on none" in first.output, first.output
    written = (tmp_path / "r.json").read_text()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "attack fgsm" not in again.output, again.output
    assert "already holds this grid" in again.output and "(--rerun attacks again)" in again.output
    assert (tmp_path / "r.json").read_text() == written  # the tables are printed from the file as it was
    forced = CliRunner().invoke(cli, args + ["--rerun"])
    assert forced.exit_code == 0 and "attack fgsm eps=0.2 on none" in forced.output
    assert "--rerun" not in json.loads((tmp_path / "r.json").read_text())["command"]


def test_bf16_models_are_recorded_and_cached_apart_from_fp32(shared_data, tmp_path):
    """`--precision bf16` trains other checkpoints than fp32 (own hash), the result records the precision
    and the command that reproduces it, and the leaderboard marks those models."""
    from igbench.results.leaderboard import render_leaderboard

    def run(out, *extra):
        return _small_fgsm_run(shared_data, tmp_path, out, "--arch", "mlp", "--steps", "20", "--n-test", "60", *extra)

    fp32, bf16 = run("fp32.json"), run("bf16.json", "--precision", "bf16")
    assert "precision" not in fp32["models"][0]["train"]
    assert bf16["models"][0]["train"]["precision"] == "bf16" and "--precision bf16" in bf16["command"]
    assert bf16["models"][0]["config_hash"] != fp32["models"][0]["config_hash"]
    assert not bf16["models"][0]["cached"]  # not the fp32 checkpoint
    assert bf16["models"][0]["checkpoint_sha256"] != fp32["models"][0]["checkpoint_sha256"]
    board = render_leaderboard([(tmp_path / "bf16.json", bf16)], "mnist")
    assert re.search(r"\|\s*20 \(bf16\)\s*\|", board), board
    bad = CliRunner().invoke(cli, ["run", "--precision", "fp16"])
    assert bad.exit_code == 2 and "'fp16' is not one of 'fp32', 'bf16'" in bad.output


def test_a_channels_last_training_is_recorded_where_the_model_ran_and_its_checkpoint_serves_both(shared_data,
                                                                                                 tmp_path):
    def run(out, *extra):  # the paper CNN: its convolutions are what the layout changes
        return _small_fgsm_run(shared_data, tmp_path, out, "--steps", "3", "--batch-size", "32", "--n-test", "40",
                               *extra)

    nhwc = run("cl.json", "--memory-format", "channels_last")
    model = nhwc["models"][0]
    assert model["arch"] == "paper-cnn" and not model["cached"]
    assert model["train"]["ran_on"] == [{"device": "cpu", "torch_threads": torch.get_num_threads(),
                                         "memory_format": "channels_last", "cpu": cpu_model()}]
    assert "--memory-format channels_last" in nhwc["command"]
    again = run("default.json")["models"][0]
    assert again["cached"] and again["config_hash"] == model["config_hash"], "the layout is not in the hash"
    assert again["train"]["ran_on"] == model["train"]["ran_on"], "the checkpoint says how it was trained"
    bad = CliRunner().invoke(cli, ["run", "--memory-format", "nhwc"])
    assert bad.exit_code == 2 and "'nhwc' is not one of 'contiguous', 'channels_last'" in bad.output


def test_progress_goes_to_log_lines_when_the_output_is_a_file(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("IGBENCH_PROGRESS_INTERVAL", "0")  # a line per step instead of per minute
    args = ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp", "--attack", "fgsm",
            "--eps", "0.2", "--steps", "5", "--n-test", "40", "--out", str(tmp_path / "r.json"),
            "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(cli, args)  # CliRunner's stderr is not a terminal, like a log file
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("train none: ")]
    assert lines[0].startswith("train none: 1/5 steps (20%)") and re.search(r"(s/step|step/s), ", lines[0])
    assert lines[-1].startswith("train none: 5/5 steps (100%)") and "took" in lines[-1]
    quiet = CliRunner().invoke(cli, args + ["--no-progress", "--out", str(tmp_path / "r2.json"),
                                            "--cache-dir", str(tmp_path / "cache2")])
    assert quiet.exit_code == 0 and "train none: " not in quiet.output


def test_train_command_caches_models_a_later_run_loads(shared_data, tmp_path):
    common = ["--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp", "--defense", "gradreg",
              "--steps", "5", "--n-test", "50", "--param", "lambda=10", "--cache-dir", str(tmp_path / "cache"),
              "--no-progress"]
    trained = CliRunner().invoke(cli, ["train", *common, "--model", "gradreg"])
    assert trained.exit_code == 0, trained.output
    assert "model gradreg (1 of 1): gradreg on mlp" in trained.output and "model none" not in trained.output
    row = next(ln for ln in trained.output.splitlines() if ln.startswith("gradreg "))
    assert "trained now" in row and " 5 " in row
    assert len(list((tmp_path / "cache" / "models").glob("*.pt"))) == 1

    ran = CliRunner().invoke(cli, ["run", *common, "--attack", "fgsm", "--eps", "0.2", "--out", str(tmp_path / "r.json")])
    assert ran.exit_code == 0, ran.output
    gradreg_part = ran.output.split("model gradreg (2 of 2):")[1].split("model ")[0]
    assert "loaded from cache" in gradreg_part  # same hash as `train` gave it
    assert "loaded from cache" not in ran.output.split("model gradreg (2 of 2):")[0]  # none was trained by run

    again = CliRunner().invoke(cli, ["train", *common])
    assert again.exit_code == 0 and again.output.count("cached") >= 2

    unknown = CliRunner().invoke(cli, ["train", *common, "--model", "gradreg-typo"])
    assert unknown.exit_code != 0
    assert "no model 'gradreg-typo' in this grid; its models are none, gradreg" in unknown.output
    assert "Traceback" not in unknown.output
    assert "--attack" not in CliRunner().invoke(cli, ["train", "--help"]).output


def test_the_recorded_command_writes_eps_so_that_it_reads_back_exactly():
    """--eps 0.1234567 was recorded as 0.123457 (:g), so the recorded command ran another grid."""
    from igbench.cli.options import reproducible_command
    from igbench.numbers import exact_number
    from igbench.cli.run_cmd import run_command

    assert [exact_number(v) for v in (0.1, 0.25, 0.0, 1.0, 0.1234567)] == ["0.1", "0.25", "0", "1", "0.1234567"]
    ctx = run_command.make_context("run", ["--attack", "fgsm", "--eps", "0.1234567,0.3"])
    with ctx:
        command = reproducible_command(ctx)
    assert "--eps 0.1234567,0.3" in command


def test_replacing_another_grids_journal_or_result_at_the_same_out_is_said(tmp_path):
    """A different run with the same --out used to drop the other grid's finished units and overwrite its
    result silently."""
    from igbench.engine.replacing import replacement_notes
    from igbench.engine.journal import Journal

    out = tmp_path / "r.json"
    old = Journal(out.with_name(out.name + ".partial.jsonl"), "a" * 64)
    old.start()
    old.append({"attack": "fgsm", "eps": 0.1, "source": "none"})
    out.write_text(json.dumps({"run_id": "a" * 64}))
    notes = replacement_notes(out, Journal(old.path, "b" * 64), "b" * 64)
    assert len(notes) == 2
    assert "held 1 finished unit(s) of another grid (run aaaaaaaaaaaa)" in notes[0]
    assert "holds the result of run aaaaaaaaaaaa, not this run's; this run replaces it" in notes[1]
    assert replacement_notes(out, Journal(old.path, "a" * 64), "a" * 64) == []  # its own: resumed, reused


def test_another_grid_does_not_replace_the_result_at_its_out_without_replace(shared_data, tmp_path, monkeypatch):
    """Dropping one eps from a command, or from its grid file, and running it to the same --out replaced the
    earlier result when the new one finished, with only a note. It is now refused before anything trains,
    the dry run included. The same grid, however its command is spelt, still reuses or replaces its own
    result, and --replace replaces another's."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.json"
    base = ["run", "--arch", "mlp", "--steps", "3", "--n-test", "20", "--cache-dir", str(tmp_path / "c"),
            "--no-progress"]
    first = CliRunner().invoke(cli, base + ["--attack", "fgsm,pgd", "--eps", "0.1", "--data-dir", str(shared_data),
                                            "--out", str(out)])
    assert first.exit_code == 0, first.output
    written, trained = out.read_text(), sorted((tmp_path / "c").rglob("*.pt"))
    for extra in ([], ["--dry-run"]):
        changed = CliRunner().invoke(cli, base + ["--attack", "fgsm,pgd", "--eps", "0.1,0.2", "--defense", "gradreg",
                                                  "--data-dir", str(shared_data), "--out", str(out)] + extra)
        assert changed.exit_code == 2 and changed.output.strip() == (
            f"Error: {out} holds another grid's result (no model like this run's gradreg; fgsm at eps 0.1 where this "
            f"run has 0.1, 0.2; pgd at eps 0.1 where this run has 0.1, 0.2); pass --replace to replace it, or another "
            f"--out to keep it"), changed.output
        assert out.read_text() == written
    assert sorted((tmp_path / "c").rglob("*.pt")) == trained, "refused before gradreg trained"
    # the same grid spelt otherwise: the data folder through the environment and relative, the attacks
    # repeated, the seed written out, --out relative; and its dry run. Reused, as before.
    monkeypatch.setenv("IGBENCH_DATA_DIR", os.path.relpath(shared_data, tmp_path) + "/")
    same = base + ["--attack", "fgsm", "--attack", "pgd", "--eps", "0.1", "--seed", "0", "--out", "r.json"]
    for extra in (["--dry-run"], []):
        again = CliRunner().invoke(cli, same + extra)
        assert again.exit_code == 0 and ("reuses it" if extra else "already holds this grid") in again.output, \
            again.output
    assert out.read_text() == written
    # a grid file edited to one eps fewer is another grid too
    config = tmp_path / "grid.toml"
    config.write_text('[run]\narch = "mlp"\nsteps = 3\nn_test = 20\n\n[[models]]\nid = "none"\ndefense = "none"\n\n'
                      '[[attacks]]\nname = "fgsm"\neps = [0.1]\n\n[[attacks]]\nname = "pgd"\neps = [0.1]\n')
    assert CliRunner().invoke(cli, ["run", "--config", str(config), "--cache-dir", str(tmp_path / "c"), "--no-progress",
                                    "--out", "r.json"]).exit_code == 0
    config.write_text(config.read_text().replace('name = "pgd"\neps = [0.1]', 'name = "pgd"\neps = [0.2]'))
    edited = CliRunner().invoke(cli, ["run", "--config", str(config), "--cache-dir", str(tmp_path / "c"),
                                      "--no-progress", "--out", "r.json"])
    assert edited.exit_code == 2 and "(pgd at eps 0.1 where this run has 0.2)" in edited.output, edited.output
    dry = CliRunner().invoke(cli, base + ["--attack", "fgsm", "--eps", "0.1,0.2", "--out", str(out), "--replace",
                                          "--dry-run"])
    assert "holds another grid's result (fgsm at eps 0.1 where this run has 0.1, 0.2; attack pgd, which this run " \
        "lacks): --replace replaces it" in dry.output, dry.output
    replaced = CliRunner().invoke(cli, base + ["--attack", "fgsm", "--eps", "0.1,0.2", "--out", str(out), "--replace"])
    assert replaced.exit_code == 0 and "not this run's; this run replaces it" in replaced.output, replaced.output
    result = json.loads(out.read_text())
    assert sorted({c["eps"] for c in result["cells"]}) == [0.1, 0.2] and "--replace" not in result["command"]


def test_the_out_check_reads_the_grid_as_the_run_id_does_and_again_under_the_lock(shared_data, tmp_path, monkeypatch):
    """Second review of the --out check: model ids alone (`gradreg` with --param lambda=1000 against
    `gradreg[lambda=1000]`) were called another grid, which --replace then did not replace (the run id leaves
    ids out and reused the file); eps in another order were another grid; a result that could not be read as
    one counted as none; and a result written to --out while the models trained was replaced with a note."""
    import shutil

    import igbench.engine.grid as grid_module

    base = ["run", "--arch", "mlp", "--steps", "3", "--n-test", "20", "--attack", "fgsm", "--data-dir", str(shared_data),
            "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    out = tmp_path / "r.json"
    assert CliRunner().invoke(cli, base + ["--defense", "gradreg", "--param", "lambda=10", "--eps", "0.1,0.2", "--out",
                                           str(out)]).exit_code == 0
    written = out.read_text()
    for same in (["--defense", "gradreg[lambda=10]", "--eps", "0.2,0.1"], ["--defense", "gradreg", "--param", "lambda=10",
                                                                          "--eps", "0.1,0.2", "--dry-run"]):
        again = CliRunner().invoke(cli, base + same + ["--out", str(out)])  # eps reordered: another run id
        assert again.exit_code == 0 and "another grid" not in again.output, again.output
    other = tmp_path / "other.json"
    assert CliRunner().invoke(cli, base + ["--eps", "0.3", "--out", str(other)]).exit_code == 0

    damaged = json.loads(written)
    del damaged["models"]
    out.write_text(json.dumps(damaged))
    refused = CliRunner().invoke(cli, base + ["--eps", "0.1", "--out", str(out)])
    assert refused.exit_code == 2 and "holds another grid's result (a result this igbench cannot read as a grid" \
        in refused.output, refused.output

    out.unlink()  # empty at the start: the check before training passes
    real = grid_module.obtain_model

    def meanwhile(*args, **kwargs):  # another process writes its grid's result while this one trains
        shutil.copy(other, out)
        return real(*args, **kwargs)

    monkeypatch.setattr(grid_module, "obtain_model", meanwhile)
    raced = CliRunner().invoke(cli, base + ["--eps", "0.1", "--out", str(out)])
    assert raced.exit_code == 2 and "holds another grid's result (fgsm at eps 0.3 where this run has 0.1)" in raced.output
    assert out.read_text() == other.read_text(), "kept"


def test_another_grids_unfinished_units_are_not_dropped_without_replace(shared_data, tmp_path):
    """An interrupted grid's journal at --out was dropped, with a note after training, by any other grid sent
    there; the journal now records its grid, so that is refused before training unless --replace."""
    from igbench.engine.journal import Journal, journal_path
    from igbench.engine.replacing import grid_of_result

    base = ["run", "--arch", "mlp", "--steps", "3", "--n-test", "20", "--attack", "fgsm", "--data-dir", str(shared_data),
            "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    finished = tmp_path / "a.json"
    assert CliRunner().invoke(cli, base + ["--eps", "0.1", "--out", str(finished)]).exit_code == 0
    result = json.loads(finished.read_text())
    out = tmp_path / "r.json"  # grid A interrupted after one unit: its journal, no result yet
    interrupted = Journal(journal_path(out), result["run_id"], grid=grid_of_result(result))
    interrupted.start()
    unit = result["attack_stats"][0]
    interrupted.append({"attack": unit["attack"], "eps": unit["eps"], "source": unit["source"], "stats": unit,
                        "cells": [c for c in result["cells"] if c["source"] == unit["source"]]})
    for extra in ([], ["--dry-run"]):
        other = CliRunner().invoke(cli, base + ["--eps", "0.2", "--out", str(out)] + extra)
        assert other.exit_code == 2 and other.output.strip() == (
            f"Error: {journal_path(out)} holds 1 finished unit(s) of another grid, resumable (fgsm at eps 0.1 where "
            f"this run has 0.2); pass --replace to drop them, or another --out to keep that grid resumable"), other.output
    dry = CliRunner().invoke(cli, base + ["--eps", "0.2", "--out", str(out), "--replace", "--dry-run"])
    assert "holds 1 finished unit(s) of another grid (fgsm at eps 0.1 where this run has 0.2): --replace drops them" \
        in dry.output, dry.output
    resumed = CliRunner().invoke(cli, base + ["--eps", "0.1", "--out", str(out)])  # grid A itself: resumes
    assert resumed.exit_code == 0 and "resuming: 1 of 1 attack units already done" in resumed.output, resumed.output


def test_score_on_validation_attacks_the_held_out_images_with_the_same_models(shared_data, tmp_path):
    """The paper chose lambda by validation on adversarial examples; a grid scored only the test set, so a
    lambda picked from it was tuned on the test set. --score-on validation scores the images the data set
    held out of training, with the very models (same checkpoint keys) a test-set grid uses."""
    from igbench.datasets.loading import load_dataset
    from igbench.engine.result_models import load_result_models
    from igbench.engine.train import accuracy
    from igbench.results.io import validate_result

    cache = tmp_path / "cache"
    base = ["run", "--dataset", "mnist", "--param", "mnist.validation=500", "--arch", "mlp", "--defense", "gradreg",
            "--param", "lambda=10", "--attack", "fgsm", "--eps", "0.05", "--steps", "20", "--n-test", "200",
            "--data-dir", str(shared_data), "--cache-dir", str(cache), "--no-progress"]
    on_val = CliRunner().invoke(cli, base + ["--score-on", "validation", "--out", str(tmp_path / "val.json")])
    assert on_val.exit_code == 0, on_val.output
    assert "clean accuracy on 200 validation images" in on_val.output
    on_test = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "test.json")])
    assert on_test.exit_code == 0, on_test.output
    assert on_test.output.count("loaded from cache") == 2, "the same models: scoring is not part of their key"
    val, test = read_result(tmp_path / "val.json"), read_result(tmp_path / "test.json")
    assert val["eval"]["split"] == "validation" and test["eval"]["split"] == "test"
    assert val["dataset"]["n_validation"] == 500 and "--score-on validation" in val["command"]
    assert val["run_id"] != test["run_id"], "a journal must not mix validation and test units"
    assert [(m["config_hash"], m["checkpoint_sha256"]) for m in val["models"]] == \
        [(m["config_hash"], m["checkpoint_sha256"]) for m in test["models"]]

    # the numbers are those of the held-out images (the last 500 of the training file), not the test set's
    data = load_dataset("mnist", shared_data, {"validation": 500})
    models = load_result_models(val, CheckpointStore(cache))
    for rec, other in zip(val["models"], test["models"]):
        model = models[rec["id"]]
        assert rec["clean_accuracy"] == pytest.approx(accuracy(model, data.validation_x[:200], data.validation_y[:200]))
        assert other["clean_accuracy"] == pytest.approx(accuracy(model, data.test_x[:200], data.test_y[:200]))
    assert [c["accuracy"] for c in val["cells"]] != [c["accuracy"] for c in test["cells"]]

    broken = json.loads(json.dumps(val))
    broken["eval"]["n_test"] = 600
    with pytest.raises(Exception, match=r"600 is more than the dataset's n_validation \(500\)"):
        validate_result(broken, "broken")

    # more images than were held out: a note, and the result records what was scored
    more_images = ["1000" if arg == "200" else arg for arg in base]  # --n-test 1000
    more = CliRunner().invoke(cli, more_images + ["--score-on", "validation", "--out", str(tmp_path / "more.json")])
    assert more.exit_code == 0, more.output
    assert "--n-test 1000 is more than the 500 validation images of mnist" in more.output
    assert read_result(tmp_path / "more.json")["eval"]["n_test"] == 500

    # no images held out: one line naming the fix, before anything trains
    fresh = tmp_path / "fresh"
    refused = CliRunner().invoke(cli, ["run", "--dataset", "mnist", "--arch", "mlp", "--attack", "fgsm", "--steps", "5",
                                       "--data-dir", str(shared_data), "--cache-dir", str(fresh), "--no-progress",
                                       "--score-on", "validation", "--out", str(tmp_path / "none.json")])
    assert refused.exit_code == 2, refused.output
    assert "holds no validation images out of training" in refused.output
    assert "--param mnist.validation=5000" in refused.output and not (fresh / "models").exists()


def test_score_on_comes_from_the_grid_file_or_the_command_line(tmp_path):
    from igbench.grid_config import build_grid_spec

    config = tmp_path / "g.toml"
    config.write_text('[run]\nscore_on = "validation"\n')
    assert build_grid_spec({}).score_on == "test"
    assert build_grid_spec({}, config).score_on == "validation"
    assert build_grid_spec({"score_on": "test"}, config).score_on == "test", "the command line wins"
    config.write_text('[run]\nscore_on = "train"\n')
    with pytest.raises(UsageError, match=r"\[run\] score_on must be one of test, validation, got 'train'"):
        build_grid_spec({}, config)


def test_every_run_key_of_a_grid_file_has_a_value_rule():
    """A [run] key without a rule failed with a KeyError instead of being checked (score_on did)."""
    from igbench.grid_config import DEFAULTS, RUN_KEYS
    from igbench.grid_values import RULES

    assert set(RULES) | {"eps"} == RUN_KEYS
    assert set(DEFAULTS) <= RUN_KEYS


def test_a_grid_attacked_on_a_gpu_has_its_own_run_id_and_cpu_run_ids_are_unchanged(shared_data, tmp_path):
    """The run id left the device out, so a journal begun on the CPU could be resumed on a GPU, mixing two
    random streams and two roundings in one result. A CPU grid keeps the id it had."""
    import torch

    from igbench.datasets.loading import load_dataset
    from igbench.engine.grid import grid_run_id

    result, _ = run_grid(tiny_spec(shared_data), tmp_path / "r.json", CheckpointStore(tmp_path / "c"),
                         progress=False, echo=lambda s: None)
    spec = tiny_spec(shared_data)
    data = load_dataset(spec.dataset, spec.data_dir, spec.dataset_params)
    args = (spec, data, result["models"], result["attacks"], result["eval"]["n_test"])
    assert grid_run_id(*args, torch.device("cpu")) == result["run_id"]
    assert grid_run_id(*args, torch.device("cuda")) != result["run_id"]
    assert grid_run_id(*args, torch.device("cuda:1")) == grid_run_id(*args, torch.device("cuda"))


def test_an_architecture_revision_is_recorded_and_compared(shared_data, tmp_path):
    """It joins the checkpoint key; unrecorded, `compare` blamed the other key on an igbench or torch version."""
    from igbench.results.compare import setting_warnings
    from igbench.results.io import read_result

    base = ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--steps", "2", "--n-test", "20",
            "--attack", "fgsm", "--eps", "0.1", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    for name, extra in (("plain", []), ("lcn", ["--param", "lcn=true"])):
        res = CliRunner().invoke(cli, base + extra + ["--out", str(tmp_path / f"{name}.json")])
        assert res.exit_code == 0, res.output
    plain, lcn = read_result(tmp_path / "plain.json"), read_result(tmp_path / "lcn.json")  # both schema-valid
    assert all("arch_revision" not in m for m in plain["models"])
    assert {m["arch_revision"] for m in lcn["models"]} == {"lcn-study-window"}
    assert any("different architecture revision: none in A, lcn-study-window in B" in w
               for w in setting_warnings(plain, lcn))


def test_the_log_says_how_often_the_target_was_reached_for_an_art_attack_targeted_by_parameter(shared_data, tmp_path):
    """The line was printed only for plugins whose class is targeted (tgsm, jsma), not for an art: attack
    made targeted by its `targeted` parameter."""
    res = CliRunner().invoke(cli, [
        "run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp", "--steps", "3",
        "--n-test", "20", "--attack", "art:FastGradientMethod", "--param", "targeted=true", "--eps", "0.2",
        "--out", str(tmp_path / "r.json"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert re.search(r"white-box accuracy \d+\.\d%, target reached on \d+\.\d%", res.output), res.output
    # the result says so too: `report` read it from the installed plugin, which may be another or absent
    from igbench.results.report import _targeted

    result = json.loads((tmp_path / "r.json").read_text())
    assert [(a["name"], a["targeted"]) for a in result["attacks"]] == [("art:FastGradientMethod", True)]
    result["attacks"][0]["params"] = {}  # what the installed plugin would say without the recorded flag
    assert _targeted(result, "art:FastGradientMethod") is True


def test_a_model_at_chance_gets_a_note_naming_the_likely_cause():
    """20 steps of the paper CNN fit the training batches (93%) but score 13% on the test digits: BatchNorm's
    running statistics have not settled, and every attack cell then equals that chance-level accuracy."""
    import torch.nn as nn

    from igbench.engine.grid_notes import untrained_model_note

    with_bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 10))
    note = untrained_model_note("none", with_bn, 0.134, 20, 10)
    assert note.startswith("note: none scores 13.4% on clean data, close to chance (10%), after 20 training batches: "
                           "its BatchNorm layers' running statistics, which evaluation uses, still hold 12% of their "
                           "starting values; train longer (--steps 44 or more lets them settle)"), note
    plain = nn.Sequential(nn.Linear(4, 10))
    assert "it has not learned the task" in untrained_model_note("none", plain, 0.1, 20, 10)
    assert "it has not learned the task" in untrained_model_note("none", with_bn, 0.1, 2000, 10), "settled statistics"
    assert untrained_model_note("none", with_bn, 0.5, 20, 2) is not None, "chance is 1 / classes"
    # above 1.5x chance (gradreg at 16% beside none at 9.5%, same 20 steps) it had no note at all
    note = untrained_model_note("gradreg", with_bn, 0.16, 20, 10)
    assert "close to chance" not in note and "still hold 12% of their starting values" in note
    assert note.endswith("Until then its clean and attack numbers are not yet those of the trained model")
    assert untrained_model_note("gradreg", with_bn, 0.16, 50, 10) is None, "settled: 0.9^50 < 1%"
    assert untrained_model_note("gradreg", plain, 0.16, 20, 10) is None, "no BatchNorm: nothing to settle"
    note = untrained_model_note("distillation", plain, 0.07, 40, 10, schedule=20)  # teacher and student
    assert note.startswith("note: distillation scores 7.0% on clean data, close to chance (10%), after 40 training "
                           "batches in all (20 for each model its defense trains): it has not learned"), note
    with_bn[1].num_batches_tracked.fill_(60)  # the layer's own count wins: advtrain updates twice a step
    assert untrained_model_note("gradreg", with_bn, 0.16, 20, 10) is None


def test_a_schedule_too_short_for_batchnorm_is_said_before_training(mnist_slice):
    """--epochs 0.001 (one step) trained the paper CNN without a word; the chance-level note came after the
    models had trained. The dry run and the run now say it first, once per architecture with BatchNorm."""
    import torch

    from igbench.engine.grid_notes import short_schedule_notes
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({"defense": ("gradreg,advtrain@mlp",), "steps": 20, "device": "cpu"})
    state = torch.random.get_rng_state()
    assert short_schedule_notes(spec, mnist_slice) == [
        "note: after 20 training steps per model, 12% of the starting values remain in paper-cnn's BatchNorm running "
        "statistics, which evaluation uses: its models will score near chance; --steps 44 or more lets them "
        "settle (or choose an architecture without BatchNorm, --arch mlp)"]  # once, and none for mlp
    assert torch.equal(torch.random.get_rng_state(), state), "building the model drew from the global generator"
    assert short_schedule_notes(build_grid_spec({"steps": 44, "device": "cpu"}), mnist_slice) == []


def test_an_eps_beyond_the_data_range_gets_a_note(registry):
    """`--eps 8,16` (meant as 8/255) ran without a word and scored 0% everywhere."""
    from igbench.engine.grid_notes import eps_range_notes

    fgsm, jsma = registry.get("attack", "fgsm"), registry.get("attack", "jsma")
    units = [(fgsm, {}, 0.3), (fgsm, {}, 8.0), (fgsm, {}, 16.0), (jsma, {}, None)]
    assert eps_range_notes(units, 0.0, 1.0) == [
        "note: fgsm runs at eps 8, 16, more than the data's whole range [0, 1]: it may set any pixel to any value. "
        "eps is in the data's units: for 8 of 255 grey levels write --eps 8/255"]
    assert eps_range_notes(units[:1], 0.0, 1.0) == []
    assert eps_range_notes(units[1:2], -1.0, 1.0)[0].endswith("write --eps 0.06275 (8/255 of the range)")
    # an eps that bounds another norm (ART's L2 projected gradient descent) is not a pixel range
    l2 = registry.get("attack", "art:ProjectedGradientDescent")
    assert eps_range_notes([(l2, l2.resolve_params({"norm": "2"}), 3.0)], 0.0, 1.0) == []
    assert eps_range_notes([(l2, l2.resolve_params({}), 3.0)], 0.0, 1.0) != []


def test_a_grid_naming_one_model_twice_is_refused_before_training(shared_data, tmp_path, registry):
    """gradreg beside gradreg[lambda=56234] (its default) trained once and was attacked twice, and the cell
    between them read as transfer while it was white-box."""
    from igbench.errors import UsageError
    from igbench.grid_config import build_grid_spec

    for defenses in ("gradreg,gradreg[lambda=56234]", "gradreg[lambda=1000],gradreg[lambda=1e3]"):
        spec = build_grid_spec({"defense": (defenses,), "attack": ("fgsm",), "arch": "mlp", "steps": 5,
                                "data_dir": str(shared_data), "device": "cpu"})
        with pytest.raises(UsageError, match=r"^models gradreg.* and gradreg\[lambda=.*\] are the same model"):
            run_grid(spec, tmp_path / "r.json", CheckpointStore(tmp_path / "c"), progress=False, echo=lambda s: None)
        assert not (tmp_path / "c" / "models").exists(), "refused before any training"


def test_a_grid_transfers_between_architectures_from_the_command_line(shared_data, tmp_path):
    """--defense NAME@ARCH: the MLP and the paper CNN are trained, attacked and scored on each other's examples
    in one grid, each with its own architecture's parameters; a sweep refuses the form, naming --arch."""
    out = tmp_path / "x.json"
    args = ["run", "--data-dir", str(shared_data), "--defense", "none@mlp", "--param", "mlp.hidden=32",
            "--attack", "fgsm", "--eps", "0.3", "--steps", "60", "--n-test", "200", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    data = json.loads(out.read_text())
    models = {m["id"]: m for m in data["models"]}
    assert (models["none"]["arch"], models["none@mlp"]["arch"]) == ("paper-cnn", "mlp")
    assert models["none@mlp"]["arch_params"]["hidden"] == 32 and "hidden" not in models["none"]["arch_params"]
    assert models["none"]["checkpoint_sha256"] != models["none@mlp"]["checkpoint_sha256"]
    cells = {(c["source"], c["target"]): c["accuracy"] for c in data["cells"]}
    assert set(cells) == {(s, t) for s in models for t in models}
    for m in models:  # both learned, and white-box FGSM at 0.3 takes most of it away
        assert models[m]["clean_accuracy"] > 0.6 and cells[(m, m)] < models[m]["clean_accuracy"] - 0.3, (m, cells)
    report = CliRunner().invoke(cli, ["report", str(out)])
    assert report.exit_code == 0 and "| none@mlp | mlp " in report.output.replace("  ", " ").replace("  ", " ")
    sweep = CliRunner().invoke(cli, ["sweep", "--defense", "gradreg@mlp", "--sweep", "lambda=1,10", "--attack",
                                     "fgsm", "--data-dir", str(shared_data)])
    assert sweep.exit_code != 0 and "sweep it on mlp with --defense gradreg --arch mlp" in sweep.output
    two = CliRunner().invoke(cli, ["sweep", "--defense", "gradreg,advtrain", "--sweep", "lambda=1,10"])
    assert two.exit_code != 0 and "sweeps one defense, got --defense gradreg,advtrain" in two.output  # not "unknown"


def test_notes_about_a_defense_with_its_own_training_loop_do_not_suggest_steps():
    import torch.nn as nn

    from igbench.engine.grid_notes import accuracy_gap_hints, untrained_model_note

    note = untrained_model_note("own", nn.Sequential(nn.Linear(4, 10)), 0.1, 0, 10)
    assert note.endswith("its defense trains in its own loop, which --steps does not set; check its training")
    records = [{"id": "none", "clean_accuracy": 0.95, "train": {"steps": 20, "batch_size": 64}, "defense_params": {}},
               {"id": "own", "clean_accuracy": 0.5, "train": {"steps": 0, "batch_size": 64}, "defense_params": {}}]
    (hint,) = accuracy_gap_hints(records, "none")
    assert "after 0 training batches" not in hint and "--steps does not set" in hint


def test_dry_run_lists_cached_and_untrained_models_and_the_units_without_training(shared_data, tmp_path, registry):
    from click.testing import CliRunner

    from igbench.cli import cli

    common = ["--defense", "gradreg[lambda=10]", "--attack", "fgsm,jsma", "--eps", "0.1,0.3", "--arch", "mlp",
              "--steps", "5", "--n-test", "50", "--data-dir", str(shared_data), "--cache-dir", str(tmp_path / "c"),
              "--no-progress"]
    train = CliRunner().invoke(cli, ["train", *common[:2], *common[6:], "--model", "none"])
    assert train.exit_code == 0, train.output
    before = sorted((tmp_path / "c" / "models").iterdir())
    plan = CliRunner().invoke(cli, ["run", *common, "--dry-run", "--out", str(tmp_path / "r.json")])
    assert plan.exit_code == 0, plan.output
    lines = plan.output.splitlines()
    assert lines[0] == "dry run: nothing is trained or attacked"
    assert any(line.split()[:4] == ["none", "none", "on", "mlp;"] and "in the cache" in line for line in lines)
    assert any(line.startswith("  gradreg[lambda=10]") and "to train" in line and "5 steps of batch 64" in line
               for line in lines), plan.output
    assert "attacks: fgsm at eps 0.1, 0.3; jsma; 6 units (one per attack, eps and model), each scored on 2 model(s)" \
        in lines
    assert sorted((tmp_path / "c" / "models").iterdir()) == before and not (tmp_path / "r.json").exists()
    # what a run refuses before training, a dry run refuses too: where it would write, models named twice
    (tmp_path / "afile").write_text("")
    for where in (["--out", str(tmp_path / "afile" / "r.json")], ["--cache-dir", str(tmp_path / "afile" / "c")]):
        refused = CliRunner().invoke(cli, ["run", *common, *where, "--dry-run"])
        assert refused.exit_code == 2 and "afile is a file, not a folder" in refused.output, refused.output
    twice = CliRunner().invoke(cli, ["run", *common, "--defense", "gradreg", "--param", "gradreg.lambda=10",
                                     "--dry-run"])
    assert twice.exit_code != 0 and "are the same model" in twice.output, twice.output


def test_train_refuses_one_model_named_twice_as_run_does(shared_data, tmp_path, registry):
    from igbench.engine.train_grid import train_models
    from igbench.errors import UsageError
    from igbench.grid_config import build_grid_spec

    spec = build_grid_spec({"defense": ("gradreg,gradreg[lambda=56234]",), "arch": "mlp", "steps": 2,
                            "data_dir": str(shared_data), "device": "cpu"})
    with pytest.raises(UsageError, match="are the same model"):
        train_models(spec, CheckpointStore(tmp_path), progress=False)

