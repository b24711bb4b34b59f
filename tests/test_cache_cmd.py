"""`igbench cache list|clean`: the cache's models and snapshots, and removal of abandoned ones only."""

from __future__ import annotations

import json
import os
import time

import pytest
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


# --------------------------------------------------------------------------- export / import archives
def _tiny_result(shared_data, root):
    """A real two-model result (mlp: plain and gradreg, 10 steps) and the cache holding its checkpoints."""
    out, cache = root / "tiny.json", root / "cache"
    run = CliRunner().invoke(cli, ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp",
                                   "--defense", "gradreg", "--attack", "fgsm", "--eps", "0.3", "--steps", "10",
                                   "--n-test", "50", "--out", str(out), "--cache-dir", str(cache), "--no-progress"])
    assert run.exit_code == 0, run.output
    return out, cache


def test_export_then_import_carries_the_exact_checkpoints_to_another_cache(shared_data, tmp_path):
    from igbench.engine.result_models import load_result_models
    from igbench.results.io import read_result

    result_path, cache = _tiny_result(shared_data, tmp_path)
    result = read_result(result_path)
    exported = CliRunner().invoke(cli, ["cache", "export", str(result_path), "--cache-dir", str(cache)])
    assert exported.exit_code == 0, exported.output
    archive = tmp_path / "tiny-checkpoints.tar"  # the default name, beside the result
    assert archive.is_file() and f"igbench cache import {archive}" in exported.output
    again = CliRunner().invoke(cli, ["cache", "export", str(result_path), "--cache-dir", str(cache)])
    assert again.exit_code == 0, again.output  # its own archive is replaced ...
    original = result_path.read_bytes()  # ... the result, or any other file, is not (it became a tar)
    for other in (result_path, tmp_path / "notes.md"):
        if not other.exists():
            other.write_text("# notes\n")
        before = other.read_bytes()
        refused = CliRunner().invoke(cli, ["cache", "export", str(result_path), "--out", str(other),
                                           "--cache-dir", str(cache)])
        assert refused.exit_code != 0 and "is not a checkpoint archive of `igbench cache export`" in refused.output
        assert other.read_bytes() == before
    assert result_path.read_bytes() == original

    elsewhere = CheckpointStore(tmp_path / "other-cache")
    missing = CliRunner().invoke(cli, ["explain", str(result_path), "--data-dir", str(shared_data),
                                       "--cache-dir", str(elsewhere.root), "--no-update-result"])
    assert missing.exit_code != 0 and "igbench cache import" in missing.output

    from igbench.locks import exclusive_lock

    busy_key = result["models"][1]["config_hash"]
    with exclusive_lock(elsewhere.lock_path(busy_key)):  # as a process training that model holds it
        busy = CliRunner().invoke(cli, ["cache", "import", str(archive), "--cache-dir", str(elsewhere.root)])
    assert busy.exit_code != 0 and "another igbench process is training model" in busy.output
    assert "import again once it has finished" in busy.output and not elsewhere.path(busy_key).exists()

    imported = CliRunner().invoke(cli, ["cache", "import", str(archive), "--cache-dir", str(elsewhere.root)])
    assert imported.exit_code == 0, imported.output
    assert "2 checkpoint(s) written, 0 already cached" in imported.output
    assert "checkpoints of tiny.json (mnist; made by `igbench run" in imported.output
    for m in result["models"]:  # byte for byte the original files
        assert elsewhere.path(m["config_hash"]).read_bytes() == CheckpointStore(cache).path(m["config_hash"]).read_bytes()
    models = load_result_models(result, elsewhere)  # checks every model's weights against the result
    assert sorted(models) == ["gradreg", "none"]

    again = CliRunner().invoke(cli, ["cache", "import", str(archive), "--cache-dir", str(elsewhere.root)])
    assert again.exit_code == 0 and "0 checkpoint(s) written, 2 already cached" in again.output


def test_import_refuses_other_weights_and_damaged_archives(shared_data, tmp_path):
    import io
    import tarfile

    from igbench.engine.checkpoint_archive import MANIFEST
    from igbench.results.io import read_result

    result_path, cache = _tiny_result(shared_data, tmp_path)
    gradreg = next(m for m in read_result(result_path)["models"] if m["id"] == "gradreg")
    archive = tmp_path / "a.tar"
    assert CliRunner().invoke(cli, ["cache", "export", str(result_path), "--out", str(archive),
                                    "--cache-dir", str(cache)]).exit_code == 0

    # a cache whose gradreg (same configuration hash) holds other weights: not overwritten without --replace
    other = CheckpointStore(tmp_path / "other")
    target = other.path(gradreg["config_hash"])
    blob = torch.load(CheckpointStore(cache).path(gradreg["config_hash"]), weights_only=True)
    first = next(iter(blob["state_dict"]))
    blob["state_dict"][first] = blob["state_dict"][first] + 1
    target.parent.mkdir(parents=True)
    torch.save(blob, target)
    before = target.read_bytes()
    refused = CliRunner().invoke(cli, ["cache", "import", str(archive), "--cache-dir", str(other.root)])
    assert refused.exit_code != 0 and "--replace" in refused.output
    assert [line for line in refused.output.splitlines() if "--replace" in line] == \
        [refused.output.strip().splitlines()[-1]] and "Traceback" not in refused.output  # one line, last
    assert target.read_bytes() == before and len(list(target.parent.glob("*.pt"))) == 1  # nothing written
    replaced = CliRunner().invoke(cli, ["cache", "import", str(archive), "--replace", "--cache-dir", str(other.root)])
    assert replaced.exit_code == 0 and "replaced" in replaced.output
    assert target.read_bytes() == CheckpointStore(cache).path(gradreg["config_hash"]).read_bytes()

    # an archive whose manifest records other weights than the checkpoint it carries
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name != MANIFEST}
    manifest["models"][1]["checkpoint_sha256"] = "0" * 64
    forged = tmp_path / "forged.tar"
    with tarfile.open(forged, "w") as tar:
        for name, data in [(MANIFEST, json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fresh = tmp_path / "fresh"
    bad = CliRunner().invoke(cli, ["cache", "import", str(forged), "--cache-dir", str(fresh)])
    assert bad.exit_code != 0 and "weights are not the ones recorded" in bad.output
    assert not list(fresh.rglob("*.pt"))  # checked before anything was written

    # a checkpoint member that is a link: it was called "missing from the archive"
    linked = tmp_path / "linked.tar"
    with tarfile.open(linked, "w") as tar:
        data = json.dumps({**manifest, "models": manifest["models"][:1]}).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(next(iter(members)))
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    res = CliRunner().invoke(cli, ["cache", "import", str(linked), "--cache-dir", str(fresh)])
    assert res.exit_code != 0 and "is not a regular file in the archive (a link or a folder)" in res.output, res.output
    assert not list(fresh.rglob("*.pt"))

    notar = tmp_path / "not.tar"
    notar.write_text("hello")
    res = CliRunner().invoke(cli, ["cache", "import", str(notar), "--cache-dir", str(fresh)])
    assert res.exit_code != 0 and "igbench cache export" in res.output and "Traceback" not in res.output
    # a copy cut short: tarfile.ReadError("unexpected end of data") was a traceback
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:3000])
    res = CliRunner().invoke(cli, ["cache", "import", str(cut), "--cache-dir", str(fresh)])
    assert res.exit_code != 0 and (res.exception is None or isinstance(res.exception, SystemExit)), res.exception
    assert res.output.strip().splitlines()[-1] == (f"Error: {cut} is truncated or damaged (unexpected end of data); "
                                                   "copy or export it again")
    assert not list(fresh.rglob("*.pt"))


def test_export_refuses_a_checkpoint_that_is_not_the_results(shared_data, tmp_path):
    from igbench.results.io import read_result

    result_path, cache = _tiny_result(shared_data, tmp_path)
    none = next(m for m in read_result(result_path)["models"] if m["id"] == "none")
    path = CheckpointStore(cache).path(none["config_hash"])
    blob = torch.load(path, weights_only=True)
    first = next(iter(blob["state_dict"]))
    blob["state_dict"][first] = blob["state_dict"][first] * 2
    torch.save(blob, path)
    out = tmp_path / "x.tar"
    res = CliRunner().invoke(cli, ["cache", "export", str(result_path), "--out", str(out), "--cache-dir", str(cache)])
    assert res.exit_code != 0 and "weights are not the ones recorded for model 'none'" in res.output
    assert not out.exists()
    path.unlink()
    res = CliRunner().invoke(cli, ["cache", "export", str(result_path), "--out", str(out), "--cache-dir", str(cache)])
    assert res.exit_code != 0 and "not in the cache" in res.output and "igbench run" in res.output


def test_import_of_two_model_ids_that_share_a_configuration(tmp_path, mnist_slice):
    # A grid may list one configuration under two ids (gradreg and gradreg with its default lambda):
    # they share one checkpoint and one training lock, which import must not take twice and then call busy.
    from igbench.engine.checkpoint_archive import export_checkpoints, import_checkpoints

    store = CheckpointStore(tmp_path / "cache")
    model, info = obtain_model(ModelSpec("none", "none", arch="mlp"), mnist_slice.subset(n_train=200, n_test=10),
                               TrainConfig(steps=3, batch_size=32), store, progress=False)
    entry = {"config_hash": info["config_hash"], "checkpoint_sha256": info["checkpoint_sha256"]}
    result = {"command": "igbench run", "dataset": {"name": "mnist"},
              "models": [{"id": "a", **entry}, {"id": "b", **entry}]}
    archive = tmp_path / "two.tar"
    export_checkpoints(result, "two.json", store, archive, echo=lambda *_: None)
    other = CheckpointStore(tmp_path / "other")
    outcome = import_checkpoints(archive, other, echo=lambda *_: None)
    assert [status for _, status in outcome] == ["imported", "imported"]
    assert other.path(info["config_hash"]).read_bytes() == store.path(info["config_hash"]).read_bytes()


def test_a_damaged_checkpoint_and_one_that_no_longer_fits_its_architecture_get_different_errors(tmp_path, mnist_slice):
    """Both were "unreadable; delete it to retrain": a sound checkpoint of an architecture whose code changed
    was called damaged."""
    from igbench.errors import IgbenchError

    store = CheckpointStore(tmp_path)
    data = mnist_slice.subset(n_train=200, n_test=10)
    spec, cfg = ModelSpec("none", "none", arch="mlp"), TrainConfig(steps=3, batch_size=32)
    _, info = obtain_model(spec, data, cfg, store, progress=False)
    path = store.path(info["config_hash"])
    blob = torch.load(path, weights_only=True)

    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IgbenchError) as err:
        obtain_model(spec, data, cfg, store, progress=False)
    assert str(err.value) == f"cached checkpoint {path} is unreadable (RuntimeError); delete it to retrain"

    renamed = {f"old_{k}": v for k, v in blob["state_dict"].items()}  # what a renamed layer leaves behind
    torch.save({**blob, "state_dict": renamed}, path)
    with pytest.raises(IgbenchError) as err:
        obtain_model(spec, data, cfg, store, progress=False)
    assert str(err.value).startswith(f"cached checkpoint {path} does not fit the model its architecture builds now "
                                     "(Missing key(s) in state_dict:"), str(err.value)
    assert "the code that builds the model changed since it was trained" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_checkpoint_copied_under_another_models_key_is_refused(tmp_path, mnist_slice):
    """It loaded without a check: a grid recorded `none`'s weights and numbers as gradreg's. Copied from
    another architecture, it was blamed on a change of the architecture's code."""
    from igbench.errors import IgbenchError

    store = CheckpointStore(tmp_path)
    data = mnist_slice.subset(n_train=200, n_test=10)
    cfg = TrainConfig(steps=3, batch_size=32)
    _, plain = obtain_model(ModelSpec("none", "none", arch="mlp"), data, cfg, store, progress=False)
    for victim in (ModelSpec("gradreg", "gradreg", {"lambda": 10.0}, arch="mlp"), ModelSpec("cnn", "none", arch="paper-cnn")):
        _, info = obtain_model(victim, data, cfg, store, progress=False)
        store.path(info["config_hash"]).write_bytes(store.path(plain["config_hash"]).read_bytes())
        with pytest.raises(IgbenchError) as err:
            obtain_model(victim, data, cfg, store, progress=False)
        assert str(err.value) == (
            f"cached checkpoint {store.path(info['config_hash'])} holds a model of another configuration (its none on "
            f"mlp hashes to {plain['config_hash'][:12]}, not {info['config_hash'][:12]}): it was copied or renamed by "
            "hand, or written by a plugin that changed its own parameters while training; delete it to retrain")


def test_a_plugin_that_edits_its_parameters_while_training_still_gets_a_loadable_checkpoint(install, tmp_path,
                                                                                            mnist_slice):
    """The plugins were handed the configuration's own dicts: an edit in place changed the configuration
    stored with the checkpoint, and the next load refused it (and every retraining did the same again)."""
    from igbench.plugin_types import LossDefense, Param

    class Scaled(LossDefense):
        name, summary = "scaled", "test defense"
        params = (Param("weight", 1.0, "a weight the plugin rescales in place"),)

        def train(self, trainer, params):
            params["weight"] = float(params.pop("weight")) * 2
            return super().train(trainer, params)

        def loss(self, model, x, y, params, trainer):
            import torch.nn.functional as F

            logits = model(x)
            return params["weight"] * F.cross_entropy(logits, y), logits

    install(Scaled(), source="scaled-pkg")
    store = CheckpointStore(tmp_path)
    data = mnist_slice.subset(n_train=200, n_test=10)
    spec, cfg = ModelSpec("scaled", "scaled", arch="mlp"), TrainConfig(steps=3, batch_size=32)
    _, first = obtain_model(spec, data, cfg, store, progress=False)
    _, again = obtain_model(spec, data, cfg, store, progress=False)
    assert not first["cached"] and again["cached"] and again["config_hash"] == first["config_hash"]


def test_list_tells_apart_models_of_other_seeds_and_data(tmp_path, mnist_slice):
    """Two seeds, or a held-out split (other training images under the same data set name), looked identical."""
    import dataclasses

    store = CheckpointStore(tmp_path)
    data = mnist_slice.subset(n_train=200, n_test=10)
    other_data = dataclasses.replace(mnist_slice.subset(n_train=150, n_test=10), checksum="f" * 64)
    for seed, d in ((0, data), (1, data), (0, other_data)):
        obtain_model(ModelSpec("none", "none", arch="mlp"), d, TrainConfig(steps=2, batch_size=32, seed=seed, lr=0.01),
                     store, progress=False)
    table = CliRunner().invoke(cli, ["cache", "list", "--cache-dir", str(store.root)]).output
    rows = sorted((line.split()[2], line.split()[7]) for line in table.splitlines() if " mlp " in line)
    assert rows == [(f"({data.checksum[:8]})", "0/32/0.01"), (f"({data.checksum[:8]})", "1/32/0.01"),
                    ("(ffffffff)", "0/32/0.01")], table
