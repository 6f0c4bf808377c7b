"""Step time of SR2, ProxGEN and ProxSGD relative to torch.optim.SGD (issue 4).

Same model, same batch, one process: each optimizer makes ``--steps`` steps on a fixed
batch of Fashion-MNIST-sized inputs (random 28x28 images, so no data are needed), and the
table prints the median step time over ``--repeats`` rounds and its ratio to SGD's. SR2's
floor is (2 forward + 1 backward) / (1 forward + 1 backward): about 1.33 when a backward
costs two forwards; the table measures it directly (an SGD step plus one no-grad forward),
since on a CPU the backward of a small CNN often costs only about one forward.

Usage: python benchmarks/bench_torch_step.py [--device cuda] [--batch 128]
"""

import argparse
import statistics
import time

import torch
from _cnn import small_cnn
from torch import nn

from sr2learn.torch import SR2, ProxGEN, ProxSGD, penalized_groups


def time_optimizer(make_opt, device, batch, steps, repeats, sr2):
    torch.manual_seed(0)
    model = small_cnn().to(device)
    opt = make_opt(model)
    X = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def closure(backward=True):
        loss = nn.functional.cross_entropy(model(X), y)
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss

    def step():
        if sr2 == "floor":  # what SR2 cannot avoid: a gradient pass and a no-grad forward
            closure()
            opt.step()
            with torch.no_grad():
                closure(backward=False)
        elif sr2:
            opt.step(closure)
        else:
            closure()
            opt.step()

    for _ in range(3):  # warm-up
        step()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    optimizers = {
        "SGD": (lambda m: torch.optim.SGD(m.parameters(), lr=0.01), False),
        "floor: SGD + 1 no-grad forward": (
            lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
            "floor",
        ),
        "SR2 (l1)": (lambda m: SR2(penalized_groups(m, "l1", 1e-4), lr=0.01, module=m), True),
        "SR2 (l0)": (lambda m: SR2(penalized_groups(m, "l0", 1e-4), lr=0.01, module=m), True),
        "ProxGEN (l0)": (lambda m: ProxGEN(penalized_groups(m, "l0", 1e-4), lr=0.01), False),
        "ProxSGD (l1)": (lambda m: ProxSGD(penalized_groups(m, "l1", 1e-4), lr=0.01), False),
    }
    # Interleave the rounds so that load on a shared machine hits every optimizer alike.
    results = {name: [] for name in optimizers}
    for _ in range(3):
        for name, (make, sr2) in optimizers.items():
            results[name].append(
                time_optimizer(make, args.device, args.batch, args.steps, args.repeats, sr2)
            )
    base = statistics.median(results["SGD"])
    print(
        f"device {args.device}, batch {args.batch}, small CNN "
        f"({sum(p.numel() for p in small_cnn().parameters())} parameters)\n"
    )
    print("| optimizer | step (ms) | ratio to SGD |")
    print("|---|---|---|")
    for name, values in results.items():
        t = statistics.median(values)
        print(f"| {name} | {t * 1e3:.2f} | {t / base:.3f} |")


if __name__ == "__main__":
    main()
