"""`igbench cache list|clean`: the cache's models and snapshots, and removal of abandoned ones only."""

from __future__ import annotations

import json
import os
import time

import torch
from click.testing import CliRunner

from igbench.cli import cli
from igbench.engine.cache import CheckpointStore
from igbench.engine.models import ModelSpec, obtain_model
from igbench.engine.train import TrainConfig

HOUR = 3600.0


def _snapshot(path, age_seconds, **state):
    torch.save({"model": {"w": torch.zeros(3)}, **state}, path)
    t = time.time() - age_seconds
    os.utime(path, (t, t))


def _cache(tmp_path, mnist_slice):
    store = CheckpointStore(tmp_path)
    _, info = obtain_model(ModelSpec("none", "none", arch="mlp"), mnist_slice.subset(n_train=200, n_test=10),
                           TrainConfig(steps=3, batch_size=32), store, progress=False)
    folder = store.root / "models"
    finished = info["config_hash"]
    files = {
        "abandoned": folder / f"{'a' * 64}.fit0.partial.pt",
        "running": folder / f"{'b' * 64}.fit1.partial.pt",
        "leftover": folder / f"{finished}.fit0.done.pt",
        "temporary": folder / f".{'c' * 64}.pt.x1y2.tmp",
        "teacher": folder / f"{'b' * 64}.fit0.done.pt",  # written once, hours ago; its student trains now
    }
    _snapshot(files["abandoned"], 5 * HOUR, step=120, total=15000, label="gradreg")
    _snapshot(files["running"], 60, step=40, total=10000, label="distillation student")
    _snapshot(files["leftover"], 60, steps=3)
    _snapshot(files["teacher"], 5 * HOUR, steps=10000)
    files["temporary"].write_bytes(b"half a checkpoint")
    t = time.time() - 2 * HOUR
    os.utime(files["temporary"], (t, t))
    return store, finished, files


def test_list_shows_models_and_resumable_trainings(tmp_path, mnist_slice):
    store, finished, _ = _cache(tmp_path, mnist_slice)
    res = CliRunner().invoke(cli, ["cache", "list", "--cache-dir", str(store.root)])
    assert res.exit_code == 0, res.output
    assert finished[:12] in res.output and "mlp" in res.output
    assert "gradreg" in res.output and "120/15000" in res.output
    assert "distillation student" in res.output and "40/10000" in res.output

    res = CliRunner().invoke(cli, ["cache", "list", "--cache-dir", str(store.root), "--json"])
    kinds = sorted(e["kind"] for e in json.loads(res.output)["entries"])
    assert kinds == ["checkpoint", "done", "done", "partial", "partial", "temporary"]


def test_list_tells_apart_models_that_differ_only_in_precision(tmp_path, mnist_slice):
    store = CheckpointStore(tmp_path)
    data = mnist_slice.subset(n_train=200, n_test=10)
    keys = {}
    for precision in ("fp32", "bf16"):
        _, info = obtain_model(ModelSpec("none", "none", arch="mlp"), data,
                               TrainConfig(steps=3, batch_size=32, precision=precision), store, progress=False)
        keys[precision] = info["config_hash"]
    res = CliRunner().invoke(cli, ["cache", "list", "--cache-dir", str(store.root), "--json"])
    listed = {e["key"]: e["precision"] for e in json.loads(res.output)["entries"] if e["kind"] == "checkpoint"}
    assert listed == {keys["fp32"]: "fp32", keys["bf16"]: "bf16"}
    table = CliRunner().invoke(cli, ["cache", "list", "--cache-dir", str(store.root)]).output
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line[:12] in
            (keys["fp32"][:12], keys["bf16"][:12])}
    assert "fp32" in rows[keys["fp32"][:12]] and "bf16" in rows[keys["bf16"][:12]]


def test_clean_removes_only_what_no_training_uses(tmp_path, mnist_slice):
    store, finished, files = _cache(tmp_path, mnist_slice)
    dry = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(store.root), "--dry-run"])
    assert dry.exit_code == 0 and "would remove" in dry.output
    assert all(p.exists() for p in files.values()), "a dry run removes nothing"

    res = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(store.root)])
    assert res.exit_code == 0, res.output
    assert not files["abandoned"].exists() and not files["temporary"].exists()
    assert not files["leftover"].exists(), "its model is finished: the snapshot is a leftover at any age"
    assert files["running"].exists(), "written a minute ago: a training is using it"
    assert files["teacher"].exists(), "old, but the same training's student snapshot is fresh"
    assert store.has(finished), "finished models are kept without --other-versions"
    assert "3 file(s)" in res.output


def test_other_versions_removes_checkpoints_another_igbench_trained(tmp_path, mnist_slice):
    import igbench

    store, finished, _ = _cache(tmp_path, mnist_slice)
    blob = torch.load(store.path(finished), weights_only=True)
    blob["meta"]["config"]["versions"]["igbench"] = "0.0.1"
    old = store.path("d" * 64)
    torch.save(blob, old)
    listed = CliRunner().invoke(cli, ["cache", "list", "--cache-dir", str(store.root)])
    assert "0.0.1" in listed.output and igbench.__version__ in listed.output

    res = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(store.root), "--other-versions"])
    assert res.exit_code == 0, res.output
    assert f"removed {old} (checkpoint, igbench 0.0.1, " in res.output
    assert not old.exists()
    assert store.has(finished), "this version's model stays"


def test_bad_duration_names_the_fix(tmp_path):
    res = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(tmp_path), "--older-than", "soon"])
    assert res.exit_code == 2 and "use e.g. 30m, 1h or 2d" in res.output


def test_clean_keeps_the_snapshot_of_a_training_that_holds_its_lock(tmp_path, mnist_slice):
    from igbench.locks import exclusive_lock

    store, _, files = _cache(tmp_path, mnist_slice)
    slow = store.root / "models" / f"{'e' * 64}.fit0.partial.pt"  # one step of a very slow training
    _snapshot(slow, 5 * HOUR, step=3, total=15000, label="advtrain+gradreg")
    with exclusive_lock(store.lock_path("e" * 64)):
        listed = CliRunner().invoke(cli, ["cache", "list", "--cache-dir", str(store.root), "--json"])
        live = {e["key"][:1]: e["training_now"] for e in json.loads(listed.output)["entries"] if "training_now" in e}
        assert live["e"] and not live["a"], "list says which training is running now"
        res = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(store.root)])
        assert res.exit_code == 0, res.output
        assert slow.exists(), "old, but a live process holds its model's training lock"
        assert not files["abandoned"].exists(), "just as old, and no one holds its lock"
    res = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(store.root)])
    assert not slow.exists(), "the lock is released: now it is abandoned"
