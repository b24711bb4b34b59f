"""Native attacks against ART's on the same model and the same images, in one run.

Pairs compared (same eps / theta / gamma, the same targets (y+1) mod C for the targeted ones):

* ``fgsm`` vs ``art:FastGradientMethod`` (norm inf): also the largest difference between their outputs;
* ``jsma`` with ART's rule (``jacobian=logits saliency=target``) vs ``art:SaliencyMapMethod``: the same
  algorithm, so equal success rates; ART is run at its default ``batch_size`` (1) and at the benchmark's
  image count (batched like the native one);
* ``jsma`` with its default rule (CleverHans' probability Jacobian, the study's) for reference;
* both ``jsma`` rules again with ``precision=bf16`` (gradients on a bfloat16 copy of the model; the
  images, stopping test and scoring stay float32), unless ``--precisions fp32``. The bf16 run of ART's rule
  is compared with every ART run too; ART itself has no bfloat16 path (it feeds float32 arrays);
* a 20-step ``pgd`` (``--pgd-eps``) in float32 and bfloat16, when bf16 is among ``--precisions``.

igbench runs every attack, native or ART, on an inference copy of the model (BatchNorm folded,
channels-last weights; ``igbench.engine.inference``). The ART JSMA and the native JSMA (ART's rule) are
also timed on the model as given (``optimize=False``), so one run shows what the copy buys each of them
and the ratio against ART as it runs outside igbench.

Each attack is timed ``--repeat`` times, round-robin across attacks (a noisy machine slows all alike); the
best wall time is reported, with the best process CPU time beside it (steadier on a shared machine).
Right before each timed run the same attack runs ``--warmup`` times untimed (default 1): oneDNN builds its
kernels for each new batch shape the first time it meets it, and JSMA's batch shrinks as images reach their
targets, so a cold run of 100 images meets about 100 shapes. A grid meets them once, on its first batch;
later batches and models reuse them. Without the warm-up the other attacks' shapes push these out of
oneDNN's cache between repeats, and every timed run pays the building again (a large part of a bfloat16
JSMA on 100 images, less in float32).

    python benchmarks/bench_attacks.py [--data-dir ../shared/data] [--n 100] [--threads 1]
        [--checkpoint model.pt | --train-n 5000] [--repeat 1] [--warmup 1] [--precisions fp32,bf16] [--json]
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time

from bench_args import benchmark_parser

JSMA_TARGET_SPEEDUP = 10.0


def parse_args(argv=None):
    p = benchmark_parser(__doc__)
    p.add_argument("--n", type=int, default=100, help="test images attacked (the first N)")
    p.add_argument("--eps", type=float, default=0.3, help="FGSM eps")
    p.add_argument("--pgd-eps", type=float, default=0.1, help="eps of the 20-step PGD timed with --precisions")
    p.add_argument("--theta", type=float, default=1.0)
    p.add_argument("--gamma", type=float, default=0.25)
    p.add_argument("--art-jsma-batch-sizes", default="1,N",
                   help="comma-separated ART SaliencyMapMethod batch sizes (N = --n); ART's default is 1")
    p.add_argument("--precisions", default="fp32,bf16",
                   help="precisions to time native JSMA and a 20-step PGD in (comma-separated: fp32, bf16); "
                        "fp32 is always run")
    p.add_argument("--checkpoint", default=None,
                   help="paper-cnn weights (a state_dict, an igbench cache checkpoint or a pickled module); "
                        "default: train one now")
    p.add_argument("--train-n", type=int, default=5000, help="training images for the quick model")
    p.add_argument("--train-epochs", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: steadier timings)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per attack (best one reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each attack right before each timed one")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    return p.parse_args(argv)


def load_model(args, data):
    """The paper CNN from ``--checkpoint``, or trained now on the first ``--train-n`` images."""
    import torch
    import torch.nn.functional as F

    from igbench.engine.train import TrainConfig, Trainer
    from igbench.registry import get_registry

    arch = get_registry().get("architecture", "paper-cnn")
    params = arch.resolve_params({})
    if args.checkpoint:
        blob = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        if isinstance(blob, torch.nn.Module):
            return blob.to(args.device).eval(), {"source": args.checkpoint}
        state = blob.get("state_dict", blob.get("model", blob)) if isinstance(blob, dict) else blob
        model = arch.build(tuple(data.input_shape), data.num_classes, params)
        model.load_state_dict(state)
        return model.to(args.device).eval(), {"source": args.checkpoint}
    train = data.subset(n_train=args.train_n)
    trainer = Trainer(train, arch, params, TrainConfig(epochs=args.train_epochs, batch_size=64, lr=1e-3,
                                                       seed=args.seed, device=args.device), progress=False)

    def ce(model, x, y):
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    t0 = time.perf_counter()
    model = trainer.fit(trainer.new_model(), ce, desc="bench")
    return model.eval(), {"source": f"trained now: paper-cnn, {args.train_n} MNIST images, "
                                    f"{args.train_epochs:g} epoch(s), Adam 1e-3, batch 64, seed {args.seed}",
                          "train_seconds": round(time.perf_counter() - t0, 2)}


AS_GIVEN = ", model as given"
BF16_ART_RULE = "native jsma (ART rule, bf16)"
PGD = "native pgd (20 steps)"


def plan(args):
    """(label, attack name, params, optimize) of every timed run."""
    jsma_same = {"theta": args.theta, "gamma": args.gamma, "jacobian": "logits", "saliency": "target"}
    runs = [
        ("native fgsm", "fgsm", {"eps": args.eps}, True),
        ("art FastGradientMethod", "art:FastGradientMethod", {"eps": args.eps, "norm": "inf", "batch_size": args.n},
         True),
        ("native jsma (ART rule)", "jsma", jsma_same, True),
        ("native jsma (ART rule)" + AS_GIVEN, "jsma", jsma_same, False),
        ("native jsma (CleverHans rule)", "jsma", {"theta": args.theta, "gamma": args.gamma}, True),
    ]
    if "bf16" in args.precisions.split(","):
        runs += [
            (BF16_ART_RULE, "jsma", {**jsma_same, "precision": "bf16"}, True),
            ("native jsma (CleverHans rule, bf16)", "jsma",
             {"theta": args.theta, "gamma": args.gamma, "precision": "bf16"}, True),
            (PGD, "pgd", {"eps": args.pgd_eps, "steps": 20}, True),
            (PGD + " bf16", "pgd", {"eps": args.pgd_eps, "steps": 20, "precision": "bf16"}, True),
        ]
    for b in args.art_jsma_batch_sizes.split(","):
        size = args.n if b.strip().upper() == "N" else int(b)
        params = {"theta": args.theta, "gamma": args.gamma, "batch_size": size}
        runs.append((f"art SaliencyMapMethod (batch_size {size})", "art:SaliencyMapMethod", params, True))
        if size == 1:  # ART's default, as a user would run it outside igbench
            runs.append((f"art SaliencyMapMethod (batch_size {size})" + AS_GIVEN, "art:SaliencyMapMethod", params,
                         False))
    return runs


def run_all(args, model, data, runs):
    """Time every run ``--repeat`` times round-robin, each after ``--warmup`` untimed runs of its own; keep
    the best times and the last outputs."""
    import torch

    from igbench.engine.attack import make_context, run_attack
    from igbench.registry import get_registry

    reg = get_registry()
    device = torch.device(args.device)
    x, y = data.test_x[: args.n].to(device), data.test_y[: args.n].to(device)
    best: dict[str, dict] = {}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(max(1, args.repeat)):
        for label, name, params, optimize in runs:
            attack = reg.get("attack", name)
            for _ in range(max(0, args.warmup)):
                run_attack(attack, params, model, x, y, make_context(data, device, args.seed),
                           batch_size=max(args.n, 1), progress=False, optimize=optimize)
            ctx = make_context(data, device, args.seed)
            w0, c0 = time.perf_counter(), time.process_time()
            x_adv, stats, _, _ = run_attack(attack, params, model, x, y, ctx, batch_size=max(args.n, 1),
                                            progress=False, optimize=optimize)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            outputs[label] = x_adv
            rec = best.setdefault(label, {"attack": name, "params": attack.resolve_params(params),
                                          "optimized_model": optimize, "wall_s": wall, "cpu_s": cpu})
            rec["wall_s"], rec["cpu_s"] = min(rec["wall_s"], wall), min(rec["cpu_s"], cpu)
            rec.update({k: stats[k] for k in ("success_rate", "accuracy", "l0", "l0_max", "linf", "targeted")})
    return best, outputs


def _finite(obj):
    """JSON-safe copy: non-finite floats become strings ("inf")."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def ratios(best, subject, baseline):
    """How many times faster run ``subject`` was than run ``baseline`` (labels of ``best``), with both success rates."""
    n, a = best[subject], best[baseline]
    return {"subject": subject, "baseline": baseline, "speedup_wall": a["wall_s"] / n["wall_s"],
            "speedup_cpu": a["cpu_s"] / max(n["cpu_s"], 1e-9),
            "success_subject": n["success_rate"], "success_baseline": a["success_rate"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from igbench.datasets.loading import load_dataset
    from igbench.engine.train import accuracy
    from igbench.environment import cpu_model

    data = load_dataset("mnist", args.data_dir, fallback=False)
    model, model_info = load_model(args, data)
    model_info["clean_accuracy_on_attacked_images"] = accuracy(model, data.test_x[: args.n], data.test_y[: args.n])
    runs = plan(args)
    best, outputs = run_all(args, model, data, runs)
    comparisons = [ratios(best, "native fgsm", "art FastGradientMethod")]
    comparisons[0]["max_abs_output_difference"] = float(
        (outputs["native fgsm"] - outputs["art FastGradientMethod"]).abs().max())
    subjects = ["native jsma (ART rule)"] + ([BF16_ART_RULE] if BF16_ART_RULE in best else [])
    for subject in subjects:
        for label, *_ in runs:
            if label.startswith("art SaliencyMapMethod"):
                comparisons.append(ratios(best, subject, label))
    if BF16_ART_RULE in best:  # what bfloat16 buys each rule
        comparisons.append(ratios(best, BF16_ART_RULE, "native jsma (ART rule)"))
        comparisons.append(ratios(best, "native jsma (CleverHans rule, bf16)", "native jsma (CleverHans rule)"))
        comparisons.append(ratios(best, PGD + " bf16", PGD))
    for label, *_ in runs:  # what the inference copy buys each attack
        if label.endswith(AS_GIVEN):
            comparisons.append(ratios(best, label[: -len(AS_GIVEN)], label))
    report = {
        "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "device": args.device, "threads": torch.get_num_threads(), "n_images": args.n, "warmup_runs": args.warmup,
        "python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_model(),
        "model": model_info, "runs": best, "comparisons": comparisons,
        "jsma_target_speedup": JSMA_TARGET_SPEEDUP,
    }
    if args.json:
        print(json.dumps(_finite(report), indent=2, default=float))
        return 0
    print(f"{args.n} MNIST test images, paper CNN ({model_info['source']}), clean accuracy "
          f"{model_info['clean_accuracy_on_attacked_images']:.3f}; device {args.device} ({report['cpu']}), "
          f"{report['threads']} thread(s); "
          f"best of {max(1, args.repeat)}, each after {max(0, args.warmup)} untimed run(s)")
    print(f"{'attack':56s} {'wall s':>8s} {'cpu s':>8s} {'success':>8s} {'mean L0':>8s}")
    for label, rec in best.items():
        print(f"{label:56s} {rec['wall_s']:8.2f} {rec['cpu_s']:8.2f} {rec['success_rate']:8.3f} {rec['l0']:8.1f}")
    print()
    for c in comparisons:
        extra = f", max |native - ART| {c['max_abs_output_difference']:.1e}" if "max_abs_output_difference" in c else ""
        print(f"{c['subject']} vs {c['baseline']}: {c['speedup_wall']:.1f}x faster (wall), {c['speedup_cpu']:.1f}x "
              f"(cpu); success {c['success_subject']:.3f} vs {c['success_baseline']:.3f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
