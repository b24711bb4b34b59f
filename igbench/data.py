"""The in-memory form of a loaded data set, shared by every dataset plugin and the engine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .errors import UsageError


@dataclass
class DataSplits:
    """Train and test splits as tensors.

    ``*_x`` are float32, NCHW, values in ``[clip_min, clip_max]`` (``[0, 1]`` for every built-in);
    ``*_y`` are int64 class indices in ``range(num_classes)``. ``checksum`` identifies the exact
    content (sha256 hex) and is recorded in every result; ``variant`` says which form of the data
    set this is (``full``, ``bundled-sample``, ``sample-split-seed0``...). ``name`` is the dataset
    plugin's own name. ``load_dataset`` checks all of this right after a plugin's ``load`` returns
    (:func:`igbench.datasets.contract.validate_splits`).
    """

    name: str
    variant: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    checksum: str
    source: str
    class_names: list[str] = field(default_factory=list)
    notes: str = ""
    clip_min: float = 0.0
    clip_max: float = 1.0
    #: the plugin parameters it was loaded with (resolved); results record them so that ``explain``
    #: and other later steps can load the same data without being told them again
    params: dict[str, Any] = field(default_factory=dict)
    #: images held out of training for choosing settings (a defense's strength) without looking at the
    #: test set; ``None`` when the data set holds none out. Not in ``checksum``: they come from the same
    #: files, and leaving them out keeps a model's checkpoint key the same whichever split scores it.
    validation_x: torch.Tensor | None = None
    validation_y: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def scored(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the split a run scores: ``test`` or ``validation``."""
        if split == "test":
            return self.test_x, self.test_y
        if split != "validation":
            from .results.grid import SCORED_SPLITS

            raise UsageError(f"unknown split {split!r} to score on; choose {' or '.join(SCORED_SPLITS)}")
        if self.validation_x is None or self.validation_y is None:
            raise UsageError(f"data set '{self.name}' (variant {self.variant}) holds no validation images out of "
                             f"training; hold some out if its plugin can (`igbench plugins {self.name}` lists its "
                             f"parameters; mnist, fashion-mnist, notmnist and svhn take e.g. --param mnist.validation=5000), or "
                             f"score on the test set")
        return self.validation_x, self.validation_y

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "DataSplits":
        """The first ``n_train`` / ``n_test`` examples (``None`` keeps a split whole)."""
        tx, ty, vx, vy = self.train_x, self.train_y, self.test_x, self.test_y
        if n_train is not None:
            tx, ty = tx[:n_train], ty[:n_train]
        if n_test is not None:
            vx, vy = vx[:n_test], vy[:n_test]
        return replace(self, train_x=tx, train_y=ty, test_x=vx, test_y=vy)

    def describe(self) -> dict[str, Any]:
        """JSON-ready metadata recorded in result files."""
        return {
            "name": self.name,
            "variant": self.variant,
            "checksum": self.checksum,
            "source": self.source,
            "n_train": int(self.train_x.shape[0]),
            "n_test": int(self.test_x.shape[0]),
            "input_shape": list(self.input_shape),
            "num_classes": int(self.num_classes),
            "clip": [float(self.clip_min), float(self.clip_max)],
            "notes": self.notes,
        }


def array_checksum(*arrays: Any) -> str:
    """sha256 over the raw bytes and shapes of numpy arrays or tensors, in order."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().contiguous().numpy()
        h.update(str(tuple(a.shape)).encode())
        h.update(str(a.dtype).encode())
        h.update(memoryview(a.tobytes()))
    return h.hexdigest()
