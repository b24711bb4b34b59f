"""`--help` texts as a user reads them: accurate for the command, examples laid out as written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from igbench.cli import cli


def _help(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def _option_help(text: str, option: str) -> str:
    """The help of ``option`` in a --help text, its wrapped lines joined."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(option + " "))
    out = [lines[start]]
    for line in lines[start + 1:]:
        if line.lstrip().startswith("-"):
            break
        out.append(line.strip())
    return " ".join(" ".join(out).split())


def test_train_help_speaks_of_training_not_of_attacks():
    """train attacks nothing, yet shared the --n-test help "Test images attacked and scored" with run."""
    train = _help("train")
    assert "attacked" not in _option_help(train, "--n-test")
    assert "clean accuracy" in _option_help(train, "--n-test")
    assert "attack" not in _option_help(train, "--seed")
    assert "attacks" not in _option_help(train, "--precision")
    assert "attacked" not in _option_help(train, "--score-on") and "clean accuracy" in _option_help(train, "--score-on")
    run = _help("run")
    assert "attacked and scored" in _option_help(run, "--n-test")  # run keeps its own wording
    assert "attack choices" in _option_help(run, "--seed")


@pytest.mark.parametrize("command, example", [
    (("sweep",), ['igbench sweep --config configs/paper-mnist.toml --defense gradreg --sweep '
                  '"lambda=100,1000,10000" \\', "--attack fgsm --data-dir ../shared/data"]),
    (("sweep",), ['igbench sweep --config configs/paper-mnist.toml --defense gradreg --sweep '
                  '"lambda=logspace(2,5,13)" \\', "--attack fgsm --score-on validation --n-test 5000 --data-dir "
                  "../shared/data"]),
    (("cache", "export"), ["igbench cache export leaderboards/results/paper-mnist-full.json --out "
                           "paper-mnist-full-checkpoints.tar"]),
])
def test_examples_keep_their_lines(command, example):
    """A line continuation in the sweep docstring left a run of spaces in the command; the cache export
    example was re-wrapped into the paragraph before it."""
    lines = [line.strip() for line in _help(*command).splitlines()]
    at = lines.index(example[0])
    assert lines[at:at + len(example)] == example
    assert "   " not in " ".join(example)


def test_plugins_help_shows_the_params_default():
    text = _option_help(_help("plugins"), "--params / --no-params")
    assert "[default:no-params]" in text.replace(" ", "")  # Click may wrap at the hyphen


@pytest.mark.parametrize("group", [(), ("cache",), ("study",)])
def test_command_lists_show_whole_summaries(group):
    """`igbench --help` cut 10 of its 13 summaries off mid-sentence ("How far RESULT_B's numbers are from
    RESULT_A's (the same..."): each command now has a short help of its own."""
    text = CliRunner().invoke(cli, [*group, "--help"], terminal_width=80).output
    listed = text[text.index("Commands:"):].splitlines()[1:]
    assert len(listed) >= (2 if group == ("study",) else 4) and not [line for line in listed if line.rstrip().endswith("...")], listed


@pytest.mark.parametrize("args, expected", [
    (["run", "--attack", "fgsm", "--eps", "abc"],
     "Error: Invalid value for '--eps': 'abc' is not a number; use e.g. 0.1,0.2,0.3 or 8/255 (see `igbench run --help`)"),
    (["run", "--attack", "fgsm", "--eps", "8/0"], "'8/0' is not a number"),
    (["run", "--attack", "fgsm", "--eps", ","], "Error: Invalid value for '--eps': ',' has an empty value"),
    (["run", "--attack", "fgsm", "--eps", "0.1,,0.2"], "'0.1,,0.2' has an empty value"),
    (["train", "--steps", "x"], "Error: Invalid value for '--steps': 'x' is not a valid integer. (see `igbench train --help`)"),
    (["cache", "clean", "--older-than", "abc"], "is not a duration; use e.g. 30m, 1h or 2d (see `igbench cache clean --help`)"),
    (["report"], "Error: Missing argument 'RESULTS...'. (see `igbench report --help`)"),
    # a bare number was taken as seconds
    (["cache", "clean", "--older-than", "5"], "'5' has no unit; use e.g. 5s, 5m, 5h or 5d"),
    # Python's int() and float(), which Click used, read these as 20, 1, 0.01 and infinity
    (["train", "--steps", "2_0"], "'--steps': '2_0' is not a whole number in ASCII digits; write it without _, e.g. 20"),
    (["train", "--steps", "ten_k"], "'--steps': 'ten_k' is not a valid integer"),  # no number: no made-up 'tenk'
    (["run", "--seed", "\u0661"], "'--seed': '\u0661' is not a whole number in ASCII digits"),
    (["run", "--lr", "1_0e-3"], "'--lr': '1_0e-3' is not a number in ASCII digits; write it without _"),
    (["run", "--epochs", "inf"], "'--epochs': 'inf' is not a finite number"),
    (["run", "--monitor-every", "\u0663"], "'--monitor-every': '\u0663' is not a whole number in ASCII digits"),
    (["run", "--monitor-every", "-1"], "-1 is not in the range x>=0"),
    (["study", "power", "--sims", "2_000"], "'--sims': '2_000' is not a whole number"),
    (["study", "power", "--alpha", "nan"], "'--alpha': 'nan' is not a finite number"),
    (["explain", "r.json", "--n-images", "\uff18"], "'--n-images': '\uff18' is not a whole number"),
])
def test_click_usage_errors_are_one_line_too(args, expected):
    """Click printed a usage line and a "Try ... for help" line above its message; an empty --eps value
    (`--eps ,`, `0.1,,0.2`) was dropped, and `--eps ''` ran the default sweep."""
    result = CliRunner().invoke(cli, args, prog_name="igbench")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], result.output


def test_ctrl_c_speaks_of_resuming_only_for_commands_that_train_or_attack(monkeypatch, tmp_path):
    """Every command's Ctrl-C message spoke of trained models and attack units, `validate`'s too."""
    import igbench.results.io as io

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "read_result", interrupted)
    result_file = tmp_path / "r.json"
    result_file.write_text("{}")
    out = CliRunner().invoke(cli, ["validate", str(result_file)])
    assert out.exit_code == 130 and out.output.strip() == (
        "Error: interrupted; every file igbench writes is written whole or not at all: re-run the command")

    import igbench.cli.run_cmd as run_cmd

    monkeypatch.setattr(run_cmd, "grid_spec", interrupted)
    out = CliRunner().invoke(cli, ["run", "--defense", "none", "--attack", "fgsm"])
    assert out.exit_code == 130 and "finished attack units and the last training snapshot" in out.output


def test_a_terminal_gone_away_exits_as_interrupted(monkeypatch):
    """After a hangup, writing the stop message to the closed terminal raised an I/O error, and the command
    exited 1 as if a path were wrong; the snapshot had been saved."""
    import errno
    import os

    import igbench.cli as igcli

    def hung_up(**_kwargs):
        raise OSError(errno.EIO, "Input/output error")

    def exit_now(code):
        raise SystemExit(code)

    monkeypatch.setattr(igcli, "cli", hung_up)
    monkeypatch.setattr(os, "_exit", exit_now)
    with pytest.raises(SystemExit) as stopped:
        igcli.main()
    assert stopped.value.code == 130


def test_number_options_keep_their_help_free_of_an_empty_range():
    """A whole-number option without bounds would print Click's empty range, [x<=None], in --help."""
    text = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output
    assert "None]" not in text and "--steps INTEGER" in text and "--lr FLOAT" in text


def test_eps_takes_fractions_of_grey_levels():
    from igbench.cli.options import parse_number_list

    assert parse_number_list(None, None, ("8/255,0.1", "16/255")) == (8 / 255, 0.1, 16 / 255)
    from igbench.registry import get_registry

    fgsm = get_registry().get("attack", "fgsm")
    assert fgsm.resolve_params({"eps": "8/255"})["eps"] == 8 / 255
