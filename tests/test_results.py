"""Result files: schema + semantic validation, one-line errors, atomic IO, environment capture."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import igbench
from igbench import atomic
from igbench.atomic import atomic_path, atomic_write_text
from igbench.environment import capture_environment, git_changed_paths, git_provenance
from igbench.errors import ResultError
from igbench.results.io import dumps_result, load_results, read_result, validate_result, write_result

FIXTURES = Path(__file__).parent / "fixtures" / "results"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def _load(name: str = "mnist-paper-small.json") -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_fixtures_are_valid_and_canonical():
    assert len(FIXTURE_FILES) == 2
    for path in FIXTURE_FILES:
        data = read_result(path)
        # Stored exactly as write_result would write them (sorted keys, indent 2, trailing newline).
        assert path.read_text() == dumps_result(data)


def _delete(d, path):
    *head, last = path
    for p in head:
        d = d[p]
    del d[last]


def _set(d, path, value):
    *head, last = path
    for p in head:
        d = d[p]
    d[last] = value


TAMPERING = [
    # (description, edit, expected substrings of the one-line message)
    ("accuracy above 1", lambda d: _set(d, ["models", 0, "clean_accuracy"], 1.7),
     ["models[0].clean_accuracy", "1.7 is greater than the maximum of 1"]),
    ("missing required field", lambda d: _delete(d, ["cells", 3, "count"]),
     ["cells[3].count", "required field is missing"]),
    ("missing top-level field", lambda d: _delete(d, ["environment"]),
     ["environment: required field is missing"]),
    ("string instead of number", lambda d: _set(d, ["cells", 0, "accuracy"], "0.5"),
     ["cells[0].accuracy", '"0.5" is not of type number']),
    ("unknown field", lambda d: _set(d, ["models", 1, "clean_acc"], 0.9),
     ["models[1].clean_acc", "unknown field"]),
    ("cell naming an unknown model", lambda d: _set(d, ["cells", 5, "source"], "madry"),
     ["cells[5].source", '"madry" is not a model id in this file']),
    ("cell naming an unlisted attack", lambda d: _set(d, ["cells", 2, "attack"], "pgd"),
     ["cells[2].attack", '"pgd" is not listed in attacks']),
    ("eps not swept by the attack", lambda d: _set(d, ["cells", 0, "eps"], 0.2),
     ["cells[0].eps", "0.2 is not one of attack"]),
    ("eps given to an attack without eps", lambda d: _set(d, ["cells", -1, "eps"], 0.1),
     ["cells[26].eps", "expected null"]),
    ("duplicate model id", lambda d: _set(d, ["models", 2, "id"], "none"),
     ["models[2].id", "duplicate model id"]),
    ("duplicate cell", lambda d: d["cells"].append(dict(d["cells"][0])),
     ["cells[27]", "duplicate cell"]),
    ("missing cell", lambda d: _delete(d, ["cells", 7]),
     ['cells: no cell for attack "fgsm", eps 0.1, source "distillation", target "gradreg" (26 of the 27 cells',
      "re-run the command recorded"]),
    ("missing attack stats", lambda d: _delete(d, ["attack_stats", 8]),
     ['attack_stats: no entry for attack "jsma", eps null, source "distillation"']),
    ("duplicate attack stats", lambda d: d["attack_stats"].append(dict(d["attack_stats"][0])),
     ["attack_stats[9]", "duplicate entry"]),
    ("wrong schema version", lambda d: _set(d, ["schema_version"], "2"),
     ["schema_version", '"2" should be "1"']),
    ("NaN accuracy", lambda d: _set(d, ["cells", 4, "accuracy"], float("nan")),
     ["cells[4].accuracy", "non-finite"]),
    ("boolean is not a number", lambda d: _set(d, ["timings", "total_seconds"], True),
     ["timings.total_seconds", "not of type number"]),
    ("cell scoring more images than were scored", lambda d: _set(d, ["cells", 6, "count"], 1001),
     ["cells[6].count", "1001 is more than eval.n_test (1000)"]),
    ("more images scored than the test set has", lambda d: _set(d, ["eval", "n_test"], 10001),
     ["eval.n_test", "10001 is more than the dataset's n_test (10000)"]),
    ("empty clip range", lambda d: _set(d, ["dataset", "clip"], [1.0, 0.0]),
     ["dataset.clip", "the minimum must be below the maximum"]),
    ("interpretability of an unknown model", lambda d: _set(d, ["interpretability", 1, "model"], "madry"),
     ["interpretability[1].model", '"madry" is not a model id in this file']),
]


@pytest.mark.parametrize("what,edit,expected", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampered_result_fails_with_one_line_naming_file_and_field(what, edit, expected):
    data = _load()
    assert len(data["cells"]) == 27
    edit(data)
    source = "leaderboards/results/x.json"
    with pytest.raises(ResultError) as info:
        validate_result(data, source)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{source}: ")
    for part in expected:
        assert part in message, message


def test_incomplete_grid_is_refused_by_validate_and_report(tmp_path):
    """A real result with one cell deleted: `validate` and `report` name the missing cell instead of
    accepting it (report used to print "-" percentages for it)."""
    from click.testing import CliRunner

    from igbench.cli import cli

    data = _load()
    gone = data["cells"].pop(13)
    path = tmp_path / "incomplete.json"
    path.write_text(json.dumps(data))
    expected = (f"{path}: cells: no cell for attack \"{gone['attack']}\", eps {gone['eps']}, source \"{gone['source']}\", "
                f"target \"{gone['target']}\"")
    for command in ("validate", "report"):
        out = CliRunner().invoke(cli, [command, str(path)])
        assert out.exit_code == 1 and expected in out.output, out.output
        assert "-%" not in out.output


def test_white_box_grid_promises_only_the_diagonal():
    """A white-box-only result (as `igbench sweep` writes) is complete with one cell per source; deleting
    one of those is still an error."""
    data = _load()
    data["cells"] = [c for c in data["cells"] if c["source"] == c["target"]]
    validate_result(data, "white-box.json")
    del data["cells"][0]
    with pytest.raises(ResultError, match=r'white-box\.json: cells: no cell for attack "fgsm", eps 0\.1, source "none", '
                                          r'target "none" \(8 of the 9 cells'):
        validate_result(data, "white-box.json")


def test_tampered_file_on_disk_names_the_file(tmp_path):
    data = _load()
    data["models"][0]["clean_accuracy"] = 1.7
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match=r"x\.json: models\[0\]\.clean_accuracy: 1\.7 is greater than the maximum of 1"):
        read_result(path)


def test_non_json_file_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "schema_version": "1",\n  "models": [,]\n}\n')
    with pytest.raises(ResultError, match=r"broken\.json: line 3, column \d+: not valid JSON"):
        read_result(path)
    nan = tmp_path / "nan.json"
    nan.write_text('{"x": NaN}')
    with pytest.raises(ResultError, match=r"nan\.json: NaN is not valid JSON"):
        read_result(nan)
    with pytest.raises(ResultError, match=r"missing\.json: no such result file"):
        read_result(tmp_path / "missing.json")
    # json's RecursionError and int()'s digit limit were tracebacks in every command that reads results
    deep, big = tmp_path / "deep.json", tmp_path / "big.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    big.write_text('{"a": ' + "1" * 5000 + "}")
    with pytest.raises(ResultError, match=r"deep\.json: nested too deeply to be a result file"):
        read_result(deep)
    with pytest.raises(ResultError, match=r"big\.json: not a result file \(Exceeds the limit"):
        read_result(big)


def test_explain_scores_given_as_a_result_say_what_they_are():
    """report, plot and compare used to answer "result: unknown field (allowed: attack_stats, ...)"."""
    scores = Path("leaderboards/figures/paper-notmnist-full/tgsm-iterated/explain-scores.json")
    with pytest.raises(ResultError) as info:
        read_result(scores)
    assert str(info.value) == (f"{scores}: is the gradient scores `igbench explain` wrote, not a result file; pass the "
                               "result it was drawn from (leaderboards/results/paper-notmnist-full.json)")


def test_write_result_is_canonical_and_refuses_invalid_data(tmp_path):
    data = _load("mnist-advtrain.json")
    path = tmp_path / "deep" / "dir" / "r.json"
    write_result(path, data)
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "attack_stats": [')
    assert json.loads(text) == data
    assert read_result(path) == data

    bad = copy.deepcopy(data)
    bad["cells"][0]["target"] = "ghost"
    with pytest.raises(ResultError, match=r"cells\[0\]\.target"):
        write_result(path, bad)
    assert path.read_text() == text  # the old file is untouched
    target = tmp_path / "never.json"
    with pytest.raises(ResultError):
        write_result(target, bad)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["r.json"]


def test_load_results_sorted_and_failing_on_invalid(tmp_path):
    for name in ("b.json", "a.json"):
        shutil.copy(FIXTURES / "mnist-advtrain.json", tmp_path / name)
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_results(tmp_path)
    assert [p.name for p, _ in loaded] == ["a.json", "b.json"]
    assert loaded[0][1]["dataset"]["name"] == "mnist"
    (tmp_path / "c.json").write_text("[]")
    with pytest.raises(ResultError, match=r"c\.json: \(top level\): \[\] is not of type object"):
        load_results(tmp_path)
    with pytest.raises(ResultError, match="results directory not found"):
        load_results(tmp_path / "nope")


def test_atomic_writes(tmp_path):
    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n"
    # Not the private 0600 of a temp file: the usual mode of a new file (0666 minus the umask).
    assert target.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK

    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_text("half-written")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "one\n"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_writes_fsync_through_a_handle_open_for_writing(tmp_path, monkeypatch):
    """Windows' fsync (FlushFileBuffers) refuses a read-only handle, where Linux accepts one: as Windows."""
    import errno
    import fcntl
    import os

    real_fsync = os.fsync

    def windows_fsync(fd):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", windows_fsync)
    target = tmp_path / "file.txt"
    atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n" and [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_orphan_temporary_files_of_one_target_are_removed_and_no_others(tmp_path):
    killed = [atomic._temp_in(tmp_path, "r.json") for _ in range(2)]  # as a writer killed mid-write leaves them
    others = [atomic._temp_in(tmp_path, name) for name in ("r.json.x.json", "other.json", "r_json")]
    others.append(tmp_path / f"{killed[0].name}.bak")  # a copy someone made is not a temporary file
    others[-1].write_text("kept")
    atomic_write_text(tmp_path / "r.json", "{}")
    assert sorted(atomic.remove_orphan_temps(tmp_path / "r.json")) == sorted(killed)
    assert sorted(tmp_path.iterdir()) == sorted([*others, tmp_path / "r.json"])
    assert atomic.remove_orphan_temps(tmp_path / "missing" / "r.json") == []


def test_capture_environment_fits_the_schema(tmp_path, monkeypatch):
    monkeypatch.setattr("igbench.environment.SOURCE_DIR", tmp_path)  # an installed copy: not a git repository
    from igbench.environment import RECORDED_ENV_VARS

    for name in RECORDED_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("IGBENCH_DATA_DIR", "../shared/data")
    monkeypatch.setenv("IGBENCH_PROGRESS_INTERVAL", "5")  # changes nothing a result holds: not recorded
    monkeypatch.chdir(tmp_path)
    env = capture_environment("cpu", 7)
    assert env["working_dir"] == str(tmp_path), "the command's relative paths are relative to it"
    assert env["env_vars"] == {"OMP_NUM_THREADS": "3", "IGBENCH_DATA_DIR": "../shared/data"}
    assert env["git_commit"] is None and env["git_dirty"] is None
    assert env["seed"] == 7 and env["device"] == "cpu" and env["gpu"] is None
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["torch"] and env["art"] and env["igbench"] == igbench.__version__
    data = _load()
    data["environment"] = env
    validate_result(data, "env-check")
    for name in ("OMP_NUM_THREADS", "IGBENCH_DATA_DIR"):
        monkeypatch.delenv(name)
    assert "env_vars" not in capture_environment("cpu", 7), "none set: the field is left out"
    assert "cuda_arithmetic" not in env


def test_the_engine_sets_exact_cuda_arithmetic_for_a_gpu_and_leaves_the_cpu_alone(monkeypatch):
    """It was set by the CLI's device resolution only, which a library caller of the engine skips."""
    import igbench.environment as environment

    calls = []
    monkeypatch.setattr(environment, "exact_cuda_arithmetic", lambda: calls.append(1))
    assert environment.compute_device("cpu").type == "cpu" and calls == []
    assert environment.compute_device("cuda:1") == torch.device("cuda:1") and calls == [1]  # no GPU needed


def test_on_a_gpu_float32_is_ieee_and_cudnn_deterministic_and_the_result_says_so(monkeypatch):
    """PyTorch lets cuDNN run float32 convolutions in TF32 (a 10-bit mantissa) and pick nondeterministic
    algorithms: an fp32 result from a GPU was not fp32, and a resumed training could not end where an
    uninterrupted one does. Checked without a GPU: the flags are process settings."""
    from igbench.environment import cuda_arithmetic, exact_cuda_arithmetic

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = {"det": cudnn.deterministic, "bench": cudnn.benchmark}
    new_api = hasattr(matmul, "fp32_precision")
    if new_api:
        saved.update(cudnn=cudnn.fp32_precision, conv=cudnn.conv.fp32_precision, rnn=cudnn.rnn.fp32_precision,
                     matmul=matmul.fp32_precision)
    try:
        exact_cuda_arithmetic()
        assert cuda_arithmetic() == {"cudnn_conv_fp32": "ieee", "matmul_fp32": "ieee", "cudnn_deterministic": True}
        assert not cudnn.benchmark
        data = _load()
        data["environment"]["cuda_arithmetic"] = cuda_arithmetic()
        validate_result(data, "cuda-env-check")
    finally:
        cudnn.deterministic, cudnn.benchmark = saved["det"], saved["bench"]
        if new_api:
            cudnn.fp32_precision, matmul.fp32_precision = saved["cudnn"], saved["matmul"]
            cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = saved["conv"], saved["rnn"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_provenance_is_igbench_code_not_the_working_directory(tmp_path, git, monkeypatch):
    """Run from another repository, results used to claim that repository's commit as their code's."""
    import igbench
    from igbench.environment import git_commit_and_changes

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "elsewhere")
    monkeypatch.chdir(tmp_path)
    ours = git_commit_and_changes(Path(igbench.__file__).parent)[0]
    assert git_provenance()["git_commit"] == ours != git_provenance(tmp_path)["git_commit"]


def test_git_provenance_of_a_real_repository(tmp_path, git):
    git("init", "-q")
    assert git_provenance(tmp_path) == {"git_commit": None, "git_dirty": None}  # no commit yet
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_provenance(tmp_path) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "f.txt").write_text("b")
    assert git_provenance(tmp_path) == {"git_commit": head, "git_dirty": True, "git_dirty_paths": ["f.txt"]}
    env = capture_environment("cpu", 0, cwd=tmp_path)
    assert env["git_dirty"] is True and env["git_dirty_paths"] == ["f.txt"]
    (tmp_path / "new-untracked.txt").write_text("x")
    (tmp_path / "f.txt").write_text("a")
    assert git_provenance(tmp_path) == {"git_commit": head, "git_dirty": False}  # untracked files do not count
    assert "git_dirty_paths" not in capture_environment("cpu", 0, cwd=tmp_path)
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "g.txt").write_text("g")
    git("add", "sub dir/g.txt")
    git("mv", "f.txt", "renamed.txt")  # staged changes count too; a rename names both paths
    assert git_changed_paths(tmp_path) == ["f.txt", "renamed.txt", "sub dir/g.txt"]


def test_commands_that_write_check_their_destination_before_the_work(tmp_path, monkeypatch):
    """plot, leaderboard, explain, cache export/import and train wrote into an unusable path only after
    their work, and failed with a FileNotFoundError traceback; now each is one line naming the option."""
    from click.testing import CliRunner

    from igbench.cli import cli

    result = tmp_path / "r.json"
    shutil.copy(FIXTURES / "mnist-paper-small.json", result)
    (tmp_path / "results").mkdir()
    shutil.copy(FIXTURES / "mnist-paper-small.json", tmp_path / "results" / "r.json")
    monkeypatch.setenv("IGBENCH_CACHE_DIR", str(tmp_path / "cache"))
    runs = {  # /proc takes no new folders, even from root
        "--out /proc/igb": ["plot", str(result), "--out", "/proc/igb"],
        "--out /proc/igb ": ["leaderboard", "--results", str(tmp_path / "results"), "--out", "/proc/igb"],
        "--out /proc/igb  ": ["explain", str(result), "--out", "/proc/igb", "--no-update-result"],
        "--out /proc/igb/a.tar": ["cache", "export", str(result), "--out", "/proc/igb/a.tar"],
        "cache folder (--cache-dir or IGBENCH_CACHE_DIR) /proc/igb": ["train", "--steps", "1", "--cache-dir", "/proc/igb"],
    }
    for expected, args in runs.items():
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.strip().splitlines()[-1].startswith(f"Error: {expected.strip()}: cannot write in /proc/igb")
        assert "Traceback" not in res.output
    assert not (tmp_path / "cache" / "models").exists(), "train stopped before training"


def test_an_os_error_no_check_caught_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from igbench.cli import cli
    from igbench.results import leaderboard_files

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "mnist.md"))

    shutil.copy(FIXTURES / "mnist-paper-small.json", tmp_path / "r.json")
    monkeypatch.setattr(leaderboard_files, "atomic_write_text", refuse)
    args = ["leaderboard", "--results", str(tmp_path), "--out", str(tmp_path / "boards")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'mnist.md'}: Permission denied; check the path and its permissions "
        "(IGBENCH_DEBUG=1 shows the traceback)")
    monkeypatch.setenv("IGBENCH_DEBUG", "1")
    assert isinstance(CliRunner().invoke(cli, args).exception, PermissionError)


def test_leaderboard_without_result_files_makes_no_folder(tmp_path):
    from click.testing import CliRunner

    from igbench.cli import cli

    (tmp_path / "results").mkdir()
    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(tmp_path / "results"),
                                   "--out", str(tmp_path / "boards")])
    assert res.exit_code == 0 and "nothing to render" in res.output, res.output
    assert not (tmp_path / "boards").exists()
