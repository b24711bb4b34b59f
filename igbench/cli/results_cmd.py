"""``igbench leaderboard``, ``validate``, ``plot`` and ``report``: work on result files."""

from __future__ import annotations

import click

from ..errors import ResultError
from ..results import DEFAULT_OUT, DEFAULT_RESULTS
from .options import check_writable_folder
from .paths import PathArg


@click.command("leaderboard", short_help="Render (or --check) the Markdown leaderboards.")
@click.option(
    "--results",
    "results_dir",
    default=DEFAULT_RESULTS,
    show_default=True,
    type=PathArg(file_okay=False),
    help="Directory of result files (*.json).",
)
@click.option(
    "--out",
    "out_dir",
    default=DEFAULT_OUT,
    show_default=True,
    type=PathArg(file_okay=False),
    help="Directory for the <dataset>.md leaderboards.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a leaderboard is missing or stale, or a result file is invalid.")
def leaderboard_command(results_dir: str, out_dir: str, check: bool) -> None:
    """Render one Markdown leaderboard per data set from the result files.

    The output depends only on the result files (no timestamps), so CI can run
    `igbench leaderboard --check` to make sure the committed leaderboards match them.
    """
    from ..results.io import result_files
    from ..results.leaderboard_files import check_leaderboards, fix_hint, render_all

    if check:
        problems = check_leaderboards(results_dir, out_dir)
        if problems:
            for problem in problems:
                click.echo(problem, err=True)
            raise ResultError(
                f"{len(problems)} leaderboard problem(s) listed above: fix any invalid result file, then "
                f"{fix_hint(results_dir, out_dir)}"
            )
        click.echo(f"leaderboards in {out_dir} are up to date with {results_dir}")
        return
    if not result_files(results_dir):  # nothing is written, and no folder made; only true orphans go
        click.echo(f"no result files in {results_dir}; nothing to render (run `igbench run` first)")
    else:
        check_writable_folder(out_dir, "--out")
    for path in render_all(results_dir, out_dir):
        click.echo(f"wrote {path}")


@click.command("validate", short_help="Check result files against the result schema.")
@click.argument("paths", nargs=-1, required=True, type=PathArg())
def validate_command(paths: tuple[str, ...]) -> None:
    """Check result files against the result schema (files, or directories of *.json).

    A file named explain-scores.json (what `igbench explain` writes beside its figures) is checked
    against the schema's explain and interpretability blocks instead, and a study's key and scores
    (`igbench study`; by their content, whatever their names) against the study schema. Prints `ok PATH` for each valid file
    and one line per invalid file naming the failing field.
    """
    from functools import partial

    from ..interpret.explain import SCORES_FILE
    from ..results.io import expand_paths, read_result, read_scores
    from ..study.record import STUDY_FILES, read_study_file, study_file_or_result

    readers = {SCORES_FILE: read_scores, **{name: partial(read_study_file, part=part) for name, part in STUDY_FILES.items()}}
    files, unreadable, bad = [], 0, 0
    for given_path in paths:  # a missing path is one problem among the others, not the only one said
        try:
            files += expand_paths([given_path])
        except ResultError as exc:
            unreadable += 1
            click.echo(str(exc), err=True)
    for path in files:
        try:
            (readers.get(path.name) or partial(study_file_or_result, read_result=read_result))(path)
        except ResultError as exc:
            bad += 1
            click.echo(str(exc), err=True)
        else:
            click.echo(f"ok {path}")
    problems = ([f"{bad} of {len(files)} result file(s) invalid"] if bad else []) + (
        [f"{unreadable} path(s) not found or without result files"] if unreadable else [])
    if problems:
        raise ResultError(f"{' and '.join(problems)} (see above); fix them or re-run the command recorded in them")


@click.command("plot", short_help="Plot accuracy against eps from a result file.")
@click.argument("result", type=PathArg(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=PathArg(file_okay=False),
    help="Folder for the PNG files (default: <result stem>-plots/ next to RESULT, so each result has its own).",
)
def plot_command(result: str, out_dir: str | None) -> None:
    """Plot accuracy versus eps (white-box and transfer panels) for each eps attack of RESULT.

    Writes <dataset>-<attack>-accuracy-vs-eps.png per attack into <result stem>-plots/ beside RESULT
    (runs/mnist-0123abcd.json -> runs/mnist-0123abcd-plots/), as `igbench explain` puts its figures in
    <result stem>-explain/. Two results plotted into one --out folder overwrite each other's files when
    they share a data set and an attack.
    """
    from ..results.io import read_result
    from ..results.plot import default_plot_dir, plot_accuracy_vs_eps

    data = read_result(result)
    folder = out_dir if out_dir else default_plot_dir(result)
    if any(attack["eps"] for attack in data["attacks"]):  # else nothing is written, and no folder made
        check_writable_folder(folder, "--out" if out_dir else "plot folder")
    paths = plot_accuracy_vs_eps(data, folder)
    if not paths:
        click.echo(f"{result}: no attack with eps values; nothing to plot")
    for path in paths:
        click.echo(str(path))


@click.command("report", short_help="Print the numbers behind the paper's claims.")
@click.argument("results", nargs=-1, required=True, type=PathArg(dir_okay=False))
def report_command(results: tuple[str, ...]) -> None:
    """Print the numbers behind the paper's claims for each RESULT file, as Markdown.

    Clean accuracy and input-gradient norms; per attack and eps, accuracy on examples transferred
    from the undefended model, white-box accuracy and how well each model's examples transfer; JSMA
    success and pixels changed; gradient interpretability (after `igbench explain`); and a
    gradient-masking check. REPLICATION.md quotes this output.
    """
    from ..results.io import read_result
    from ..results.report import render_report

    click.echo("\n".join(render_report(read_result(path), str(path)) for path in results))


@click.command("compare", short_help="How far two runs of one grid differ.")
@click.argument("result_a", type=PathArg(dir_okay=False))
@click.argument("result_b", type=PathArg(dir_okay=False))
def compare_command(result_a: str, result_b: str) -> None:
    """How far RESULT_B's numbers are from RESULT_A's (the same grid run another way).

    Per model, both files' clean accuracy, input-gradient norm and training seconds; per attack, over the
    attacked cells both files hold, the mean absolute and mean signed accuracy difference and the
    largest one, white-box and transfer apart. For checking a change that should not move the numbers:
    --precision bf16, another thread count or machine. Models are matched by id, or by configuration hash
    when the files name one model two ways (gradreg with --param lambda=1000, gradreg[lambda=1000]). Before
    the tables, a warning line names each setting in which the two grids differ (data variant, test images,
    a shared model's training); files that score other data sets (or test against validation images), or
    have no attacked cell in common, are refused with the reason (status 2).

    \b
    Example:
      igbench compare leaderboards/short/results/paper-notmnist.json leaderboards/precision/notmnist-bf16-short.json
    """
    from ..errors import UsageError
    from ..results.compare import no_shared_cells_reason, other_images_reason, render_comparison
    from ..results.io import read_result

    a, b = read_result(result_a), read_result(result_b)
    if reason := other_images_reason(a, b):  # a table of differences between unrelated numbers, exit 0
        raise UsageError(f"{result_a} and {result_b} score no image in common: {reason}; compare two runs of "
                         "the same grid")
    click.echo(render_comparison(a, b, result_a, result_b))
    reason = no_shared_cells_reason(a, b)
    if reason:
        raise UsageError(f"{result_a} and {result_b} have no attacked cell (eps > 0) in common: {reason}; "
                         "compare two runs of the same grid")


@click.command("spread", short_help="How much a grid's numbers move between seeds.")
@click.argument("results", nargs=-1, required=True, type=PathArg())
@click.option("--against", metavar="MODEL", help="Also show each model's clean and white-box accuracy minus MODEL's, paired "
              "by seed (models of one seed share initialisation and batch order, so their difference varies "
              "less than either number), and in how many seeds it was above.")
def spread_command(results: tuple[str, ...], against: str | None) -> None:
    """How much a grid's numbers move between seeds: RESULTS are runs of one grid with different --seed
    (files, or a directory of them).

    Per model, the mean and sample standard deviation of clean accuracy (with the lowest and highest)
    and of the input-gradient norm; per attack and eps, of each model's white-box accuracy; per attack,
    the median and the largest standard deviation of the transfer cells. A gap between two defenses no
    wider than these deviations is within what a new seed changes. Files that differ in anything but the
    seed (data, test images, training settings, models, attacks) are an error naming the difference.

    \b
    Example (three seeds of a short grid):
      for s in 0 1 2; do igbench run --defense gradreg --attack fgsm --steps 500 --seed $s --out runs/seeds/s$s.json; done
      igbench spread runs/seeds --against none
    """
    from ..errors import UsageError
    from ..results.io import expand_paths, read_result
    from ..results.spread import render_spread, spread_problems

    paths = [str(p) for p in expand_paths(results)]
    data = [read_result(p) for p in paths]
    problems = spread_problems(data, paths)
    if problems:
        for problem in problems[1:]:
            click.echo(problem, err=True)
        raise UsageError(problems[0] + (f" (and {len(problems) - 1} more problem(s) above)" if len(problems) > 1 else ""))
    ids = [m["id"] for m in data[0]["models"]]
    if against is not None and against not in ids:
        raise UsageError(f"--against {against}: no such model in {paths[0]}; choose one of {', '.join(ids)}")
    click.echo(render_spread(data, paths, against))


COMMANDS = [leaderboard_command, validate_command, plot_command, report_command, compare_command, spread_command]
