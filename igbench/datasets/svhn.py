"""SVHN house-number digits from torchvision's .mat files (train_32x32.mat, test_32x32.mat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from ..plugin_types import DatasetPlugin, Param
from .locate import candidate_dirs, find_file_set, not_found_error

SVHN_MD5 = {"train": "e26dedcc434d2e4c54c9b2d4a06d8373", "test": "eb5a983be6a315427106f1b164d9cef3"}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
DOWNLOAD_HINT = (
    "http://ufldl.stanford.edu/housenumbers/train_32x32.mat and test_32x32.mat "
    "(or torchvision.datasets.SVHN(DIR/svhn, split='train'/'test', download=True))"
)
GREY_WEIGHTS = (0.2989, 0.587, 0.114)


def read_svhn_mat(path: Path):
    """uint8 images (N, 3, 32, 32) and labels 0..9 (the file's 10 means digit 0) from one .mat file."""
    import numpy as np
    import scipy.io

    fix = f"delete {path} and download it again from {DOWNLOAD_HINT}"
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for bad files
        raise DataError(f"cannot read {path} as a MATLAB file ({type(exc).__name__}: {exc}): {fix}") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} lacks the variables X and y of the SVHN layout: {fix}")
    x, y = mat["X"], np.asarray(mat["y"]).ravel()
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path}: X has shape {x.shape}, expected 32x32x3xN with N={len(y)} labels: {fix}")
    if x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255 or not np.all(np.equal(np.mod(x, 1), 0))):
            raise DataError(f"{path}: X values are not integers in 0..255: {fix}")
        x = x.astype(np.uint8)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels must be 1..10 (10 means digit 0), found {y.min()}..{y.max()}: {fix}")
    y = y.astype(np.int64) % 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def _download(data_dir: Path | None) -> str | None:
    """Both .mat files with torchvision (it checks their md5) into ``<data dir or cache>/svhn``; ``None``
    or why it failed."""
    from .download import torchvision_download
    from .locate import download_root

    for split in SVHN_FILES:
        failure = torchvision_download("SVHN", download_root(data_dir) / "svhn", split=split)
        if failure is not None:
            return failure
    return None


def _grey(images):
    """Colour ``(N, 3, H, W)`` in [0, 1] -> one grey channel, ``GREY_WEIGHTS`` (the paper's)."""
    import torch

    w = torch.tensor(GREY_WEIGHTS, dtype=torch.float32).reshape(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True).clamp_(0.0, 1.0)


def _count(v: int) -> str | None:
    return None if v >= 0 else "must be >= 0 (0 holds nothing out)"


class SvhnDataset(DatasetPlugin):
    """Street View House Numbers (cropped digits), 73,257 train / 26,032 test, 32x32 colour.

    The study's third data set, which it used in greyscale (``grayscale=true``) with local contrast
    normalization in the network (`paper-cnn` with ``lcn=true``) and `gradreg` lambda 10,000:
    configs/paper-svhn.toml. Pixels are in [0, 1] here (the study standardized each image), so eps is on
    the [0, 1] scale, and the training set is train_32x32.mat alone (the study's code trained on 200,000
    digits of train and extra together). Read from torchvision's train_32x32.mat and test_32x32.mat (label 10 is digit 0),
    md5-checked unless ``verify_md5=false``, downloaded with torchvision when missing. ``validation=N``
    holds out N training digits drawn at random (the file is not in random order, so its last N could be
    a biased sample) for ``--score-on validation``.
    """

    name = "svhn"
    summary = "SVHN house-number digits, 32x32 colour or grey (torchvision .mat files, md5-verified)"
    params = (
        Param("grayscale", False, "convert to one grey channel, 0.2989 R + 0.587 G + 0.114 B (as the paper)"),
        Param("verify_md5", True, "check the canonical md5 of the .mat files (turn off for custom files)"),
        Param("validation", 0, "hold out N training digits as validation, drawn at random (validation_seed) from "
              "train_32x32.mat, whose file order is not random: not trained on, scored with --score-on validation "
              "(to choose e.g. a lambda without the test set)", check=_count, recorded_at_default=False),
        Param("validation_seed", 0, "seed of the random draw of the validation digits", recorded_at_default=False),
    )

    def load(self, data_dir: Path | None, params: dict[str, Any]):
        """Read, optionally verify, and convert both .mat files; hold out ``validation`` digits if asked."""
        from ..data import array_checksum
        from .build import build_splits
        from .split import random_hold_out
        from .verify import md5_of_file, verify_md5

        dirs = candidate_dirs(data_dir, ("svhn", "SVHN", "."))
        wanted = {k: [v] for k, v in SVHN_FILES.items()}
        found, partial = find_file_set(dirs, wanted)
        if found is None:
            failure = _download(data_dir)
            if failure is None:
                found, partial = find_file_set(dirs, wanted)
                failure = None if found else "torchvision reported success but the files are not where expected"
        if found is None:
            raise not_found_error("SVHN", dirs, partial, f"with svhn/train_32x32.mat and svhn/test_32x32.mat, from "
                                  f"{DOWNLOAD_HINT} ({failure})")
        arrays = {}
        for split, path in found.files.items():
            if params.get("verify_md5", True):
                fix = f"delete it and download it again from {DOWNLOAD_HINT}, or pass verify_md5=false for a custom file"
                verify_md5(path, md5_of_file(path), SVHN_MD5[split], "content", fix)
            arrays[split] = read_svhn_mat(path)
        grey = bool(params.get("grayscale", False))
        (x, y), n_val, val_seed = arrays["train"], int(params.get("validation", 0)), int(params.get("validation_seed", 0))
        train, held_out = random_hold_out(len(y), n_val, val_seed, f"SVHN ({found.files['train']})")
        result = build_splits(
            name=self.name,
            variant=("grayscale" if grey else "full") + ("" if held_out is None else f"-val{n_val}-seed{val_seed}"),
            train=arrays["train"] if held_out is None else (x[train], y[train]),
            test=arrays["test"],
            validation=None if held_out is None else (x[held_out], y[held_out]),
            class_names=tuple(str(d) for d in range(10)),
            source=str(found.folder.resolve()),
            notes=("" if held_out is None else f"{n_val} training digits drawn at random (seed {val_seed}) are "
                   "held out as validation. ") + (
                "Labels 10 -> 0. The paper used greyscale (grayscale=true), per-image standardization and local "
                "contrast normalization inside the network, and clipped attacks to the test set's min and max; "
                "here pixels are in [0, 1], so eps values are on the [0, 1] scale."
            ),
        )
        if grey:
            result.train_x, result.test_x = _grey(result.train_x), _grey(result.test_x)
            if result.validation_x is not None:
                result.validation_x = _grey(result.validation_x)
            result.checksum = array_checksum(result.train_x, result.train_y, result.test_x, result.test_y)
        return result
