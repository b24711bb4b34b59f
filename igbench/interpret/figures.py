"""The paper's two figures: input-gradient (saliency) grids and adversarial-example grids.

Both lay out one row per model (labelled with the model id) and one column per test image, with the
clean images as the first row. Each cell is ``CELL_INCHES`` square; the row labels take
``LABEL_INCHES`` on the left and the column titles ``TITLE_INCHES`` on top of every row, so a figure
is ``LABEL_INCHES + cols * CELL_INCHES`` wide and ``rows * (CELL_INCHES + TITLE_INCHES)`` high (at
``DPI``). matplotlib (Agg backend) is imported inside the functions.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..atomic import atomic_path

CELL_INCHES = 1.0
TITLE_INCHES = 0.25
LABEL_INCHES = 1.4
DPI = 100
_MAX_LABEL = 24


def figure_size(rows: int, cols: int) -> tuple[float, float]:
    """``(width, height)`` in inches of a grid with ``rows`` rows and ``cols`` image columns."""
    return LABEL_INCHES + cols * CELL_INCHES, rows * (CELL_INCHES + TITLE_INCHES)


def _new_grid(rows: int, cols: int):
    """A figure and a ``rows x cols`` array of axes placed at exact inch positions (no ticks)."""
    from matplotlib.figure import Figure

    width, height = figure_size(rows, cols)
    fig = Figure(figsize=(width, height), dpi=DPI)
    row_h = CELL_INCHES + TITLE_INCHES
    pad = 0.04 * CELL_INCHES
    axes = []
    for r in range(rows):
        line = []
        for c in range(cols):
            left = LABEL_INCHES + c * CELL_INCHES + pad
            bottom = height - (r + 1) * row_h + pad
            size = CELL_INCHES - 2 * pad
            ax = fig.add_axes((left / width, bottom / height, size / width, size / height))
            ax.set_xticks([])
            ax.set_yticks([])
            line.append(ax)
        axes.append(line)
    return fig, axes


def _label_row(fig, axes_row, text: str) -> None:
    text = text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"
    axes_row[0].set_ylabel(text, rotation=0, ha="right", va="center", fontsize=8, labelpad=6)


def _to_display(img):
    """A ``(C, H, W)`` tensor -> a numpy array imshow accepts (``(H, W)`` grey, or ``(H, W, 3)``)."""
    arr = img.detach().float().cpu()
    if arr.shape[0] == 3:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else arr * 0
        return arr.permute(1, 2, 0).numpy()
    return arr.mean(0).numpy()


def _save(fig, out_png) -> str:
    """Write the figure as PNG atomically; returns the path."""
    with atomic_path(out_png) as tmp:
        with open(tmp, "wb") as fh:
            fig.savefig(fh, format="png", dpi=DPI)
    return os.fspath(out_png)


def _show_image(ax, img, vmin=None, vmax=None) -> None:
    shown = _to_display(img)
    if shown.ndim == 3:
        ax.imshow(shown, interpolation="nearest")
    else:
        ax.imshow(shown, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")


def saliency_grid(models: Mapping[str, Any], x, out_png, n_images: int = 8, titles: list[str] | None = None,
                  batch_size: int = 256) -> str:
    """Draw the input gradients of every model on the first ``n_images`` of ``x``; returns the PNG path.

    Row 0 holds the images, then one row per model (labelled with its id). Each cell is the gradient of
    the sum of log-probabilities over all classes (the paper's figure), summed over channels, in grey on
    a colour scale symmetric around 0 and scaled to that cell's largest magnitude: mid-grey is 0, white
    raises and black lowers the summed log-probability. ``titles`` (one per image) caption row 0.
    """
    from .measures import input_gradients

    x = x[: max(1, int(n_images))].detach()
    cols = int(x.shape[0])
    fig, axes = _new_grid(1 + len(models), cols)
    _label_row(fig, axes[0], "image")
    for c in range(cols):
        _show_image(axes[0][c], x[c])
        if titles is not None and c < len(titles):
            axes[0][c].set_title(str(titles[c]), fontsize=8, pad=2)
    for r, (model_id, model) in enumerate(models.items(), start=1):
        grads = input_gradients(model, x, batch_size=batch_size).sum(dim=1)
        _label_row(fig, axes[r], str(model_id))
        for c in range(cols):
            g = grads[c].numpy()
            lim = float(abs(g).max()) or 1.0
            axes[r][c].imshow(g, cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
    return _save(fig, out_png)


def adversarial_grid(models: Mapping[str, Any], x, y, attack, params: dict[str, Any] | None, ctx, out_png,
                     n_images: int = 8, class_names: list[str] | None = None, batch_size: int = 256) -> str:
    """Draw adversarial examples crafted against each model; returns the PNG path.

    Row 0 holds the clean images, titled with their label (``label→target`` for a targeted attack such
    as TGSM, whose default next-class target makes the perturbation look like the target class, as in
    the paper). Then one row per model: the example crafted against that model (white-box) by
    ``attack`` with ``params`` (e.g. ``{"eps": 0.3}``), shown on the data's clip range, titled with the
    model's prediction on it; red when the attack succeeded (the target was hit, or, untargeted, the
    prediction is wrong).
    """
    import torch

    from ..engine.attack import run_attack, success_mask

    def name(k: int) -> str:
        return class_names[k] if class_names and 0 <= k < len(class_names) else str(k)

    x, y = x[: max(1, int(n_images))].detach(), y[: max(1, int(n_images))].detach()
    cols = int(x.shape[0])
    fig, axes = _new_grid(1 + len(models), cols)
    lo, hi = float(ctx.clip_min), float(ctx.clip_max)
    rows = []
    for model_id, model in models.items():
        run = run_attack(attack, params, model, x, y, ctx, batch_size=batch_size, progress=False)
        targets = None if run.targets is None else run.targets.cpu()
        rows.append((model_id, run.x_adv.cpu(), run.predictions.cpu(), targets))
    first_targets = rows[0][3] if rows else None
    _label_row(fig, axes[0], "clean")
    for c in range(cols):
        _show_image(axes[0][c], x[c], lo, hi)
        title = name(int(y[c]))
        if first_targets is not None and all(r[3] is not None and bool(torch.equal(r[3], first_targets)) for r in rows):
            title += f"→{name(int(first_targets[c]))}"
        axes[0][c].set_title(title, fontsize=8, pad=2)
    for r, (model_id, x_adv, pred, targets) in enumerate(rows, start=1):
        _label_row(fig, axes[r], str(model_id))
        hits = success_mask(pred, y, targets).tolist()  # the rule the result's success rates use
        for c in range(cols):
            _show_image(axes[r][c], x_adv[c], lo, hi)
            axes[r][c].set_title(f"pred {name(int(pred[c]))}", fontsize=8, pad=2, color="red" if hits[c] else "black")
    return _save(fig, out_png)
