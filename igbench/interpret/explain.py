"""What ``igbench explain`` does, as a library call: figures and interpretability scores for a result file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError, check_at_least
from ..messages import say

DEFAULT_MAX_IMAGES = 1000
#: File name of the scores record that every ``explain`` writes next to its figures.
SCORES_FILE = "explain-scores.json"


@dataclass
class ExplainOutput:
    """What :func:`explain_result` produced: the figure paths, the scores per model, and the images used."""

    saliency_png: Path
    adversarial_png: Path
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    n_images: int = 0
    result_updated: bool = False
    random_sign_alignment: float | None = None  # adv_target_alignment of random signs of the attack's eps
    scores_json: Path | None = None  # the record next to the figures (SCORES_FILE)


def figures_owner(folder: str | Path) -> tuple[str, str | None] | None:
    """``(result path as recorded, its run id or None)`` of the figures ``folder`` holds (its
    ``explain-scores.json``), or None when it holds none or the record is unreadable."""
    import json

    try:
        data = json.loads((Path(folder) / SCORES_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("result"), str):
        return None
    run_id = data.get("run_id")
    return data["result"], run_id if isinstance(run_id, str) else None


def other_results_figures(folder: str | Path, result_path: str | Path,
                          run_id: str | None = None) -> str | None:
    """The other result whose figures ``folder`` holds (they would be overwritten and mixed), or None.

    The record names the result's run (``run_id``), which decides when both are known. An older record has
    only the path as it was given, relative to wherever explain ran: a relative one that reaches no file
    from here (``runs/r.json``, now ``r.json`` from ``runs``) is the result when it ends the result's path."""
    owner = figures_owner(folder)
    if owner is None:
        return None
    recorded_path, recorded_run = owner
    if recorded_run is not None and run_id is not None:
        return None if recorded_run == run_id else recorded_path
    recorded, result = Path(recorded_path), Path(result_path)
    if recorded.resolve() == result.resolve():
        return None
    if not recorded.is_absolute() and not recorded.exists() and result.exists():
        parts = result.resolve().parts
        if len(recorded.parts) <= len(parts) and parts[-len(recorded.parts):] == recorded.parts:
            return None
    return recorded_path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "attack"


def load_result_data(result: dict[str, Any], data_dir=None, dataset_params: dict[str, Any] | None = None):
    """The data set a result was made on, checked against the result's variant and checksum.

    The parameters are the result's own (``dataset.params``) updated with ``dataset_params``; results
    written before ``dataset.params`` was recorded need the run's parameters given again.
    """
    from ..datasets.loading import load_dataset

    from ..errors import DatasetNotFound

    want = result["dataset"]
    params = {**want.get("params", {}), **(dataset_params or {})}
    try:
        data = load_dataset(want["name"], data_dir, params, fallback=False)
    except DatasetNotFound as exc:
        if data_dir or not want.get("source"):
            raise
        raise DatasetNotFound(f"{exc} (the result's data came from {want['source']}: pass --data-dir with the folder "
                              f"that holds it, as the run did)") from None
    if data.variant != want["variant"] or data.checksum != want["checksum"]:
        raise DataError(
            f"data set '{want['name']}' loaded here is variant {data.variant!r} (checksum {data.checksum[:12]}) but the "
            f"result was made on variant {want['variant']!r} (checksum {want['checksum'][:12]}); pass the run's "
            "--data-dir and dataset --param values"
        )
    return data


def explain_record(attack: str, params: dict[str, Any], gradient: str, n_images: int,
                   random_sign_alignment: float | None = None) -> dict[str, Any]:
    """The result's ``explain`` block: how its ``interpretability`` scores were made, and by which code
    (``explain`` can run long after the grid, on a later commit)."""
    from .. import __version__
    from ..environment import git_provenance, utc_timestamp

    return {
        "gradient": gradient, "attack": attack, "attack_params": dict(params), "n_images": int(n_images),
        "random_sign_alignment": random_sign_alignment,
        "created": utc_timestamp(),
        # dirty paths: e.g. only the result and leaderboard files `igbench replicate` has just written
        "igbench": __version__, **git_provenance(),
    }


def merge_interpretability(result: dict[str, Any], scores: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The result's ``interpretability`` list with ``scores`` merged in (one entry per model, in model order;
    fields of an existing entry that are not recomputed are kept)."""
    existing = {e["model"]: dict(e) for e in result.get("interpretability", [])}
    out = []
    for rec in result["models"]:
        mid = rec["id"]
        if mid in scores or mid in existing:
            entry = existing.get(mid, {"model": mid})
            entry.update(scores.get(mid, {}))
            entry["model"] = mid
            out.append(entry)
    return out


def write_scores(path: str | Path, result_path: str | Path, record: dict[str, Any],
                 entries: list[dict[str, Any]], run_id: str | None = None) -> Path:
    """Write the scores of one ``explain`` next to its figures (validated, atomic): the ``explain`` record,
    the ``interpretability`` entries and the result file they came from. With ``--no-update-result`` it is
    the only record of the numbers, so figures made with other attack settings keep theirs."""
    from ..atomic import atomic_write_text
    from ..results.io import dumps_result, validate_scores

    data = {"result": Path(result_path).as_posix(), "explain": record, "interpretability": entries}
    if run_id is not None:
        data["run_id"] = run_id
    validate_scores(data, path)
    return atomic_write_text(path, dumps_result(data))


#: eps of the attack whose examples `explain` (and `replicate`'s explain step) draws, unless one is given.
FIGURE_EPS = 0.3


def figure_attack_params(plugin, eps: float | None, params: dict, option: str) -> dict:
    """The figure attack's parameters: ``params`` (from ``--param``) with ``eps`` (given by ``option``, or
    ``None``) or :data:`FIGURE_EPS` when the attack takes one. An eps for an attack that takes none, or
    an eps given both ways, is a one-line error: it used to be ignored."""
    params = dict(params)
    if not plugin.uses_eps:
        if eps is not None:
            raise UsageError(f"{option} {eps:g}: attack '{plugin.name}' takes no eps (it would be ignored); "
                             f"drop {option}")
        return params
    if eps is not None and "eps" in params:
        raise UsageError(f"eps given twice ({option} and --param eps=...); give it once")
    params.setdefault("eps", FIGURE_EPS if eps is None else eps)
    return params


def explain_result(result_path: str | Path, out_dir: str | Path | None = None, n_images: int = 8,
                   attack: str = "tgsm", attack_params: dict[str, Any] | None = None,
                   dataset_params: dict[str, Any] | None = None, data_dir=None, cache_dir=None,
                   device: str = "cpu", max_images: int = DEFAULT_MAX_IMAGES, gradient: str = "logprob_sum",
                   update_result: bool = True, batch_size: int = 256, progress: bool = True,
                   result: dict[str, Any] | None = None) -> ExplainOutput:
    """Draw the saliency and adversarial grids of a result's models and score their input gradients.

    Models come from the checkpoint cache (a missing one is a one-line error saying how to recreate it),
    the data from ``data_dir`` (it must be the result's exact data: same variant and checksum). The
    figures use the first ``n_images`` scored test images; the scores use the first
    ``min(eval.n_test, max_images)``. The scores and how they were made go to ``explain-scores.json``
    beside the figures; with ``update_result`` they are also written into the result's
    ``interpretability`` list (validated, atomic). ``adv_target_alignment`` attacks every
    scored image once per model, so an expensive attack (``art:CarliniL2Method``) takes its time here;
    ``progress`` shows it. ``result`` is the file's content when the caller has already read it.
    """
    from ..results.io import read_result, write_result
    from .figures import adversarial_grid, saliency_grid
    from .measures import interpretability_summary
    from .result_attack import default_out_dir, prepare
    from .target_alignment import adversarial_alignment, random_sign_alignment

    check_at_least(n_images, 1, "--n-images")
    check_at_least(max_images, 1, "--max-images")
    result_path = Path(result_path)
    if result is None:
        result = read_result(result_path)
    n_eval = int(result["eval"]["n_test"])  # the images the grid attacked and scored
    if n_images > n_eval:  # the figures draw the scored images only: it was cut down without a word
        say(f"note: --n-images {n_images} is more than the {n_eval} images the result scored; the figures show "
            f"those {n_eval}")
        n_images = n_eval
    setup = prepare(result, attack, attack_params, dataset_params, data_dir, cache_dir, device, n_images=n_eval)
    plugin, params, models, seed = setup.plugin, setup.params, setup.models, setup.seed
    x_eval, y_eval = setup.x, setup.y
    out = Path(out_dir) if out_dir else default_out_dir(result_path, "explain")
    out.mkdir(parents=True, exist_ok=True)

    x_fig, y_fig = x_eval[:n_images], y_eval[:n_images]
    names = list(setup.data.class_names) or None
    saliency = saliency_grid(models, x_fig, out / "saliency.png", n_images=n_images,
                             titles=[names[int(k)] if names else str(int(k)) for k in y_fig], batch_size=batch_size)
    eps_tag = f"-eps{params['eps']:g}" if plugin.uses_eps else ""
    ctx = setup.context()
    adversarial = adversarial_grid(models, x_fig, y_fig, plugin, params, ctx,
                                   out / f"adversarial-{_safe(plugin.name)}{eps_tag}.png",
                                   n_images=n_images, class_names=names, batch_size=batch_size)

    n_score = min(n_eval, int(max_images))
    x_score, y_score = x_eval[:n_score], y_eval[:n_score]
    means = setup.class_means()
    baseline = (random_sign_alignment(x_score, y_score, params["eps"], (ctx.clip_min, ctx.clip_max), means, seed)
                if plugin.uses_eps else None)
    scores = {}
    for mid, model in models.items():
        summary = interpretability_summary(model, x_score, y_score, gradient=gradient, batch_size=batch_size)
        aligned = adversarial_alignment(model, plugin, params, x_score, y_score, setup.context(), means,
                                        batch_size=batch_size, progress=progress, label=mid)
        scores[mid] = {**summary, **aligned.entry(), "n_images": n_score}
    record = explain_record(plugin.name, plugin.recorded_params(params), gradient, n_score, baseline)
    scores_json = write_scores(out / SCORES_FILE, result_path, record,
                               [{"model": mid, **scores[mid]} for mid in scores], run_id=result["run_id"])
    updated = False
    if update_result:
        from ..engine.journal import result_write_lock
        from ..errors import UsageError

        kept = f"the scores are in {scores_json}; run explain again to add them to the result"

        def grid_running(lock_path):
            raise UsageError(f"{result_path}: a grid is being run into this result now (it holds {lock_path}), so "
                             f"it was not updated; {kept}")

        with result_write_lock(result_path, on_busy=grid_running):  # a grid run meanwhile is not overwritten
            current = read_result(result_path) if Path(result_path).is_file() else None
            if current is None or current.get("run_id") != result.get("run_id"):
                raise UsageError(f"{result_path} was replaced by another run while explain ran, so it was not "
                                 f"updated; {kept}")
            current["interpretability"] = merge_interpretability(current, scores)  # another explain's kept
            current["explain"] = record
            write_result(result_path, current)
        updated = True
    return ExplainOutput(Path(saliency), Path(adversarial), scores, n_score, updated, baseline, scores_json)
