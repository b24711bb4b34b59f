"""How far apart two result files of the same grid are: per model clean accuracy, input-gradient norm
and training time, and per attack the mean and largest absolute difference of the cells they share.

Made to check a change that should not move the numbers much (``--precision bf16`` against the fp32
grid, another thread count or machine):

    python benchmarks/compare_results.py leaderboards/short/results/paper-notmnist.json \\
        leaderboards/precision/notmnist-bf16-short.json
"""

from __future__ import annotations

import argparse
import statistics
import sys


def cell_key(cell):
    return cell["attack"], cell["eps"], cell["source"], cell["target"]


def compare(a: dict, b: dict) -> str:
    from tabulate import tabulate

    ma = {m["id"]: m for m in a["models"]}
    rows = [[m["id"], f"{100 * ma[m['id']]['clean_accuracy']:.2f}", f"{100 * m['clean_accuracy']:.2f}",
             f"{ma[m['id']]['input_grad_norm']:.4f}", f"{m['input_grad_norm']:.4f}",
             f"{ma[m['id']]['train_seconds']:.0f}", f"{m['train_seconds']:.0f}"]
            for m in b["models"] if m["id"] in ma]
    out = [tabulate(rows, headers=["model", "clean % A", "clean % B", "grad norm A", "grad norm B",
                                   "train s A", "train s B"], disable_numparse=True)]
    ca = {cell_key(c): c["accuracy"] for c in a["cells"]}
    cb = {cell_key(c): c["accuracy"] for c in b["cells"]}
    shared = [k for k in cb if k in ca]
    out.append(f"\n{len(shared)} cells in both files ({len(ca)} in A, {len(cb)} in B); accuracy differences "
               "in points (B - A), eps > 0:")
    rows = []
    for attack in sorted({k[0] for k in shared}):
        for kind, white in (("white-box", True), ("transfer", False)):
            diffs = [100 * (cb[k] - ca[k]) for k in shared
                     if k[0] == attack and (k[2] == k[3]) == white and (k[1] is None or k[1] > 0)]
            if diffs:
                rows.append([attack, kind, len(diffs), f"{statistics.mean(abs(d) for d in diffs):.2f}",
                             f"{statistics.mean(diffs):+.2f}", f"{max(diffs, key=abs):+.2f}"])
    out.append(tabulate(rows, headers=["attack", "cells", "n", "mean |diff|", "mean diff", "largest"],
                        disable_numparse=True))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="result file A (the reference)")
    p.add_argument("b", help="result file B")
    args = p.parse_args(argv)
    from igbench.results.io import read_result

    print(compare(read_result(args.a), read_result(args.b)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
