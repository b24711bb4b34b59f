"""Turn uint8 image arrays and labels into :class:`igbench.data.DataSplits`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from ..data import DataSplits


def images_to_tensor(images: np.ndarray):
    """uint8 ``(N, H, W)`` or ``(N, C, H, W)`` -> float32 NCHW tensor in [0, 1]."""
    import torch

    if images.ndim == 3:
        images = images[:, None, :, :]
    if images.ndim != 4:
        raise DataError(f"images must have 3 or 4 dimensions, got shape {images.shape}; this is a bug in the data set plugin")
    return torch.from_numpy(images.astype(np.float32) / np.float32(255.0))


def labels_to_tensor(labels: np.ndarray):
    """Integer labels -> int64 tensor."""
    import torch

    return torch.from_numpy(np.asarray(labels).astype(np.int64))


def build_splits(
    *,
    name: str,
    variant: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    source: str,
    notes: str = "",
    checksum: str | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> "DataSplits":
    """DataSplits from uint8 images and integer labels; the checksum defaults to the raw arrays' sha256
    (train and test: ``validation``, images held out of training, is left out of it, see DataSplits)."""
    from ..data import DataSplits, array_checksum

    (tx, ty), (vx, vy) = train, test
    splits = [("train", tx, ty), ("test", vx, vy)] + ([("validation", *validation)] if validation is not None else [])
    for what, x, y in splits:
        if len(x) != len(y):
            raise DataError(f"{name}: {what} has {len(x)} images but {len(y)} labels; the data files do not belong together")
        if len(y) and (int(np.min(y)) < 0 or int(np.max(y)) >= len(class_names)):
            raise DataError(f"{name}: {what} labels outside 0..{len(class_names) - 1}; the label file is not for this data set")
    if checksum is None:
        checksum = array_checksum(tx, np.asarray(ty, dtype=np.int64), vx, np.asarray(vy, dtype=np.int64))
    return DataSplits(
        name=name,
        variant=variant,
        train_x=images_to_tensor(tx),
        train_y=labels_to_tensor(ty),
        test_x=images_to_tensor(vx),
        test_y=labels_to_tensor(vy),
        num_classes=len(class_names),
        checksum=checksum,
        source=source,
        class_names=list(class_names),
        notes=notes,
        validation_x=images_to_tensor(validation[0]) if validation is not None else None,
        validation_y=labels_to_tensor(validation[1]) if validation is not None else None,
    )
