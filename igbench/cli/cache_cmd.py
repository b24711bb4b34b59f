"""``igbench cache list|clean|export|import``: what the checkpoint cache holds, removal of abandoned snapshots,
and archives that carry a result's checkpoints to another cache."""

from __future__ import annotations

import json
import re

import click

from ..progress import format_duration
from .options import CACHE_FOLDER, cache_dir_option, check_writable, check_writable_folder
from .paths import PathArg

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(ctx, param, value: str) -> float:
    """``90s``, ``30m``, ``1h``, ``2d`` -> seconds. A bare number is refused: ``--older-than 5`` meant five
    seconds, where a user may well have meant hours or days."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
    if not m:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 30m, 1h or 2d")
    if not m[2]:
        raise click.BadParameter(f"{value!r} has no unit; use e.g. {m[1]}s, {m[1]}m, {m[1]}h or {m[1]}d")
    return float(m[1]) * _UNITS[m[2]]


def _dataset(info: dict) -> str:
    """``mnist (0f471e2d)``: the name, and the start of the checksum that tells its variants and held-out
    splits apart (two models of one name may have trained on other images)."""
    checksum = info.get("dataset_checksum")
    return f"{info.get('dataset')} ({checksum[:8]})" if checksum else str(info.get("dataset"))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@click.group("cache", short_help="Inspect, clean, export and import the checkpoint cache.")
def cache_group() -> None:
    """Inspect the checkpoint cache, remove what abandoned trainings left in it, and move a result's
    checkpoints between caches.

    Finished models are stored under the hash of their full configuration and loaded instead of
    retrained. A training in progress keeps snapshots beside them so that it can resume.
    """


@cache_group.command("list", short_help="List cached models and resumable trainings.")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
def list_command(cache_dir, as_json: bool) -> None:
    """List the cached models and the trainings that can be resumed."""
    from tabulate import tabulate

    from ..engine.cache import CheckpointStore
    from ..engine.cache_inventory import inventory

    store = CheckpointStore(cache_dir)
    entries = inventory(store)
    if as_json:
        click.echo(json.dumps({"cache": str(store.root), "entries": [
            {"path": str(e.path), "kind": e.kind, "key": e.key, "bytes": e.size,
             "age_seconds": round(e.age_seconds, 1), **e.info,
             **({"training_now": e.training_now} if e.kind in ("partial", "done") else {})}
            for e in entries]}, indent=2, default=str))
        return
    click.echo(f"cache: {store.root}")
    models = [[e.key[:12], _dataset(e.info), e.info.get("arch"), e.info.get("defense"),
               json.dumps(e.info.get("defense_params") or {}, sort_keys=True), e.info.get("steps"),
               "/".join(f"{e.info.get(k)}" for k in ("seed", "batch_size", "lr")),
               e.info.get("precision"), e.info.get("igbench"), _size(e.size), format_duration(e.age_seconds)]
              if "error" not in e.info else
              [e.key[:12], e.info["error"], "", "", "", "", "", "", "", _size(e.size), format_duration(e.age_seconds)]
              for e in entries if e.kind == "checkpoint"]
    click.secho(f"\nmodels ({len(models)})", bold=True)
    click.echo(tabulate(models, headers=["hash", "dataset (data sha256)", "arch", "defense", "parameters", "steps",
                                         "seed/batch/lr", "precision", "igbench", "size", "written ago"],
                        disable_numparse=True) if models else "  (none)")
    snaps = [e for e in entries if e.kind != "checkpoint"]
    rows = []
    for e in snaps:
        i = e.info
        where = "" if e.kind == "temporary" else (
            i.get("error") or f"{i.get('step')}/{i.get('total') or '?'}")
        rows.append([e.path.name if e.key is None else e.key[:12], e.kind, i.get("label") or "", where,
                     "yes" if e.training_now else "", _size(e.size), format_duration(e.age_seconds)])
    click.secho(f"\ntraining snapshots and temporary files ({len(rows)})", bold=True)
    click.echo(tabulate(rows, headers=["hash", "kind", "training", "step", "running now", "size", "written ago"])
               if rows else "  (none)")
    if snaps:
        click.echo("\nA snapshot resumes when its run's command is run again; `igbench cache clean` removes "
                   "a model's snapshots once none of them was written for an hour and no process is training it.")


@cache_group.command("clean", short_help="Remove abandoned training snapshots and temporary files.")
@cache_dir_option
@click.option("--older-than", default="1h", show_default=True, callback=parse_duration,
              help="Remove snapshots and temporary files not written for this long: a number and a unit, s, m, h or d "
                   "(90s, 30m, 1h, 2d). A running "
                   "training rewrites its snapshot every two minutes.")
@click.option("--other-versions", is_flag=True,
              help="Also remove finished models trained by another igbench version than this one. This version "
                   "never loads them (the version is part of every configuration hash), but `igbench explain` "
                   "on a result file that version wrote does.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def clean_command(cache_dir, older_than: float, other_versions: bool, dry_run: bool) -> None:
    """Remove training snapshots and temporary files that no training is using.

    Finished models are kept, except with --other-versions (delete a `<hash>.pt` file yourself to force
    retraining).
    A model's snapshots go together, once none of them was written within --older-than (a
    distillation teacher's snapshot stays while its student trains) and no igbench process holds the
    model's training lock. Snapshots of a model whose checkpoint exists are removed at any age. A
    removed snapshot means that training starts from step 1 if its command is run again.
    """
    from ..engine.cache import CheckpointStore
    from .. import __version__
    from ..engine.cache_inventory import other_version_checkpoints, stale_leftovers

    store = CheckpointStore(cache_dir)
    stale = stale_leftovers(store, older_than)
    if other_versions:
        stale += other_version_checkpoints(store, __version__)
    for e in stale:
        made_by = f"igbench {e.info['igbench']}, " if e.kind == "checkpoint" else ""
        click.echo(f"{'would remove' if dry_run else 'removed'} {e.path} ({e.kind}, {made_by}{_size(e.size)}, "
                   f"written {format_duration(e.age_seconds)} ago)")
        if not dry_run:
            e.path.unlink(missing_ok=True)
    total = sum(e.size for e in stale)
    click.echo(f"{len(stale)} file(s), {_size(total)} {'to free' if dry_run else 'freed'} in {store.root / 'models'}")


@cache_group.command("export", short_help="Pack a result's checkpoints into one tar archive.")
@click.argument("result", type=PathArg(dir_okay=False))
@click.option("--out", type=PathArg(dir_okay=False), default=None,
              help="Archive to write. Default: <result name>-checkpoints.tar beside the result file.")
@cache_dir_option
def export_command(result: str, out: str | None, cache_dir) -> None:
    """Pack the checkpoints of RESULT's models into one tar archive.

    Retraining a model elsewhere gives other weights, so `igbench explain` on a result needs the very
    checkpoints it was made with. Keep or share the archive with the result file, and run `igbench cache
    import` on it wherever the figures are to be made. Each checkpoint is checked against the weights
    the result recorded before it is packed.

    \b
    Example:
      igbench cache export leaderboards/results/paper-mnist-full.json --out paper-mnist-full-checkpoints.tar
    """
    from pathlib import Path

    from ..engine.cache import CheckpointStore
    from ..engine.checkpoint_archive import export_checkpoints
    from ..results.io import read_result

    data = read_result(result)
    target = Path(out) if out else Path(result).with_name(f"{Path(result).stem}-checkpoints.tar")
    check_writable(target, "--out" if out else "archive")
    click.echo(f"packing {len(data['models'])} checkpoint(s) of {result}:")
    export_checkpoints(data, Path(result).name, CheckpointStore(cache_dir), target, echo=click.echo)
    click.echo(f"archive: {target} ({_size(target.stat().st_size)}); "
               f"unpack it with `igbench cache import {target}`")


@cache_group.command("import", short_help="Unpack a checkpoint archive into this cache.")
@click.argument("archive", type=PathArg(dir_okay=False))
@click.option("--replace", is_flag=True,
              help="Overwrite a cached model that has the same configuration hash but other weights.")
@cache_dir_option
def import_command(archive: str, replace: bool, cache_dir) -> None:
    """Put the checkpoints of an archive made by `igbench cache export` into the cache.

    Every checkpoint is checked against the archive's manifest (configuration hash and weights) before
    anything is written. Models already cached with the same weights are left alone; a cached model with
    other weights stops the import unless --replace is given.
    """
    from ..engine.cache import CheckpointStore
    from ..engine.checkpoint_archive import import_checkpoints

    from pathlib import Path

    if not Path(archive).is_file():
        raise click.ClickException(f"{archive}: no such archive; check the path")
    store = CheckpointStore(cache_dir)
    check_writable_folder(store.root, CACHE_FOLDER)
    click.echo(f"importing {archive} into {store.root}:")
    outcome = import_checkpoints(archive, store, replace=replace, echo=click.echo)
    written = sum(status != "already cached" for _, status in outcome)
    click.echo(f"{written} checkpoint(s) written, {len(outcome) - written} already cached")


COMMANDS = [cache_group]
