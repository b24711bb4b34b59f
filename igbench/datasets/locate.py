"""Where data sets are looked for: the data directory, the download cache, and the folder names in them.

Search roots, in order: the ``data_dir`` argument (the CLI's ``--data-dir``) or, when it is ``None``,
the ``IGBENCH_DATA_DIR`` environment variable; then the download cache ``<cache>/data``. Inside a
root each data set has its own folder names (``mnist/``, ``MNIST/raw`` as torchvision lays it out,
or the files directly in the root).

``IGBENCH_CACHE_DIR`` overrides the cache folder (default ``$XDG_CACHE_HOME/igbench`` or
``~/.cache/igbench``); ``IGBENCH_OFFLINE=1`` turns automatic downloads off.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DatasetNotFound

ENV_DATA_DIR = "IGBENCH_DATA_DIR"
ENV_CACHE_DIR = "IGBENCH_CACHE_DIR"
ENV_OFFLINE = "IGBENCH_OFFLINE"


#: Set by the CLI's ``--cache-dir`` for the length of one command (:func:`cache_root_override`).
_CACHE_ROOT_OVERRIDE: ContextVar[Path | None] = ContextVar("igbench_cache_root", default=None)


@contextlib.contextmanager
def cache_root_override(path: str | Path):
    """Make :func:`cache_root` return ``path`` inside the block (``--cache-dir`` moves the whole cache)."""
    token = _CACHE_ROOT_OVERRIDE.set(Path(path).expanduser())
    try:
        yield
    finally:
        _CACHE_ROOT_OVERRIDE.reset(token)


def cache_root() -> Path:
    """The igbench cache folder (checkpoints under ``models/``, decoded data sets under ``parsed/``,
    downloads under ``data/``): ``--cache-dir``, else ``$IGBENCH_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/igbench`` or ``~/.cache/igbench``."""
    override = _CACHE_ROOT_OVERRIDE.get()
    if override is not None:
        return override
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "igbench"


def parsed_cache() -> Path:
    """Where decoded data sets are cached as ``.npz`` (``<cache>/parsed``)."""
    return cache_root() / "parsed"


def download_root(data_dir: str | Path | None) -> Path:
    """Where automatic downloads go: the given data dir, else ``<cache>/data``."""
    return Path(data_dir).expanduser() if data_dir else cache_root() / "data"


def offline() -> bool:
    """True when ``IGBENCH_OFFLINE`` asks for no automatic downloads."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def search_roots(data_dir: str | Path | None) -> list[tuple[Path, str]]:
    """``(root, how it was chosen)`` pairs, in search order, without duplicates."""
    roots: list[tuple[Path, str]] = []
    if data_dir:
        roots.append((Path(data_dir).expanduser(), "--data-dir"))
    elif os.environ.get(ENV_DATA_DIR):
        roots.append((Path(os.environ[ENV_DATA_DIR]).expanduser(), ENV_DATA_DIR))
    roots.append((cache_root() / "data", "download cache"))
    seen: set[str] = set()
    out = []
    for root, how in roots:
        key = str(root.resolve()) if root.exists() else str(root)
        if key not in seen:
            seen.add(key)
            out.append((root, how))
    return out


def candidate_dirs(data_dir: str | Path | None, subfolders: Sequence[str], extra: Iterable[str | Path] = ()) -> list[Path]:
    """Every folder to try: each root joined with each of ``subfolders`` (``"."`` is the root), then ``extra``."""
    dirs: list[Path] = []
    for root, _how in search_roots(data_dir):
        for sub in subfolders:
            d = root if sub == "." else root / sub
            if d not in dirs:
                dirs.append(d)
    dirs += [Path(e) for e in extra if Path(e) not in dirs]
    return dirs


def find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that is a file in ``folder``."""
    for n in names:
        p = folder / n
        if p.is_file():
            return p
    return None


@dataclass
class FileSet:
    """A folder holding every required file of a data set; ``files`` maps a logical name to its path."""

    folder: Path
    files: dict[str, Path]


def find_file_set(dirs: Sequence[Path], wanted: dict[str, Sequence[str]]) -> tuple[FileSet | None, list[str]]:
    """The first folder of ``dirs`` holding one accepted file name for every key of ``wanted``.

    Returns ``(found or None, notes)``; ``notes`` describe folders that held only some of the files,
    for the not-found message.
    """
    partial: list[str] = []
    for d in dirs:
        if not d.is_dir():
            continue
        files = {key: find_file(d, names) for key, names in wanted.items()}
        if all(files.values()):
            return FileSet(d, files), partial  # type: ignore[arg-type]
        if any(files.values()):
            missing = [wanted[k][0] for k, v in files.items() if v is None]
            partial.append(f"{d} lacks {', '.join(missing)}")
    return None, partial


def describe_searched(dirs: Sequence[Path]) -> str:
    """The searched folders, short: each search root once with the subfolders tried in it
    (``A and B, each itself and its subfolders x, y``), then any folder outside a root."""
    parents = [d for d in dirs if any(o != d and o.is_relative_to(d) for o in dirs)]
    roots = [d for d in parents if not any(o != d and d.is_relative_to(o) for o in parents)]  # the outermost
    subs: dict[Path, list[str]] = {r: [] for r in roots}
    alone: list[str] = []
    for d in dirs:
        root = next((r for r in roots if d.is_relative_to(r)), None)
        if root is None:
            alone.append(str(d))
        else:
            subs[root].append("." if d == root else d.relative_to(root).as_posix())
    groups: dict[tuple[str, ...], list[str]] = {}
    for root, names in subs.items():  # roots searched in the same way are named together
        groups.setdefault(tuple(names), []).append(str(root))
    parts = []
    for names, group in groups.items():
        inner = [n for n in names if n != "."]
        what = "itself and its subfolders" if "." in names else "its subfolders"
        parts.append(f"{' and '.join(group)}, {'each ' if len(group) > 1 else ''}{what} {', '.join(inner)}")
    if alone:
        parts.append(", ".join(alone))
    return "; ".join(parts)


def not_found_error(title: str, dirs: Sequence[Path], partial: Sequence[str], fix: str) -> DatasetNotFound:
    """A one-line :class:`DatasetNotFound` naming the folders searched (:func:`describe_searched`) and the fix."""
    msg = f"{title} not found; looked in {describe_searched(dirs)}"
    roots = [d for d in dirs if not any(o != d and d.is_relative_to(o) for o in dirs)]
    cache = cache_root()  # the download cache need not exist; a named data folder should
    absent = [str(d) for d in dict.fromkeys(roots) if not d.exists() and not d.is_relative_to(cache)]
    if absent:  # a mistyped --data-dir: say so, not only that the data set is missing from it
        msg += f" ({' and '.join(absent)} {'does' if len(absent) == 1 else 'do'} not exist)"
    if partial:
        msg += f" (incomplete: {'; '.join(partial)})"
    msg += f"; point --data-dir (or {ENV_DATA_DIR}) at the folder that holds it, {fix}"
    err = DatasetNotFound(msg)
    err.searched = list(dirs)  # type: ignore[attr-defined]
    return err
