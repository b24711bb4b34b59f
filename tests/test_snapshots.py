"""An interrupted training resumes from its snapshot and ends with the weights of an uninterrupted one."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from igbench.engine.cache import CheckpointStore
from igbench.engine.models import ModelSpec, obtain_model
from igbench.engine.snapshots import TrainingSnapshots
from igbench.engine.train import TrainConfig
from igbench.environment import cpu_model

STEPS = 12
CONFIG = TrainConfig(steps=STEPS, batch_size=32, lr=1e-3, seed=3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def small_mnist(mnist_slice):
    return mnist_slice.subset(n_train=400, n_test=50)


@pytest.fixture
def adam_steps(monkeypatch):
    """Counts optimizer steps; ``interrupt_at = k`` raises KeyboardInterrupt (a Ctrl-C) on the k-th one."""
    state = {"calls": 0, "interrupt_at": None}
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        state["calls"] += 1
        if state["calls"] == state["interrupt_at"]:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(TrainingSnapshots, "due", lambda self: True)  # a snapshot after every step
    return state


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("spec, steps_total", [
    (ModelSpec("gradreg", "gradreg", {"lambda": 1000.0}, arch="paper-cnn"), STEPS),
    # two fits: the teacher (fit 0) finishes, the student (fit 1) is interrupted
    (ModelSpec("distillation", "distillation", {"T": 20.0}, arch="paper-cnn"), 2 * STEPS),
])
def test_interrupted_training_resumes_to_the_same_weights(small_mnist, tmp_path, adam_steps, spec, steps_total):
    reference, info = obtain_model(spec, small_mnist, CONFIG, CheckpointStore(tmp_path / "reference"), progress=False)
    assert info["steps"] == steps_total and not info["cached"]
    want = _weights(reference)

    store = CheckpointStore(tmp_path / "interrupted")
    adam_steps["calls"], adam_steps["interrupt_at"] = 0, steps_total - 4
    with pytest.raises(KeyboardInterrupt):
        obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    folder = store.root / "models"
    assert not [p for p in folder.glob("*.pt") if ".fit" not in p.name], "no finished checkpoint yet"
    assert list(folder.glob("*.partial.pt")), "a snapshot of the interrupted fit"
    key = info["config_hash"]
    # What a process killed (SIGKILL) mid-write leaves: the resuming trainer, holding the lock, removes it.
    for name in (f".{key}.fit0.partial.pt.k1ll3d_x.tmp", f".{key}.pt.k1ll3d_x.tmp"):
        (folder / name).write_bytes(b"half-written")

    adam_steps["calls"], adam_steps["interrupt_at"] = 0, None
    model, info = obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    assert adam_steps["calls"] == 5, "only the interrupted step and those after it are trained again"
    assert info["steps"] == steps_total and info["train_seconds"] > 0
    got = _weights(model)
    assert all(torch.equal(got[k], want[k]) for k in want), "resumed weights equal the uninterrupted ones"
    assert info["ran_on"] == [{"device": "cpu", "torch_threads": 1, "cpu": cpu_model()}], "same setup before and after"
    assert sorted(p.name for p in folder.iterdir()) == [f"{info['config_hash']}.pt"], "snapshots removed"


def test_damaged_snapshot_is_a_one_line_error(small_mnist, tmp_path):
    from igbench.errors import IgbenchError

    spec = ModelSpec("none", "none", arch="mlp")
    store = CheckpointStore(tmp_path)
    obtain_model(spec, small_mnist, CONFIG, store, progress=False)  # learn the key
    key = next((store.root / "models").glob("*.pt")).stem
    store.path(key).unlink()
    snaps = TrainingSnapshots(store.root / "models", key)
    snaps.path(0, "partial").write_bytes(b"not a checkpoint")
    with pytest.raises(IgbenchError, match="unreadable.*delete it"):
        obtain_model(spec, small_mnist, CONFIG, store, progress=False)


def test_a_signal_the_process_ignores_stays_ignored(monkeypatch):
    """Under nohup SIGHUP is ignored: a closed terminal must not stop that training."""
    from igbench.engine.interrupts import deferred_stop

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with deferred_stop() as request:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            assert not request
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])  # SIGHUP: a closed terminal
def test_ctrl_c_or_kill_stops_after_the_step_with_a_snapshot(small_mnist, tmp_path, monkeypatch, signum):
    spec = ModelSpec("gradreg", "gradreg", {"lambda": 1000.0}, arch="paper-cnn")
    want = _weights(obtain_model(spec, small_mnist, CONFIG, CheckpointStore(tmp_path / "ref"), progress=False)[0])

    calls = {"n": 0, "signal_at": 5}
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["signal_at"]:
            os.kill(os.getpid(), signum)  # arrives in the middle of the optimizer step
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(TrainingSnapshots, "due", lambda self: False)  # no periodic snapshots at all
    store = CheckpointStore(tmp_path / "stopped")
    handler_before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt):
        obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    assert signal.getsignal(signum) == handler_before, "the usual handler is back after training"
    assert calls["n"] == 5, "the step finished, no further one began"
    snap = torch.load(next((store.root / "models").glob("*.partial.pt")), weights_only=True)
    assert (snap["step"], snap["total"], snap["label"]) == (5, STEPS, "gradreg"), "what `igbench cache list` shows"

    calls["n"], calls["signal_at"] = 0, None
    model, _ = obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    assert calls["n"] == STEPS - 5, "nothing done before the stop is trained again"
    got = _weights(model)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_second_caller_waits_for_the_trainer_and_loads_its_checkpoint(small_mnist, tmp_path, adam_steps,
                                                                          capsys):
    """Two processes that need the same model (a grid while `igbench train --model` runs) train it once."""
    import threading
    import time

    from igbench.engine.cache import config_hash
    from igbench.engine.models import model_config
    from igbench.locks import exclusive_lock
    from igbench.registry import get_registry

    spec = ModelSpec("none", "none", arch="mlp")
    store = CheckpointStore(tmp_path)
    config = model_config(spec, small_mnist, CONFIG)
    key = config_hash(config)
    got = {}

    def second_caller():
        got["model"], got["info"] = obtain_model(spec, small_mnist, CONFIG, store, progress=False)

    with exclusive_lock(store.lock_path(key)):  # the "other process" is training this model
        waiter = threading.Thread(target=second_caller)
        waiter.start()
        deadline = time.monotonic() + 30
        while "waiting for it to finish" not in capsys.readouterr().err:
            assert time.monotonic() < deadline, "the second caller never said it was waiting"
            time.sleep(0.05)
        assert waiter.is_alive(), "it waits while the lock is held"
        arch = get_registry().get("architecture", "mlp")
        trained = arch.build(tuple(small_mnist.input_shape), small_mnist.num_classes, arch.resolve_params({}))
        store.save(key, trained, {"config": config, "steps": STEPS})
    waiter.join(30)
    assert not waiter.is_alive()
    assert got["info"]["cached"] and adam_steps["calls"] == 0, "it loaded the other's checkpoint, trained nothing"
    assert all(torch.equal(a, b) for a, b in zip(got["model"].state_dict().values(), trained.state_dict().values()))


def test_a_training_resumed_with_another_thread_count_says_so_and_records_both(small_mnist, tmp_path, adam_steps,
                                                                               capsys):
    spec = ModelSpec("none", "none", arch="mlp")
    store = CheckpointStore(tmp_path)
    adam_steps["interrupt_at"] = 5
    with pytest.raises(KeyboardInterrupt):
        obtain_model(spec, small_mnist, CONFIG, store, progress=False)  # 1 thread (the autouse fixture)
    adam_steps["interrupt_at"] = None
    torch.set_num_threads(2)
    _, info = obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    err = capsys.readouterr().err
    assert f"trained on cpu with 1 torch thread(s), {cpu_model()} and continues on cpu with 2 torch thread(s)" in err
    assert info["ran_on"] == [{"device": "cpu", "torch_threads": 1, "cpu": cpu_model()},
                              {"device": "cpu", "torch_threads": 2, "cpu": cpu_model()}]
    _, cached = obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    assert cached["cached"] and cached["ran_on"] == info["ran_on"], "the checkpoint keeps the list"


def test_checkpoints_from_before_ran_on_report_the_process_that_finished_them():
    from igbench.engine.models import ran_on_of

    assert ran_on_of({"device": "cpu", "torch_threads": 2}) == [{"device": "cpu", "torch_threads": 2}]
    assert ran_on_of({"steps": 3}) is None, "unknown stays unknown"
    new = [{"device": "cpu", "torch_threads": 1}, {"device": "cpu", "torch_threads": 2}]
    assert ran_on_of({"ran_on": new}) == new


def test_a_snapshot_from_before_the_cpu_model_was_recorded_resumes_without_a_warning():
    """Only a known difference counts: a setup without the processor model matches one with it, and
    another CPU model does not (it rounds differently)."""
    from igbench.engine.models import trained_on
    from igbench.engine.train import _same_setup

    old = {"device": "cpu", "torch_threads": 1}
    here = {**old, "cpu": "Some CPU"}
    assert _same_setup(old, here) and _same_setup(here, old)
    assert not _same_setup(here, {**old, "cpu": "Another CPU"})
    assert not _same_setup(old, {"device": "cpu", "torch_threads": 2, "cpu": "Some CPU"})
    assert trained_on([old, {**here, "torch_threads": 2}]) == ("cpu with 1 torch thread(s) then "
                                                               "cpu with 2 torch thread(s), Some CPU")
    assert trained_on(None) is None


def test_a_full_disk_costs_snapshots_a_warning_and_the_checkpoint_a_one_line_error(small_mnist, tmp_path, monkeypatch,
                                                                                   capsys):
    """torch reports a full disk as a RuntimeError ("enforce fail ... unexpected pos"): a failed snapshot
    ended the training with that traceback, losing every step, and so did a failed checkpoint write."""
    from igbench.errors import IgbenchError

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(TrainingSnapshots, "due", lambda self: True)  # a snapshot after every step
    spec = ModelSpec("none", "none", arch="mlp")
    with pytest.raises(IgbenchError) as err:
        obtain_model(spec, small_mnist, CONFIG, CheckpointStore(tmp_path), progress=False)
    message = str(err.value)
    assert message.startswith("could not write the checkpoint ") and "RuntimeError: [enforce fail" in message
    assert "MB free on its disk" in message and "free space there and re-run" in message
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: could not write the training snapshot")]
    assert len(warnings) == STEPS, warnings  # every step's snapshot (and the finished fit's) failed; all 12 steps ran
    monkeypatch.setattr(torch, "save", real_save)
    _, info = obtain_model(spec, small_mnist, CONFIG, CheckpointStore(tmp_path), progress=False)
    assert info["steps"] == STEPS and not info["cached"]

    def unsavable(obj, f, *args, **kwargs):  # not the disk: a state torch cannot save is a bug, not a warning
        raise RuntimeError("cannot pickle 'generator' object")

    monkeypatch.setattr(torch, "save", unsavable)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        obtain_model(ModelSpec("other", "none", arch="mlp", arch_params={"hidden": 16}), small_mnist, CONFIG,
                     CheckpointStore(tmp_path), progress=False)


def test_a_snapshot_whose_weights_no_longer_fit_names_its_file(small_mnist, tmp_path, adam_steps):
    """Loading it was an unguarded load_state_dict: a traceback from torch on resume."""
    from igbench.errors import IgbenchError

    spec = ModelSpec("none", "none", arch="mlp")
    store = CheckpointStore(tmp_path)
    adam_steps["interrupt_at"] = 5
    with pytest.raises(KeyboardInterrupt):
        obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    (path,) = (store.root / "models").glob("*.partial.pt")
    snap = torch.load(path, weights_only=True)
    snap["model"] = {f"old_{k}": v for k, v in snap["model"].items()}  # what a renamed layer leaves behind
    torch.save(snap, path)
    adam_steps["interrupt_at"] = None
    with pytest.raises(IgbenchError) as err:
        obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    assert str(err.value).startswith(f"training snapshot {path} does not fit the model its architecture builds now")
    assert str(err.value).endswith("without a change of its configuration; delete it to retrain")
