"""Interpretability measures, the saliency / adversarial figures and `igbench explain` end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from igbench.cli import cli
from igbench.interpret import measures as M
from igbench.interpret.figures import DPI, adversarial_grid, figure_size, saliency_grid


@pytest.fixture(scope="module")
def digits(mnist_slice):
    """200 real MNIST test digits and their labels."""
    return mnist_slice.test_x[:200], mnist_slice.test_y[:200]


def _untrained(arch: str = "mlp", seed: int = 0):
    from igbench.registry import get_registry

    torch.manual_seed(seed)
    plugin = get_registry().get("architecture", arch)
    return plugin.build((1, 28, 28), 10, plugin.resolve_params({})).eval()


# --------------------------------------------------------------------------- measures
def test_target_alignment_tells_a_target_shaped_perturbation_from_noise(mnist_slice, digits):
    """The human-study stand-in: a perturbation that draws the target's class-mean image scores near 1,
    random signs of the same size score far lower, the opposite direction near -1; undefined cases are NaN."""
    from igbench.interpret.target_alignment import class_means, random_sign_alignment, target_alignment

    x, y = digits
    means = class_means(mnist_slice.train_x, mnist_slice.train_y, 10)
    for k in (0, 7):  # the class means are the mean training images
        assert torch.allclose(means[k], mnist_slice.train_x[mnist_slice.train_y == k].mean(0), atol=1e-6)
    t = (y + 1) % 10
    toward = x + 0.05 * (means[t] - means[y])
    assert float(target_alignment(x, toward, y, t, means).min()) > 0.999
    assert float(target_alignment(x, x - 0.05 * (means[t] - means[y]), y, t, means).max()) < -0.999
    gen = torch.Generator().manual_seed(0)
    noise = x + 0.3 * (torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1)
    assert abs(float(target_alignment(x, noise, y, t, means).mean())) < 0.05  # unclipped noise: no direction
    clipped = target_alignment(x, noise.clamp(0, 1), y, t, means).mean()
    assert float(clipped) < 0.5  # clipping alone brightens the background, far from a target-shaped change
    level = random_sign_alignment(x, y, 0.3, (0.0, 1.0), means, seed=0)
    assert level == random_sign_alignment(x, y, 0.3, (0.0, 1.0), means, seed=0)  # seeded
    assert abs(level - float(clipped)) < 0.05  # every other class as target: close to the next-class value
    same = target_alignment(x[:3], x[:3], y[:3], t[:3], means)  # no perturbation
    assert bool(same.isnan().all())
    assert bool(target_alignment(x[:3], toward[:3], y[:3], y[:3], means).isnan().all())  # target == label


def test_attacks_on_a_trained_model_draw_the_target_more_than_random_signs(mnist_slice, trained_cnn, digits):
    """TGSM's examples against a trained model move toward their target class's template more than
    clipped random signs of the same eps do; an untargeted attack is scored against the class it reached."""
    from igbench.engine.attack import make_context
    from igbench.interpret.target_alignment import adversarial_alignment, class_means, target_alignment
    from igbench.registry import get_registry

    x, y = digits
    means = class_means(mnist_slice.train_x, mnist_slice.train_y, 10)
    reg = get_registry()
    ctx = make_context(mnist_slice, "cpu", 0)
    tgsm = adversarial_alignment(trained_cnn, reg.get("attack", "tgsm"), {"eps": 0.3}, x, y, ctx, means)
    gen = torch.Generator().manual_seed(0)
    noise = (x + 0.3 * (torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1)).clamp(0, 1)
    random_signs = float(target_alignment(x, noise, y, (y + 1) % 10, means).mean())
    assert tgsm.count == x.shape[0] and tgsm.mean > random_signs + 0.02, (tgsm, random_signs)
    fgsm = adversarial_alignment(trained_cnn, reg.get("attack", "fgsm"), {"eps": 0.3}, x, y,
                                 make_context(mnist_slice, "cpu", 0), means)
    assert 0 < fgsm.count < x.shape[0] and fgsm.mean > random_signs  # only the images FGSM moved off their label
    # untargeted: every scored example reached "its" class, so both means agree and reached = success rate
    assert fgsm.mean_reached == pytest.approx(fgsm.mean) and fgsm.reached == pytest.approx(fgsm.count / x.shape[0])


def test_alignment_over_reached_targets_is_the_attacks_success_and_an_iterated_attack_reaches_more(
        mnist_slice, trained_cnn, digits):
    """`reached` is the targeted attack's own success rate against the model, `mean_reached` the mean over
    exactly those images; ten TGSM steps of eps/10 each reach the target on more images than one step."""
    from igbench.engine.attack import make_context, run_attack
    from igbench.interpret.target_alignment import adversarial_alignment, class_means, target_alignment
    from igbench.registry import get_registry

    x, y = digits
    means = class_means(mnist_slice.train_x, mnist_slice.train_y, 10)
    tgsm = get_registry().get("attack", "tgsm")
    one = adversarial_alignment(trained_cnn, tgsm, {"eps": 0.15}, x, y, make_context(mnist_slice, "cpu", 0), means)
    run = run_attack(tgsm, {"eps": 0.15}, trained_cnn, x, y, make_context(mnist_slice, "cpu", 0))
    assert one.reached == pytest.approx(run.stats["success_rate"])
    hit = run.predictions == run.targets
    assert 0 < int(hit.sum()) < x.shape[0], int(hit.sum())  # some reach it, some do not: the two means differ
    per_image = target_alignment(x, run.x_adv, y, run.targets, means)
    assert one.mean_reached == pytest.approx(float(per_image[hit].mean()), abs=1e-6)
    assert one.mean == pytest.approx(float(per_image.mean()), abs=1e-6)
    iterated = adversarial_alignment(trained_cnn, tgsm, {"eps": 0.15, "steps": 10}, x, y,
                                     make_context(mnist_slice, "cpu", 0), means)
    assert iterated.reached > one.reached + 0.1, (iterated.reached, one.reached)


def test_image_shaped_gradient_scores_more_interpretable_than_noise(digits):
    x, _ = digits
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    image_like = x + 0.05 * torch.randn(x.shape, generator=gen)
    a, b = M.all_measures(image_like, x), M.all_measures(noise, x)
    assert set(a) == set(M.MEASURES)
    for key, direction in M.MEASURES.items():
        better = (a[key] - b[key]) * direction > 0  # per image: is the image-shaped gradient on the good side?
        assert better.float().mean() > 0.95, (key, a[key].mean(), b[key].mean())
    # noise spreads mass evenly: its share on the digit is about the digit's share of pixels (~0.12 on MNIST)
    pixel_share = M.object_mask(x).float().flatten(1).mean(1)
    assert (b["grad_on_object"] - pixel_share).abs().mean() < 0.03
    assert a["grad_on_object"].mean() > 0.6 and a["grad_image_corr"].mean() > 0.9
    assert b["grad_image_corr"].abs().mean() < 0.1


def test_measures_are_scale_free_and_sign_free(digits):
    x, _ = digits
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * x
    base = M.all_measures(g, x)
    for scaled in (1e-4 * g, -250.0 * g):
        other = M.all_measures(scaled, x)
        for key in M.MEASURES:
            assert torch.allclose(base[key], other[key], atol=1e-4, equal_nan=True), key


def test_measures_known_values_and_undefined_cases(digits):
    x, _ = digits
    x = x[:4]
    spike = torch.zeros_like(x)
    spike[:, 0, 14, 14] = 3.0
    m = M.all_measures(spike, x)
    assert torch.allclose(m["grad_tv"], torch.full((4,), 4.0))
    assert torch.allclose(m["grad_entropy"], torch.zeros(4), atol=1e-6)
    assert (m["grad_gini"] > 0.99).all()
    on_digit = M.object_mask(x).float().unsqueeze(1)
    assert torch.allclose(M.mass_on_object(on_digit, x), torch.ones(4))
    flat = torch.ones_like(x)
    assert torch.allclose(M.gini(flat), torch.zeros(4), atol=1e-6)
    assert torch.allclose(M.entropy(flat), torch.ones(4), atol=1e-6)
    assert torch.allclose(M.total_variation(flat), torch.zeros(4), atol=1e-6)
    # an all-zero gradient has no defined score: NaN per image, skipped by the summary, None when all undefined
    zero = torch.zeros_like(x)
    assert all(torch.isnan(v).all() for v in M.all_measures(zero, x).values())
    mixed = torch.cat([zero[:2], spike[2:]])
    summary = M.summarize(M.all_measures(mixed, x))
    assert summary["grad_tv"] == pytest.approx(4.0)
    assert M.summarize(M.all_measures(zero, x)) == {k: None for k in M.MEASURES}


def test_measures_against_values_written_out(digits):
    """Each measure on inputs whose value is known independently: TV counts both directions, the
    correlation is Pearson's (numpy's), the object mask is relative to each image's range, and the
    magnitude sums the channels' absolute values."""
    import numpy as np

    x, _ = digits
    row, col = torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28)
    row[0, 0, 14, :] = 1.0
    col[0, 0, :, 14] = 1.0
    # a full line of mass 1/28 per pixel: two borders of 28 pixels each, across the line only
    assert float(M.total_variation(row)[0]) == pytest.approx(2.0)
    assert float(M.total_variation(col)[0]) == pytest.approx(2.0)

    g = torch.randn(x[:8].shape, generator=torch.Generator().manual_seed(2)) + 3 * x[:8]
    corr = M.image_correlation(g, x[:8])
    for i in range(8):
        expected = np.corrcoef(g[i].abs().flatten().numpy(), x[i].flatten().numpy())[0, 1]
        assert float(corr[i]) == pytest.approx(float(expected), abs=1e-5)

    shifted = 0.5 * x[:8] - 0.25  # notMNIST-like range: the same strokes are the object
    assert torch.equal(M.object_mask(shifted), M.object_mask(x[:8]))
    assert 0.05 < float(M.object_mask(x[:8]).float().mean()) < 0.3

    three = torch.zeros(2, 3, 4, 4)
    three[:, 0], three[:, 1] = 1.0, -1.0  # channels of opposite sign do not cancel
    assert torch.equal(M.gradient_magnitude(three), torch.full((2, 4, 4), 2.0))


def test_summary_of_a_model_uses_the_logprob_sum_gradient(digits):
    from igbench.engine.gradients import logprob_sum_gradient, loss_input_gradient

    x, y = digits
    model = _untrained("mlp")
    grads = M.input_gradients(model, x[:50], batch_size=16)  # several batches
    assert torch.allclose(grads, logprob_sum_gradient(model, x[:50]), atol=1e-6)
    loss_grads = M.input_gradients(model, x[:50], y[:50], gradient="loss", batch_size=16)
    assert torch.allclose(loss_grads, loss_input_gradient(model, x[:50], y[:50])[0], atol=1e-6)
    summary = M.interpretability_summary(model, x[:50], y[:50])
    expected = M.summarize(M.all_measures(grads, x[:50]))
    assert summary.keys() == expected.keys()
    assert all(math.isfinite(v) and v == pytest.approx(expected[k], abs=1e-5) for k, v in summary.items())


# --------------------------------------------------------------------------- figures
def _png(path):
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 1000
    return mpimg.imread(path)


def test_figures_have_one_row_per_model_and_one_column_per_image(digits, tmp_path):
    from igbench.engine.attack import make_context
    from igbench.registry import get_registry

    x, y = digits
    models = {"a": _untrained("mlp", 0), "b": _untrained("mlp", 1), "c": _untrained("mlp", 2)}
    sal = tmp_path / "sal.png"
    saliency_grid(models, x, sal, n_images=5)
    img = _png(sal)
    width, height = figure_size(1 + 3, 5)
    assert img.shape[:2] == (round(height * DPI), round(width * DPI))
    small = tmp_path / "small.png"
    saliency_grid({"a": models["a"]}, x, small, n_images=2)
    img_small = _png(small)
    # 4 rows x 5 columns against 2 rows x 2 columns: twice the height, 3 more cells wide
    assert img.shape[0] == 2 * img_small.shape[0]
    assert img.shape[1] - img_small.shape[1] == round(3 * (figure_size(1, 1)[0] - figure_size(1, 0)[0]) * DPI)
    assert img[..., :3].std() > 0.1  # not blank

    data = type("D", (), {"clip_min": 0.0, "clip_max": 1.0, "num_classes": 10})()
    tgsm = get_registry().get("attack", "tgsm")
    adv = tmp_path / "adv.png"
    adversarial_grid(models, x, y, tgsm, {"eps": 0.3}, make_context(data, "cpu", 0), adv, n_images=5)
    assert _png(adv).shape == img.shape


# --------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tiny_result(shared_data, tmp_path_factory):
    """A real two-model result (mlp, plain and gradreg, 20 steps) with its checkpoint cache."""
    root = tmp_path_factory.mktemp("explain")
    out, cache = root / "tiny.json", root / "cache"
    args = ["run", "--dataset", "mnist", "--data-dir", str(shared_data), "--arch", "mlp", "--defense", "gradreg",
            "--attack", "fgsm", "--eps", "0.3", "--steps", "20", "--n-test", "100", "--param", "lambda=10",
            "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    return out, cache


def test_explain_command_end_to_end(shared_data, tiny_result, tmp_path):
    from igbench.results.io import read_result

    result_path, cache = tiny_result
    before = json.loads(result_path.read_text())
    assert "interpretability" not in before
    common = ["--data-dir", str(shared_data), "--cache-dir", str(cache), "--device", "cpu"]

    out_dir = tmp_path / "figs"
    dry = CliRunner().invoke(cli, ["explain", str(result_path), "--out", str(out_dir), "--n-images", "4",
                                   "--no-update-result", *common])
    assert dry.exit_code == 0, dry.output
    assert json.loads(result_path.read_text()) == before  # --no-update-result leaves the file alone
    assert (out_dir / "saliency.png").stat().st_size > 1000
    assert (out_dir / "adversarial-tgsm-eps0.3.png").stat().st_size > 1000
    record = json.loads((out_dir / "explain-scores.json").read_text())  # the only record of a dry run's numbers
    assert record["result"] == result_path.as_posix() and record["explain"]["attack"] == "tgsm"
    assert [e["model"] for e in record["interpretability"]] == [m["id"] for m in before["models"]]
    assert all(0 <= e["adv_target_reached"] <= 1 for e in record["interpretability"])
    assert f"scores record:      {out_dir / 'explain-scores.json'}" in dry.output
    many = CliRunner().invoke(cli, ["explain", str(result_path), "--out", str(tmp_path / "many"), "--n-images", "101",
                                    "--max-images", "8", "--no-update-result", *common])
    assert many.exit_code == 0, many.output  # cut to the scored images without a word, before
    assert "note: --n-images 101 is more than the 100 images the result scored; the figures show those 100" in many.output

    run = CliRunner().invoke(cli, ["explain", str(result_path), "--attack", "fgsm", "--eps", "0.2", *common])
    assert run.exit_code == 0, run.output
    default_dir = result_path.with_name("tiny-explain")
    assert _png(default_dir / "saliency.png").shape[:2] == (round(figure_size(3, 8)[1] * DPI),
                                                           round(figure_size(3, 8)[0] * DPI))
    assert (default_dir / "adversarial-fgsm-eps0.2.png").is_file()
    for mid in ("none", "gradreg"):
        assert any(line.split()[:1] == [mid] for line in run.output.splitlines()), run.output
    data = read_result(result_path)  # still validates
    entries = {e["model"]: e for e in data["interpretability"]}
    assert list(entries) == [m["id"] for m in data["models"]]
    for entry in entries.values():
        assert entry["n_images"] == 100
        for key in M.MEASURES:
            assert isinstance(entry[key], float) and math.isfinite(entry[key])
        assert 0 <= entry["grad_on_object"] <= 1 and 0 <= entry["grad_tv"] <= 4
        assert -1 <= entry["adv_target_alignment"] <= 1
        assert 0 <= entry["adv_target_reached"] <= 1
        if entry["adv_target_reached"] > 0:  # fgsm is untargeted: its examples reached the class they moved to
            assert entry["adv_target_alignment_reached"] == pytest.approx(entry["adv_target_alignment"])
    how = data["explain"]  # how the scores were made, and by which code
    assert how["attack"] == "fgsm" and how["attack_params"]["eps"] == 0.2 and how["n_images"] == 100
    assert how["gradient"] == "logprob_sum" and how["igbench"]
    assert 0 < how["random_sign_alignment"] < 0.5  # the noise level, printed too
    assert f"reach adv_target_alignment {how['random_sign_alignment']:.3f}" in run.output
    assert json.loads((default_dir / "explain-scores.json").read_text()) == {
        "result": result_path.as_posix(), "run_id": data["run_id"], "explain": how,
        "interpretability": data["interpretability"]}
    # the rest of the result is unchanged
    assert {k: v for k, v in data.items() if k not in ("interpretability", "explain")} == before


def test_explain_loads_the_data_with_the_parameters_the_result_recorded(shared_data, tmp_path):
    """A grid on MNIST with 5,000 validation images held out (the paper's split) records its data set
    parameters, so `explain` needs only --data-dir; a result without them (older files) says which to pass."""
    from igbench.results.io import read_result, write_result

    out, cache = tmp_path / "split.json", tmp_path / "cache"
    run = CliRunner().invoke(cli, ["run", "--dataset", "mnist", "--param", "mnist.validation=5000", "--arch", "mlp",
                                   "--attack", "fgsm", "--eps", "0.1", "--steps", "5", "--n-test", "50",
                                   "--data-dir", str(shared_data), "--out", str(out), "--cache-dir", str(cache),
                                   "--no-progress"])
    assert run.exit_code == 0, run.output
    data = read_result(out)
    assert data["dataset"]["params"]["validation"] == 5000 and data["dataset"]["variant"] == "train-55000"
    common = ["--data-dir", str(shared_data), "--cache-dir", str(cache), "--device", "cpu", "--no-update-result",
              "--n-images", "2", "--max-images", "20", "--out", str(tmp_path / "figs")]
    ok = CliRunner().invoke(cli, ["explain", str(out), *common])
    assert ok.exit_code == 0, ok.output
    del data["dataset"]["params"]
    old = tmp_path / "old.json"
    write_result(old, data)
    common[-1] = str(tmp_path / "figs-old")  # figs holds split.json's figures: old.json gets a folder of its own
    failed = CliRunner().invoke(cli, ["explain", str(old), *common])
    assert failed.exit_code != 0 and "pass the run's --data-dir and dataset --param values" in failed.output
    again = CliRunner().invoke(cli, ["explain", str(old), "--param", "mnist.validation=5000", *common])
    assert again.exit_code == 0, again.output


def test_explain_command_errors_are_one_line(shared_data, tiny_result, tmp_path, monkeypatch):
    from igbench.results.io import write_result

    result_path, cache = tiny_result
    runner = CliRunner()
    common = ["--data-dir", str(shared_data), "--device", "cpu", "--no-update-result", "--out", str(tmp_path / "o")]

    def error_of(args):
        res = runner.invoke(cli, ["explain", *args])
        assert res.exit_code != 0
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
        return lines[0]

    assert "no such result file" in error_of([str(tmp_path / "missing.json"), *common])
    assert "attack 'jsma' takes no eps (it would be ignored); drop --eps" in error_of(
        [str(result_path), "--attack", "jsma", "--eps", "0.3", *common])
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1"}')
    assert "bad.json" in error_of([str(bad), *common])
    assert "not in the cache" in error_of([str(result_path), "--cache-dir", str(tmp_path / "empty"), *common])
    # ART's own parameter checks run before any model loads (an empty cache would be the error otherwise)
    text = error_of([str(result_path), "--cache-dir", str(tmp_path / "empty"), "--attack",
                     "art:AutoProjectedGradientDescent", "--eps", "0", *common])
    assert "art:AutoProjectedGradientDescent rejected its parameters" in text and "larger than zero" in text
    other = json.loads(result_path.read_text())
    other["dataset"]["variant"] = "some-other-variant"
    moved = tmp_path / "other.json"
    write_result(moved, other)
    assert "variant" in error_of([str(moved), "--cache-dir", str(cache), *common])
    retrained = json.loads(result_path.read_text())  # as if the cached model had been trained again
    retrained["models"][1]["checkpoint_sha256"] = "0" * 64
    write_result(moved, retrained)
    assert f"checkpoint of model '{retrained['models'][1]['id']}'" in error_of([str(moved), "--cache-dir", str(cache),
                                                                                 *common])
    assert "holds other weights than the result was made with" in error_of([str(moved), "--cache-dir", str(cache),
                                                                             *common])
    assert "no selected plugin takes 'lamda'" in error_of([str(result_path), "--cache-dir", str(cache),
                                                           "--param", "lamda=1", *common])
    # no --data-dir, and the data is nowhere igbench looks by itself: the error says where the run's came from
    monkeypatch.setenv("IGBENCH_OFFLINE", "1")
    monkeypatch.delenv("IGBENCH_DATA_DIR", raising=False)
    text = error_of([str(result_path), "--cache-dir", str(tmp_path / "no-data"), "--device", "cpu",
                     "--no-update-result", "--out", str(tmp_path / "o")])
    assert text.endswith(f"(the result's data came from {shared_data / 'mnist'}: pass --data-dir with the folder "
                         "that holds it, as the run did)"), text
    # made with a plugin package this machine lacks: the error names the package to install
    foreign = json.loads(result_path.read_text())
    foreign["dataset"]["name"] = "mnist-tiny"
    foreign["environment"]["plugin_packages"] = {"igbench-myplugin": "0.1.0"}
    write_result(moved, foreign)
    text = error_of([str(moved), "--cache-dir", str(cache), *common])
    assert "unknown dataset 'mnist-tiny'" in text and text.endswith(
        "the result was made with the plugin package(s) igbench-myplugin 0.1.0: install them here (e.g. pip install "
        "igbench-myplugin) to use its plugins"), text


def test_explain_eps_takes_fractions(tmp_path):
    missing = CliRunner().invoke(cli, ["explain", str(tmp_path / "none.json"), "--eps", "8/255"])
    assert missing.exit_code == 1 and "no such result file" in missing.output, missing.output  # read as a number
    bad = CliRunner().invoke(cli, ["explain", str(tmp_path / "none.json"), "--eps", "8/0"])
    assert bad.exit_code == 2 and "'8/0' is not a number" in bad.output, bad.output


def test_explain_says_what_target_means_for_an_untargeted_attack():
    from igbench.cli.explain_cmd import render_scores

    scores = {"none": {"adv_target_reached": 0.8}}
    untargeted = render_scores(scores, 10, "logprob_sum", untargeted="fgsm")
    assert ("fgsm is untargeted: an example's target is the class the model reads it as, so adv_target_reached is "
            "the attack's success rate (any class but the label)") in untargeted
    assert "untargeted" not in render_scores(scores, 10, "logprob_sum")


def test_explain_does_not_overwrite_a_result_a_grid_is_writing_or_has_replaced(shared_data, tiny_result, tmp_path,
                                                                               monkeypatch):
    """explain reads the result, computes for a while, then writes it back with its scores: a grid run
    into the same file meanwhile used to be overwritten (and, since a grid removes a killed writer's
    temporary files under its lock, could remove explain's)."""
    import shutil

    from igbench.engine import journal
    from igbench.interpret import measures
    from igbench.locks import exclusive_lock
    from igbench.results.io import write_result

    source, cache = tiny_result
    result_path = tmp_path / "r.json"
    shutil.copy(source, result_path)
    args = ["explain", str(result_path), "--data-dir", str(shared_data), "--cache-dir", str(cache), "--device", "cpu",
            "--n-images", "4", "--max-images", "8", "--out", str(tmp_path / "figs"), "--no-progress"]
    before = result_path.read_bytes()
    with exclusive_lock(journal.Journal(journal.journal_path(result_path), "").lock_path):  # as a running grid
        busy = CliRunner().invoke(cli, args)
    assert busy.exit_code == 2 and "a grid is being run into this result now" in busy.output, busy.output
    assert result_path.read_bytes() == before and (tmp_path / "figs" / "explain-scores.json").is_file()
    journal.Journal(journal.journal_path(result_path), "").lock_path.unlink()  # the "grid" is gone

    real = measures.interpretability_summary

    written = {}

    def replaced_meanwhile(*a, **kw):  # another run finishes into the same file while explain computes
        other = json.loads(before)
        other["run_id"] = "f" * 64
        write_result(result_path, other)
        written["bytes"] = result_path.read_bytes()
        return real(*a, **kw)

    monkeypatch.setattr(measures, "interpretability_summary", replaced_meanwhile)
    gone = CliRunner().invoke(cli, args)
    assert gone.exit_code == 2 and "was replaced by another run while explain ran" in gone.output, gone.output
    assert result_path.read_bytes() == written["bytes"], "the other run's result is left as it wrote it"
    assert not list(tmp_path.glob("*.lock")), "no lock file left behind"
    monkeypatch.setattr(measures, "interpretability_summary", real)
    shutil.copy(source, result_path)
    done = CliRunner().invoke(cli, args)  # nothing in the way: the scores go into the result
    assert done.exit_code == 0 and "interpretability" in json.loads(result_path.read_text()), done.output
    assert not list(tmp_path.glob("*.lock"))


def test_an_explain_record_names_the_files_that_made_the_tree_dirty(tmp_path, monkeypatch, git):
    """`igbench replicate` scores right after writing its result, so the tree is dirty then; the record
    says which files, as a result's environment does, so a reader can tell outputs from code."""
    from igbench.interpret.explain import explain_record
    from igbench.results.io import validate_scores

    git("init", "-q")
    (tmp_path / "result.json").write_text("{}")
    git("add", "result.json")
    git("commit", "-q", "-m", "first")
    monkeypatch.setattr("igbench.environment.SOURCE_DIR", tmp_path)  # as if igbench's code lay there
    clean = explain_record("tgsm", {"eps": 0.3}, "logprob_sum", 10)
    assert clean["git_dirty"] is False and "git_dirty_paths" not in clean
    (tmp_path / "result.json").write_text('{"new": 1}')
    dirty = explain_record("tgsm", {"eps": 0.3}, "logprob_sum", 10)
    assert dirty["git_dirty"] is True and dirty["git_dirty_paths"] == ["result.json"]
    validate_scores({"result": "result.json", "explain": dirty, "interpretability": []}, "s.json")


def test_a_broken_scores_record_is_refused_in_one_line(tmp_path):
    from igbench.errors import ResultError
    from igbench.interpret.explain import explain_record, write_scores

    record = explain_record("tgsm", {"eps": 0.3}, "logprob_sum", 10)
    good = write_scores(tmp_path / "s.json", "r.json", record, [{"model": "none", "adv_target_reached": 0.5}])
    assert json.loads(good.read_text())["interpretability"][0]["adv_target_reached"] == 0.5
    with pytest.raises(ResultError) as err:
        write_scores(tmp_path / "t.json", "r.json", {**record, "gradient": "hessian"}, [])
    assert str(err.value).startswith(f"{tmp_path / 't.json'}: explain.gradient:") and "\n" not in str(err.value)
    assert not (tmp_path / "t.json").exists()
    with pytest.raises(ResultError, match=r"interpretability\[0\]\.adv_target_reached: non-finite"):
        write_scores(tmp_path / "t.json", "r.json", record, [{"model": "none", "adv_target_reached": float("nan")}])
    # `igbench validate` checks a scores record by its name, against the scores schema
    folder = tmp_path / "figs"
    folder.mkdir()
    scores = folder / "explain-scores.json"
    scores.write_text(good.read_text())
    ok = CliRunner().invoke(cli, ["validate", str(scores)])
    assert ok.exit_code == 0 and ok.output.strip() == f"ok {scores}", ok.output
    scores.write_text(good.read_text().replace('"logprob_sum"', '"hessian"'))
    bad = CliRunner().invoke(cli, ["validate", str(scores)])
    assert bad.exit_code != 0 and f"{scores}: explain.gradient:" in bad.output, bad.output


def test_explain_scores_the_images_the_grid_scored(shared_data, tmp_path):
    """A grid scored on validation images (--score-on validation) is explained on those images too, not
    on the test set: the same models give other scores on the two."""
    cache = tmp_path / "cache"
    scores = {}
    for split in ("validation", "test"):
        out = tmp_path / f"{split}.json"
        run = CliRunner().invoke(cli, ["run", "--dataset", "mnist", "--param", "mnist.validation=300", "--arch", "mlp",
                                       "--attack", "fgsm", "--eps", "0.1", "--steps", "5", "--n-test", "40",
                                       "--score-on", split, "--data-dir", str(shared_data), "--out", str(out),
                                       "--cache-dir", str(cache), "--no-progress"])
        assert run.exit_code == 0, run.output
        done = CliRunner().invoke(cli, ["explain", str(out), "--data-dir", str(shared_data), "--cache-dir", str(cache),
                                        "--device", "cpu", "--n-images", "2", "--out", str(tmp_path / split)])
        assert done.exit_code == 0, done.output
        assert f"the attack's examples on 40 {split} images" in done.output
        scores[split] = json.loads(out.read_text())["interpretability"]
    assert scores["validation"][0]["n_images"] == scores["test"][0]["n_images"] == 40
    assert scores["validation"] != scores["test"]


def test_explain_refuses_a_folder_holding_another_results_figures(tmp_path):
    """explain --out into another result's figure folder overwrote its figures and scores and mixed the two
    results' files; replicate refused the same case."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "results" / "mnist-advtrain.json"
    result = tmp_path / "r.json"
    shutil.copy(fixture, result)
    figures = tmp_path / "figs"
    figures.mkdir()
    record = json.dumps({"result": (tmp_path / "other.json").as_posix()})
    (figures / "explain-scores.json").write_text(record)
    refused = CliRunner().invoke(cli, ["explain", str(result), "--out", str(figures), "--no-update-result"])
    assert refused.exit_code == 2 and f"--out {figures} holds the figures of {tmp_path / 'other.json'}" in refused.output
    assert (figures / "explain-scores.json").read_text() == record
    # the same result named from another folder is its own: the record keeps the path as explain was given it
    from igbench.interpret.explain import other_results_figures

    (tmp_path / "runs").mkdir()
    shutil.copy(fixture, tmp_path / "runs" / "r.json")
    (figures / "explain-scores.json").write_text(json.dumps({"result": "runs/r.json"}))  # explain ran in tmp_path
    assert other_results_figures(figures, tmp_path / "runs" / "r.json") is None  # run now from anywhere else
    assert other_results_figures(figures, result) == "runs/r.json"  # tmp_path/r.json is another file
    # a record with the run id decides by it, wherever explain ran: a bare r.json matched any */r.json
    (figures / "explain-scores.json").write_text(json.dumps({"result": "r.json", "run_id": "aaaa1111"}))
    assert other_results_figures(figures, tmp_path / "runs" / "r.json", "bbbb2222") == "r.json"
    assert other_results_figures(figures, tmp_path / "elsewhere" / "x.json", "aaaa1111") is None


def test_a_result_edited_to_another_architecture_is_one_line(registry):
    """validate accepts a model's arch or arch_params edited by hand (they are names and values); explain and
    study make then ended in a KeyError from inside the architecture's build."""
    import copy
    from pathlib import Path

    from igbench.engine.result_models import load_result_models
    from igbench.errors import IgbenchError
    from igbench.results.io import read_result

    result = read_result(Path(__file__).parent / "fixtures" / "results" / "mnist-advtrain.json")

    class EveryCheckpoint:  # the error comes before any checkpoint is read
        root = Path("cache")

        def has(self, key):
            return True

    for arch, params, words in (("mlp", {"dropout": 0.5}, "unknown parameter 'dropout'"),
                                ("paper-cnn", {"dropout": "big"}, "must be")):
        edited = copy.deepcopy(result)
        edited["models"][0].update(arch=arch, arch_params=params)
        with pytest.raises(IgbenchError, match=rf"^model '{edited['models'][0]['id']}' of the result: .*{words}.* "
                                               r"\(was the result file edited, or made by another igbench"):
            load_result_models(edited, EveryCheckpoint())
