"""notMNIST's original PNG folders (``notMNIST_small``, ``notMNIST_large``: one subfolder per letter A-J).

Reading them takes one PIL decode per file: a few seconds for notMNIST_small's 18,724 letters, minutes
for notMNIST_large's 529,114. So the decoded arrays are cached as ``.npz`` under the igbench cache
(``parsed/``), keyed by the folder's listing (its path, every PNG's name, size and modification time): a
second load takes a second, and a changed folder is read again. Unreadable files, which both archives contain, are skipped and
counted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .locate import candidate_dirs, parsed_cache

LETTERS = tuple("ABCDEFGHIJ")


def find_png_root(data_dir: Path | None, folders: tuple[str, ...]) -> Path | None:
    """The first of ``folders`` (under each search root) that has the ten letter subfolders, or ``None``."""
    for d in candidate_dirs(data_dir, folders):
        if all((d / letter).is_dir() for letter in LETTERS):
            return d
    return None


def _listing(root: Path) -> list[tuple[int, Path]]:
    """``(label, path)`` of every PNG under ``root``/A..J, in a fixed order."""
    files = []
    for label, letter in enumerate(LETTERS):
        files += [(label, p) for p in sorted((root / letter).glob("*.png"))]
    return files


def _listing_key(root: Path, files: list[tuple[int, Path]]) -> str:
    """A hash of the folder's absolute path and every PNG's name, size and modification time."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for _label, p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def read_png_folder(root: Path, progress: bool = True):
    """uint8 images (N, 28, 28), int64 labels and the names of skipped files (unreadable, or not 28x28)."""
    import numpy as np
    from PIL import Image

    from ..errors import DataError
    from ..progress import progress as progress_bar

    files = _listing(root)
    images, labels, skipped = [], [], []
    bar = progress_bar(len(files), f"read {root.name}", unit="png", enabled=progress and len(files) > 50_000)
    try:
        for label, path in files:
            bar.update(1)
            try:
                with Image.open(path) as im:
                    im.load()
                    arr = np.asarray(im.convert("L"), dtype=np.uint8)
            except (OSError, SyntaxError, ValueError):
                skipped.append(f"{LETTERS[label]}/{path.name}")
                continue
            if arr.shape != (28, 28):
                skipped.append(f"{LETTERS[label]}/{path.name}")
                continue
            images.append(arr)
            labels.append(label)
    finally:
        bar.close()
    if not images:
        raise DataError(f"no readable 28x28 PNG in {root}/A..J; unpack the notMNIST archive there again")
    return np.stack(images), np.asarray(labels, dtype=np.int64), skipped


def load_png_folder(root: Path, progress: bool = True) -> tuple[Any, Any, int]:
    """``(images, labels, number skipped)`` of a PNG folder, from the parsed cache when it matches the folder.

    A cache that cannot be read is rebuilt; one that cannot be written is skipped.
    """
    import numpy as np

    from ..atomic import atomic_write_npz

    files = _listing(root)
    key = _listing_key(root, files)
    cached = parsed_cache() / f"{root.name}-{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                x, y, n_skipped = z["x"], z["y"], int(z["skipped"])
            if x.shape == (len(y), 28, 28) and x.dtype == np.uint8 and len(y) + n_skipped == len(files):
                return x, y, n_skipped
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
            pass
    x, y, skipped = read_png_folder(root, progress=progress)
    try:
        atomic_write_npz(cached, x=x, y=y, skipped=np.asarray(len(skipped)))
    except OSError:
        pass
    return x, y, len(skipped)
