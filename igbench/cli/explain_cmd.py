"""``igbench explain``: input-gradient and adversarial-example figures, and interpretability scores."""

from __future__ import annotations

import click

from ..interpret.explain import FIGURE_EPS
from .options import attack_on_result, cache_dir_option, check_writable_folder, parse_number, plugins_of
from .number_types import WHOLE
from .paths import PathArg


@click.command("explain", short_help="Input-gradient and adversarial-example figures of a result.")
@click.argument("result", type=PathArg(dir_okay=False))
@click.option("--out", "out_dir", type=PathArg(file_okay=False), help="Folder for the figures (default: <result stem>-explain/ next to the result).")
@click.option("--n-images", type=WHOLE, default=8, show_default=True, help="Test images (columns) in each figure.")
@click.option("--max-images", type=WHOLE, default=1000, show_default=True, help="Scored test images used for the measures (at most the result's eval.n_test).")
@click.option("--attack", default="tgsm", show_default=True, help="Attack of the adversarial figure (tgsm: next-class target, as in the paper).")
@click.option("--eps", default=None, callback=lambda ctx, param, value: parse_number(value, "--eps"),
              help=f"Perturbation size of the attack (default {FIGURE_EPS:g}; 8/255 style fractions too; an error for "
                   f"attacks without eps).")
@click.option("--param", multiple=True, metavar="[PLUGIN.]NAME=VALUE", help="Attack or dataset parameter, e.g. steps=3 or notmnist.split_seed=1 (repeatable).")
@click.option("--gradient", type=click.Choice(["logprob_sum", "loss"]), default="logprob_sum", show_default=True, help="Gradient scored: of the sum of log-probabilities (the paper's figures) or of the loss at the true label.")
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--data-dir", envvar="IGBENCH_DATA_DIR", type=PathArg(file_okay=False), help="Folder holding the data sets (env IGBENCH_DATA_DIR).")
@cache_dir_option
@click.option("--update-result/--no-update-result", default=True, show_default=True, help="Write the scores into the result's `interpretability` list.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars while each model is attacked (default on).")
def explain_command(result, out_dir, n_images, max_images, attack, eps, param, gradient, device, data_dir, cache_dir,
                    update_result, progress) -> None:
    """Gradient and adversarial-example figures, and gradient interpretability scores.

    Loads the result's models from the checkpoint cache and its data set, then writes two figures:
    saliency.png (rows: models; columns: test images; each cell the input gradient of the sum of
    log-probabilities, grey, like the paper's gradient figure) and adversarial-<attack>-eps<eps>.png
    (the examples crafted against each model: the top row holds the clean images titled label→target,
    or the label alone for an untargeted attack; each model's row titles its prediction, in red where
    the attack succeeded). It scores each model's
    gradients on the result's test images (total variation, share on the digit, correlation with the
    image, entropy, Gini) and how much the attack's examples against it draw their target class
    (adv_target_alignment: cosine of the perturbation with the target-minus-true class-mean image, a
    stand-in for the paper's human study), prints them, writes them with the attack's settings to
    explain-scores.json beside the figures and, by default, adds them to the result file.
    adv_target_reached is the share of examples the model classifies as their target, and
    adv_target_alignment_reached the cosine over those only: a model that one step rarely moves to the
    target scores mostly failed perturbations in adv_target_alignment (the study's iterated TGSM at eps
    0.3: --param steps=3 --param step_size=0.1; with --param stop_at_target=true each image stops at the
    first iterate the model reads as its target, the kind of example the study's people judged).

    \b
    Examples:
      igbench explain runs/mnist-0123abcd.json --data-dir ../shared/data
      igbench explain runs/mnist-0123abcd.json --param steps=3 --param step_size=0.1 --out runs/iterated --no-update-result
      igbench explain runs/mnist-0123abcd.json --param steps=30 --param step_size=0.01 --param stop_at_target=true --out runs/stopped --no-update-result
    """
    from ..grid_config import resolve_device
    from ..errors import UsageError
    from ..interpret.explain import explain_result, other_results_figures
    from ..results.grid import scored_split
    from ..registry import get_registry
    from ..results.io import read_result
    from . import echo_plugin_problems

    echo_plugin_problems()
    get_registry().get("attack", attack)  # an unknown attack before a missing result: says what failed to load
    result_data = read_result(result)
    with plugins_of(result_data):  # a plugin package the result used and this machine lacks: named
        plugin, attack_params, dataset_params = attack_on_result(result_data, attack, eps, param)
        if out_dir:
            check_writable_folder(out_dir, "--out")  # before the gradients and attacks are computed
            if (owner := other_results_figures(out_dir, result, result_data["run_id"])) is not None:
                raise UsageError(f"--out {out_dir} holds the figures of {owner}, which this would overwrite and mix "
                                 f"with {result}'s; choose another --out, or delete {out_dir} to replace them")
        out = explain_result(result, out_dir, n_images=n_images, attack=attack, attack_params=attack_params,
                             dataset_params=dataset_params, data_dir=data_dir, cache_dir=cache_dir,
                             device=resolve_device(device), max_images=max_images, gradient=gradient,
                             update_result=update_result, progress=progress, result=result_data)
    click.echo(render_scores(out.scores, out.n_images, gradient, scored_split(result_data),
                             untargeted=None if plugin.is_targeted(plugin.resolve_params(attack_params)) else attack))
    if out.random_sign_alignment is not None:
        click.echo(f"random signs of the same eps reach adv_target_alignment {out.random_sign_alignment:.3f} (the noise level)")
    click.echo(f"\nsaliency figure:    {out.saliency_png}")
    click.echo(f"adversarial figure: {out.adversarial_png}")
    click.echo(f"scores record:      {out.scores_json}")
    if out.result_updated:
        click.echo(f"scores written to {result} (interpretability)")


def render_scores(scores: dict, n_images: int, gradient: str, split: str = "test", untargeted: str | None = None) -> str:
    """A plain-text table of the scores (one row per model) with a line saying which direction is better.
    ``untargeted``: the name of the attack when it aimed at no target, whose "target" the lines explain."""
    from tabulate import tabulate

    from ..interpret.measures import MEASURES

    from ..interpret.target_alignment import KEY as ALIGNMENT_KEY, KEYS as ALIGNMENT_KEYS, REACHED_ALIGNMENT_KEY, REACHED_KEY

    keys = list(MEASURES) + list(ALIGNMENT_KEYS)
    rows = [[mid] + [("-" if s.get(k) is None else f"{s[k]:.3f}") for k in keys] for mid, s in scores.items()]
    table = tabulate(rows, headers=["model"] + keys, tablefmt="simple", disable_numparse=True)
    lower = ", ".join(k for k, d in MEASURES.items() if d < 0)
    higher = ", ".join([k for k, d in MEASURES.items() if d > 0] + [ALIGNMENT_KEY])
    return (f"input gradients ({gradient}) and the attack's examples on {n_images} {split} images\n{table}\n"
            f"more interpretable: lower {lower}; higher {higher}\n"
            f"{ALIGNMENT_KEY}: cosine of each adversarial perturbation with the (target - true) class-mean image; "
            f"{REACHED_KEY}: share of examples the model classifies as their target; "
            f"{REACHED_ALIGNMENT_KEY}: the cosine over those examples only"
            + (f"\n{untargeted} is untargeted: an example's target is the class the model reads it as, so "
               f"{REACHED_KEY} is the attack's success rate (any class but the label)" if untargeted else ""))


COMMANDS = [explain_command]
