"""Read-only views of a result's accuracy grid, shared by the leaderboard and the plots."""

from __future__ import annotations

from statistics import fmean
from typing import Any


def eps_key(eps: float | None) -> float | None:
    """A hashable, rounding-stable key for an eps value (None for attacks without eps)."""
    return None if eps is None else round(float(eps), 10)


def format_pct(fraction: float | None) -> str:
    """``0.9876`` -> ``98.8`` (a percentage with one decimal); ``None`` -> ``-``."""
    return "-" if fraction is None else f"{100.0 * fraction:.1f}"


def format_eps(eps: float | None) -> str:
    """``0.1`` -> ``0.1``; ``None`` -> ``-``."""
    return "-" if eps is None else f"{float(eps):g}"


#: A clean accuracy at most this many times chance (1 / classes) is called "close to chance": the model has
#: not learned the task (or, after a short schedule, its BatchNorm statistics have not settled), so its
#: attack numbers mean nothing.
CHANCE_FACTOR = 1.5


def near_chance(clean_accuracy: float, num_classes: int) -> bool:
    """Whether ``clean_accuracy`` is close to chance for ``num_classes`` classes (:data:`CHANCE_FACTOR`)."""
    return clean_accuracy <= CHANCE_FACTOR / max(num_classes, 1)


def near_chance_caution(result: dict[str, Any], label: str | None = None) -> str | None:
    """One sentence naming the models of ``result`` that score close to chance on clean data, or None; the
    grid says so when it runs, and a leaderboard or report read later must say it too."""
    classes = result["dataset"].get("num_classes")
    if not classes:
        return None
    low = [m for m in result["models"] if near_chance(m["clean_accuracy"], classes)]
    if not low:
        return None
    named = ", ".join(f"{m['id']} ({format_pct(m['clean_accuracy'])}% after {m['train']['steps']} steps)" for m in low)
    where = f" of {label}" if label else ""
    return (f"{named}{where} {'scores' if len(low) == 1 else 'score'} close to chance ({100 / classes:.0f}%) on "
            f"clean data: {'its' if len(low) == 1 else 'their'} attack numbers and ranks mean nothing (too short "
            f"a schedule, or a setting that stopped it from learning)")


#: The splits a grid can attack and score: the test set, or the images held out of training for choosing
#: settings (a lambda) without looking at the test set. A result without ``eval.split`` scored the first.
SCORED_SPLITS = ("test", "validation")


def scored_split(result: dict[str, Any]) -> str:
    """The images a result scored: ``test``, or ``validation`` (held out of training); older files, which
    lack ``eval.split``, scored the test set."""
    return result["eval"].get("split", SCORED_SPLITS[0])


def scored_images(result: dict[str, Any]) -> str:
    """``2000 test images`` or ``5000 validation images``."""
    return f"{result['eval']['n_test']} {scored_split(result)} images"


class Grid:
    """The cells of one result, indexed by (attack, eps, source, target)."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.model_ids = [m["id"] for m in result["models"]]
        self.cells = {
            (c["attack"], eps_key(c["eps"]), c["source"], c["target"]): c for c in result["cells"]
        }

    def accuracy(self, attack: str, eps: float | None, source: str, target: str) -> float | None:
        """Accuracy of ``target`` on examples crafted against ``source``; None if the cell is missing."""
        cell = self.cells.get((attack, eps_key(eps), source, target))
        return None if cell is None else float(cell["accuracy"])

    def count(self, attack: str, eps: float | None, source: str, target: str) -> int | None:
        """Number of images scored in a cell; None if the cell is missing."""
        cell = self.cells.get((attack, eps_key(eps), source, target))
        return None if cell is None else int(cell["count"])

    def white_box(self, attack: str, eps: float | None, model: str) -> float | None:
        """Accuracy of ``model`` on examples crafted against itself."""
        return self.accuracy(attack, eps, model, model)

    def transfer_to(self, attack: str, eps: float | None, model: str) -> float | None:
        """Mean accuracy of ``model`` on examples crafted against each *other* model (None if none)."""
        values = [
            a for s in self.model_ids if s != model if (a := self.accuracy(attack, eps, s, model)) is not None
        ]
        return fmean(values) if values else None

    def masking_margin(self, attack: str, eps: float | None, model: str) -> tuple[float, str] | None:
        """``(margin, source)``: how far ``model``'s white-box accuracy lies above its accuracy on the
        examples of the other model whose examples hurt it most (positive: transferred examples beat its own,
        a sign of masked gradients), and that model; None at eps 0 (nothing moves) or without the cells."""
        white_box = self.white_box(attack, eps, model)
        if white_box is None or eps == 0:
            return None
        largest = None
        for source in self.model_ids:
            a = self.accuracy(attack, eps, source, model)
            if source != model and a is not None and (largest is None or white_box - a > largest[0]):
                largest = (white_box - a, source)
        return largest

    def transfer_from(self, attack: str, eps: float | None, model: str) -> float | None:
        """Mean accuracy of the *other* models on examples crafted against ``model`` (None if none)."""
        values = [
            a for t in self.model_ids if t != model if (a := self.accuracy(attack, eps, model, t)) is not None
        ]
        return fmean(values) if values else None
