"""Which layer defaults of the paper CNN decide how it trains under the paper's double-backprop penalty.

The study's code built its CNN with TF-slim: BatchNorm with no learned scale and eps 1e-3, no bias on a
layer BatchNorm follows, Xavier-uniform weights and zero biases (``paper-cnn``'s default ``style="tf-slim"``).
torch.nn's defaults differ in all of these (``style="pytorch"``, igbench 0.1's network). This script trains
``gradreg`` with the paper's MNIST lambda, scaled to the batch size so that each example feels the
strength it felt at batch 256 (paper scaling: lambda * B / 256), once per network variant and seed, on
the same data, and prints the test accuracy of each. The variants are the two styles and the torch.nn
network with one TF-slim default switched on at a time.

    python benchmarks/paper_cnn_style.py [--data-dir ../shared/data] [--steps 200] [--batch-size 64] \
        [--seeds 0,1,2] [--threads 2]
"""

from __future__ import annotations

import statistics
import sys
import time

from bench_args import benchmark_parser

PAPER_LAMBDA, PAPER_BATCH = 56234.0, 256


def parse_args(argv=None):
    p = benchmark_parser(__doc__)
    p.add_argument("--steps", type=int, default=200, help="training batches per model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--n-train", type=int, default=3000, help="training images (first of the 55,000)")
    p.add_argument("--n-test", type=int, default=500, help="test images scored")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    return p.parse_args(argv)


def _switch_eps(model):
    for bn in _norms(model):
        bn.eps = 1e-3


def _switch_scale(model):
    from igbench.architectures.batchnorm import drop_learned_scale

    for bn in _norms(model):
        drop_learned_scale(bn)


def _switch_init(model):
    from igbench.architectures.cnn import glorot_init

    glorot_init(model)


def _norms(model):
    from igbench.architectures.batchnorm import BatchNorm1d, BatchNorm2d

    return [m for m in model.modules() if isinstance(m, (BatchNorm1d, BatchNorm2d))]


#: label -> (style, change applied after building)
VARIANTS = {
    "tf-slim (default)": ("tf-slim", None),
    "pytorch": ("pytorch", None),
    "pytorch + BatchNorm eps 1e-3": ("pytorch", _switch_eps),
    "pytorch + no BatchNorm scale": ("pytorch", _switch_scale),
    "pytorch + Xavier init, zero biases": ("pytorch", _switch_init),
}


def variant_arch(change):
    """An architecture plugin object that builds ``paper-cnn`` (in the style its params say) and then
    applies ``change``."""
    from igbench.architectures.cnn import PaperCNN

    class Variant(PaperCNN):
        def build(self, input_shape, num_classes, params):
            model = super().build(input_shape, num_classes, params)
            if change is not None:
                change(model)
            return model

    return Variant()


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tabulate import tabulate

    from igbench.datasets.loading import load_dataset
    from igbench.engine.train import TrainConfig, Trainer, accuracy
    from igbench.registry import get_registry

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    lam = PAPER_LAMBDA * args.batch_size / PAPER_BATCH
    data = load_dataset("mnist", args.data_dir, fallback=False).subset(n_train=args.n_train, n_test=args.n_test)
    gradreg = get_registry().get("defense", "gradreg")
    params = gradreg.resolve_params({"lambda": lam, "scaling": "paper"})
    print(f"gradreg lambda {lam:g} (paper scaling, batch {args.batch_size}), {args.steps} steps, Adam 2e-4 "
          f"(eps 1e-4), {args.n_train} MNIST training images, test accuracy on {args.n_test}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    rows = []
    for label, (style, change) in VARIANTS.items():
        arch = variant_arch(change)
        accs = []
        for seed in seeds:
            started = time.perf_counter()
            trainer = Trainer(data, arch, arch.resolve_params({"style": style}),
                              TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=2e-4, adam_eps=1e-4,
                                          seed=seed), progress=False)
            model = gradreg.train(trainer, params).eval()
            accs.append(accuracy(model, data.test_x, data.test_y))
            print(f"  {label}, seed {seed}: {accs[-1]:.3f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        rows.append([label] + [f"{100 * a:.1f}" for a in accs] + [f"{100 * statistics.mean(accs):.1f}"])
    print(tabulate(rows, headers=["network"] + [f"seed {s} %" for s in seeds] + ["mean %"], tablefmt="github",
                   disable_numparse=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
