"""Accuracy-versus-eps figures (like the original study's), one PNG per eps attack of a result."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from .grid import Grid, scored_images


def plot_filename(dataset: str, attack: str) -> str:
    """``<dataset>-<attack>-accuracy-vs-eps.png`` with characters unsafe in file names replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{dataset}-{attack}").strip("-.")
    return f"{safe}-accuracy-vs-eps.png"


def default_plot_dir(result_path: str | os.PathLike[str]) -> Path:
    """Where ``igbench plot`` writes by default: ``<result stem>-plots/`` beside the result file."""
    path = Path(result_path)
    return path.with_name(f"{path.stem}-plots")


def plot_accuracy_vs_eps(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write one two-panel PNG per eps attack of ``result`` (white-box and transfer accuracy vs eps).

    Left panel: each model's accuracy on examples crafted against itself. Right panel: each model's
    mean accuracy on the examples crafted against every *other* model of the result. Attacks without
    eps are skipped. Returns the written paths, in the order of ``result["attacks"]``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = Grid(result)
    dataset = result["dataset"]["name"]
    n_models = len(grid.model_ids)
    written: list[Path] = []
    for attack in result["attacks"]:
        if not attack["eps"]:
            continue
        name, eps_values = attack["name"], sorted(float(e) for e in attack["eps"])
        fig, (ax_wb, ax_tr) = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
        if n_models > 10:  # the default cycle has 10 colours: a sweep of 14 models drew two lines alike
            colours = plt.cm.tab20.colors
            for ax in (ax_wb, ax_tr):
                ax.set_prop_cycle(color=[colours[i % len(colours)] for i in range(n_models)])
        drew_transfer = False
        for model in grid.model_ids:
            for ax, value in (
                (ax_wb, lambda e, m=model: grid.white_box(name, e, m)),
                (ax_tr, lambda e, m=model: grid.transfer_to(name, e, m)),
            ):
                points = [(e, v) for e in eps_values if (v := value(e)) is not None]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, [100 * y for y in ys], marker="o", markersize=4, label=model)  # in %, as the tables
                    drew_transfer = drew_transfer or ax is ax_tr
        ax_wb.set_title("White-box: accuracy on examples crafted against the model itself", fontsize=9)
        if n_models > 1 and not drew_transfer:  # a sweep scores each model on its own examples only
            ax_tr.set_title("Transfer: none in this result\n(white-box cells only, as a sweep)", fontsize=9)
        elif n_models > 1:
            ax_tr.set_title(
                f"Transfer: mean accuracy on examples crafted against\nthe other {n_models - 1} model(s) (mean over sources ≠ target)",
                fontsize=9,
            )
        else:
            ax_tr.set_title("Transfer: needs at least two models (none here)", fontsize=9)
        for ax in (ax_wb, ax_tr):
            ax.set_xlabel("eps")
            ax.set_ylim(-2, 102)
            ax.grid(True, alpha=0.3)
        ax_wb.set_ylabel("accuracy (%)")
        handles, labels = ax_wb.get_legend_handles_labels()
        beside = bool(handles) and n_models > 6  # many lines: the legend goes beside the panels, not over them
        if beside:
            fig.legend(handles, labels, fontsize=7, loc="center right")
        elif handles:
            ax_wb.legend(handles, labels, fontsize=8, loc="best")
        fig.suptitle(f"{dataset}: {name} ({scored_images(result)})", fontsize=11)
        if beside:
            fig.tight_layout(rect=(0, 0, 0.8, 1))
        else:
            fig.tight_layout()
        target = Path(out_dir) / plot_filename(dataset, name)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
        plt.close(fig)
        written.append(target)
    return written
