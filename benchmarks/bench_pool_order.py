"""Training-step cost of three builds of the ReLU paper CNN that compute the same function bit for bit.

* ``relu, torch pool``: max-pool after the ReLU (the textbook order), PyTorch's ``nn.MaxPool2d``;
* ``pool, torch pool``: max-pool first (``pool(relu(z)) == relu(pool(z))`` exactly, gradients and second
  derivatives included), PyTorch's ``nn.MaxPool2d``;
* ``pool, igbench pool``: what igbench builds: max-pool first, ``igbench.architectures.maxpool.MaxPool2d``
  (PyTorch's channels-last kernel for the forward pass, its contiguous one for the backward).

The same initial weights for all three, the same MNIST batch and dropout seeds, steps taken round-robin,
the order reversed every other step (so a noisy or drifting machine slows all alike). For each defense it
prints the median wall time per step of each build, and the time each saves against the first, paired step
by step: mean +- standard error, the steadier figure on a shared machine, where a step's time varies by
more than the savings. It also says whether the three models' weights are still identical bit for bit
after every step.

    python benchmarks/bench_pool_order.py [--data-dir ../shared/data] [--threads 1] [--steps 22]
"""

from __future__ import annotations

import statistics
import sys
import time

from bench_args import benchmark_parser


def main(argv=None) -> int:
    p = benchmark_parser(__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=22, help="steps per defense and build (the first 2 are warm-up)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--defenses", default="none,gradreg,advtrain+gradreg")
    args = p.parse_args(argv)
    import torch

    from igbench.architectures.cnn import relu_before_pool
    from igbench.architectures.maxpool import torch_pools
    from igbench.datasets.loading import load_dataset
    from igbench.engine.train import TrainConfig, Trainer, backward_to_weights
    from igbench.environment import cpu_model
    from igbench.registry import get_registry

    torch.set_num_threads(args.threads)
    reg = get_registry()
    data = load_dataset("mnist", args.data_dir, fallback=False).subset(n_train=args.batch_size, n_test=0)
    arch = reg.get("architecture", "paper-cnn")
    trainer = Trainer(data, arch, arch.resolve_params({}), TrainConfig(batch_size=args.batch_size), progress=False)
    x, y = trainer.train_x[:args.batch_size], trainer.train_y[:args.batch_size]
    print(f"paper CNN, batch {args.batch_size}, {cpu_model()}, {torch.get_num_threads()} thread(s), "
          f"median of {args.steps - 2} steps; "
          "savings in ms per step against the first build, mean +- standard error")
    for name in [d for d in args.defenses.split(",") if d]:
        plugin = reg.get("defense", name)
        params = plugin.resolve_params({})
        torch.manual_seed(0)
        built = trainer.new_model()
        orders = {"relu, torch pool": torch_pools(relu_before_pool(built)), "pool, torch pool": torch_pools(built),
                  "pool, igbench pool": built}
        opts = {k: torch.optim.Adam(m.parameters(), lr=2e-4) for k, m in orders.items()}
        times = {k: [] for k in orders}
        identical = True
        for step in range(args.steps):
            for key, model in (orders.items() if step % 2 == 0 else reversed(orders.items())):
                model.train()
                torch.manual_seed(step)  # the same dropout masks in both orders
                t0 = time.perf_counter()
                opts[key].zero_grad(set_to_none=True)
                loss, _ = plugin.loss(model, x, y, params, trainer)
                backward_to_weights(loss, model)
                opts[key].step()
                times[key].append(time.perf_counter() - t0)
            first, *others = (m.state_dict() for m in orders.values())
            identical = identical and all(torch.equal(first[k], other[k]) for other in others for k in first)
        baseline, *builds = times
        base = times[baseline][2:]
        cells = [f"{baseline} {statistics.median(base) * 1e3:7.1f} ms"]
        for key in builds:
            t = times[key][2:]
            saved = [(b - a) * 1e3 for a, b in zip(t, base)]
            se = statistics.stdev(saved) / len(saved) ** 0.5 if len(saved) > 1 else float("nan")
            cells.append(f"{key} {statistics.median(t) * 1e3:7.1f} ms (saves {statistics.mean(saved):5.1f} +- {se:.1f})")
        print(f"{name:18s} " + "   ".join(cells) + f"   weights identical after every step: {identical}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
