"""``--monitor-every``: held-out accuracy, clean and under FGSM, measured while a model trains, as the
study reported it; it must not change the model, and it survives an interruption."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from igbench.engine.cache import CheckpointStore
from igbench.engine.models import ModelSpec, obtain_model
from igbench.engine.snapshots import TrainingSnapshots
from igbench.engine.train import TrainConfig, accuracy
from igbench.errors import UsageError

STEPS = 12
CONFIG = TrainConfig(steps=STEPS, batch_size=32, lr=1e-3, seed=3)
MONITORED = dataclasses.replace(CONFIG, monitor_every=5)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def small_mnist(mnist_slice):
    return mnist_slice.subset(n_train=400, n_test=60)


def _fgsm_accuracy(model, data, eps):
    from igbench.plugin_types import AttackContext
    from igbench.registry import get_registry

    fgsm = get_registry().get("attack", "fgsm")
    ctx = AttackContext(clip_min=data.clip_min, clip_max=data.clip_max, num_classes=data.num_classes)
    x_adv = fgsm.perturb(model, data.test_x, data.test_y, {"eps": eps}, ctx)
    return accuracy(model, x_adv, data.test_y)


def test_monitoring_records_each_fits_curve_and_trains_the_same_model(small_mnist, tmp_path, registry):
    spec = ModelSpec("distillation", "distillation", {"T": 20.0}, arch="mlp")
    plain, plain_info = obtain_model(spec, small_mnist, CONFIG, CheckpointStore(tmp_path / "plain"), progress=False)
    monitored = dataclasses.replace(MONITORED, monitor_eps=0.05)  # small enough that some images survive
    model, info = obtain_model(spec, small_mnist, monitored, CheckpointStore(tmp_path / "monitored"), progress=False)
    assert info["config_hash"] == plain_info["config_hash"], "monitoring is not part of the checkpoint key"
    assert info["checkpoint_sha256"] == plain_info["checkpoint_sha256"], "monitoring does not change the weights"
    assert "monitor" not in plain_info

    monitor = info["monitor"]
    assert (monitor["every"], monitor["eps"], monitor["images"], monitor["split"]) == (5, 0.05, 60, "test")
    assert [f["label"] for f in monitor["fits"]] == ["distillation teacher", "distillation student"]
    assert all([p[0] for p in f["points"]] == [5, 10, 12] for f in monitor["fits"])
    step, clean, adv = monitor["fits"][-1]["points"][-1]
    # the last point measures the finished student: the same numbers as scoring it afterwards
    assert clean == pytest.approx(accuracy(model, small_mnist.test_x, small_mnist.test_y), abs=1e-6)
    assert adv == pytest.approx(_fgsm_accuracy(model, small_mnist, 0.05), abs=1e-6)
    teacher = monitor["fits"][0]["points"]
    assert all(0 < a < c for _, c, a in teacher), "FGSM at 0.05 lowers the teacher's accuracy, but not to 0"

    # the curve is stored with the checkpoint: the cached model reports it
    _, cached = obtain_model(spec, small_mnist, monitored, CheckpointStore(tmp_path / "monitored"), progress=False)
    assert cached["cached"] and cached["monitor"] == monitor


def test_a_cached_model_trained_unmonitored_says_it_has_no_curve(small_mnist, tmp_path, registry, capsys):
    spec, store = ModelSpec("none", "none", arch="mlp"), CheckpointStore(tmp_path)
    obtain_model(spec, small_mnist, CONFIG, store, progress=False)
    _, info = obtain_model(spec, small_mnist, MONITORED, store, progress=False)
    assert info["cached"] and "monitor" not in info
    assert "trained without --monitor-every" in capsys.readouterr().err


def test_an_interrupted_monitored_training_keeps_its_earlier_points(small_mnist, tmp_path, registry, monkeypatch):
    spec = ModelSpec("gradreg", "gradreg", {"lambda": 10.0}, arch="mlp")
    _, want = obtain_model(spec, small_mnist, MONITORED, CheckpointStore(tmp_path / "whole"), progress=False)

    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(TrainingSnapshots, "due", lambda self: True)
    store = CheckpointStore(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        obtain_model(spec, small_mnist, MONITORED, store, progress=False)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    _, got = obtain_model(spec, small_mnist, MONITORED, store, progress=False)
    assert got["monitor"] == want["monitor"], "points 5 and 10 come from the snapshot, 12 from the resumed run"
    assert [p[0] for p in got["monitor"]["fits"][0]["points"]] == [5, 10, 12]


def test_a_grid_result_records_the_curve_and_validates(shared_data, tmp_path, registry):
    from igbench.engine.grid import run_grid
    from igbench.grid_config import build_grid_spec
    from igbench.results.io import validate_result

    spec = build_grid_spec({"dataset": "mnist", "data_dir": str(shared_data), "arch": "mlp", "steps": 8,
                            "monitor_every": 4, "n_test": 100, "attack": ("fgsm",), "eps": (0.1,), "device": "cpu"})
    result, path = run_grid(spec, tmp_path / "r.json", CheckpointStore(tmp_path / "c"), progress=False,
                            echo=lambda s: None)
    validate_result(json.loads(path.read_text()))
    curve = result["models"][0]["train"]["monitor"]
    assert [p[0] for p in curve["fits"][0]["points"]] == [4, 8] and (curve["images"], curve["eps"]) == (512, 0.2)


@pytest.mark.parametrize("run, message", [
    ('monitor_every = -1', "monitor_every must be a whole number of steps >= 0"),
    ('monitor_every = "often"', "monitor_every must be a whole number of steps >= 0"),
    ('monitor_eps = -0.1', "monitor_eps must be a number >= 0"),
])
def test_bad_monitoring_values_in_a_grid_file_are_one_line(tmp_path, registry, run, message):
    from igbench.grid_config import build_grid_spec

    grid = tmp_path / "g.toml"
    grid.write_text(f"[run]\n{run}\n")
    with pytest.raises(UsageError, match=message):
        build_grid_spec({}, grid)


def test_bad_monitoring_options_name_the_flag():
    with pytest.raises(UsageError, match="--monitor-eps must be a finite number >= 0"):
        TrainConfig(monitor_eps=float("nan"))
    with pytest.raises(UsageError, match="--monitor-every must be >= 0"):
        TrainConfig(monitor_every=-2)


def test_monitoring_leaves_a_batchnorm_and_dropout_model_as_it_trains(small_mnist, tmp_path, registry):
    """The paper CNN has BatchNorm and dropout: measuring it in train mode would move its running statistics
    and draw dropout masks, and the monitored model would end with other weights."""
    spec = ModelSpec("advtrain", "advtrain", arch="paper-cnn")
    _, plain = obtain_model(spec, small_mnist, CONFIG, CheckpointStore(tmp_path / "plain"), progress=False)
    _, monitored = obtain_model(spec, small_mnist, dataclasses.replace(CONFIG, monitor_every=3),
                                CheckpointStore(tmp_path / "monitored"), progress=False)
    assert monitored["checkpoint_sha256"] == plain["checkpoint_sha256"]
    assert [p[0] for p in monitored["monitor"]["fits"][0]["points"]] == [3, 6, 9, 12]


def test_monitor_eps_takes_fractions_and_needs_monitor_every(registry):
    from click.testing import CliRunner

    from igbench.cli import cli
    from igbench.grid_config import build_grid_spec

    assert build_grid_spec({"monitor_every": 5, "monitor_eps": 8 / 255, "device": "cpu"}).train.monitor_eps == 8 / 255
    with pytest.raises(UsageError, match="--monitor-eps has no effect without --monitor-every"):
        build_grid_spec({"monitor_eps": 0.1, "device": "cpu"})
    result = CliRunner().invoke(cli, ["train", "--monitor-every", "5", "--monitor-eps", "8/0"])
    assert result.exit_code == 2 and "'8/0' is not a number" in result.output


def test_a_defense_with_its_own_training_loop_has_nothing_to_monitor(small_mnist, tmp_path, registry, install, capsys):
    """It stored an empty curve with the checkpoint, which every later result then failed its schema on."""
    from igbench.plugin_types import DefensePlugin

    class OwnLoop(DefensePlugin):
        name = "own-loop"

        def train(self, trainer, params):
            import torch.nn.functional as F

            model = trainer.new_model()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(3):
                loss = F.cross_entropy(model(small_mnist.train_x[:32]), small_mnist.train_y[:32])
                opt.zero_grad()
                loss.backward()
                opt.step()
            return model.eval()

    install(OwnLoop())
    spec, store = ModelSpec("own-loop", "own-loop", arch="mlp"), CheckpointStore(tmp_path)
    _, info = obtain_model(spec, small_mnist, MONITORED, store, progress=False)
    assert "monitor" not in info
    assert "own-loop: --monitor-every has nothing to measure, since own-loop trains without" in capsys.readouterr().err
    _, cached = obtain_model(spec, small_mnist, MONITORED, store, progress=False)
    assert "monitor" not in cached
    err = capsys.readouterr().err
    assert "its defense trained in its own loop, so it has no training curve" in err and "delete" not in err


def test_monitor_lines_name_the_model_id(small_mnist, tmp_path, registry, capsys):
    """An id that begins the defense's name (dist, distillation) was dropped from the lines."""
    spec = ModelSpec("dist", "distillation", {"T": 20.0}, arch="mlp")
    obtain_model(spec, small_mnist, dataclasses.replace(CONFIG, steps=4, monitor_every=4), CheckpointStore(tmp_path),
                 progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if "step 4/4" in line]
    assert [line.split(":")[0] for line in lines] == ["dist (distillation teacher)", "dist (distillation student)"]


def test_the_engines_notes_go_to_the_callers_echo(shared_data, tmp_path, registry, capsys):
    """The trainer's and the cache's notes went to stderr whatever echo run_grid or train_models was given."""
    from igbench.engine.train_grid import train_models
    from igbench.grid_config import build_grid_spec
    from igbench.messages import said_through, say

    heard: list[str] = []
    with said_through(heard.append):
        say("one")
    say("two")
    assert heard == ["one"] and capsys.readouterr().err == "two\n"

    options = {"arch": "mlp", "steps": 4, "n_test": 20, "data_dir": str(shared_data), "device": "cpu"}
    store = CheckpointStore(tmp_path)
    train_models(build_grid_spec(options), store, progress=False, echo=lambda s: None)
    heard.clear()
    train_models(build_grid_spec({**options, "monitor_every": 2}), store, progress=False, echo=heard.append)
    assert any("was trained without --monitor-every" in line for line in heard), heard
    assert "monitor-every" not in capsys.readouterr().err


def test_training_seconds_leave_the_monitors_measuring_out(small_mnist, tmp_path, registry, monkeypatch):
    import time

    import igbench.attacks.common as common

    real = common.sign_steps

    def slow(*args, **kwargs):  # the monitor's FGSM, made a second slower
        time.sleep(1.0)
        return real(*args, **kwargs)

    spec, config = ModelSpec("none", "none", arch="mlp"), dataclasses.replace(CONFIG, steps=4)
    obtain_model(spec, small_mnist, config, CheckpointStore(tmp_path / "warm-up"), progress=False)  # first-call costs
    _, plain = obtain_model(spec, small_mnist, config, CheckpointStore(tmp_path / "plain"), progress=False)
    monkeypatch.setattr(common, "sign_steps", slow)
    _, monitored = obtain_model(spec, small_mnist, dataclasses.replace(config, monitor_every=2),
                                CheckpointStore(tmp_path / "monitored"), progress=False)
    assert len(monitored["monitor"]["fits"][0]["points"]) == 2
    assert monitored["train_seconds"] < plain["train_seconds"] + 1.0, "the two seconds of measuring are left out"
    assert monitored["train_seconds"] < 1.5, monitored["train_seconds"]


def test_a_monitor_eps_beyond_the_data_range_gets_one_note(shared_data, tmp_path, registry):
    from igbench.engine.train_grid import train_models
    from igbench.grid_config import build_grid_spec

    heard: list[str] = []
    spec = build_grid_spec({"defense": ("gradreg",), "arch": "mlp", "steps": 2, "n_test": 20, "monitor_every": 1,
                            "monitor_eps": 8.0, "data_dir": str(shared_data), "device": "cpu"})
    train_models(spec, CheckpointStore(tmp_path), progress=False, echo=heard.append)
    notes = [line for line in heard if "--monitor-eps" in line]
    assert notes == ["note: --monitor-eps 8 is more than the data's whole range [0, 1]: the monitoring FGSM may set "
                     "any pixel to any value; for 8 of 255 grey levels write --monitor-eps 8/255"], "once, not per model"
