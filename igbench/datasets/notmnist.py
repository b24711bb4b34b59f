"""notMNIST letters A-J: the bundled 10,000-letter IDX sample, or the original notMNIST_small PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plugin_types import DatasetPlugin
from .locate import candidate_dirs, find_file_set, not_found_error
from .split import split_params

LETTERS = tuple("ABCDEFGHIJ")
SAMPLE_MD5 = {
    "t10k-images-idx3-ubyte": "1e78b07d677d6e4de2c8857bafff012e",
    "t10k-labels-idx1-ubyte": "b10b3ef34b4e468313a7b24c216c6a53",
}
SAMPLE_FOLDERS = ("notmnist-sample", "notmnist", ".")
PNG_FOLDERS = ("notMNIST_small", "notmnist/notMNIST_small", "notmnist-sample/notMNIST_small")
DOWNLOAD_HINT = "http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz (unpack it into the data dir)"
PAPER_NOTE = (
    "The paper trained on notMNIST_large (about 200,000 letters) and tested on notMNIST_small; here both "
    "splits come from {what}. The paper's pixels were (p - 127.5) / 255, in [-0.5, 0.5]; these are in [0, 1], "
    "a shift by 0.5, so an eps means the same on both (each range has width 1)."
)


def find_png_root(data_dir: Path | None) -> Path | None:
    """A ``notMNIST_small`` folder with the ten letter subfolders A..J, or ``None``."""
    for d in candidate_dirs(data_dir, PNG_FOLDERS):
        if all((d / letter).is_dir() for letter in LETTERS):
            return d
    return None


def read_png_folder(root: Path):
    """uint8 images (N, 28, 28), labels and the names of skipped files; unreadable PNGs are skipped."""
    import numpy as np
    from PIL import Image

    images, labels, skipped = [], [], []
    for label, letter in enumerate(LETTERS):
        for path in sorted((root / letter).glob("*.png")):
            try:
                with Image.open(path) as im:
                    im.load()
                    arr = np.asarray(im.convert("L"), dtype=np.uint8)
            except (OSError, SyntaxError, ValueError):
                skipped.append(f"{letter}/{path.name}")
                continue
            if arr.shape != (28, 28):
                skipped.append(f"{letter}/{path.name}")
                continue
            images.append(arr)
            labels.append(label)
    if not images:
        from ..errors import DataError

        raise DataError(f"no readable 28x28 PNG in {root}/A..J; unpack notMNIST_small there again ({DOWNLOAD_HINT})")
    return np.stack(images), np.asarray(labels, dtype=np.int64), skipped


class NotMnistDataset(DatasetPlugin):
    """Letters A-J in many fonts; split here (seeded, stratified) since the sample has no test set."""

    name = "notmnist"
    summary = "notMNIST letters A-J, 28x28 grey: 10,000-letter sample (or notMNIST_small PNGs), seeded stratified split"
    params = split_params()

    def load(self, data_dir: Path | None, params: dict[str, Any]):
        """Load the PNG folder when present, else the IDX sample; split it per class with the seed."""
        from .build import build_splits
        from .idx import idx_names, read_idx
        from .split import split_settings, stratified_split

        tf, seed = split_settings(params)
        png_root = find_png_root(data_dir)
        if png_root is not None:
            x, y, skipped = read_png_folder(png_root)
            kind, source = f"small-png-{len(y)}", png_root
            what = f"the {len(y)} readable notMNIST_small PNGs ({len(skipped)} unreadable skipped)"
        else:
            dirs = candidate_dirs(data_dir, SAMPLE_FOLDERS)
            found, partial = find_file_set(dirs, {s: idx_names(s) for s in SAMPLE_MD5})
            if found is None:
                raise not_found_error(
                    "notMNIST", dirs, partial,
                    f"with notmnist-sample/t10k-*-idx*-ubyte.gz or notMNIST_small/A..J/*.png ({DOWNLOAD_HINT})",
                )
            arrays = {}
            for stem, md5 in SAMPLE_MD5.items():
                path = found.files[stem]
                arrays[stem] = read_idx(path, 3 if "images" in stem else 1,
                                        f"replace {path} with the project's notmnist-sample copy", md5)
            x, y = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
            kind, source = f"sample-{len(y)}", found.folder
            what = f"the {len(y)}-letter sample of notMNIST_small (its train-* files are incomplete and unused)"
        train, test = stratified_split(y, tf, seed)
        return build_splits(
            name=self.name,
            variant=f"{kind}-split{tf:g}-seed{seed}",
            train=(x[train], y[train]),
            test=(x[test], y[test]),
            class_names=LETTERS,
            source=str(Path(source).resolve()),
            notes=f"Stratified split, test_fraction={tf:g}, seed={seed}. " + PAPER_NOTE.format(what=what),
        )
