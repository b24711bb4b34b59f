"""The GPU checks that igbench's CPU-only CI cannot make, in one short run (a few minutes on one GPU).

    python benchmarks/device_check.py --device cuda --data-dir DATA [--out checks.json]

1. ``batchnorm``: igbench's BatchNorm (a hand-written second derivative calling ATen's batch-norm kernels
   directly) matches ``nn.BatchNorm2d`` in double backprop on the device, and passes gradgradcheck there
   in float64.
2. ``inference-copy``: the copy attacks run on gives the model's outputs and input gradients on the device.
3. ``fgsm-art``: native FGSM equals ART's FastGradientMethod on the device.
4. ``jsma``: native JSMA (ART's rule) reaches on the device the success rate it reaches on the CPU, on the
   same model and images.
5. ``resume``: a gradreg training stopped by SIGINT at a step boundary resumes on the device to the weights
   of an uninterrupted one (with cuDNN's deterministic algorithms; both runs use them).
6. ``step-cost``: milliseconds per training step of every defense at batch 256 on the paper CNN, and the
   training time of the full paper MNIST grid projected from them (15,000 batches per model, 25,000 for
   distillation's teacher and student).

It exits 1 when a check fails and always prints (and with ``--out`` writes) one JSON report. On the CPU it
runs too (slowly; ``--quick`` shrinks every size), which is how the script itself is tested.

On the lent device machine (see the device tool's README): its image has torch, click, pluggy, tabulate,
tqdm, matplotlib and scipy; carry wheels for the rest (adversarial-robustness-toolbox, jsonschema and its
``jsonschema-specifications``, ``referencing`` and ``rpds-py``, mlxtend) in an ignored ``.whl/`` and MNIST's
four ``.gz`` files in an ignored ``.devdata/mnist/``, then run::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 benchmarks/device_check.py --device cuda \\
        --data-dir .devdata --out $OUT/device_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import benchmark_parser  # noqa: E402
import bench_defenses  # noqa: E402 - the step timing and device sync are shared with it
from bench_defenses import _sync  # noqa: E402

FULL_STEPS = {"none": 15000, "distillation": 25000, "advtrain": 15000, "gradreg": 15000, "advtrain+gradreg": 15000}


def parse_args(argv=None):
    p = benchmark_parser(__doc__)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--out", help="also write the JSON report here")
    p.add_argument("--quick", action="store_true", help="small sizes everywhere (tests the script on a CPU)")
    p.add_argument("--only", default="", help="comma-separated check names to run (default: all)")
    return p.parse_args(argv)


def _max_diff(a, b) -> float:
    return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())


def check_batchnorm(ctx):
    import torch
    import torch.nn as nn

    from igbench.architectures.batchnorm import BatchNorm2d, _BatchNormTrain

    dev = ctx["device"]
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(6).to(dev)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.normal_()
    ours = BatchNorm2d(6).to(dev)
    ours.load_state_dict(ref.state_dict())
    x, proj = torch.randn(16, 6, 9, 9, device=dev), torch.randn(16, 6, 9, 9, device=dev)

    def grads(bn):
        xr = x.clone().requires_grad_(True)
        loss = (torch.tanh(bn(xr)) * proj).sum()
        (gx,) = torch.autograd.grad(loss, xr, create_graph=True)
        return torch.autograd.grad(loss + (gx ** 2).sum(), [xr, bn.weight, bn.bias])

    diff = max(_max_diff(a, b) for a, b in zip(grads(ours), grads(ref)))
    xd = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=dev, requires_grad=True)
    wd = (torch.rand(3, dtype=torch.float64, device=dev) + 0.5).requires_grad_()
    bd = torch.randn(3, dtype=torch.float64, device=dev).requires_grad_()
    ok_gg = torch.autograd.gradgradcheck(lambda a, w, b: _BatchNormTrain.apply(a, w, b, None, None, 0.1, 1e-5),
                                         (xd, wd, bd), raise_exception=False)
    return {"ok": diff < 1e-3 and ok_gg, "max_grad_difference": diff, "gradgradcheck_float64": ok_gg}


def _trained_model(ctx):
    """The paper CNN trained one epoch on the first ``train_n`` MNIST images, on the device (made once)."""
    if "model" not in ctx:
        from igbench.engine.train import TrainConfig, Trainer
        from igbench.registry import get_registry

        arch = get_registry().get("architecture", "paper-cnn")
        data = ctx["data"].subset(n_train=ctx["train_n"])
        trainer = Trainer(data, arch, arch.resolve_params({}),
                          TrainConfig(epochs=1, batch_size=64, lr=1e-3, seed=0, device=str(ctx["device"])),
                          progress=False)
        ctx["model"] = trainer.fit(trainer.new_model(), _ce, desc="device-check").eval()
    return ctx["model"]


def _ce(model, x, y):
    import torch.nn.functional as F

    logits = model(x)
    return F.cross_entropy(logits, y), logits


def check_inference_copy(ctx):
    import torch

    from igbench.engine.inference import inference_copy

    model = _trained_model(ctx)
    fast = inference_copy(model)
    x = ctx["data"].test_x[:64].to(ctx["device"])
    t = torch.arange(64, device=ctx["device"]) % 10
    out = []
    for m in (model, fast):
        xr = x.clone().requires_grad_(True)
        logits = m(xr)
        (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xr)
        out.append((logits, g))
    d_out, d_grad = _max_diff(out[0][0], out[1][0]), _max_diff(out[0][1], out[1][1])
    return {"ok": d_out < 1e-3 and d_grad < 1e-3, "max_output_difference": d_out, "max_grad_difference": d_grad}


def _attack(ctx, name, params, device, n):
    import torch

    from igbench.engine.attack import make_context, run_attack
    from igbench.registry import get_registry

    model = _trained_model(ctx)
    if torch.device(device) != ctx["device"]:
        import copy

        model = copy.deepcopy(model).to(device)
    data = ctx["data"]
    x, y = data.test_x[:n], data.test_y[:n]
    _sync(torch.device(device))
    t0 = time.perf_counter()
    x_adv, stats, _, _ = run_attack(get_registry().get("attack", name), params, model, x, y,
                                    make_context(data, device, 0), batch_size=n, progress=False)
    _sync(torch.device(device))
    return x_adv, stats, time.perf_counter() - t0


def check_fgsm_art(ctx):
    n = ctx["attack_n"]
    a, _, t_native = _attack(ctx, "fgsm", {"eps": 0.3}, ctx["device"], n)
    b, _, t_art = _attack(ctx, "art:FastGradientMethod", {"eps": 0.3, "norm": "inf", "batch_size": n}, ctx["device"], n)
    diff = _max_diff(a, b)
    return {"ok": diff < 1e-5, "max_output_difference": diff, "seconds_native": t_native, "seconds_art": t_art}


def check_jsma(ctx):
    n = ctx["attack_n"]
    params = {"theta": 1.0, "gamma": 0.25, "jacobian": "logits", "saliency": "target"}
    _, on_dev, t_dev = _attack(ctx, "jsma", params, ctx["device"], n)
    _, on_cpu, t_cpu = _attack(ctx, "jsma", params, "cpu", n)
    gap = abs(on_dev["success_rate"] - on_cpu["success_rate"])
    return {"ok": gap <= 0.03, "success_device": on_dev["success_rate"], "success_cpu": on_cpu["success_rate"],
            "seconds_device": t_dev, "seconds_cpu": t_cpu, "images": n}


def check_resume(ctx):
    import torch

    from igbench.engine.cache import CheckpointStore
    from igbench.engine.models import ModelSpec, obtain_model
    from igbench.engine.snapshots import TrainingSnapshots
    from igbench.engine.train import TrainConfig

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    data = ctx["data"].subset(n_train=512, n_test=16)
    config = TrainConfig(steps=12, batch_size=64, lr=1e-3, seed=3, device=str(ctx["device"]))
    spec = ModelSpec("gradreg", "gradreg", {"lambda": 1000.0}, arch="paper-cnn")
    real_step, real_due = torch.optim.Adam.step, TrainingSnapshots.due
    calls = {"n": 0, "signal_at": None}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["signal_at"]:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        want, _ = obtain_model(spec, data, config, CheckpointStore(Path(tmp) / "a"), progress=False)
        torch.optim.Adam.step, TrainingSnapshots.due = step, lambda self: False
        try:
            store = CheckpointStore(Path(tmp) / "b")
            calls["signal_at"] = 8
            stopped = False
            try:
                obtain_model(spec, data, config, store, progress=False)
            except KeyboardInterrupt:
                stopped = True
            calls["n"], calls["signal_at"] = 0, None
            got, _ = obtain_model(spec, data, config, store, progress=False)
        finally:
            torch.optim.Adam.step, TrainingSnapshots.due = real_step, real_due
    diff = max(_max_diff(a, b) for a, b in zip(want.state_dict().values(), got.state_dict().values()))
    return {"ok": stopped and calls["n"] == 4 and diff == 0.0, "stopped_at_step_boundary": stopped,
            "steps_retrained": calls["n"], "max_weight_difference": diff}


def check_step_cost(ctx):
    """``bench_defenses.py``'s timing (round-robin over the defenses, median) at batch 256 on the device."""
    from igbench.registry import get_registry

    args = argparse.Namespace(batch_size=256, device=str(ctx["device"]), warmup=ctx["warmup"], reps=ctx["reps"])
    times = bench_defenses.bench_arch("paper-cnn", bench_defenses.DEFAULT_DEFENSES, ["fp32"], ["contiguous"],
                                      ctx["data"], args, get_registry())
    ms = {name: 1000 * statistics.median(wall) for (name, _precision, _layout), (wall, _cpu) in times.items()}
    per_model = {d: FULL_STEPS[d] * ms["none" if d == "distillation" else d] / 1000 for d in FULL_STEPS}
    return {"ok": True, "ms_per_step": ms, "ratio_to_none": {k: v / ms["none"] for k, v in ms.items()},
            "projected_full_mnist_training_seconds": per_model,
            "projected_total_minutes": sum(per_model.values()) / 60}


CHECKS = {"batchnorm": check_batchnorm, "inference-copy": check_inference_copy, "fgsm-art": check_fgsm_art,
          "jsma": check_jsma, "resume": check_resume, "step-cost": check_step_cost}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from igbench.datasets.loading import load_dataset

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("device_check: CUDA is not available here; use --device cpu (with --quick) to test the script",
              file=sys.stderr)
        return 2
    ctx = {"device": device, "data": load_dataset("mnist", args.data_dir, fallback=False),
           "train_n": 1000 if args.quick else 5000, "attack_n": 20 if args.quick else 200,
           "warmup": 1 if args.quick else 5, "reps": 2 if args.quick else 20}
    names = [n for n in (args.only.split(",") if args.only else CHECKS) if n]
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        print(f"device_check: unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    report = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "quick": args.quick, "checks": {}}
    for name in names:
        t0 = time.perf_counter()
        try:
            result = CHECKS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - a failing check is reported, the others still run
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result["seconds"] = round(time.perf_counter() - t0, 2)
        report["checks"][name] = result
        print(f"{name:15s} {'ok' if result['ok'] else 'FAILED'} ({result['seconds']} s)", file=sys.stderr, flush=True)
    report["ok"] = all(c["ok"] for c in report["checks"].values())
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
