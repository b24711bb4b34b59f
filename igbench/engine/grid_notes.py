"""Notes a grid prints for the user: sizes the data cannot give, eps values beyond the data's range, models
that score near chance or far below the undefended one. Each is a line of text (or None); the caller
echoes it. None of them stops the work: they say what the numbers will mean, and what to change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .grid import GridSpec

from ..results.grid import near_chance


def untrained_model_note(model_id: str, model, clean_accuracy: float, steps: int | None,
                         num_classes: int, schedule: int | None = None) -> str | None:
    """A note when a model's clean accuracy is not yet a trained model's, which makes every attack number about
    it meaningless, with the likely cause: close to chance, or after too few updates of its BatchNorm running
    statistics. Evaluation uses those; they start at mean 0 and variance 1 and move 10% of the way per update
    (PyTorch's momentum), so after 20 steps a paper CNN that fits its training batches scores about 13% on
    MNIST, and until some 44 updates more than 1% of the starting values remain, at any accuracy.
    ``schedule``: the steps the grid asked for per trained model; ``steps`` above it (distillation's teacher
    and student) are said to be in all."""
    chance = 1.0 / max(num_classes, 1)
    at_chance = near_chance(clean_accuracy, num_classes)
    left, settle = _batchnorm_start_left(model, steps)
    if not at_chance and left <= 0.01:
        return None
    where = f"note: {model_id} scores {100 * clean_accuracy:.1f}% on clean data"
    where += f", close to chance ({100 * chance:.0f}%)" if at_chance else ""
    if steps:
        where += f", after {steps} training batches"
        if schedule and steps > schedule:  # `--steps 20` read "after 40 training batches" for distillation
            where += f" in all ({schedule} for each model its defense trains)"
    if steps == 0 and at_chance:  # a defense with its own training loop: igbench's schedule does not reach it
        return f"{where}: its defense trains in its own loop, which --steps does not set; check its training"
    if left > 0.01:
        meaning = ("Its attack numbers mean nothing until then" if at_chance else
                   "Until then its clean and attack numbers are not yet those of the trained model")
        return (f"{where}: its BatchNorm layers' running statistics, which evaluation uses, still hold "
                f"{100 * left:.0f}% of their starting values; train longer (--steps {settle} or more lets them "
                f"settle) or choose an architecture without BatchNorm (--arch mlp). {meaning}")
    return (f"{where}: it has not learned the task; train longer (--steps) or change --lr. Its attack numbers "
            f"mean nothing until then")


def _batchnorm_start_left(model, steps: int | None) -> tuple[float, int]:
    """How much of their starting values the running statistics of ``model``'s BatchNorm layers still hold
    (the most of any layer; 0 without BatchNorm), and the updates after which it falls below 1%. A layer's
    updates are its ``num_batches_tracked`` when it counts them, else ``steps``."""
    import math

    left, settle = 0.0, 0
    for m in model.modules():
        momentum = getattr(m, "momentum", None)
        if getattr(m, "running_var", None) is None or not isinstance(momentum, float) or not 0 < momentum < 1:
            continue
        tracked = getattr(m, "num_batches_tracked", None)
        updates = int(tracked) if tracked is not None and int(tracked) > 0 else (steps or 0)
        left = max(left, (1 - momentum) ** updates)
        settle = max(settle, math.ceil(math.log(0.01) / math.log(1 - momentum)))
    return left, settle


#: Clean-accuracy gap to the undefended model (fraction) above which a run prints a hint.
ACCURACY_GAP_HINT = 0.15


def accuracy_gap_hints(records: list[dict[str, Any]], reference_id: str | None) -> list[str]:
    """One line per model whose clean accuracy is far below the reference model's (``reference_id``, the
    grid's undefended model), saying why it may be and what to try (a short schedule under a strength
    tuned for a long one is the common cause)."""
    ref = next((r for r in records if r["id"] == reference_id), None)
    if ref is None:
        return []
    lines = []
    for r in records:
        gap = ref["clean_accuracy"] - r["clean_accuracy"]
        if r is ref or gap < ACCURACY_GAP_HINT:
            continue
        steps, batch = r["train"]["steps"], r["train"]["batch_size"]
        if not steps:  # a defense with its own training loop: igbench's schedule does not reach it
            lines.append(f"note: {r['id']} is {100 * gap:.1f} points less accurate than {ref['id']} on clean data; "
                         f"its defense trains in its own loop, which --steps does not set: check its training")
            continue
        fix = "a longer schedule (--steps)"
        lam = r["defense_params"].get("lambda")
        if lam is not None:
            why = f"it is {lam:g}; the paper's 56,234 was tuned for 15,000 batches of 256"
            if r["defense_params"].get("scaling") == "paper" and batch != 256:
                why += f", and in scaling=paper a batch of {batch} makes it {256 / batch:g}x stronger per example"
            fix = f"a smaller lambda ({why}) or {fix}"
        lines.append(f"note: {r['id']} is {100 * gap:.1f} points less accurate than {ref['id']} on clean data "
                     f"after {steps} training batches; it may be undertrained for its strength: try {fix}")
    return lines


def _grey_levels(width: float) -> str:
    """How to write 8 of 255 grey levels as an eps, for data whose range is ``width`` wide."""
    return "8/255" if width == 1 else f"{8 * width / 255:.4g} (8/255 of the range)"


def monitor_eps_note(train, data) -> list[str]:
    """A note when ``--monitor-eps`` is larger than the data's whole range (only when monitoring is on)."""
    width = data.clip_max - data.clip_min
    if not train.monitor_every or train.monitor_eps <= width:
        return []
    return [f"note: --monitor-eps {train.monitor_eps:g} is more than the data's whole range [{data.clip_min:g}, "
            f"{data.clip_max:g}]: the monitoring FGSM may set any pixel to any value; for 8 of 255 grey levels "
            f"write --monitor-eps {_grey_levels(width)}"]


def eps_range_notes(units, clip_min: float, clip_max: float) -> list[str]:
    """A note for each attack swept at an L-inf eps larger than the data's whole range, where it may set any
    pixel to any value: usually an eps meant in 0-255 units (8 for 8/255). An eps that bounds another norm
    (``linf_bound`` None: ART's ``norm=2``) is left alone."""
    width = clip_max - clip_min
    notes = []
    for name in dict.fromkeys(plugin.name for plugin, _params, _eps in units):
        large = sorted({eps for plugin, params, eps in units if plugin.name == name and eps is not None
                        and eps > width and plugin.linf_bound({**params, "eps": eps}) is not None})
        if large:
            grey = _grey_levels(width)
            notes.append(f"note: {name} runs at eps {', '.join(f'{e:g}' for e in large)}, more than the data's whole "
                         f"range [{clip_min:g}, {clip_max:g}]: it may set any pixel to any value. eps is in the "
                         f"data's units: for 8 of 255 grey levels write --eps {grey}")
    return notes


def training_eps_notes(models, clip_min: float, clip_max: float) -> list[str]:
    """A note for each model whose defense trains at an ``eps`` larger than the data's whole range (advtrain
    at 50, meant as 50/255), which :func:`eps_range_notes` says of attacks."""
    from ..registry import get_registry

    width, notes = clip_max - clip_min, []
    for m in models:
        eps = get_registry().get("defense", m.defense).resolve_params(m.defense_params).get("eps")
        if isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > width:
            notes.append(f"note: model {m.id} trains at eps {eps:g}, more than the data's whole range "
                         f"[{clip_min:g}, {clip_max:g}]; eps is in the data's units: for 8 of 255 grey levels write "
                         f"eps={_grey_levels(width)}")
    return notes


def short_schedule_notes(spec: "GridSpec", data) -> list[str]:
    """Before training: one note per architecture of the grid whose BatchNorm running statistics the
    schedule is too short to settle, so that its models will score near chance (the note after training
    came once the time was spent). Each model is built once on the CPU, the global random state kept."""
    import json

    import torch

    from ..registry import get_registry
    from .model_checks import build_model

    steps = spec.train.total_steps(len(data.train_y))
    notes, seen = [], set()
    for m in spec.models:
        key = (m.arch, json.dumps(m.arch_params, sort_keys=True, default=str))
        if key in seen:
            continue
        seen.add(key)
        arch = get_registry().get("architecture", m.arch)
        with torch.random.fork_rng(devices=[]):
            model = build_model(arch, data.input_shape, data.num_classes, arch.resolve_params(m.arch_params))
        left, settle = _batchnorm_start_left(model, steps)
        if left > 0.01:
            notes.append(f"note: after {steps} training step{'s' if steps != 1 else ''} per model, {100 * left:.0f}% of "
                         f"the starting values remain in {m.arch}'s BatchNorm running statistics, which evaluation "
                         f"uses: its models will score near chance; --steps {settle} or more lets them settle (or "
                         f"choose an architecture without BatchNorm, --arch mlp)")
    return notes


def size_notes(spec: "GridSpec", n_train: int, n_test: int, dataset: str) -> list[str]:
    """Notes for sizes the data set cannot give, so that nothing is cut down silently. ``n_test``: the
    images of the split the grid scores (``spec.score_on``)."""
    notes = []
    if spec.n_test is not None and spec.n_test > n_test:
        notes.append(f"note: --n-test {spec.n_test} is more than the {n_test} {spec.score_on} images of {dataset}; "
                     f"scoring all {n_test} (the result records {n_test})")
    if spec.train.batch_size > n_train:
        notes.append(f"note: --batch-size {spec.train.batch_size} is more than the {n_train} training images of "
                     f"{dataset}; every step takes all of them")
    return notes
