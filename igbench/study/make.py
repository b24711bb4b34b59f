"""What ``igbench study make`` does, as a library call: attack a result's models, pick the trials, and write
the questionnaire for participants and the key for the analysis."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError, check_at_least
from ..messages import say

#: Trials per model pair unless told otherwise.
DEFAULT_PER_PAIR = 30
#: First scored images every model is attacked on, the pool trials are drawn from.
DEFAULT_CANDIDATES = 1000
#: What to try when too few examples reach their target in one step.
ITERATE_HINT = "--param steps=10 --param step_size=0.05 --param stop_at_target=true"
#: Channel counts the questionnaire can show (grey, colour).
SHOWABLE_CHANNELS = (1, 3)


@dataclass
class StudyOutput:
    """What :func:`make_study` wrote: the folder, its two files, the study's id, its trial count and, per
    pair, how many images were eligible and how many trials it got."""

    folder: Path
    questionnaire: Path
    key: Path
    study: str
    n_trials: int
    pairs: list[dict[str, Any]]
    #: attention checks among the trials
    n_checks: int = 0


def chosen_models(result: dict[str, Any], models: Sequence[str] | None, versus: str | None) -> list[str]:
    """The result's model ids the study compares (all by default), checked: two or more, each in the result,
    ``versus`` among them."""
    ids = [m["id"] for m in result["models"]]
    wanted = list(dict.fromkeys(models)) if models else ids
    unknown = [m for m in wanted if m not in ids]
    if unknown:
        raise UsageError(f"--models: {', '.join(unknown)} not in the result; its models are {', '.join(ids)}")
    if versus is not None and versus not in wanted:
        raise UsageError(f"--versus {versus}: not among the models compared ({', '.join(wanted)})")
    if len(wanted) < 2:
        raise UsageError(f"a study compares two or more models; {'the result has' if not models else '--models names'} "
                         f"only {', '.join(wanted)}")
    return wanted


def check_study_attack(plugin, params: dict[str, Any], input_shape: Sequence[int]) -> None:
    """Before any work: the attack aims at a target (the question names it) and the images can be shown."""
    if not plugin.is_targeted(params):
        how = "--param targeted=true for an art: attack, or tgsm" if plugin.name.startswith("art:") else "tgsm or jsma"
        raise UsageError(f"attack '{plugin.name}' aims at no target class, and the study asks which example looks "
                         f"more like its target; use a targeted attack ({how})")
    channels = int(input_shape[0])
    if channels not in SHOWABLE_CHANNELS:
        raise UsageError(f"the data's images have {channels} channels; the questionnaire shows grey (1) or colour (3) "
                         "images only")


def make_study(result_path: str | Path, out_dir: str | Path, attack: str = "tgsm",
               attack_params: dict[str, Any] | None = None, dataset_params: dict[str, Any] | None = None,
               data_dir=None, cache_dir=None, device: str = "cpu", models: Sequence[str] | None = None,
               versus: str | None = None, per_pair: int = DEFAULT_PER_PAIR, candidates: int = DEFAULT_CANDIDATES,
               reached_only: bool = True, seed: int | None = None, catch_trials: int = 0, intro: str | None = None,
               completion_code: str | None = None, batch_size: int = 256, progress: bool = True,
               result: dict[str, Any] | None = None) -> StudyOutput:
    """Attack every compared model on the first ``candidates`` scored images of the result's data set (any
    of them, not only those the result scored), choose up to ``per_pair`` trials per model pair
    (:func:`.trials.choose_trials`, seeded with ``seed``, by default the result's), and write
    ``questionnaire.html`` and ``study-key.json`` into ``out_dir``.

    The attack must aim at a target (the question names it). By default a trial shows only examples that
    fool their model into the target (``reached_only``): people judge adversarial examples that work. A
    folder holding another study's key is refused: that key is what its answers are scored with.
    ``catch_trials`` attention checks (:func:`.trials.choose_catch_trials`) are mixed in; ``intro`` (the
    researcher's text: consent, contact) opens the page and ``completion_code`` ends it.
    """
    from ..atomic import atomic_write_text
    from ..engine.attack import run_attack, success_mask
    from ..engine.grid_notes import eps_range_notes
    from ..engine.train import predict_logits
    from ..interpret.result_attack import prepare
    from ..interpret.target_alignment import target_alignment
    from ..registry import get_registry
    from ..results.io import read_result
    from . import questionnaire, record
    from .trials import Examples, choose_catch_trials, choose_trials, model_pairs, number_together

    check_at_least(per_pair, 1, "--trials-per-pair")
    check_at_least(candidates, 1, "--candidates")
    check_at_least(catch_trials, 0, "--catch-trials")
    result_path = Path(result_path)
    if result is None:
        result = read_result(result_path)
    compared = chosen_models(result, models, versus)
    plugin = get_registry().get("attack", attack)
    check_study_attack(plugin, plugin.resolve_params(attack_params or {}), result["dataset"]["input_shape"])
    folder = Path(out_dir)
    if (folder / record.KEY_FILE).exists():
        raise UsageError(record.already_a_study(folder))
    setup = prepare(result, attack, attack_params, dataset_params, data_dir, cache_dir, device, n_images=candidates,
                    model_ids=compared)
    params, data, x, y = setup.params, setup.data, setup.x, setup.y
    for note in eps_range_notes([(plugin, params, params.get("eps"))], data.clip_min, data.clip_max):
        say(note)
    n = int(x.shape[0])
    if n < candidates:
        say(f"note: --candidates {candidates}: the {setup.split} split holds {n} images; all are attacked")
    seed = setup.seed if seed is None else int(seed)
    means = setup.class_means()

    examples = {}
    for mid in compared:
        model = setup.models[mid]
        run = run_attack(plugin, params, model, x, y, setup.context(), batch_size=batch_size, progress=progress,
                         label=mid)
        x_adv, targets, pred = run.x_adv.detach().cpu(), run.targets.cpu(), run.predictions.cpu()
        clean = predict_logits(model, x, batch_size=batch_size).argmax(1).cpu()
        examples[mid] = Examples(x_adv, targets, success_mask(pred, y, targets),
                                 target_alignment(x, x_adv, y, targets, means), clean == y)
    pairs = model_pairs(compared, versus)
    trials, eligible = choose_trials(x, y, examples, pairs, per_pair, seed, reached_only)
    taken = {tuple(p): 0 for p in pairs}
    for t in trials:
        taken[tuple(t["pair"])] += 1
    pair_records = [{"pair": list(p), "eligible": eligible[p], "trials": taken[p]} for p in pairs]
    short = [f"{a} vs {b}: {taken[(a, b)]} (of {eligible[(a, b)]} eligible)" for a, b in pairs if taken[(a, b)] < per_pair]
    if not trials:
        raise UsageError(_no_trials_message(n, reached_only, short))
    if short:
        more = (f"more --candidates (up to the {setup.split} split's images)" if n == candidates else
                "other models or pairs")
        fix = f"{more}, or an attack that reaches the target more often ({ITERATE_HINT})" if reached_only else more
        say(f"note: fewer trials than --trials-per-pair {per_pair} for {'; '.join(short)}; each image is shown "
            f"once, in one pair; {fix}")

    checks = []
    if catch_trials:
        checks = choose_catch_trials(y, examples, compared, catch_trials, data.num_classes,
                                     {t["image"] for t in trials}, seed)
        if len(checks) < catch_trials:
            say(f"note: {len(checks)} attention check(s) of --catch-trials {catch_trials}: each takes two images no "
                "other trial shows, read right by the model whose examples it shows, and those ran out; more "
                "--candidates makes room")
        if len(checks) > len(trials):
            say(f"note: {len(checks)} attention checks outnumber the {len(trials)} trials that compare models")
        number_together(trials, checks, seed)

    lo, hi = float(data.clip_min), float(data.clip_max)
    shown = [(t["trial"], t["target"], questionnaire.png_data_uri(examples[t["left"]].x_adv[t["image"]], lo, hi),
              questionnaire.png_data_uri(examples[t["right"]].x_adv[t["image"]], lo, hi)) for t in trials]
    for c in checks:
        adv = examples[c["model"]].x_adv
        named, other = (questionnaire.png_data_uri(adv[c[k]], lo, hi) for k in ("target_image", "other_image"))
        shown.append((c["trial"], c["target"], *((named, other) if c["correct"] == "left" else (other, named))))
    recorded = plugin.recorded_params(params)
    study = record.study_id(trials + checks, result["run_id"], plugin.name, recorded)
    names = list(data.class_names)
    page = questionnaire.render(questionnaire.page_data(study, shown, names, intro, completion_code, bool(checks)))
    key = {
        "igbench_study": "1", "study": study, "result": result_path.as_posix(), "run_id": result["run_id"],
        "dataset": {"name": data.name, "checksum": data.checksum, "split": setup.split},
        "attack": plugin.name, "attack_params": recorded, "seed": seed, "candidates": n,
        "reached_only": bool(reached_only), "models": compared, "pairs": pair_records, "class_names": names,
        "questionnaire": record.QUESTIONNAIRE_FILE, "questionnaire_sha256": hashlib.sha256(page.encode()).hexdigest(),
        "trials": trials, "catch_trials": checks, "intro": intro, "completion_code": completion_code,
        **record.provenance(),
    }
    key_path = record.create_key(folder / record.KEY_FILE, key)  # refused if another run wrote one meanwhile
    page_path = atomic_write_text(folder / record.QUESTIONNAIRE_FILE, page)
    return StudyOutput(folder, page_path, key_path, study, len(trials), pair_records, len(checks))


def _no_trials_message(n: int, reached_only: bool, short: list[str]) -> str:
    if reached_only:
        return (f"no image of the {n} attacked has examples that reach their target against both models of any "
                f"pair ({'; '.join(short)}); iterate the attack ({ITERATE_HINT}), raise its eps, or show examples "
                f"that did not reach the target (--all-examples)")
    return (f"no image of the {n} attacked is classified correctly by both models of a pair and changed toward "
            f"one target by both attacks ({'; '.join(short)}); raise the attack's eps")
