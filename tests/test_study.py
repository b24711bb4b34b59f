"""The human-subject study kit: trial choice, the questionnaire page (driven in node as a participant would),
the key, reading answers and their tally, end to end on a real two-model MNIST result."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from igbench.cli import cli

DRIVER = Path(__file__).parent / "fixtures" / "questionnaire_driver.js"


# --------------------------------------------------------------------------- pure parts
def test_trials_show_only_comparable_examples_on_random_sides():
    from igbench.study.trials import Examples, choose_trials, model_pairs

    n = 400
    x = torch.zeros(n, 1, 2, 2)
    y = torch.zeros(n, dtype=torch.long)
    targets = torch.ones(n, dtype=torch.long)
    adv = x + 0.1
    reached = torch.ones(n, dtype=torch.bool)
    other_targets = targets.clone()
    other_targets[:100] = 2  # another target: not comparable
    not_reached = reached.clone()
    not_reached[100:150] = False  # one of the two did not fool its model
    unchanged = adv.clone()
    unchanged[150:200] = 0  # no perturbation: nothing to judge
    align = torch.full((n,), 0.3)
    correct = torch.ones(n, dtype=torch.bool)
    wrong_before = correct.clone()
    wrong_before[390:] = False  # c read these images wrong before the attack
    examples = {"a": Examples(adv, targets, reached, align, correct),
                "b": Examples(adv.clone(), other_targets, not_reached, align, correct),
                "c": Examples(unchanged, targets, reached, align + 0.1, wrong_before)}
    assert model_pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert model_pairs(["a", "b", "c"], versus="c") == [("c", "a"), ("c", "b")]
    trials, eligible = choose_trials(x, y, examples, model_pairs(["a", "b", "c"]), 120, seed=3)
    assert eligible == {("a", "b"): 250, ("a", "c"): 340, ("b", "c"): 190}
    assert [t["trial"] for t in trials] == list(range(1, 361))
    for t in trials:
        a, b = t["pair"]
        assert {t["left"], t["right"]} == {a, b} and t["target"] == 1 and t["label"] == 0
        if "b" in t["pair"]:
            assert t["image"] >= 150 and (t["image"] >= 200 or "c" not in t["pair"])
        if "c" in t["pair"]:
            assert not 150 <= t["image"] < 200 and t["image"] < 390
        side = {t["left"]: t["left_alignment"], t["right"]: t["right_alignment"]}
        assert side["a"] == pytest.approx(0.3) if "a" in side else side["c"] == pytest.approx(0.4)
    on_left = sum(t["left"] == t["pair"][0] for t in trials) / len(trials)
    assert 0.4 < on_left < 0.6  # sides drawn at random
    assert [t["pair"] for t in trials[:20]] != [t["pair"] for t in sorted(trials, key=lambda t: t["pair"])][:20]
    again, _ = choose_trials(x, y, examples, model_pairs(["a", "b", "c"]), 120, seed=3)
    assert again == trials  # seeded
    with_all, counts = choose_trials(x, y, examples, [("a", "b")], 1000, seed=3, reached_only=False)
    assert counts[("a", "b")] == 300 and len(with_all) == 300


def test_shares_are_exact_binomial_tests_with_wilson_intervals():
    from igbench.study.statistics import share

    s = share(9, 10)
    assert s.share == 0.9 and s.p_value == pytest.approx(22 / 1024)  # P(X >= 9) + P(X <= 1), X ~ Bin(10, 1/2)
    assert s.low == pytest.approx(0.5958, abs=1e-3) and s.high == pytest.approx(0.9821, abs=1e-3)  # Wilson, 95%
    assert share(5, 10).p_value == 1.0 and share(0, 0).share is None


def test_answers_are_tallied_per_pair_per_participant_and_per_model():
    from igbench.study.answers import Answer
    from igbench.study.scoring import score_answers

    trials = [{"trial": 1, "pair": ["a", "b"], "left": "a", "right": "b", "left_alignment": 0.5, "right_alignment": 0.1},
              {"trial": 2, "pair": ["a", "b"], "left": "b", "right": "a", "left_alignment": 0.2, "right_alignment": 0.3},
              {"trial": 3, "pair": ["a", "c"], "left": "c", "right": "a", "left_alignment": None, "right_alignment": 0.3}]
    answers = [Answer("p", 1, "left", None, ""), Answer("p", 2, "right", None, ""), Answer("p", 3, "left", None, ""),
               Answer("q", 1, "right", None, ""), Answer("q", 2, "right", None, "")]
    out = score_answers(trials, answers, ["a", "b", "c"])
    ab, ac = out["pairs"]
    assert ab["pair"] == ["a", "b"] and (ab["chosen"], ab["answers"]) == (3, 4)  # a picked by p twice, q once
    assert (ab["participants_preferring_first"], ab["participants_preferring_second"], ab["participants_tied"]) == (1, 0, 1)
    assert ac["pair"] == ["a", "c"] and (ac["chosen"], ac["answers"]) == (0, 1)
    models = {m["model"]: (m["chosen"], m["answers"]) for m in out["models"]}
    assert models == {"a": (3, 5), "b": (1, 4), "c": (1, 1)}
    assert (out["position"]["chosen"], out["position"]["answers"]) == (2, 5)
    # trial 3 has no stand-in verdict; of the other four answers, p's two and q's second agree with it
    assert (out["stand_in"]["chosen"], out["stand_in"]["answers"]) == (3, 4)


# --------------------------------------------------------------------------- the commands, on a real result
@pytest.fixture(scope="module")
def two_models(shared_data, tmp_path_factory):
    """A real MNIST result of two mlp models (plain, gradreg at lambda 100; 150 steps) and its cache."""
    root = tmp_path_factory.mktemp("study")
    out, cache = root / "r.json", root / "cache"
    run = CliRunner().invoke(cli, ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp",
                                   "--defense", "none,gradreg[lambda=100]", "--attack", "fgsm", "--eps", "0.2",
                                   "--steps", "150", "--n-test", "200", "--out", str(out), "--cache-dir", str(cache),
                                   "--no-progress"])
    assert run.exit_code == 0, run.output
    return out, cache


def _page_data(html: str) -> dict:
    return json.loads(re.search(r'<script id="study-data" type="application/json">(.*?)</script>', html, re.S)[1])


def _pixels(uri: str) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    return torch.from_numpy(np.array(image)).float()[None] / 255


def test_study_make_and_score_end_to_end(shared_data, two_models, tmp_path):
    from igbench.engine.attack import make_context, run_attack
    from igbench.engine.cache import CheckpointStore
    from igbench.engine.result_models import load_result_models
    from igbench.interpret.explain import load_result_data
    from igbench.registry import get_registry
    from igbench.results.io import read_result
    from igbench.study.record import validate

    result_path, cache = two_models
    folder = tmp_path / "study"
    made = CliRunner().invoke(cli, ["study", "make", str(result_path), "--out", str(folder), "--data-dir",
                                    str(shared_data), "--cache-dir", str(cache), "--device", "cpu",
                                    "--trials-per-pair", "24", "--no-progress"])
    assert made.exit_code == 0, made.output
    key = json.loads((folder / "study-key.json").read_text())
    validate(key, "key", "key")
    html = (folder / "questionnaire.html").read_text()
    assert key["questionnaire_sha256"] == hashlib.sha256((folder / "questionnaire.html").read_bytes()).hexdigest()
    page = _page_data(html)
    assert made.output.startswith(f"study {key['study']}: 24 trials") and "questionnaire.html" in made.output
    assert key["models"] == ["none", "gradreg[lambda=100]"] and key["attack"] == "tgsm"
    assert key["attack_params"]["eps"] == 0.3 and key["candidates"] == 200 and key["reached_only"] is True
    # blind: the page holds the study, the trial numbers, the target's name and two images; no model
    assert page["study"] == key["study"] and all(set(t) == {"trial", "target", "left", "right"} for t in page["trials"])
    assert "gradreg" not in html and "lambda" not in html
    assert [t["target"] for t in page["trials"]] == [str(t["target"]) for t in key["trials"]]

    # each side shows the example the key says: the attack re-run against each model gives those pixels
    result = read_result(result_path)
    data = load_result_data(result, shared_data)
    models = load_result_models(result, CheckpointStore(cache), "cpu")
    tgsm = get_registry().get("attack", "tgsm")
    x, y = data.test_x[:200], data.test_y[:200]
    adv = {m: run_attack(tgsm, {"eps": 0.3}, models[m], x, y, make_context(data, "cpu", 0), progress=False).x_adv
           for m in key["models"]}
    mismatched_other_side = 0
    for shown, trial in zip(page["trials"], key["trials"]):
        assert int(y[trial["image"]]) == trial["label"]
        for side in ("left", "right"):
            pixels = _pixels(shown[side])
            assert torch.allclose(pixels, adv[trial[side]][trial["image"]], atol=0.6 / 255)
            other = trial["right" if side == "left" else "left"]
            mismatched_other_side += not torch.allclose(pixels, adv[other][trial["image"]], atol=0.6 / 255)
    assert mismatched_other_side == 2 * len(key["trials"])  # a swapped side would have been caught

    # a participant answers in the page itself (node drives its script): the CSV it saves is what score reads
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the questionnaire's script was not run")
    choices = "".join("l" if t["left"] == "none" else "r" for t in key["trials"])  # always the plain model's
    driven = subprocess.run(["node", str(DRIVER), str(folder / "questionnaire.html"), "ann, \"a\"", choices],
                            capture_output=True, text=True, check=True)
    saved = json.loads(driven.stdout)
    assert saved["resumed"] == "Trial 13 of 24"  # a reload went on where the participant had stopped
    page_answers = tmp_path / "ann.csv"
    page_answers.write_text(saved["csv"], newline="")
    # a second participant who picks the image the stand-in scores higher
    rows = ["study,participant,trial,choice"] + [
        f"{key['study']},bob,{t['trial']},{'left' if t['left_alignment'] > t['right_alignment'] else 'right'}"
        for t in key["trials"]]
    (tmp_path / "bob.csv").write_text("\n".join(rows) + "\n")

    scored = CliRunner().invoke(cli, ["study", "score", str(folder), str(page_answers), str(tmp_path / "bob.csv")])
    assert scored.exit_code == 0, scored.output
    scores = json.loads((folder / "study-scores.json").read_text())
    validate(scores, "scores", "scores")
    assert [p["participant"] for p in scores["participants"]] == ['ann, "a"', "bob"]
    assert all(p["answers"] == 24 for p in scores["participants"])
    (pair,) = scores["pairs"]
    assert pair["pair"] == ["none", "gradreg[lambda=100]"] and pair["answers"] == 48
    bob_picks_none = sum((t["left"] == "none") == (t["left_alignment"] > t["right_alignment"]) for t in key["trials"])
    assert pair["chosen"] == 24 + bob_picks_none
    assert (pair["participants_preferring_first"] + pair["participants_tied"] + pair["participants_preferring_second"]) == 2
    stand_in = scores["stand_in"]
    # bob always agrees with the stand-in; ann (always the plain model's example) where it scores that one higher
    assert stand_in["answers"] == 48 and stand_in["chosen"] == 24 + bob_picks_none
    assert "people first/second/tied" in scored.output and f"scores: {folder / 'study-scores.json'}" in scored.output
    checked = CliRunner().invoke(cli, ["validate", str(folder / "study-key.json"), str(folder / "study-scores.json")])
    assert checked.exit_code == 0 and checked.output.count("ok ") == 2, checked.output  # not read as results
    key["trials"][0]["left_alignment"] = 1.5
    broken = tmp_path / "broken" / "study-key.json"
    broken.parent.mkdir()
    broken.write_text(json.dumps(key))
    refused = CliRunner().invoke(cli, ["validate", str(broken)])
    assert refused.exit_code != 0 and "trials[0].left_alignment: 1.5 is greater than the maximum of 1" in refused.output


def test_study_refusals_are_one_line(shared_data, two_models, tmp_path):
    result_path, cache = two_models
    common = ["--data-dir", str(shared_data), "--cache-dir", str(cache), "--device", "cpu", "--no-progress"]

    def make(*args):
        return CliRunner().invoke(cli, ["study", "make", str(result_path), *args, *common])

    def error(run) -> str:
        assert run.exit_code != 0 and run.output.startswith("Error: ") and run.output.count("\n") == 1, run.output
        return run.output

    assert "aims at no target class" in error(make("--attack", "fgsm", "--out", str(tmp_path / "f")))
    assert "compares two or more models" in error(make("--models", "none", "--out", str(tmp_path / "one")))
    assert "--models: nothing not in the result" in error(make("--models", "none,nothing", "--out", str(tmp_path / "u")))
    assert "--versus x: not among" in error(make("--versus", "x", "--out", str(tmp_path / "v")))
    # a one-step TGSM at a tiny eps reaches no target: the error names what to change
    tiny = error(make("--eps", "0.001", "--candidates", "10", "--out", str(tmp_path / "tiny")))
    assert "iterate the attack (--param steps=10" in tiny and "--all-examples" in tiny
    shown = make("--eps", "0.001", "--candidates", "10", "--all-examples", "--trials-per-pair", "5", "--out", str(tmp_path / "tiny"))
    assert shown.exit_code == 0 and ": 5 trials" in shown.output, shown.output
    assert "already holds a study" in error(make("--out", str(tmp_path / "tiny")))
    short = make("--trials-per-pair", "500", "--out", str(tmp_path / "short"))
    assert short.exit_code == 0 and "fewer eligible images than --trials-per-pair 500" in short.output, short.output

    folder = tmp_path / "tiny"
    key = json.loads((folder / "study-key.json").read_text())
    head = "study,participant,trial,choice\n"

    def score(text: str) -> str:
        answers = tmp_path / "answers.csv"
        answers.write_text(text)
        return error(CliRunner().invoke(cli, ["study", "score", str(folder), str(answers)]))

    sid = key["study"]
    assert "not this study" in score(head + "0123456789ab,p,1,left\n")
    assert "trial 6 is not in this study (trials 1 to 5)" in score(head + f"{sid},p,6,left\n")
    assert "write left or right" in score(head + f"{sid},p,1,A\n")
    assert "no participant" in score(head + f"{sid}, ,1,left\n")
    assert "answered trial 1 again (first at" in score(head + f"{sid},p,1,left\n{sid},p,1,right\n")
    assert "no column choice" in score("study,participant,trial\n")
    assert "no answers in" in score(head)
    assert "no study key here" in error(CliRunner().invoke(cli, ["study", "score", str(tmp_path), str(tmp_path / "answers.csv")]))
    (tmp_path / "some.csv").write_text(head + f"{sid},p,1,left\n{sid},p,2,right\n")
    some = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "some.csv")])
    assert some.exit_code == 0 and "1 participant(s) answered fewer than the 5 trials" in some.output, some.output
