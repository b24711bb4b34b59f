"""The md5s of every built-in IDX file, to name a valid file that belongs to another data set (or split).

A checksum mismatch usually means a corrupted download, but a file that is MNIST's where Fashion-MNIST's
was expected (a ``--data-dir`` pointing at the wrong folder) is intact: the fix is to point elsewhere, not
to delete it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

NOTMNIST_SAMPLE_TITLE = "the notMNIST sample"


def known_idx_md5() -> dict[str, tuple[str, str]]:
    """``md5 of the uncompressed content -> (data set title, file stem)`` for every built-in IDX file."""
    from .fashion_mnist import FashionMnistDataset
    from .mnist import MnistDataset
    from .notmnist import SAMPLE_MD5

    known: dict[str, tuple[str, str]] = {}
    for title, md5s in ((MnistDataset.title, MnistDataset.md5), (FashionMnistDataset.title, FashionMnistDataset.md5),
                        (NOTMNIST_SAMPLE_TITLE, SAMPLE_MD5)):
        for stem, md5 in md5s.items():
            known[md5] = (title, stem)
    return known


def describe_folders(folders: Sequence[str], extra: Sequence[str] = ()) -> str:
    """``fashion-mnist/, FashionMNIST/raw/ and the data dir itself, then /usr/share/...``: where a data set is looked for."""
    names = [f"{f}/" for f in folders if f != "."]
    if "." in folders:
        names.append("the data dir itself")
    text = ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else "the data dir"
    return text + (f", then {', '.join(str(e) for e in extra)}" if extra else "")


def wrong_file_message(path: Path, actual_md5: str, title: str, stem: str, looks_in: str) -> str | None:
    """A one-line message when ``path`` (expected: ``title``'s ``stem``) is another built-in IDX file, else ``None``."""
    match = known_idx_md5().get(actual_md5)
    if match is None or match == (title, stem):
        return None
    other_title, other_stem = match
    if other_title == title:
        return (f"{path} is {title}'s {other_stem}, not its {stem}: the files were renamed; give each its own "
                f"name ({other_stem}[.gz] and {stem}[.gz])")
    return (f"{path} is {other_title}'s {other_stem}, not {title}'s: point --data-dir at the folder holding "
            f"{title} (it looks in {looks_in})")
