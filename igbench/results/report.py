"""The numbers behind the paper's claims, read from result files and rendered as Markdown tables.

``igbench report RESULT...`` prints them; REPLICATION.md quotes its output, so every number there can
be traced to a result file (named in each section) and regenerated. Per result file:

* clean accuracy and mean input-gradient norm per model;
* per attack with eps: accuracy of each model on examples transferred from the undefended model
  (``none``), white-box accuracy, and the mean accuracy of the *other* models on each model's
  examples (how well its examples transfer);
* per attack without eps (JSMA): white-box success rate and the mean number of changed pixels (L0);
* the interpretability measures of input gradients, when ``igbench explain`` has scored them;
* a gradient-masking check: how far white-box accuracy is from zero at the largest eps, and the
  largest amount by which a transferred attack beats the white-box one on the same target.
"""

from __future__ import annotations

from typing import Any

from .grid import Grid, format_eps, near_chance_caution, scored_images
from .grid import format_pct as _pct

REFERENCE = "none"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def model_table(result: dict[str, Any]) -> str:
    """Each model's clean accuracy and input-gradient norm; its architecture too when the models differ in it
    (``--defense none@mlp``), as an input-gradient norm compares across architectures only with care."""
    rows = [[m["id"], _pct(m["clean_accuracy"]), f"{m['input_grad_norm']:.4g}"] for m in result["models"]]
    headers = ["model", "clean accuracy %", "mean ‖dCE/dx‖"]
    if len({m["arch"] for m in result["models"]}) > 1:
        headers.insert(1, "arch")
        for row, m in zip(rows, result["models"]):
            row.insert(1, m["arch"])
    return _table(headers, rows)


def eps_tables(result: dict[str, Any], attack: dict[str, Any]) -> str:
    """Transfer-from-``none``, white-box and transfer-from-each-model tables for one eps attack."""
    grid, name, models = Grid(result), attack["name"], [m["id"] for m in result["models"]]
    eps_values = attack["eps"]
    headers = ["eps"] + models
    parts = []
    transfer = any(c["source"] != c["target"] for c in result["cells"])  # a sweep scores white-box only
    if transfer and REFERENCE in models:
        rows = [[format_eps(e)] + [_pct(grid.accuracy(name, e, REFERENCE, t)) for t in models] for e in eps_values]
        parts.append(f"Accuracy % of each model on {name} examples crafted against `{REFERENCE}` "
                     f"(the `{REFERENCE}` column is white-box):\n\n" + _table(headers, rows))
    rows = [[format_eps(e)] + [_pct(grid.white_box(name, e, m)) for m in models] for e in eps_values]
    parts.append(f"White-box accuracy % under {name}:\n\n" + _table(headers, rows))
    if not transfer:
        return "\n\n".join(parts)
    rows = [[format_eps(e)] + [_pct(grid.transfer_to(name, e, m)) for m in models] for e in eps_values]
    parts.append(f"Mean accuracy % of each model on {name} examples crafted against the *other* models "
                 "(black-box transfer; higher is more robust):\n\n" + _table(headers, rows))
    rows = [[format_eps(e)] + [_pct(grid.transfer_from(name, e, m)) for m in models] for e in eps_values]
    parts.append(f"Mean accuracy % of the *other* models on {name} examples crafted against each model "
                 "(lower = its examples transfer better):\n\n" + _table(headers, rows))
    return "\n\n".join(parts)


def _targeted(result: dict[str, Any], attack: str) -> bool | None:
    """Whether ``attack`` ran targeted in ``result``: as the result records it, else (older files) ART's
    ``targeted`` flag, else a recorded target rule, else what the installed plugin says (older files
    recorded JSMA without its target)."""
    record = next((a for a in result["attacks"] if a["name"] == attack), {})
    if "targeted" in record:
        return bool(record["targeted"])
    params = record.get("params", {})
    if "targeted" in params:
        return bool(params["targeted"])
    if "target" in params:
        return True
    from ..errors import IgbenchError
    from ..registry import get_registry

    try:
        return bool(get_registry().get("attack", attack).is_targeted(params))
    except IgbenchError:  # a plugin not installed here: unknown
        return None


def stats_table(result: dict[str, Any], attack: str) -> str:
    """White-box success rate and perturbation sizes per source model, for an attack without eps."""
    grid = Grid(result)
    rows = []
    for s in result.get("attack_stats", []):
        if s["attack"] == attack and s.get("eps") is None:
            rows.append([s["source"], _pct(s["success_rate"]), f"{s['l0']:.1f}", f"{s['l2']:.2f}",
                         _pct(grid.white_box(attack, None, s["source"])),
                         _pct(grid.transfer_from(attack, None, s["source"]))])
    # an untargeted success counts images the model got wrong before the attack too: with a weak model it
    # read as a strong attack that changed no pixel
    note = {True: "success: classified as the attack's target",
            False: "success: classified as anything but the true label, images the model misclassified before the "
                   "attack included (compare 100 - clean accuracy)",
            None: "success: the target reached if the attack is targeted, else the true label left (images "
                  "misclassified before the attack included)"}[_targeted(result, attack)]
    return (f"{attack}, per model attacked (white-box; {note}):\n\n"
            + _table(["model", "success %", "mean pixels changed (L0)", "mean L2", "accuracy %",
                      "other models' accuracy %"], rows))


def _interpretability_cell(row: dict[str, Any], key: str) -> str:
    """One score to 3 decimals; the mean over the examples that reached their target also says over how many,
    since on a model the attack rarely moves to the target it can rest on a handful of images."""
    from ..interpret.target_alignment import REACHED_ALIGNMENT_KEY, REACHED_KEY

    value = row.get(key)
    if value is None:
        return "-"
    text = f"{value:.3f}"
    if key == REACHED_ALIGNMENT_KEY and row.get(REACHED_KEY) is not None and row.get("n_images"):
        text += f" (n={round(row[REACHED_KEY] * row['n_images'])})"
    return text


def interpretability_table(result: dict[str, Any]) -> str | None:
    from ..interpret.target_alignment import KEY as ALIGNMENT_KEY, KEYS as ALIGNMENT_KEYS, REACHED_ALIGNMENT_KEY, REACHED_KEY
    from ..interpret.measures import MEASURES

    rows = result.get("interpretability") or []
    if not rows:
        return None
    keys = [k for k in (*MEASURES, *ALIGNMENT_KEYS) if any(k in r for r in rows)]  # explain's table order
    body = [[r["model"]] + [_interpretability_cell(r, k) for k in keys] + [str(r.get("n_images", "-"))]
            for r in rows]
    how = result.get("explain")
    made = ("gradient of the summed log-probabilities" if how is None or how["gradient"] == "logprob_sum"
            else "gradient of the loss")
    if how is not None and ALIGNMENT_KEY in keys:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(how["attack_params"].items()))
        made += (f"; {ALIGNMENT_KEY}: cosine of the {how['attack']} ({shown}) perturbation with the "
                 "target-minus-true class-mean image, higher = more target-like")
        if REACHED_KEY in keys:
            made += (f"; {REACHED_KEY}: share of the examples classified as their target, "
                     f"{REACHED_ALIGNMENT_KEY}: the cosine over those only (n: how many)")
        if how.get("random_sign_alignment") is not None:
            made += f"; random signs of the same size: {how['random_sign_alignment']:.3f}"
    return f"Input-gradient interpretability (`igbench explain`; {made}):\n\n" + _table(["model"] + keys + ["images"], body)


def masking_check(result: dict[str, Any]) -> str:
    """Per eps attack: white-box accuracy at the largest eps, and for each target model the largest margin
    by which examples transferred from another model beat the white-box ones (a sign of masked gradients)."""
    grid, models = Grid(result), [m["id"] for m in result["models"]]
    lines = []
    for attack in result["attacks"]:
        if not attack["eps"]:
            continue
        name, top = attack["name"], max(attack["eps"])
        lines.append(f"- {name}: white-box accuracy at eps {format_eps(top)}: "
                     + ", ".join(f"{m} {_pct(grid.white_box(name, top, m))}%" for m in models))
        margins = []
        for t in models:
            worst = None
            for e in attack["eps"]:
                margin = grid.masking_margin(name, e, t)
                if margin is not None and (worst is None or margin[0] > worst[0]):
                    worst = (margin[0], e, margin[1])
            if worst is not None:
                margins.append(f"{t} {100 * worst[0]:+.1f} ({worst[2]}, eps {format_eps(worst[1])})")
        if margins:
            lines.append("  largest margin (points) by which transferred examples beat white-box ones, per target "
                         "model: " + "; ".join(margins))
    if not lines:  # the section used to be a bare heading
        lines.append("- no attack with an eps sweep in this result: the check compares white-box and transferred "
                     "examples across eps, so there is nothing to compare")
    return "Gradient-masking check:\n\n" + "\n".join(lines)


def render_report(result: dict[str, Any], label: str) -> str:
    """All sections for one result; ``label`` names its file in the heading."""
    parts = [f"## {label}", f"Command: `{result['command']}`",
             f"Data: {result['dataset']['name']} ({result['dataset']['variant']}), "
             f"{scored_images(result)} scored; git {result['environment'].get('git_commit') or '-'}",
             model_table(result)]
    if caution := near_chance_caution(result):
        parts.append(f"> Caution: {caution}.")
    for attack in result["attacks"]:
        if attack["eps"]:
            parts.append(f"### {attack['name']}\n\n" + eps_tables(result, attack))
        else:
            parts.append(f"### {attack['name']}\n\n" + stats_table(result, attack["name"]))
    table = interpretability_table(result)
    if table:
        parts.append("### interpretability\n\n" + table)
    parts.append("### sanity\n\n" + masking_check(result))
    return "\n\n".join(parts) + "\n"
