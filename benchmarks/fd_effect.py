"""What each input-gradient penalty does to the paper CNN after a short training: clean accuracy and mean
input-gradient norm of `none`, exact `gradreg` and both `gradreg-fd` directions, trained alike.

Each model: the paper CNN, 80 steps of batch 256 (Adam, lr 1e-3) on the first 6,000 MNIST training
images, lambda 1000 (paper scaling), seed 0; scored on the first 1,000 test images. Not a timing script:
it checks that the cheaper finite-difference estimators shrink input gradients as the exact penalty does.

    python benchmarks/fd_effect.py [--data-dir ../shared/data] [--threads 1] [--only gradreg-fd:batch ...]
"""

from __future__ import annotations

import sys

from bench_args import benchmark_parser

RUNS = (("none", {}), ("gradreg", {"lambda": 1000}), ("gradreg-fd", {"lambda": 1000, "direction": "batch"}),
        ("gradreg-fd", {"lambda": 1000, "direction": "example"}))


def label(name, params) -> str:
    return f"{name}:{params['direction']}" if "direction" in params else name


def main(argv=None) -> int:
    p = benchmark_parser(__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--only", nargs="*", default=None, help="labels to run (none, gradreg, gradreg-fd:batch, "
                   "gradreg-fd:example); default all")
    args = p.parse_args(argv)
    import torch

    from igbench.datasets.loading import load_dataset
    from igbench.engine.gradients import mean_input_grad_norm
    from igbench.engine.train import TrainConfig, Trainer, accuracy
    from igbench.registry import get_registry

    torch.set_num_threads(args.threads)
    registry = get_registry()
    data = load_dataset("mnist", args.data_dir, fallback=False).subset(n_train=6000, n_test=1000)
    arch = registry.get("architecture", "paper-cnn")
    for name, params in RUNS:
        if args.only and label(name, params) not in args.only:
            continue
        plugin = registry.get("defense", name)
        trainer = Trainer(data, arch, arch.resolve_params({}), TrainConfig(steps=args.steps, batch_size=256, lr=1e-3),
                          progress=False)
        model = plugin.train(trainer, plugin.resolve_params(params)).eval()
        print(f"{label(name, params):20s} clean accuracy {accuracy(model, data.test_x, data.test_y):.3f}  "
              f"mean input-gradient norm {mean_input_grad_norm(model, data.test_x, data.test_y):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
