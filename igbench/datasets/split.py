"""Seeded, stratified train/test split (per class), shared by the data sets that ship without one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:
    import numpy as np


def stratified_split(labels: "np.ndarray", test_fraction: float, seed: int) -> "tuple[np.ndarray, np.ndarray]":
    """Indices ``(train, test)``: from each class, ``round(n_class * test_fraction)`` examples go to test.

    The choice within a class and the order of each split are random with ``seed`` (so that the first
    ``n`` examples of either split mix all classes); the result depends only on ``labels`` and the seed.
    """
    import numpy as np

    labels = np.asarray(labels)
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}; pass e.g. test_fraction=0.2")
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        if n_test == 0 or n_test == len(idx):
            raise DataError(
                f"class {c} has {len(idx)} examples: test_fraction={test_fraction} leaves one split without it; "
                "choose a test_fraction nearer 0.5"
            )
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    train = np.concatenate(train_parts)
    test = np.concatenate(test_parts)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def balanced_sample(labels: "np.ndarray", n: int, seed: int, what: str = "the data") -> "np.ndarray":
    """Indices of ``n // n_classes`` examples of every class (all of them when ``n`` is 0), chosen and ordered
    at random with ``seed``; a class with fewer examples than its share is a DataError."""
    import numpy as np

    labels = np.asarray(labels)
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    if n == 0:
        return rng.permutation(len(labels))
    per_class = n // len(classes)
    parts = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise DataError(f"{what} has {len(idx)} examples of class {c}, fewer than the {per_class} per class that "
                            f"{n} asks for; ask for at most {len(idx) * len(classes)}, or 0 for all")
        parts.append(idx[rng.permutation(len(idx))[:per_class]])
    chosen = np.concatenate(parts)
    return chosen[rng.permutation(len(chosen))]


def hold_out(train: "np.ndarray", n: int, what: str) -> "tuple[np.ndarray, np.ndarray | None]":
    """``(train, validation)``: the last ``n`` of the (already shuffled) training indices held out as
    validation images, ``None`` when ``n`` is 0; holding out every training example is a DataError."""
    if n == 0:
        return train, None
    _check_hold_out(n, len(train), what)
    return train[: len(train) - n], train[len(train) - n:]


def _check_hold_out(n: int, n_total: int, what: str) -> None:
    if n >= n_total:
        raise DataError(f"validation={n} would hold out all {n_total} training examples of {what}; "
                        f"hold out fewer (e.g. validation={n_total // 10})")


def random_hold_out(n_total: int, n: int, seed: int, what: str) -> "tuple[np.ndarray, np.ndarray | None]":
    """``(train, validation)`` indices into ``n_total`` examples kept in file order: ``n`` of them drawn at
    random with ``seed`` are held out (in the order drawn), the rest stay in file order; ``validation`` is
    ``None`` when ``n`` is 0. For files whose order is not random, where the last ``n`` could be a biased
    sample. Holding out every example is a DataError."""
    import numpy as np

    if n == 0:
        return np.arange(n_total), None
    _check_hold_out(n, n_total, what)
    held = np.random.default_rng(seed).permutation(n_total)[:n]
    keep = np.ones(n_total, dtype=bool)
    keep[held] = False
    return np.flatnonzero(keep), held


def _fraction(v: float) -> str | None:
    return None if 0 < v < 1 else "must be between 0 and 1 (exclusive)"


def split_params(seed_help: str = "seed of the stratified split"):
    """The parameters of a data set that is split here: ``test_fraction`` and ``split_seed``."""
    from ..plugin_types import Param

    return (
        Param("test_fraction", 0.2, "fraction of each class that goes to the test split", check=_fraction),
        Param("split_seed", 0, seed_help),
    )


def split_settings(params) -> tuple[float, int]:
    """``(test_fraction, split_seed)`` from resolved parameters."""
    return float(params.get("test_fraction", 0.2)), int(params.get("split_seed", 0))
