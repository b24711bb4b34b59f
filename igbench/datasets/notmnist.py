"""notMNIST letters A-J: the paper's protocol (train on notMNIST_large, test on notMNIST_small) when both PNG
folders are there, else a seeded split of notMNIST_small's PNGs or of the 10,000-letter IDX sample. With
none of them anywhere, notMNIST_small is downloaded (online users) and split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plugin_types import DatasetPlugin, Param
from .download import archive_download
from .locate import candidate_dirs, download_root, find_file_set, not_found_error
from .notmnist_png import LETTERS, find_png_root, load_png_folder
from .split import hold_out, split_params

SAMPLE_MD5 = {
    "t10k-images-idx3-ubyte": "1e78b07d677d6e4de2c8857bafff012e",
    "t10k-labels-idx1-ubyte": "b10b3ef34b4e468313a7b24c216c6a53",
}
SAMPLE_FOLDERS = ("notmnist-sample", "notmnist", ".")
PNG_FOLDERS = ("notMNIST_small", "notmnist/notMNIST_small", "notmnist-sample/notMNIST_small")
LARGE_FOLDERS = ("notMNIST_large", "notmnist/notMNIST_large")
SMALL_URLS = (  # the original, then the mirror that Udacity's deep-learning course used
    "http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz",
    "https://commondatastorage.googleapis.com/books1000/notMNIST_small.tar.gz",
)
DOWNLOAD_HINT = f"{SMALL_URLS[0]} (unpack it into the data dir)"
LARGE_HINT = "http://yaroslavvb.com/upload/notMNIST/notMNIST_large.tar.gz and notMNIST_small.tar.gz (unpack both into the data dir)"
PROTOCOLS = ("auto", "paper", "split")
PAPER_PROTOCOL_NOTE = (
    "The paper's protocol: {n_train} training letters drawn from notMNIST_large ({large_skipped} of its files "
    "unreadable, skipped) and {n_test} test letters from notMNIST_small ({small_skipped} unreadable, skipped), "
    "each balanced over the ten letters with seed {seed}. The paper's pixels were (p - 127.5) / 255, in "
    "[-0.5, 0.5]; these are in [0, 1], a shift by 0.5, so an eps means the same on both (each range has width 1)."
)
PAPER_NOTE = (
    "The paper trained on notMNIST_large (about 200,000 letters) and tested on notMNIST_small; here both "
    "splits come from {what}. The paper's pixels were (p - 127.5) / 255, in [-0.5, 0.5]; these are in [0, 1], "
    "a shift by 0.5, so an eps means the same on both (each range has width 1)."
)


def _count(v) -> str | None:
    return None if v >= 0 else "must be >= 0 (0 = all)"


class NotMnistDataset(DatasetPlugin):
    """notMNIST: the letters A-J in many fonts, 28x28 grey, pixels in [0, 1]; the study's second data set.

    With ``notMNIST_large`` and ``notMNIST_small`` (the original PNG folders) in the data dir, the default
    ``protocol=auto`` follows the paper: ``train_size`` letters from notMNIST_large and ``test_size`` from
    notMNIST_small, balanced over the letters (the paper's 200,000 and 10,000). Otherwise one set is
    split here (seeded, stratified, ``test_fraction``): notMNIST_small's PNGs, or the 10,000-letter IDX
    sample, or, when neither is anywhere, notMNIST_small downloaded into the data dir (or the cache).
    ``protocol=paper`` insists on the two folders; ``protocol=split`` never reads notMNIST_large. The
    study's pixels were in [-0.5, 0.5], a range of the same width, so an eps means the same here. The
    models are not the study's, though: the paper CNN pads with zeros, and the letters reach the border, so
    a network does not compute the same function on shifted pixels (every letter of the sample has ink in
    the 2-pixel border; an untrained paper CNN's predictions for x and x - 0.5 disagree on a quarter or more
    of them).
    """

    name = "notmnist"
    summary = ("notMNIST letters A-J, 28x28 grey: train on notMNIST_large, test on notMNIST_small (the paper's) when "
               "both are there, else a seeded stratified split of notMNIST_small or the 10,000-letter sample")
    params = split_params("seed of the stratified split, or of the paper protocol's balanced draws") + (
        Param("protocol", "auto", "auto: the paper's (notMNIST_large for training, notMNIST_small for testing) when "
              "both PNG folders are in the data dir, else a split of one set; paper: require both; split: always "
              "split notMNIST_small or the sample", choices=PROTOCOLS),
        Param("train_size", 200_000, "paper protocol: training letters drawn from notMNIST_large, balanced over "
              "the letters (the paper's 200,000; 0 = all readable ones)", check=_count),
        Param("test_size", 10_000, "paper protocol: test letters drawn from notMNIST_small, balanced (the paper's "
              "10,000; 0 = all readable ones)", check=_count),
        Param("validation", 0, "training letters held out as validation (the last N of the shuffled training "
              "split): not trained on, scored with --score-on validation, to choose e.g. a lambda without the test "
              "set", check=lambda v: None if v >= 0 else "must be >= 0"),
    )

    def load(self, data_dir: Path | None, params: dict[str, Any]):
        """The paper's two folders when there (and not ``protocol=split``), else one set split here."""
        protocol = params.get("protocol", "auto")
        small = find_png_root(data_dir, PNG_FOLDERS)
        large = find_png_root(data_dir, LARGE_FOLDERS) if protocol != "split" else None
        if large is not None and small is not None:
            return self._paper_protocol(large, small, params)
        if protocol == "paper":
            dirs = candidate_dirs(data_dir, LARGE_FOLDERS if large is None else PNG_FOLDERS)
            raise not_found_error("notMNIST_large and notMNIST_small (protocol=paper)", dirs, [],
                                  f"with notMNIST_large/A..J and notMNIST_small/A..J ({LARGE_HINT}), "
                                  "or drop protocol=paper to split the letters that are there")
        return self._split_one_set(data_dir, small, params)

    def _paper_protocol(self, large: Path, small: Path, params: dict[str, Any]):
        from .build import build_splits
        from .split import balanced_sample

        seed = int(params.get("split_seed", 0))
        xl, yl, large_skipped = load_png_folder(large)
        xs, ys, small_skipped = load_png_folder(small)
        train = balanced_sample(yl, int(params.get("train_size", 200_000)), seed, f"notMNIST_large ({large})")
        test = balanced_sample(ys, int(params.get("test_size", 10_000)), seed, f"notMNIST_small ({small})")
        train, held_out = hold_out(train, int(params.get("validation", 0)), f"notMNIST_large ({large})")
        return build_splits(
            name=self.name,
            variant=f"paper-large{len(train)}-small{len(test)}-seed{seed}" + _validation_tag(held_out),
            train=(xl[train], yl[train]),
            test=(xs[test], ys[test]),
            validation=None if held_out is None else (xl[held_out], yl[held_out]),
            class_names=LETTERS,
            source=f"{large.resolve()} + {small.resolve()}",
            notes=_validation_note(held_out) + PAPER_PROTOCOL_NOTE.format(
                n_train=len(train), n_test=len(test), seed=seed, large_skipped=large_skipped,
                small_skipped=small_skipped),
        )

    def _split_one_set(self, data_dir: Path | None, png_root: Path | None, params: dict[str, Any]):
        """The PNG folder when present, else the IDX sample; split per class with the seed."""
        from .build import build_splits
        from .idx import idx_names, read_idx
        from .split import split_settings, stratified_split

        tf, seed = split_settings(params)
        if png_root is not None:
            x, y, n_skipped = load_png_folder(png_root)
            kind, source = f"small-png-{len(y)}", png_root
            what = f"the {len(y)} readable notMNIST_small PNGs ({n_skipped} unreadable skipped)"
        else:
            dirs = candidate_dirs(data_dir, SAMPLE_FOLDERS)
            found, partial = find_file_set(dirs, {s: idx_names(s) for s in SAMPLE_MD5})
            if found is None:
                # Neither the PNGs nor the sample is anywhere: fetch notMNIST_small (8 MB) and split it.
                failure = archive_download(SMALL_URLS, download_root(data_dir))
                png_root = find_png_root(data_dir, PNG_FOLDERS) if failure is None else None
                if png_root is not None:
                    return self._split_one_set(data_dir, png_root, params)
                raise not_found_error(
                    "notMNIST", dirs, partial,
                    f"with notmnist-sample/t10k-*-idx*-ubyte.gz or notMNIST_small/A..J/*.png ({DOWNLOAD_HINT}; "
                    f"{failure or 'the downloaded archive held no notMNIST_small/A..J folders'})",
                )
            from .idx_known import NOTMNIST_SAMPLE_TITLE, describe_folders

            looks_in = describe_folders(SAMPLE_FOLDERS)
            arrays = {}
            for stem, md5 in SAMPLE_MD5.items():
                path = found.files[stem]
                arrays[stem] = read_idx(path, 3 if "images" in stem else 1,
                                        f"replace {path} with the project's notmnist-sample copy", md5,
                                        (NOTMNIST_SAMPLE_TITLE, stem, looks_in))
            x, y = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
            kind, source = f"sample-{len(y)}", found.folder
            what = f"the {len(y)}-letter sample of notMNIST_small (its train-* files are incomplete and unused)"
        train, test = stratified_split(y, tf, seed)
        train, held_out = hold_out(train, int(params.get("validation", 0)), f"the training split of {what}")
        return build_splits(
            name=self.name,
            variant=f"{kind}-split{tf:g}-seed{seed}" + _validation_tag(held_out),
            train=(x[train], y[train]),
            test=(x[test], y[test]),
            validation=None if held_out is None else (x[held_out], y[held_out]),
            class_names=LETTERS,
            source=str(Path(source).resolve()),
            notes=f"Stratified split, test_fraction={tf:g}, seed={seed}. " + _validation_note(held_out)
            + PAPER_NOTE.format(what=what),
        )


def _validation_tag(held_out) -> str:
    """The variant's suffix for held-out letters (none without, so that those keys stay as they were)."""
    return "" if held_out is None else f"-val{len(held_out)}"


def _validation_note(held_out) -> str:
    return "" if held_out is None else f"The last {len(held_out)} training letters are held out as validation. "
