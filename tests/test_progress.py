"""Long work reports progress in log files too (stderr not a terminal), and short work stays quiet."""

from __future__ import annotations

import io

from igbench.progress import LogLines


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_line_per_interval_with_rate_time_left_and_postfix():
    clock, out = Clock(), io.StringIO()
    bar = LogLines(1000, desc="train gradreg", unit="step", stream=out, interval=60, clock=clock)
    for _ in range(100):  # 0.5 s per step: 120 steps per printed line
        clock.t += 0.5
        bar.set_postfix(loss="0.1234", acc="0.950")
        bar.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 0, "under a minute: nothing yet"
    for _ in range(200):
        clock.t += 0.5
        bar.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # at 60 s and at 120 s
    assert lines[0] == "train gradreg: 120/1000 steps (12%), 0.5 s/step, 7m20s left, loss 0.1234, acc 0.950"
    for _ in range(200):  # slower now: the time left follows the recent rate
        clock.t += 1.5
        bar.update(1)
    bar.close()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("train gradreg: 500/1000 steps (50%), 1.5 s/step, 12m30s left"), last


def test_resumed_work_counts_its_rate_from_the_resume_point():
    clock, out = Clock(), io.StringIO()
    bar = LogLines(100, initial=90, desc="train none", unit="step", stream=out, interval=1, clock=clock)
    for _ in range(10):
        clock.t += 2.0
        bar.update(1)
    bar.close()
    last = out.getvalue().splitlines()[-1]
    assert last == "train none: 100/100 steps (100%), 2 s/step, took 0m20s", last


def test_the_last_line_gives_the_average_rate_of_the_whole_run():
    clock, out = Clock(), io.StringIO()
    bar = LogLines(2000, desc="attack jsma", unit="img", stream=out, interval=60, clock=clock)
    clock.t += 190.0  # a slow first batch (a batched attack finishes its images in bursts)
    bar.update(500)
    clock.t += 10.0
    bar.update(1500)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "attack jsma: 500/2000 imgs (25%), 0.38 s/img, 9m30s left", lines
    assert lines[-1] == "attack jsma: 2000/2000 imgs (100%), 0.1 s/img, took 3m20s", lines  # not the last burst's 150 img/s


def test_short_work_prints_nothing():
    clock, out = Clock(), io.StringIO()
    bar = LogLines(50, desc="attack fgsm", unit="img", stream=out, interval=60, clock=clock)
    for _ in range(50):
        clock.t += 0.1
        bar.update(1)
    bar.close()
    assert out.getvalue() == ""


def test_a_bad_interval_setting_is_named_once_not_ignored(monkeypatch, capsys):
    from igbench.progress import _interval

    monkeypatch.setenv("IGBENCH_PROGRESS_INTERVAL", "abc")
    assert _interval() == 60.0 and _interval() == 60.0
    err = capsys.readouterr().err
    assert err.count("IGBENCH_PROGRESS_INTERVAL='abc' is not a number of seconds; using 60") == 1
    monkeypatch.setenv("IGBENCH_PROGRESS_INTERVAL", "5")
    assert _interval() == 5.0
