"""The common loader of MNIST-layout data sets: four IDX files, verified, optionally a validation hold-out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..plugin_types import DatasetPlugin, Param
from .locate import candidate_dirs, download_root, find_file_set, not_found_error

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
STEMS = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def validation_param(n_train: int) -> Param:
    """The ``validation`` parameter: how many of the last training images to hold out."""
    return Param(
        "validation",
        0,
        "hold out the last N training images as validation: not trained on, scored with --score-on "
        "validation (to choose e.g. a lambda without the test set); the paper used 5000 (its TensorFlow "
        "loader held out the first 5000)",
        check=lambda v: None if 0 <= v < n_train else f"must be between 0 and {n_train - 1}",
    )


class IdxDataset(DatasetPlugin):
    """A data set stored as the four MNIST-layout IDX files, with canonical md5s of their content."""

    title: ClassVar[str] = ""
    folders: ClassVar[tuple[str, ...]] = ()
    extra_dirs: ClassVar[tuple[str, ...]] = ()
    md5: ClassVar[dict[str, str]] = {}
    class_names: ClassVar[tuple[str, ...]] = ()
    n_train: ClassVar[int] = 60000
    torchvision_class: ClassVar[str | None] = None
    download_hint: ClassVar[str] = ""
    base_notes: ClassVar[str] = ""

    def locate(self, data_dir: Path | None):
        """The folder holding all four files, downloading them with torchvision when nowhere to be found."""
        dirs = candidate_dirs(data_dir, self.folders, self.extra_dirs)
        from .idx import idx_names

        wanted = {stem: idx_names(stem) for stem in STEMS}
        found, partial = find_file_set(dirs, wanted)
        if found is not None:
            return found
        fix = f"or download the IDX files from {self.download_hint}"
        if self.torchvision_class:
            from .download import torchvision_download

            failure = torchvision_download(self.torchvision_class, download_root(data_dir) / self.folders[0])
            if failure is None:
                found, partial = find_file_set(dirs, wanted)
                if found is not None:
                    return found
                failure = "torchvision reported success but the files are not where expected"
            fix += f"; {failure}"
        err = not_found_error(self.title, dirs, partial, fix)
        err.download_failure = failure if self.torchvision_class else None  # type: ignore[attr-defined]
        raise err

    def load(self, data_dir: Path | None, params: dict[str, Any]):
        """Read and verify the four files; hold out ``validation`` training images if asked."""
        from .build import build_splits
        from .idx import read_idx
        from .idx_known import describe_folders

        found = self.locate(data_dir)
        looks_in = describe_folders(self.folders, self.extra_dirs)
        arrays = {}
        for stem in STEMS:
            path = found.files[stem]
            fix = f"delete {path} and download it again from {self.download_hint}"
            arrays[stem] = read_idx(path, 3 if "images" in stem else 1, fix, self.md5.get(stem),
                                    (self.title, stem, looks_in))
        n_val = int(params.get("validation", 0) or 0)
        tx, ty = arrays[TRAIN_IMAGES], arrays[TRAIN_LABELS]
        notes = self.base_notes
        variant = "full"
        held_out = None
        if n_val:
            held_out = (tx[len(tx) - n_val:], ty[len(ty) - n_val:])  # scored with --score-on validation
            tx, ty = tx[: len(tx) - n_val], ty[: len(ty) - n_val]
            variant = f"train-{len(tx)}"
            # "(not returned)": not in the training or test split. The words stay as they were because
            # the notes are part of a grid's run id, which lets a finished result be reused.
            notes = f"last {n_val} training images held out as validation (not returned). " + notes
        return build_splits(
            name=self.name,
            variant=variant,
            train=(tx, ty),
            test=(arrays[TEST_IMAGES], arrays[TEST_LABELS]),
            class_names=self.class_names,
            source=str(found.folder.resolve()),
            notes=notes.strip(),
            validation=held_out,
        )
