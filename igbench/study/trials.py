"""Which images the study shows: for each pair of models, scored images both models classify correctly,
on which both models' examples aim at the same target, changed the image and (by default) reached their
target, drawn at random (seeded), each image in one trial at most; each pair's first model on the left in
half its trials; all trials in one random order."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence


class Examples(NamedTuple):
    """One model's adversarial examples of the candidate images (all ``(N, ...)`` tensors on the CPU)."""

    x_adv: Any
    #: the class each example was pushed toward
    targets: Any
    #: whether the model classifies the example as its target
    reached: Any
    #: per-image :func:`igbench.interpret.target_alignment.target_alignment` (NaN where undefined)
    alignment: Any
    #: whether the model classifies the clean image as its label
    clean_correct: Any


def model_pairs(models: Sequence[str], versus: str | None = None) -> list[tuple[str, str]]:
    """Every unordered pair of ``models`` in their order, or, with ``versus``, that model against each other."""
    if versus is not None:
        return [(versus, m) for m in models if m != versus]
    return [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]


def eligible(x, y, first: Examples, second: Examples, reached_only: bool = True):
    """Boolean mask of the images a trial of this pair may show: both models classify the clean image
    correctly, both examples aim at the same class (not the label) and changed the image, and with
    ``reached_only`` both fool their model into that class (not merely a class it read before the attack)."""
    changed_first = (first.x_adv - x).flatten(1).abs().amax(1) > 0
    changed_second = (second.x_adv - x).flatten(1).abs().amax(1) > 0
    mask = (first.targets == second.targets) & (first.targets != y) & changed_first & changed_second
    mask &= first.clean_correct & second.clean_correct
    if reached_only:
        mask &= first.reached & second.reached
    return mask


def choose_trials(x, y, examples: dict[str, Examples], pairs: list[tuple[str, str]], per_pair: int, seed: int,
                  reached_only: bool = True) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
    """The trials (numbered from 1 in the key's order) and, per pair, how many images were eligible.

    Each image is shown in one trial at most: the pairs take turns drawing from their eligible images
    (in a seeded random order), so that a pair sharing a model with another never shows that model's
    very picture twice, and no pair is starved by the pairs before it. Within a pair the first model is
    on the left in half its trials (one more or less for an odd count), on sides drawn at random: a
    participant who favours one side then favours neither model. The questionnaire shuffles the order
    and mirrors the sides again per participant.

    A trial records the image's index among the candidates, its label and target, the model on each side
    and each side's alignment with the target (the stand-in's verdict, kept in the key for comparison).
    """
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    counts, queues = {}, {}
    for a, b in pairs:
        idx = eligible(x, y, examples[a], examples[b], reached_only).nonzero().flatten()
        counts[(a, b)] = int(idx.numel())
        queues[(a, b)] = idx[torch.randperm(idx.numel(), generator=gen)].tolist()
    picked: dict[tuple[str, str], list[int]] = {p: [] for p in pairs}
    used: set[int] = set()
    active = [p for p in pairs if queues[p]]
    while active:
        for p in list(active):
            queue = queues[p]
            while queue and queue[0] in used:
                queue.pop(0)
            if queue and len(picked[p]) < per_pair:
                used.add(queue[0])
                picked[p].append(queue.pop(0))
            else:
                active.remove(p)
    trials = []
    for (a, b), images in picked.items():
        k = len(images)
        flips = [False] * (k // 2) + [True] * (k // 2) + ([bool(torch.randint(0, 2, (1,), generator=gen))] if k % 2 else [])
        flips = [flips[j] for j in torch.randperm(k, generator=gen).tolist()]
        for i, flip in zip(images, flips):
            left, right = (b, a) if flip else (a, b)
            trials.append({
                "image": i, "label": int(y[i]), "target": int(examples[a].targets[i]), "pair": [a, b],
                "left": left, "right": right,
                "left_alignment": _finite(examples[left].alignment[i]),
                "right_alignment": _finite(examples[right].alignment[i]),
            })
    order = torch.randperm(len(trials), generator=gen).tolist()
    shown = [trials[k] for k in order]
    for number, trial in enumerate(shown, start=1):
        trial["trial"] = number
    return shown, counts


def _finite(value) -> float | None:
    v = float(value)
    return v if v == v else None


def choose_catch_trials(y, examples: dict[str, Examples], models: Sequence[str], n_catch: int, num_classes: int,
                        used: set[int], seed: int) -> list[dict[str, Any]]:
    """``n_catch`` attention checks, each with a right answer: beside each other, one model's adversarial
    examples of an image *of* the named class and of an image of another class, neither pushed toward the
    named class. They carry the same kind of noise as every other trial, so they cannot be told apart by
    looking clean. The models take turns; both images are read right by that model before the attack and
    are in no other trial (``used``, updated). The named image is on the left in half the checks. Fewer when
    the images run out. Unnumbered: :func:`number_together` numbers them among the model trials."""
    import torch

    gen = torch.Generator().manual_seed(int(seed) + 1)
    order = torch.randperm(int(y.shape[0]), generator=gen).tolist()
    checks: list[dict[str, Any]] = []
    for k in range(n_catch):
        model = models[k % len(models)]
        ex = examples[model]
        free = [i for i in order if i not in used and bool(ex.clean_correct[i])]
        found = None
        for i in free:  # the image of another class
            classes = [c for c in range(num_classes) if c not in (int(y[i]), int(ex.targets[i]))]
            for c in (classes[j] for j in torch.randperm(len(classes), generator=gen).tolist()):
                named = next((j for j in free if j != i and int(y[j]) == c and int(ex.targets[j]) != c), None)
                if named is not None:
                    found = (i, c, named)
                    break
            if found:
                break
        if found is None:
            break
        i, c, named = found
        used.update((i, named))
        checks.append({"target": c, "target_image": named, "other_image": i, "other_label": int(y[i]), "model": model})
    sides = ["left", "right"] * (len(checks) // 2) + (["left"] if len(checks) % 2 else [])
    for check, k in zip(checks, torch.randperm(len(checks), generator=gen).tolist()):
        check["correct"] = sides[k]
    return checks


def number_together(trials: list[dict[str, Any]], checks: list[dict[str, Any]], seed: int) -> None:
    """Number the model trials and the attention checks 1..N in one random order (in place), so that a
    check can come anywhere."""
    import torch

    gen = torch.Generator().manual_seed(int(seed) + 2)
    both = trials + checks
    for number, k in enumerate(torch.randperm(len(both), generator=gen).tolist(), start=1):
        both[k]["trial"] = number
    trials.sort(key=lambda t: t["trial"])
    checks.sort(key=lambda t: t["trial"])
