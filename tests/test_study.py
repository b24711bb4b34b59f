"""The human-subject study kit: trial choice, the questionnaire page (driven in node as a participant would),
the key, reading answers and their tally, end to end on a real two-model MNIST result."""

from __future__ import annotations

import base64
import csv
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
def test_trials_show_comparable_examples_each_image_once_sides_balanced():
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
    trials, eligible = choose_trials(x, y, examples, model_pairs(["a", "b", "c"]), 60, seed=3)
    assert eligible == {("a", "b"): 250, ("a", "c"): 340, ("b", "c"): 190}
    assert [t["trial"] for t in trials] == list(range(1, 181))
    images = [t["image"] for t in trials]
    assert len(set(images)) == len(images)  # no picture is shown twice
    for pair in (["a", "b"], ["a", "c"], ["b", "c"]):
        mine = [t for t in trials if t["pair"] == pair]
        assert len(mine) == 60 and sum(t["left"] == pair[0] for t in mine) == 30  # balanced sides
    for t in trials:
        a, b = t["pair"]
        assert {t["left"], t["right"]} == {a, b} and t["target"] == 1 and t["label"] == 0
        if "b" in t["pair"]:
            assert t["image"] >= 150 and (t["image"] >= 200 or "c" not in t["pair"])
        if "c" in t["pair"]:
            assert not 150 <= t["image"] < 200 and t["image"] < 390
        side = {t["left"]: t["left_alignment"], t["right"]: t["right_alignment"]}
        assert side["a"] == pytest.approx(0.3) if "a" in side else side["c"] == pytest.approx(0.4)
    assert [t["pair"] for t in trials[:20]] != [t["pair"] for t in sorted(trials, key=lambda t: t["pair"])][:20]
    again, _ = choose_trials(x, y, examples, model_pairs(["a", "b", "c"]), 60, seed=3)
    assert again == trials  # seeded
    odd, _ = choose_trials(x, y, examples, [("a", "c")], 51, seed=3)
    assert sum(t["left"] == "a" for t in odd) in (25, 26)  # an odd count: one more or less
    # not enough images for everyone: the pairs take turns, so the last pair is not starved
    few, _ = choose_trials(x[:260], y[:260], {k: Examples(*(v[:260] for v in e)) for k, e in examples.items()},
                           model_pairs(["a", "b", "c"]), 1000, seed=3)
    counts = {tuple(p): sum(t["pair"] == p for t in few) for p in (["a", "b"], ["a", "c"], ["b", "c"])}
    # every image serves some pair, once; b-c, eligible on only 60 of them (200..259), still gets a fair share
    assert sum(counts.values()) == 260 and counts[("b", "c")] >= 30, counts
    with_all, counts = choose_trials(x, y, examples, [("a", "b")], 1000, seed=3, reached_only=False)
    assert counts[("a", "b")] == 300 and len(with_all) == 300


def test_shares_are_exact_binomial_tests_with_wilson_intervals_and_holm_adjusts():
    from igbench.study.statistics import holm, share

    s = share(9, 10)
    assert s.share == 0.9 and s.p_value == pytest.approx(22 / 1024)  # P(X >= 9) + P(X <= 1), X ~ Bin(10, 1/2)
    assert s.low == pytest.approx(0.5958, abs=1e-3) and s.high == pytest.approx(0.9821, abs=1e-3)  # Wilson, 95%
    assert share(5, 10).p_value == 1.0 and share(0, 0).share is None
    # Holm: sorted 0.01, 0.02, 0.04 times 3, 2, 1, kept increasing; a missing test stays missing
    assert holm([0.04, None, 0.01, 0.02]) == [pytest.approx(0.04), None, pytest.approx(0.03), pytest.approx(0.04)]
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def _answer(person, trial, choice, mirrored=False, seconds=None):
    from igbench.study.answers import Answer

    return Answer(person, trial, choice, mirrored, seconds, "")


def test_answers_are_tallied_per_pair_per_participant_and_per_model():
    from igbench.study.scoring import participant_summary, score_answers

    trials = [{"trial": 1, "pair": ["a", "b"], "left": "a", "right": "b", "left_alignment": 0.5, "right_alignment": 0.1},
              {"trial": 2, "pair": ["a", "b"], "left": "b", "right": "a", "left_alignment": 0.2, "right_alignment": 0.3},
              {"trial": 3, "pair": ["a", "c"], "left": "c", "right": "a", "left_alignment": None, "right_alignment": 0.3}]
    # p sees the key's layout and picks a, a, c; q sees it mirrored: screen right is the key's left
    answers = [_answer("p", 1, "left"), _answer("p", 2, "right"), _answer("p", 3, "left"),
               _answer("q", 1, "left", mirrored=True), _answer("q", 2, "left", mirrored=True)]
    out = score_answers(trials, answers, ["a", "b", "c"], [["a", "b"], ["a", "c"], ["b", "c"]])
    ab, ac, bc = out["pairs"]  # in the key's order, a pair without answers too
    assert ab["pair"] == ["a", "b"] and (ab["chosen"], ab["answers"]) == (3, 4)  # q: b on trial 1, a on trial 2
    assert (ab["participants_preferring_first"], ab["participants_preferring_second"], ab["participants_tied"]) == (1, 0, 1)
    assert ab["participants_p_value"] == 1.0  # one person of one: no evidence
    assert ac["pair"] == ["a", "c"] and (ac["chosen"], ac["answers"]) == (0, 1)
    assert bc["answers"] == 0 and bc["share"] is None and bc["p_value_holm"] is None
    assert ab["p_value_holm"] == pytest.approx(min(1.0, 2 * ab["p_value"]))
    models = {m["model"]: (m["chosen"], m["answers"]) for m in out["models"]}
    assert models == {"a": (3, 5), "b": (1, 4), "c": (1, 1)}
    assert (out["position"]["chosen"], out["position"]["answers"]) == (4, 5)  # on screen: p left twice, q twice
    # trial 3 has no stand-in verdict; of the other four answers p's two and q's second pick the higher one
    assert (out["stand_in"]["chosen"], out["stand_in"]["answers"]) == (3, 4)
    people = participant_summary([_answer("fast", t, "left", seconds=0.2) for t in range(1, 11)]
                                 + [_answer("slow", 1, "left", seconds=3.0), _answer("slow", 2, "right", seconds=5.0)],
                                 checks=[{"trial": 2, "correct": "right"}])
    assert people == [
        {"participant": "fast", "answers": 10, "median_seconds": 0.2, "left_share": 1.0, "catch_correct": 0,
         "catch_answers": 1, "flags": ["fast", "one_side", "missed_catch"]},
        {"participant": "slow", "answers": 2, "median_seconds": 4.0, "left_share": 0.5, "catch_correct": 1,
         "catch_answers": 1, "flags": []}]
    # a mirrored page: the check's right answer is on the other side of the screen, and one side is the screen's
    mirrored = participant_summary([_answer("m", t, "left", mirrored=True) for t in range(1, 11)],
                                   checks=[{"trial": 2, "correct": "right"}])
    assert (mirrored[0]["catch_correct"], mirrored[0]["left_share"], mirrored[0]["flags"]) == (1, 1.0, ["one_side"])


def test_the_answers_table_undoes_each_participants_mirroring():
    from igbench.study.scoring import answers_table

    trials = [{"trial": 1, "image": 7, "label": 3, "target": 4, "pair": ["a", "b"], "left": "a", "right": "b",
               "left_alignment": 0.5, "right_alignment": 0.1}]
    checks = [{"trial": 2, "target": 5, "target_image": 9, "other_image": 8, "other_label": 1, "correct": "left",
               "model": "a"}]
    rows = list(csv.DictReader(io.StringIO(answers_table(trials, checks, [
        _answer("p", 1, "left"), _answer("q", 1, "left", mirrored=True, seconds=1.5),
        _answer("q", 2, "right", mirrored=True)]))))
    assert [(r["shown_left"], r["shown_right"], r["screen_side"], r["chosen_model"], r["chose_first"],
             r["chosen_alignment"], r["other_alignment"]) for r in rows[:2]] == [
        ("a", "b", "left", "a", "1", "0.5", "0.1"), ("b", "a", "left", "b", "0", "0.1", "0.5")]
    assert rows[1]["seconds"] == "1.5" and rows[1]["mirrored"] == "1" and rows[0]["attention_check"] == "0"
    # q's check: the named image was on the key's left, shown on the screen's right, and picked
    assert (rows[2]["attention_check"], rows[2]["chose_first"], rows[2]["chosen_model"]) == ("1", "1", "")


def test_answer_files_as_spreadsheets_save_them_are_read_and_mistakes_named(tmp_path, capsys):
    from igbench.errors import UsageError
    from igbench.study.answers import read_answers

    sid = "0123456789ab"

    def read(*texts, encoding="utf-8"):
        paths = []
        for i, text in enumerate(texts):
            paths.append(tmp_path / f"a{i}.csv")
            paths[-1].write_bytes(text.encode(encoding))
        return read_answers(paths, sid, 5)

    def refused(*texts) -> str:
        with pytest.raises(UsageError) as exc:
            read(*texts)
        assert "\n" not in str(exc.value)
        return str(exc.value)

    head = "study,participant,trial,choice,mirrored,seconds\n"
    plain = read(head + f"{sid},p,1,left,1,2.5\n{sid},p,2,RIGHT,0,\n")
    assert [(a.trial, a.choice, a.mirrored, a.seconds) for a in plain] == [(1, "left", True, 2.5), (2, "right", False, None)]
    assert plain[0].chose_key_side() == "right" and plain[1].chose_key_side() == "right"
    excel = read(f"Study;Participant;Trial;Choice\r\n{sid};p;3;left\r\n", encoding="utf-8-sig")  # ; and a BOM
    assert [(a.trial, a.mirrored) for a in excel] == [(3, False)]  # no mirrored column: the key's layout
    wide = read(f"\ufeffstudy\tparticipant\ttrial\tchoice\n{sid}\tp\t4\tright\n", encoding="utf-16")
    assert [(a.trial, a.choice) for a in wide] == [(4, "right")]
    capsys.readouterr()
    joined = read(head + f"{sid},p,1,left,0,1\n" + head + f"{sid},q,1,right,0,1\n", "", head + f"{sid},p,1,left,0,1\n")
    notes = capsys.readouterr().err
    assert len(joined) == 2 and "1 repeated header row(s) skipped" in notes and "a1.csv is empty" in notes
    assert "1 answer(s) appear twice with the same choice" in notes and "holds answers of 2 participants" in notes
    assert "participant 'p' answered trial 1 right here and left at" in refused(
        head + f"{sid},p,1,left,0,1\n", head + f"{sid},p,1,right,0,1\n")
    # the line of a problem, blank lines counted
    assert refused(head + f"\n\n{sid},p,x,left,0,1\n").startswith(f"{tmp_path / 'a0.csv'}:4: trial 'x'")
    assert "more fields than the header" in refused(head + f"{sid},p,1,left,0,1,EXTRA\n")
    for bad in ("nan", "-1", "inf", "soon"):
        assert "is not a time" in refused(head + f"{sid},p,1,left,0,{bad}\n")
    assert "mirrored 'yes'" in refused(head + f"{sid},p,1,left,yes,1\n")
    assert "not this study" in refused(head + "ffffffffffff,p,1,left,0,1\n")
    assert "trial 6 is not in this study (trials 1 to 5)" in refused(head + f"{sid},p,6,left,0,1\n")
    for lenient in ("1_0", "+2", "\uff12"):  # int() read them as 10, 2 and 2
        assert f"trial {lenient!r} is not a whole number" in refused(head + f"{sid},p,{lenient},left,0,1\n")
    essay = refused(head + f'{sid},p,1,left,0,1\n{sid},p,"{"x" * 200_000}",left,0,1\n')  # was _csv.Error
    assert "field larger than field limit" in essay and "mend or remove it" in essay and "\n" not in essay
    assert "write left or right" in refused(head + f"{sid},p,1,A,0,1\n")
    assert "no participant" in refused(head + f"{sid}, ,1,left,0,1\n")
    assert "no column choice" in refused("study;participant;trial\n")
    assert "no answers in" in refused(head)
    # a decimal-comma locale's times, a spreadsheet's empty rows and trailing delimiters, blank lines on top
    comma = read(f"study;participant;trial;choice;seconds;\n{sid};p;1;left;2,5;\n;;;;;\n   \n")
    assert [(a.trial, a.seconds) for a in comma] == [(1, 2.5)] and "2 empty row(s) skipped" in capsys.readouterr().err
    assert [a.trial for a in read(f"\n\nstudy,participant,trial,choice\n{sid},p,2,left,\n")] == [2]
    assert refused(f"\nstudy,participant,trial,choice\n{sid},p,x,left\n").endswith("trial 'x' is not a whole number")
    assert ":3: trial 'x'" in refused(f"\nstudy,participant,trial,choice\n{sid},p,x,left\n")
    assert "fewer fields than the header" in refused(head + f"{sid},p,1\n")
    assert "column study appears twice" in refused("study,participant,trial,choice,study\n")
    assert "an empty cell would read a swapped page backwards" in refused(head + f"{sid},p,1,left,,1\n")
    # --exclude leaves a participant out before their answers are compared, and names who is there
    both = [head + f"{sid},zed,1,left,0,1\n{sid},p,1,left,0,1\n", head + f"{sid},zed,1,right,0,1\n"]
    assert "or --exclude 'zed'" in refused(*both)
    paths = [tmp_path / "a0.csv", tmp_path / "a1.csv"]
    assert [a.participant for a in read_answers(paths, sid, 5, exclude=["zed"])] == ["p"]
    with pytest.raises(UsageError, match="'nobody': no such participant in the answers; they are 'p', 'zed'"):
        read_answers(paths, sid, 5, exclude=["zed", "nobody"])
    with pytest.raises(UsageError, match="every participant is excluded"):
        read_answers(paths, sid, 5, exclude=["zed", "p"])


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


def _make(result_path, cache, shared_data, folder, *args):
    return CliRunner().invoke(cli, ["study", "make", str(result_path), "--out", str(folder), "--data-dir",
                                    str(shared_data), "--cache-dir", str(cache), "--device", "cpu", "--no-progress",
                                    *args])


@pytest.fixture(scope="module")
def study(shared_data, two_models, tmp_path_factory):
    """A study of the two models: 24 trials of TGSM eps 0.3 (the default), drawn from 300 images."""
    result_path, cache = two_models
    folder = tmp_path_factory.mktemp("made") / "study"
    made = _make(result_path, cache, shared_data, folder, "--trials-per-pair", "24", "--candidates", "300")
    assert made.exit_code == 0, made.output
    return folder, made.output


def test_study_make_writes_a_blind_page_whose_images_are_the_keys(shared_data, two_models, study):
    from igbench.engine.attack import make_context, run_attack
    from igbench.engine.cache import CheckpointStore
    from igbench.engine.result_models import load_result_models
    from igbench.interpret.explain import load_result_data
    from igbench.registry import get_registry
    from igbench.results.io import read_result
    from igbench.study.record import validate

    result_path, cache = two_models
    folder, output = study
    key = json.loads((folder / "study-key.json").read_text())
    validate(key, "key", "key")
    html = (folder / "questionnaire.html").read_text()
    assert key["questionnaire_sha256"] == hashlib.sha256((folder / "questionnaire.html").read_bytes()).hexdigest()
    page = _page_data(html)
    assert output.startswith(f"study {key['study']}: 24 trials") and "questionnaire.html" in output
    assert key["models"] == ["none", "gradreg[lambda=100]"] and key["attack"] == "tgsm"
    assert key["attack_params"]["eps"] == 0.3 and key["candidates"] == 300 and key["reached_only"] is True
    assert key["candidates"] > read_result(result_path)["eval"]["n_test"]  # not limited to the scored images
    # blind: the page holds the study, the trial numbers, the target's name and two images; no model
    assert page["study"] == key["study"] and all(set(t) == {"trial", "target", "left", "right"} for t in page["trials"])
    assert "gradreg" not in html and "lambda" not in html
    assert [t["target"] for t in page["trials"]] == [str(t["target"]) for t in key["trials"]]
    assert sum(t["left"] == "none" for t in key["trials"]) == 12  # sides balanced
    assert len({t["image"] for t in key["trials"]}) == 24

    # each side shows the example the key says: the attack re-run against each model gives those pixels
    result = read_result(result_path)
    data = load_result_data(result, shared_data)
    models = load_result_models(result, CheckpointStore(cache), "cpu")
    tgsm = get_registry().get("attack", "tgsm")
    x, y = data.test_x[:300], data.test_y[:300]
    adv = {m: run_attack(tgsm, {"eps": 0.3}, models[m], x, y, make_context(data, "cpu", 0), progress=False).x_adv
           for m in key["models"]}
    mismatched_other_side = 0
    for shown, trial in zip(page["trials"], key["trials"]):
        assert int(y[trial["image"]]) == trial["label"]
        for m in key["models"]:  # both models read the clean image right, and the example as the target
            assert int(models[m](x[trial["image"]][None]).argmax()) == trial["label"]
            assert int(models[m](adv[m][trial["image"]][None]).argmax()) == trial["target"]
        for side in ("left", "right"):
            pixels = _pixels(shown[side])
            assert torch.allclose(pixels, adv[trial[side]][trial["image"]], atol=0.6 / 255)
            other = trial["right" if side == "left" else "left"]
            mismatched_other_side += not torch.allclose(pixels, adv[other][trial["image"]], atol=0.6 / 255)
    assert mismatched_other_side == 2 * len(key["trials"])  # a swapped side would have been caught


def test_study_score_end_to_end(study, tmp_path):
    from igbench.study.record import validate

    folder, _ = study
    key = json.loads((folder / "study-key.json").read_text())
    sid, trials = key["study"], key["trials"]
    # bob picks the image the stand-in scores higher, on a page mirrored for him; cat always clicks left
    bob = ["study,participant,trial,choice,mirrored,seconds"] + [
        f"{sid},bob,{t['trial']},{'right' if t['left_alignment'] > t['right_alignment'] else 'left'},1,2.0"
        for t in trials]
    cat = ["study,participant,trial,choice"] + [f"{sid},cat,{t['trial']},left" for t in trials]
    (tmp_path / "bob.csv").write_text("\n".join(bob) + "\n")
    (tmp_path / "cat.csv").write_text("\n".join(cat) + "\n")
    out = tmp_path / "scores" / "s.json"
    scored = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.csv"), str(tmp_path / "cat.csv"),
                                      "--out", str(out)])
    assert scored.exit_code == 0, scored.output
    scores = json.loads(out.read_text())
    validate(scores, "scores", "scores")
    (pair,) = scores["pairs"]
    bob_picks_none = sum((t["left"] == "none") == (t["left_alignment"] > t["right_alignment"]) for t in trials)
    assert pair["pair"] == ["none", "gradreg[lambda=100]"] and pair["answers"] == 48
    # cat's side preference favours neither model: the key puts none on the left in 12 of 24 trials
    assert pair["chosen"] == bob_picks_none + 12
    bob_prefers = "first" if 2 * bob_picks_none > 24 else "second"
    assert pair[f"participants_preferring_{bob_prefers}"] == 1 and pair["participants_tied"] == 1
    cat_agrees = sum(t["left_alignment"] > t["right_alignment"] for t in trials)  # cat picks the key's left
    assert (scores["stand_in"]["chosen"], scores["stand_in"]["answers"]) == (24 + cat_agrees, 48)
    assert scores["position"]["chosen"] == (24 - cat_agrees) + 24  # bob's left clicks (mirrored) and all of cat's
    assert [(p["participant"], p["flags"]) for p in scores["participants"]] == [("bob", []), ("cat", ["one_side"])]
    assert "answers that may not be judgements: cat (one_side)" in scored.output
    assert "people first/second/tied" in scored.output and f"scores: {out}" in scored.output
    table = (out.parent / "study-answers.csv").read_text().splitlines()
    assert len(table) == 49 and table[0].startswith("participant,trial,attention_check,image,label,target,first_model")
    # --exclude leaves a participant out, and says so
    without = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.csv"), str(tmp_path / "cat.csv"),
                                       "--exclude", "cat", "--out", str(tmp_path / "x.json")])
    assert without.exit_code == 0 and "1 excluded (cat)" in without.output, without.output
    assert json.loads((tmp_path / "x.json").read_text())["pairs"][0]["answers"] == 24
    # the study's own files and the answers cannot be written over
    (tmp_path / "bob.json").write_text((tmp_path / "bob.csv").read_text())  # an answer file of another name
    for target in (folder / "study-key.json", folder / "questionnaire.html", tmp_path / "bob.json"):
        refused = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.json"), "--out", str(target)])
        assert refused.exit_code != 0 and "choose another path" in refused.output, refused.output
    assert json.loads((folder / "study-key.json").read_text()) == key
    checked = CliRunner().invoke(cli, ["validate", str(folder / "study-key.json"), str(out)])
    assert checked.exit_code == 0 and checked.output.count("ok ") == 2, checked.output  # known by content
    for target, words in ((out.parent / "study-answers.csv", "name a .json file"),
                          (tmp_path / "t.csv", "name a .json file")):
        refused = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.csv"), "--out", str(target)])
        assert refused.exit_code != 0 and words in refused.output, refused.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "study-key.json").write_text("{}")
    refused = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.csv"), "--out",
                                       str(other / "s.json")])
    assert refused.exit_code != 0 and "that folder holds another study" in refused.output, refused.output
    # nor anything it did not write: a result, or someone's own study-answers.csv beside --out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "result.json").write_text('{"run_id": "x"}')
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "study-answers.csv").write_text("my,own,table\n")
    for target, words in ((tmp_path / "mine" / "result.json", "exists and is not a study's scores file"),
                          (tmp_path / "theirs" / "s.json", "study-answers.csv exists and was not written by")):
        refused = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.csv"), "--out", str(target)])
        assert refused.exit_code != 0 and words in refused.output, refused.output
    assert (tmp_path / "mine" / "result.json").read_text() == '{"run_id": "x"}'
    assert (tmp_path / "theirs" / "study-answers.csv").read_text() == "my,own,table\n"
    given_a_result = CliRunner().invoke(cli, ["study", "score", str(tmp_path / "mine" / "result.json"),
                                              str(tmp_path / "bob.csv")])
    assert "result.json: is a result file, not a study key; pass the folder" in given_a_result.output
    again = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.csv"), "--out", str(out)])
    assert again.exit_code == 0, again.output  # its own scores and table are replaced
    default = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "bob.csv")])
    assert default.exit_code == 0, default.output
    checked = CliRunner().invoke(cli, ["validate", str(folder / "study-key.json"), str(folder / "study-scores.json")])
    assert checked.exit_code == 0 and checked.output.count("ok ") == 2, checked.output
    key["trials"][0]["left_alignment"] = 1.5
    broken = tmp_path / "broken" / "study-key.json"
    broken.parent.mkdir()
    broken.write_text(json.dumps(key))
    refused = CliRunner().invoke(cli, ["validate", str(broken)])
    assert refused.exit_code != 0 and "trials[0].left_alignment: 1.5 is greater than the maximum of 1" in refused.output


def test_a_key_that_contradicts_itself_is_refused_in_one_line(study, tmp_path):
    from igbench.errors import ResultError
    from igbench.study.record import validate

    folder, _ = study
    key = json.loads((folder / "study-key.json").read_text())
    for mend, message in [
        (lambda k: k["trials"][0].update(trial=999), "trials: trial numbers run from 1 to 24 across trials and catch_trials, once each; none is numbered 1"),
        (lambda k: k["trials"][0].update(left="typo"), "trials[0].left: sides 'typo' and"),
        (lambda k: k["trials"][0].update(right=k["trials"][0]["left"]), "trials[0].left: sides"),
        (lambda k: k["trials"][0].update(target=k["trials"][0]["label"]), "trials[0].target: the target is the label"),
        (lambda k: k["trials"][0].update(image=10_000), "trials[0].image: 10000 is beyond the 300 candidates"),
        (lambda k: k["pairs"][0].update(trials=23), "pairs[0].trials: 23, but 24 trials show the pair"),
        (lambda k: k.update(junk=1), "junk"),
        (lambda k: k["pairs"][0].update(pair=["none", "none"]), "pairs[0].pair"),
    ]:
        broken = json.loads(json.dumps(key))
        mend(broken)
        with pytest.raises(ResultError) as exc:
            validate(broken, "key", "k.json")
        assert message in str(exc.value) and "\n" not in str(exc.value), (message, str(exc.value))


def _node(script: str) -> str:
    return subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout


def _page_module(folder) -> str:
    """node code that loads the page's script as a module, as ``page``."""
    from igbench.study.questionnaire import SCRIPT

    path = folder / "page.js"
    path.write_text(SCRIPT)
    return f"const page = require({json.dumps(str(path))});"


def test_each_participant_gets_an_order_and_sides_of_their_own(tmp_path):
    """The page's layout: the same code gives the same order and sides (a reload resumes), other codes
    other orders, and about half of them swapped sides."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the questionnaire's script was not run")
    out = json.loads(_node(_page_module(tmp_path) + """
        const layouts = Array.from({ length: 200 }, (_, k) => page.participantLayout("s0123456789a", "p" + k, 30));
        const again = page.participantLayout("s0123456789a", "p7", 30);
        process.stdout.write(JSON.stringify({
          same: JSON.stringify(again) === JSON.stringify(layouts[7]),
          orders: new Set(layouts.map((l) => l.order.join())).size,
          mirrored: layouts.filter((l) => l.mirrored).length,
          permutation: layouts.every((l) => [...l.order].sort((a, b) => a - b).join() === [...Array(30).keys()].join()),
          other_study: JSON.stringify(page.participantLayout("s0123456789b", "p7", 30)) !== JSON.stringify(again),
          first_positions: new Set(layouts.map((l) => l.order[0])).size,
          code: [page.cleanCode("  =sum(a1) "), page.cleanCode("ann\u2028x\u0007"), page.cleanCode("-")],
          stored: [page.storedAnswers("null"), page.storedAnswers("[1]"), page.storedAnswers("{bad"),
                   page.storedAnswers('{"3": {"choice": "left", "seconds": 1}, "4": {"choice": "up", "seconds": 1}}')],
        }));
    """))
    assert out["same"] and out["permutation"] and out["other_study"]
    assert out["orders"] == 200 and out["first_positions"] >= 25  # every code its own order, starting anywhere
    assert 70 <= out["mirrored"] <= 130  # about half swapped (binomial: 200 codes, p 1/2)
    assert out["code"] == ["'=sum(a1)", "annx", "'-"]  # formula-looking codes quoted, control characters gone
    assert out["stored"] == [{}, {}, {}, {"3": {"choice": "left", "seconds": 1}}]  # damaged storage: dropped


def _codes_with_mirroring(tmp_path, study: str, n: int) -> dict[bool, str]:
    """A participant code whose page is mirrored and one whose page is not, for ``study``."""
    found = json.loads(_node(_page_module(tmp_path) + f"""
        const out = {{}};
        for (let k = 0; Object.keys(out).length < 2; k++) {{
          const code = "person" + k;
          const mirrored = page.participantLayout({json.dumps(study)}, code, {n}).mirrored;
          if (!(mirrored in out)) out[mirrored] = code;
        }}
        process.stdout.write(JSON.stringify(out));
    """))
    return {k == "true": v for k, v in found.items()}


def test_the_page_as_a_participant_uses_it(study, tmp_path):
    """node runs the page's own script: clicks and arrow keys, Alt+Left, a double click and a held key
    (ignored), Back (the earlier answer outlined, and answering returns to where the participant was, the
    first answer's time kept), a reload (resumed in the same order), the completion code only once the answers
    are downloaded; the CSV it saves, from a mirrored page and an unmirrored one, is what `study score` reads."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the questionnaire's script was not run")
    folder, _ = study
    key = json.loads((folder / "study-key.json").read_text())
    wanted = "".join("l" if t["left"] == "none" else "r" for t in key["trials"])  # always the plain model's
    codes = _codes_with_mirroring(tmp_path, key["study"], len(key["trials"]))
    runs = {}
    for mirrored, person in codes.items():
        driven = subprocess.run(["node", str(DRIVER), str(folder / "questionnaire.html"), person, wanted],
                                capture_output=True, text=True, check=True)
        runs[mirrored] = json.loads(driven.stdout)
    from igbench.study.answers import read_answers

    by_trial = {t["trial"]: t for t in key["trials"]}
    off = 0
    for mirrored, run in runs.items():
        assert run["arrow_on_start_page_prevented"] is False and run["after_alt_left"] == "Trial 1 of 24"
        first, second = run["after_double_click"]
        assert int(second.split()[1]) == int(first.split()[1]) + 1  # a double click and held keys: one answer
        assert run["back_at"] == "Trial 1 of 24" and run["outlined"] in ("chosen|", "|chosen")
        assert run["after_reanswer"] == second and run["resumed"] == second
        assert run["completion_before_download"] is None and run["completion"] is None  # the study set none
        assert run["partial_file"].endswith("-partial.csv") and run["file"] != run["partial_file"]
        path = tmp_path / f"{mirrored}.csv"
        path.write_text(run["csv"], newline="")
        rows = list(csv.DictReader(io.StringIO(run["csv"])))
        assert len(rows) == 24 and {r["mirrored"] for r in rows} == {str(int(mirrored))}
        assert {r["seconds"] for r in rows if int(r["trial"]) == run["first_shown"]} == {"2.00"}  # kept after Back
        answers = read_answers([path], key["study"], 24)
        # every answer picked the plain model's example, but the double click's: the left of the screen
        assert all(by_trial[a.trial][a.chose_key_side()] == "none" for a in answers if a.trial != run["double_click_trial"])
        assert [a.choice for a in answers if a.trial == run["double_click_trial"]] == ["left"]
        off += sum(by_trial[a.trial][a.chose_key_side()] != "none" for a in answers)
    scored = CliRunner().invoke(cli, ["study", "score", str(folder), *(str(tmp_path / f"{m}.csv") for m in runs),
                                      "--out", str(tmp_path / "s.json")])
    assert scored.exit_code == 0, scored.output
    (pair,) = json.loads((tmp_path / "s.json").read_text())["pairs"]
    assert pair["chosen"] == 48 - off and pair["participants_preferring_first"] == 2


def test_the_page_keeps_its_script_whatever_the_class_names():
    from igbench.study.questionnaire import page_data, render

    names = ["<!--<script>", "@SCRIPT@", "</script><b>", "a & b", "7"]
    shown = [(k + 1, k, "data:l", "data:r") for k in range(5)]
    html = render(page_data("0123456789ab", shown, names, intro="<b>consent</b> @DATA@", completion_code="</script>"))
    block = re.search(r'<script id="study-data" type="application/json">(.*?)</script>', html, re.S)[1]
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert [t["target"] for t in data["trials"]] == names
    assert data["intro"] == "<b>consent</b> @DATA@" and data["completion_code"] == "</script>"  # shown as text
    assert html.count("<script") == 2 and html.count("function answersCsv") == 1


def test_study_refusals_are_one_line(shared_data, two_models, study, tmp_path):
    result_path, cache = two_models

    def make(*args, out="x"):
        return _make(result_path, cache, shared_data, tmp_path / out, *args)

    def error(run) -> str:
        assert run.exit_code != 0 and run.output.startswith("Error: ") and run.output.count("\n") == 1, run.output
        return run.output

    assert "aims at no target class" in error(make("--attack", "fgsm"))
    assert "--param targeted=true for an art: attack" in error(make("--attack", "art:FastGradientMethod"))
    assert "compares two or more models" in error(make("--models", "none"))
    assert "--models: nothing not in the result" in error(make("--models", "none,nothing"))
    assert "--versus x: not among" in error(make("--versus", "x"))
    assert not (tmp_path / "x").exists()  # a failed make leaves no empty folder behind
    # a one-step TGSM at a tiny eps reaches no target: the error names what to change
    tiny = error(make("--eps", "0.001", "--candidates", "10", out="tiny"))
    assert "iterate the attack (--param steps=10" in tiny and "--all-examples" in tiny
    assert "already holds a study" in error(make(out=str(study[0])))
    assert "is a study's key" in error(CliRunner().invoke(cli, ["study", "make", str(study[0] / "study-key.json")]))
    short = make("--trials-per-pair", "500", "--candidates", "300", "--versus", "none", out="short")
    assert short.exit_code == 0 and "fewer trials than --trials-per-pair 500" in short.output, short.output
    loud = make("--eps", "8", "--candidates", "50", out="loud")
    assert loud.exit_code == 0 and "more than the data's whole range" in loud.output, loud.output
    assert "no study key here" in error(CliRunner().invoke(cli, ["study", "score", str(tmp_path), "a.csv"]))


def test_attention_checks_intro_and_completion_code(shared_data, two_models, tmp_path):
    from igbench.datasets.loading import load_dataset

    result_path, cache = two_models
    intro = tmp_path / "intro.txt"
    intro.write_text("This study is run by the lab.\n\nYou may stop at any time.\n")
    folder = tmp_path / "s"
    made = _make(result_path, cache, shared_data, folder, "--trials-per-pair", "6", "--candidates", "200",
                 "--catch-trials", "4", "--intro", str(intro), "--completion-code", "C0DE-42")
    assert made.exit_code == 0 and "6 trials and 4 attention check(s)" in made.output, made.output
    key = json.loads((folder / "study-key.json").read_text())
    checks = key["catch_trials"]
    assert len(checks) == 4 and sorted(c["correct"] for c in checks) == ["left", "left", "right", "right"]
    assert sorted(t["trial"] for t in key["trials"] + checks) == list(range(1, 11))
    from igbench.engine.attack import make_context, run_attack
    from igbench.engine.cache import CheckpointStore
    from igbench.engine.result_models import load_result_models
    from igbench.registry import get_registry
    from igbench.results.io import read_result

    data = load_dataset("mnist", shared_data, {})
    x, y = data.test_x[:200], data.test_y[:200]
    models = load_result_models(read_result(result_path), CheckpointStore(cache), "cpu")
    tgsm = get_registry().get("attack", "tgsm")
    adv = {m: run_attack(tgsm, {"eps": 0.3}, models[m], x, y, make_context(data, "cpu", 0), progress=False)
           for m in models}
    assert sorted(c["model"] for c in checks) == sorted(["none", "gradreg[lambda=100]"] * 2)  # the models take turns
    page = {t["trial"]: t for t in _page_data((folder / "questionnaire.html").read_text())["trials"]}
    for c in checks:  # the model's examples of an image of the named class and of another class, as the key says
        run = adv[c["model"]]
        assert int(y[c["target_image"]]) == c["target"] != c["other_label"] == int(y[c["other_image"]])
        assert c["target"] not in (int(run.targets[c["target_image"]]), int(run.targets[c["other_image"]]))
        shown = page[c["trial"]]
        assert shown["target"] == str(c["target"])
        named = shown[c["correct"]]
        other = shown["right" if c["correct"] == "left" else "left"]
        assert torch.allclose(_pixels(named), run.x_adv[c["target_image"]], atol=0.6 / 255)
        assert torch.allclose(_pixels(other), run.x_adv[c["other_image"]], atol=0.6 / 255)
        assert not torch.allclose(_pixels(named), x[c["target_image"]], atol=0.05)  # noisy like every trial
    assert not {c["target_image"] for c in checks} & {t["image"] for t in key["trials"]}
    if shutil.which("node"):
        driven = json.loads(subprocess.run(["node", str(DRIVER), str(folder / "questionnaire.html"), "dee", "l" * 10],
                                           capture_output=True, text=True, check=True).stdout)
        assert driven["intro"] == ["This study is run by the lab.", "You may stop at any time."]
        assert driven["completion_before_download"] is None and driven["completion"] == "C0DE-42"
        assert driven["instructions"].startswith("A few pairs have a clear answer")
    # eve passes every check, fay misses one; the checks stay out of the models' tally
    sid = key["study"]
    rows = ["study,participant,trial,choice"]
    for person, miss in (("eve", None), ("fay", checks[0]["trial"])):
        rows += [f"{sid},{person},{t['trial']},left" for t in key["trials"]]
        for c in checks:
            side = c["correct"] if c["trial"] != miss else ("right" if c["correct"] == "left" else "left")
            rows.append(f"{sid},{person},{c['trial']},{side}")
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    scored = CliRunner().invoke(cli, ["study", "score", str(folder), str(tmp_path / "a.csv")])
    assert scored.exit_code == 0, scored.output
    scores = json.loads((folder / "study-scores.json").read_text())
    people = {p["participant"]: p for p in scores["participants"]}
    assert (people["eve"]["catch_correct"], people["eve"]["catch_answers"], people["eve"]["flags"]) == (4, 4, [])
    assert (people["fay"]["catch_correct"], people["fay"]["flags"]) == (3, ["missed_catch"])
    assert people["eve"]["answers"] == 10 and scores["n_catch_trials"] == 4
    assert scores["pairs"][0]["answers"] == 12 and scores["position"]["answers"] == 12
    assert "fay (missed_catch)" in scored.output and "checks passed" in scored.output
    missing = CliRunner().invoke(cli, ["study", "make", str(result_path), "--intro", str(tmp_path / "nope.txt")])
    assert missing.exit_code != 0 and "does not exist" in missing.output and missing.output.count("\n") == 1


def test_power_simulation_shows_what_each_test_can_find_and_how_often_it_errs():
    import numpy as np

    from igbench.errors import UsageError
    from igbench.study.power import simulate_power, two_sided_p
    from igbench.study.statistics import share

    k, n = np.array([0, 3, 9, 10, 20, 0]), np.array([10, 10, 10, 10, 40, 0])
    assert two_sided_p(k, n).tolist() == pytest.approx([share(a, b).p_value if b else 1.0 for a, b in zip(k, n)])
    for kwargs, message in (({"spread": float("nan")}, "--spread must be a number >= 0, e.g. 0.1, got nan"),
                            ({"seed": -1}, "--seed must be >= 0, got -1"), ({"alpha": 0}, "--alpha must lie in (0, 1)"),
                            ({"preference": 1.5}, "--preference must lie in [0, 1], got 1.5")):
        with pytest.raises(UsageError, match=re.escape(message)):  # numpy's ValueError, or one line for all three
            simulate_power(30, [20], **{"preference": 0.6, **kwargs})
    with pytest.raises(UsageError, match="lists a count twice"):
        simulate_power(30, [5, 5], 0.6)
    alike = simulate_power(30, [20], 0.5, spread=0.0, sims=4000, seed=1)[0]
    assert alike["false_positive_answers"] < 0.07 and alike["false_positive_participants"] < 0.07  # at most alpha
    rows = simulate_power(30, [5, 20, 60], 0.6, spread=0.2, sims=2000, seed=0)
    assert rows == simulate_power(30, [5, 20, 60], 0.6, spread=0.2, sims=2000, seed=0)  # seeded
    # people who differ: the test over answers "finds" a preference that is not there far more often than 5%
    assert all(r["false_positive_answers"] > 0.15 for r in rows)
    assert all(r["false_positive_participants"] < 0.07 for r in rows)
    powers = [r["power_participants"] for r in rows]
    assert powers[0] < 0.05 < powers[1] < powers[2]  # 5 people can never reach p < 0.05 by a sign test; more can
    out = CliRunner().invoke(cli, ["study", "power", "--participants", "5,10", "--sims", "200"])
    assert out.exit_code == 0 and "power % (people)" in out.output and len(out.output.splitlines()) == 5, out.output
    bad = CliRunner().invoke(cli, ["study", "power", "--participants", "five"])
    assert bad.exit_code != 0 and "write whole numbers separated by commas" in bad.output
    assert "must lie in [0, 1]" in CliRunner().invoke(cli, ["study", "power", "--preference", "60"]).output


def _browser_env() -> dict | None:
    """The environment in which node finds playwright-core and a Chromium is there, or None."""
    import os

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if shutil.which("node") is None or not Path(chromium).is_file():
        return None
    env = dict(os.environ)
    if shutil.which("npm"):
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True).stdout.strip()
        env["NODE_PATH"] = os.pathsep.join(p for p in (env.get("NODE_PATH"), root) if p)
    found = subprocess.run(["node", "-e", "require.resolve('playwright-core')"], env=env, capture_output=True)
    return env if found.returncode == 0 else None


def test_the_page_in_a_real_browser(shared_data, two_models, tmp_path):
    """Headless Chromium, real clicks and keys: Enter and Space on the button just clicked answer nothing, a
    reload resumes, the completion code shows only after the download, and the downloaded file scores."""
    env = _browser_env()
    if env is None:
        pytest.skip("no Chromium with playwright-core here (apt-get install chromium; npm install -g playwright-core)")
    result_path, cache = two_models
    folder = tmp_path / "s"
    made = _make(result_path, cache, shared_data, folder, "--trials-per-pair", "6", "--candidates", "200",
                 "--catch-trials", "2", "--completion-code", "DONE-7")
    assert made.exit_code == 0, made.output
    key = json.loads((folder / "study-key.json").read_text())
    sides = {t["trial"]: ("l" if t["left"] == "none" else "r") for t in key["trials"]}
    sides.update({c["trial"]: ("l" if c["correct"] == "left" else "r") for c in key["catch_trials"]})
    wanted = "".join(sides[k] for k in sorted(sides))
    out = tmp_path / "browser"
    out.mkdir()
    driven = subprocess.run(["node", str(Path(__file__).parent / "fixtures" / "questionnaire_browser.js"),
                             str(folder / "questionnaire.html"), "pat", wanted, str(out)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert driven.returncode == 0, driven.stderr
    log = json.loads(driven.stdout)
    assert log["errors"] == [] and log["enter_answered"] is False
    assert log["after_reload"] == log["before_reload"] == "Trial 5 of 8"  # four answered before the reload
    assert log["completion_before_download"] is False and log["completion_after_download"] == "DONE-7"
    assert log["download_name"] == f"answers-{key['study']}-pat.csv"
    assert (out / "trial.png").stat().st_size > 5000
    scored = CliRunner().invoke(cli, ["study", "score", str(folder), str(out / "answers.csv")])
    assert scored.exit_code == 0, scored.output
    scores = json.loads((folder / "study-scores.json").read_text())
    (person,) = scores["participants"]
    assert (person["answers"], person["catch_correct"], person["catch_answers"]) == (8, 2, 2)
    assert (scores["pairs"][0]["chosen"], scores["pairs"][0]["answers"]) == (6, 6)
