"""Cost of one training step of every built-in defense, relative to the undefended step.

One step = zero_grad + forward + defense loss + backward + Adam step, on a real MNIST batch (default 256
images, the paper's batch size) with the paper CNN (ReLU) and its softplus variant. Each defense gets
warm-up steps, then timed steps taken round-robin across the defenses (so a noisy machine slows all of
them alike); the median wall time is reported, with the ratio to ``none`` on the same architecture, and
the median process CPU time beside it (steadier than wall time on a shared machine; with more than one
thread it also counts threads' busy-waiting).

    python benchmarks/bench_defenses.py [--data-dir ../shared/data] [--reps 15] [--threads N] [--json]

``--precisions fp32,bf16`` also times every defense under bfloat16 autocast (igbench's ``--precision
bf16``) in the same round-robin, with its speed-up over the same defense in fp32. ``--layouts
contiguous,channels_last`` likewise times every defense laid out as ``--memory-format channels_last``
trains it (weights and batch channels-last, ``igbench.engine.memory_format``), with its speed-up over the
same defense and precision laid out contiguously (the default).

A defense may carry parameters, ``NAME:KEY=VALUE[:KEY=VALUE...]``: ``--defenses
gradreg-fd,gradreg-fd:direction=example`` times both finite-difference variants in the same run.

Distillation is not listed: each of its steps is a plain cross-entropy step (at temperature T, on soft
labels for the student), so its cost is that of ``none`` times the teacher's plus the student's steps.
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import sys
import time

from bench_args import benchmark_parser

DEFAULT_DEFENSES = ("none", "gradreg", "gradreg-fd", "advtrain", "advtrain+gradreg")
DEFAULT_ARCHS = ("paper-cnn", "paper-cnn-softplus")
TARGETS = {"gradreg": 2.5, "gradreg-fd": 1.7}


def parse_args(argv=None):
    p = benchmark_parser(__doc__)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per defense and architecture")
    p.add_argument("--reps", type=int, default=15, help="timed steps per defense and architecture")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--archs", default=",".join(DEFAULT_ARCHS))
    p.add_argument("--defenses", default=",".join(DEFAULT_DEFENSES))
    p.add_argument("--precisions", default="fp32", help="training precisions to time, e.g. fp32,bf16")
    p.add_argument("--layouts", default="contiguous",
                   help="memory formats of weights and batch to time, e.g. contiguous,channels_last")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    return p.parse_args(argv)


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_arch(arch_name, defenses, precisions, layouts, data, args, registry):
    """Per-step times of each defense at each precision and layout on ``arch_name``:
    ``{(defense, precision, layout): ([wall s...], [process CPU s...])}``."""
    import torch

    from igbench.engine.memory_format import as_layout, training_layout
    from igbench.engine.train import TrainConfig, Trainer, backward_to_weights

    arch = registry.get("architecture", arch_name)
    trainer = Trainer(data, arch, arch.resolve_params({}), TrainConfig(batch_size=args.batch_size, device=args.device),
                      progress=False)
    device = trainer.device
    batches = {layout: as_layout(trainer.train_x[:args.batch_size], layout) for layout in layouts}
    layouts_on = contextlib.ExitStack()  # channels-last models stay so until the timing ends
    y = trainer.train_y[:args.batch_size]
    setups = {}
    for name in defenses:
        plugin_name, *given = name.split(":")
        plugin = registry.get("defense", plugin_name)
        params = plugin.resolve_params(dict(kv.split("=", 1) for kv in given))
        for precision in precisions:
            for layout in layouts:
                model = trainer.new_model()
                layouts_on.enter_context(training_layout(model, layout))  # as Trainer.fit
                model.train()
                opt = torch.optim.Adam(model.parameters(), lr=trainer.config.lr, eps=trainer.config.adam_eps)
                setups[name, precision, layout] = (plugin, params, model, opt, TrainConfig(precision=precision),
                                                   batches[layout])

    def step(key):
        plugin, params, model, opt, config, x = setups[key]
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        with config.autocast(device):
            loss, _ = plugin.loss(model, x, y, params, trainer)
        backward_to_weights(loss, model)
        opt.step()
        _sync(device)
        return time.perf_counter() - t0, time.process_time() - c0

    with layouts_on:
        for key in setups:
            for _ in range(args.warmup):
                step(key)
        times = {key: ([], []) for key in setups}
        for _ in range(args.reps):
            for key in setups:
                wall, cpu = step(key)
                times[key][0].append(wall)
                times[key][1].append(cpu)
    return times


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from igbench.datasets.loading import load_dataset
    from igbench.engine.memory_format import MEMORY_FORMATS
    from igbench.environment import cpu_model
    from igbench.registry import get_registry

    if args.threads:
        torch.set_num_threads(args.threads)
    registry = get_registry()
    data = load_dataset("mnist", args.data_dir, fallback=False).subset(n_train=args.batch_size, n_test=0)
    defenses = [d for d in args.defenses.split(",") if d]
    if "none" not in defenses:
        defenses.insert(0, "none")
    precisions = [p for p in args.precisions.split(",") if p]
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")
    layouts = [x for x in args.layouts.split(",") if x]
    if "contiguous" not in layouts:
        layouts.insert(0, "contiguous")
    unknown = sorted(set(layouts) - set(MEMORY_FORMATS))
    if unknown:
        raise SystemExit(f"--layouts: unknown {', '.join(unknown)}; use {' and/or '.join(MEMORY_FORMATS)}")
    rows = []
    for arch_name in [a for a in args.archs.split(",") if a]:
        times = bench_arch(arch_name, defenses, precisions, layouts, data, args, registry)
        base_wall = statistics.median(times["none", "fp32", "contiguous"][0])
        base_cpu = statistics.median(times["none", "fp32", "contiguous"][1])
        for (name, precision, layout), (wall, cpu) in times.items():
            med = statistics.median(wall)
            q = statistics.quantiles(wall, n=4) if len(wall) > 1 else [med, med, med]
            rows.append({"arch": arch_name, "defense": name, "precision": precision, "layout": layout,
                         "ms_per_step": med * 1e3,
                         "ms_q1": q[0] * 1e3, "ms_q3": q[2] * 1e3, "ratio_to_none": med / base_wall,
                         "cpu_ms_per_step": statistics.median(cpu) * 1e3,
                         "cpu_ratio_to_none": statistics.median(cpu) / base_cpu,
                         "speedup_over_fp32": statistics.median(times[name, "fp32", layout][0]) / med,
                         "speedup_over_contiguous": statistics.median(times[name, precision, "contiguous"][0]) / med,
                         "target_ratio": (TARGETS.get(name.split(":")[0])
                                          if precision == "fp32" and layout == "contiguous" else None)})
    report = {
        "batch_size": args.batch_size, "warmup": args.warmup, "reps": args.reps,
        "threads": torch.get_num_threads(), "device": args.device, "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "cpu": cpu_model(),
        "data": data.describe()["source"],
        "results": rows,
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    from tabulate import tabulate

    table = [[r["arch"], r["defense"], r["precision"], r["layout"], f"{r['ms_per_step']:.1f}",
              f"{r['ms_q1']:.1f}-{r['ms_q3']:.1f}", f"{r['ratio_to_none']:.2f}x", f"{r['speedup_over_fp32']:.2f}x",
              f"{r['speedup_over_contiguous']:.2f}x", f"{r['cpu_ms_per_step']:.1f}",
              f"{r['cpu_ratio_to_none']:.2f}x",
              "" if r["target_ratio"] is None else
              f"<= {r['target_ratio']}x {'ok' if r['ratio_to_none'] <= r['target_ratio'] else 'MISSED'}"]
             for r in rows]
    print(f"one training step, batch {args.batch_size}, {args.device} ({report['cpu']}), {report['threads']} threads, "
          f"torch {torch.__version__}, median of {args.reps} (after {args.warmup} warm-up)")
    print(tabulate(table, headers=["arch", "defense", "precision", "layout", "wall ms/step", "IQR ms",
                                   "vs none (fp32)", "speed-up over fp32", "over contiguous", "CPU ms/step",
                                   "CPU vs none", "target (wall)"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
