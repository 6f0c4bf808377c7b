"""The SR2 paper's experiment at a size this machine can run (issue 4).

A small CNN (benchmarks/_cnn.py) on Fashion-MNIST, trained with SR2, ProxGEN and ProxSGD
(momentum and preconditioner off, constant step: the paper's comparison setting), with
l1 and l0 penalties (l0 not for ProxSGD) at three strengths. Prints a table in the layout
of the paper's Table 2 (test accuracy, % of weights exactly 0, % with |w| <= 1e-3) and
saves the pruning curves (accuracy and sparsity after pruning at |w| <= 10^-k, k = 1..8,
without retraining) as PNG files in docs/benchmark_results/.

SR2 and the baselines start from the same step size (SR2: sigma0 = 1/lr) and see the same
batches. Data: ``get-data.sh DIR`` and ``SR2LEARN_DATA=DIR``.

Usage: python benchmarks/bench_fashion_mnist.py [--train-size 20000] [--epochs 3]
"""

import argparse
import os
import sys
import time

import torch
from _cnn import small_cnn
from _common import data_home
from torch import nn

from sr2learn.datasets import load_fashion_mnist
from sr2learn.torch import SR2, ProxGEN, ProxSGD, penalized_groups
from sr2learn.torch.pruning import plot_pruning_curve, pruning_curve, sparsity_report

RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmark_results"
)


@torch.no_grad()
def accuracy(model, X, y):
    model.eval()
    correct = sum(
        (model(X[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item()
        for i in range(0, len(X), 1000)
    )
    model.train()
    return correct / len(X)


def train(name, penalty, alpha, data, args):
    Xtr, ytr = data
    torch.manual_seed(0)
    model = small_cnn()
    groups = penalized_groups(model, penalty, alpha)
    if name == "SR2":
        opt = SR2(groups, lr=args.lr, module=model)
    elif name == "ProxGEN":
        opt = ProxGEN(groups, lr=args.lr)
    else:
        opt = ProxSGD(groups, lr=args.lr)
    generator = torch.Generator().manual_seed(1)
    for _ in range(args.epochs):
        order = torch.randperm(len(Xtr), generator=generator)
        for i in range(0, len(Xtr), args.batch):
            idx = order[i : i + args.batch]
            X, y = Xtr[idx], ytr[idx]

            def closure(backward=True, X=X, y=y):
                loss = nn.functional.cross_entropy(model(X), y)
                if backward:
                    opt.zero_grad()
                    loss.backward()
                return loss

            if name == "SR2":
                opt.step(closure)
            else:
                closure()
                opt.step()
    return model, opt


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-size", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    args = parser.parse_args()
    try:
        Xtr, ytr = load_fashion_mnist(data_home(), "train")
        Xte, yte = load_fashion_mnist(data_home(), "test")
    except FileNotFoundError as exc:
        sys.exit(f"Fashion-MNIST is needed: {exc}")
    torch.set_num_threads(os.cpu_count() or 1)
    Xtr = torch.from_numpy(Xtr[: args.train_size]).unsqueeze(1)
    ytr = torch.from_numpy(ytr[: args.train_size])
    Xte, yte = torch.from_numpy(Xte).unsqueeze(1), torch.from_numpy(yte)
    print(
        f"Fashion-MNIST: {len(Xtr)} training images, {len(Xte)} test images; small CNN; "
        f"{args.epochs} epochs, batch {args.batch}, lr {args.lr}\n"
    )
    rows, curves = [], {}
    for penalty in ("l1", "l0"):
        for alpha in args.alphas:
            for name in ("SR2", "ProxGEN", "ProxSGD"):
                if name == "ProxSGD" and penalty == "l0":
                    continue  # ProxSGD is defined for convex penalties only
                start = time.perf_counter()
                model, opt = train(name, penalty, alpha, (Xtr, ytr), args)
                report = sparsity_report(model)["total"]
                acc = accuracy(model, Xte, yte)
                extra = ""
                if isinstance(opt, SR2):
                    extra = (
                        f"sigma {opt.sigma:.3g}, accepted "
                        f"{100 * opt.diagnostics.acceptance_rate:.1f}%"
                    )
                rows.append((penalty, alpha, name, acc, report, time.perf_counter() - start, extra))
                curves[(penalty, alpha, name)] = pruning_curve(
                    model, lambda m: accuracy(m, Xte, yte)
                )
                print(f"  done {penalty} {alpha:g} {name} in {rows[-1][5]:.0f} s", file=sys.stderr)

    print(
        "| R | lambda | optimizer | accuracy (%) | % w = 0 | % abs(w) <= 1e-3 | time (s) | notes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for penalty, alpha, name, acc, report, seconds, extra in rows:
        print(
            f"| {penalty} | {alpha:g} | {name} | {100 * acc:.2f} | "
            f"{100 * report['zero_fraction']:.2f} | {100 * report['small_fraction']:.2f} | "
            f"{seconds:.0f} | {extra} |"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(RESULTS, exist_ok=True)
    for penalty in ("l1", "l0"):
        fig, axes = plt.subplots(1, len(args.alphas), figsize=(5 * len(args.alphas), 4),
                                 constrained_layout=True)  # fmt: skip
        for ax, alpha in zip(axes, args.alphas, strict=True):
            plot_pruning_curve(
                {name: curves[(p, a, name)] for (p, a, name) in curves
                 if p == penalty and a == alpha},
                ax=ax,
            )  # fmt: skip
            ax.set_title(f"{penalty}, lambda = {alpha:g}")
        path = os.path.join(RESULTS, f"fashion_mnist_pruning_{penalty}.png")
        fig.savefig(path, dpi=80)
        print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
