"""What a dataset plugin's ``load`` must return: each broken variant is a one-line error naming the plugin,
its package and the fix, raised by ``load_dataset`` before anything trains on the data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from igbench.data import DataSplits
from igbench.datasets.build import build_splits
from igbench.datasets.loading import load_dataset
from igbench.errors import DatasetNotFound, PluginCrashed, PluginError
from igbench.plugin_types import DatasetPlugin


def _good(name: str = "toy") -> DataSplits:
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), np.arange(20) % 3)
    test = (rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), np.arange(6) % 3)
    return build_splits(name=name, variant="full", train=train, test=test, class_names=("a", "b", "c"),
                        source="memory")


def _nhwc(d):
    return replace(d, train_x=d.train_x.permute(0, 2, 3, 1), test_x=d.test_x.permute(0, 2, 3, 1))


BROKEN = {
    "dict": (lambda d: {"train_x": d.train_x}, "a dict, not an igbench.data.DataSplits"),
    "tuple": (lambda d: (d.train_x, d.train_y), "a tuple, not an igbench.data.DataSplits"),
    "none": (lambda d: None, "None, not an igbench.data.DataSplits"),
    "other-name": (lambda d: replace(d, name="mnist"), "DataSplits.name 'mnist', not the plugin's name 'toy'"),
    "numpy-x": (lambda d: replace(d, train_x=d.train_x.numpy()), "train_x as a ndarray, not a torch.Tensor"),
    "flat-x": (lambda d: replace(d, train_x=d.train_x.reshape(20, 64)), "train_x of shape (20, 64); images must be 4-D"),
    "float64-x": (lambda d: replace(d, test_x=d.test_x.double()), "test_x of dtype torch.float64"),
    "uint8-x": (lambda d: replace(d, train_x=(d.train_x * 255).to(torch.uint8)), "train_x of dtype torch.uint8"),
    "test-shape": (lambda d: replace(d, test_x=d.test_x[:, :, :7, :7]), "train images of (C, H, W) (1, 8, 8) but test images of (1, 7, 7)"),
    "nhwc-test-only": (lambda d: replace(d, test_x=d.test_x.permute(0, 2, 3, 1)), "looks channels-last"),
    "int32-y": (lambda d: replace(d, train_y=d.train_y.int()), "train_y of dtype torch.int32"),
    "2d-y": (lambda d: replace(d, test_y=d.test_y.reshape(6, 1)), "test_y of shape (6, 1); labels must be 1-D"),
    "short-y": (lambda d: replace(d, train_y=d.train_y[:19]), "19 train labels for 20 train images"),
    "label-range": (lambda d: replace(d, test_y=d.test_y + 1), "test_y with labels 1..3; labels must be in 0..2"),
    "negative-label": (lambda d: replace(d, train_y=d.train_y - 1), "train_y with labels -1..1"),
    "empty-test": (lambda d: replace(d, test_x=d.test_x[:0], test_y=d.test_y[:0]), "an empty test split"),
    "0-255": (lambda d: replace(d, train_x=d.train_x * 255), "train_x with values in [0, 255], outside its clip range [0, 1]"),
    "nan": (lambda d: replace(d, test_x=d.test_x.clone().fill_(float("nan"))), "test_x containing NaN"),
    "clip-order": (lambda d: replace(d, clip_min=1.0, clip_max=0.0), "clip range [1.0, 0.0]"),
    "num-classes": (lambda d: replace(d, num_classes=0), "num_classes=0"),
    "checksum": (lambda d: replace(d, checksum="abc"), "checksum 'abc'; it must be a 64-character lowercase hex"),
    "checksum-upper": (lambda d: replace(d, checksum=d.checksum.upper()), "igbench.data.array_checksum"),
    # the optional validation split (images held out of training) is checked like the others
    "validation-x-only": (lambda d: replace(d, validation_x=d.test_x), "validation_x and validation_y are given together"),
    "validation-labels": (lambda d: replace(d, validation_x=d.test_x, validation_y=d.test_y + 1),
                          "validation_y with labels 1..3"),
    "validation-shape": (lambda d: replace(d, validation_x=d.test_x[:, :, :7, :7], validation_y=d.test_y),
                         "but validation images of (1, 7, 7)"),
}


class _Toy(DatasetPlugin):
    name = "toy"
    summary = "test data set that returns what the test tells it to"

    def __init__(self, make):
        self.make = make

    def load(self, data_dir, params):
        assert data_dir is None  # no --data-dir: plugins get None and look in their own places
        return self.make(_good(self.name))


@pytest.fixture
def toy(install):
    """Register a throwaway dataset plugin 'toy' whose load returns ``make(valid DataSplits)``."""

    def add(make):
        install(_Toy(make), source="toy-pkg")

    return add


def test_a_valid_toy_data_set_loads(toy):
    toy(lambda d: d)
    d = load_dataset("toy")
    assert d.name == "toy" and d.input_shape == (1, 8, 8) and d.params == {}


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_broken_load_result_is_one_line_naming_plugin_package_and_fix(toy, variant):
    make, expected = BROKEN[variant]
    toy(make)
    with pytest.raises(PluginError) as err:
        load_dataset("toy")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("dataset plugin 'toy' (package 'toy-pkg'): load() returned "), msg
    assert expected in msg, msg
    assert ";" in msg  # what is wrong; then how to fix it


def _raise(exc):
    raise exc


def test_an_exception_inside_a_third_party_load_is_one_line_naming_it(toy):
    """A ValueError raised in a third-party load printed a 39-line traceback."""
    toy(lambda d: _raise(ValueError("cannot parse toy.bin: bad magic number")))
    with pytest.raises(PluginCrashed) as err:
        load_dataset("toy")
    assert str(err.value).startswith("dataset 'toy' from package 'toy-pkg' failed in load: ValueError: cannot parse "
                                     "toy.bin: bad magic number (raised in that package's code"), str(err.value)


def test_an_igbench_error_raised_in_load_on_purpose_passes_as_it_is(toy):
    toy(lambda d: _raise(DatasetNotFound("toy files not found; put them in --data-dir/toy")))
    with pytest.raises(DatasetNotFound, match="^toy files not found"):
        load_dataset("toy")


def test_channels_last_images_load_with_a_warning(toy, capsys):
    """(N, 8, 8, 1) may be meant as 8 channels of 8x1 images, so it is not rejected; it is pointed out."""
    toy(_nhwc)
    d = load_dataset("toy")
    assert d.input_shape == (8, 8, 1)
    err = capsys.readouterr().err
    assert "dataset plugin 'toy' (package 'toy-pkg') gives images of (C, H, W) (8, 8, 1)" in err
    assert "looks channels-last" in err and "permute(0, 3, 1, 2)" in err


def test_the_mnist_fallback_still_substitutes_the_sample(registry, monkeypatch, tmp_path):
    """The fallback returns another plugin's data on purpose: its name check is against that plugin."""
    from igbench.errors import DatasetNotFound

    mnist = registry.get("dataset", "mnist")

    def missing(data_dir, params):
        raise DatasetNotFound("MNIST not found")

    monkeypatch.setattr(mnist, "load", missing)
    monkeypatch.delenv("IGBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("IGBENCH_CACHE_DIR", str(tmp_path))
    d = load_dataset("mnist")
    assert d.name == "mnist-sample" and "Fallback" in d.notes
