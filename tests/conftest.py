"""Shared test fixtures: real data slices from ../shared/data, a fresh registry and throwaway plugins
registered from a fake package (``install``), a git runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests must not pick up whatever third-party plugins happen to be installed, except the example
# plugin that CI installs on purpose (its own test asks for it explicitly).
os.environ.setdefault("IGBENCH_PLUGINS", "none")

from igbench import hookimpl  # noqa: E402 - after the environment default above

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path | None:
    env = os.environ.get("IGBENCH_TEST_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "data", REPO_ROOT / ".." / "shared" / "data"]
    for c in candidates:
        if (c / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
            return c.resolve()
    return None


SHARED_DATA = _find_shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data directory (../shared/data); the tests that need it fail loudly without it."""
    if SHARED_DATA is None:
        pytest.fail("real data not found: set IGBENCH_TEST_DATA to the folder holding mnist/, fashion-mnist/, notmnist-sample/")
    return SHARED_DATA


@pytest.fixture
def registry():
    """A fresh process-wide registry (built-ins only unless the test registers more)."""
    from igbench.registry import get_registry, reset_registry

    reset_registry()
    reg = get_registry()
    yield reg
    reset_registry()


class FakePackage:
    """A throwaway third-party package: registers the given plugin objects, each through its kind's hook."""

    def __init__(self, *plugins):
        self.plugins = plugins

    def _register(self, kind, register):
        for p in self.plugins:
            if p.kind == kind:
                register(p)

    @hookimpl
    def igbench_datasets(self, register):
        self._register("dataset", register)

    @hookimpl
    def igbench_architectures(self, register):
        self._register("architecture", register)

    @hookimpl
    def igbench_defenses(self, register):
        self._register("defense", register)

    @hookimpl
    def igbench_attacks(self, register):
        self._register("attack", register)


@pytest.fixture
def install(registry):
    """``install(*plugin_objects, source="test-suite")``: register them from a fake package in the fresh
    registry; returns the registered objects as the registry gives them back. ``look_up=False`` returns
    nothing and leaves the hooks uncollected, for a test of what a command's first lookup reports."""

    def _install(*plugins, source="test-suite", look_up=True):
        registry.register(FakePackage(*plugins), source=source)
        return [registry.get(p.kind, p.name) for p in plugins] if look_up else None

    return _install


@pytest.fixture
def one_thread(_quiet_threads):
    """One torch thread for the test (after ``_quiet_threads``' 1-2): the modules whose tests compare weights
    or time training use it through ``pytestmark``."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture(scope="session")
def mnist_slice(shared_data):
    """3,000 training and 500 test images of real MNIST."""
    from igbench.datasets.loading import load_dataset

    return load_dataset("mnist", shared_data, fallback=False).subset(n_train=3000, n_test=500)


def train_plain(data, arch_name: str = "paper-cnn", epochs: float = 1.0, batch_size: int = 64, lr: float = 1e-3,
                seed: int = 0, arch_params: dict | None = None):
    """Train a plain cross-entropy model with the real Trainer (no defense plugin involved)."""
    import torch.nn.functional as F

    from igbench.engine.train import TrainConfig, Trainer
    from igbench.registry import get_registry

    arch = get_registry().get("architecture", arch_name)
    trainer = Trainer(data, arch, arch.resolve_params(arch_params or {}),
                      TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed), progress=False)

    def ce(model, x, y):
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    return trainer.fit(trainer.new_model(), ce, desc="plain")


@pytest.fixture(scope="session")
def trained_cnn(mnist_slice):
    """The paper CNN trained two epochs on the MNIST slice (about 97% test accuracy), in eval mode.

    (After one epoch, 47 batches at lr 1e-3, the TF-slim network's BatchNorm running statistics still
    lag its fast-moving weights: 95% in train mode but 66% in eval mode.)"""
    return train_plain(mnist_slice, epochs=2.0)


def _write_svhn(folder: Path, n_train: int = 12, n_test: int = 7) -> dict:
    """Tiny random SVHN .mat files in ``folder`` (labels 1..10 as in the real files, 10 = digit 0);
    returns ``{split: (X, y)}`` as written. They fail the md5 check: load with verify_md5=false."""
    import numpy as np
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


@pytest.fixture
def write_svhn():
    """The SVHN file writer above, for tests that need .mat files without the real data set."""
    return _write_svhn


@pytest.fixture
def git(tmp_path):
    """Run ``git ARGS...`` in ``tmp_path`` (with a throwaway author), for tests of what igbench records
    about the repository it runs in."""
    import subprocess

    def run(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    return run
