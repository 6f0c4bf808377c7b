"""Step time of SR2, ProxGEN and ProxSGD relative to torch.optim.SGD (issues 4 and 14).

Same model, same batch, one process: each optimizer makes ``--steps`` steps on a fixed
batch of Fashion-MNIST-sized inputs (random 28x28 images, so no data are needed), and the
table prints the median step time over ``--repeats`` rounds and its ratio to SGD's. SR2's
floor is (2 forward + 1 backward) / (1 forward + 1 backward): about 1.33 when a backward
costs two forwards; the table measures it directly (an SGD step plus one no-grad forward),
since on a CPU the backward of a small CNN often costs only about one forward. For SR2 the
last column is its own time per step, outside the two closure passes (the prox, the rule,
the copies): what the step adds to the floor.

``--clock cpu`` measures process CPU time instead of wall time: on a shared machine, with
``OMP_NUM_THREADS=1``, it does not count the time other processes hold the cores (wall
time with several threads there mostly measures the machine's load).

Usage: python benchmarks/bench_torch_step.py [--device cuda] [--batch 128] [--clock cpu]
"""

import argparse
import statistics
import time

import torch
from _cnn import small_cnn
from torch import nn

from sr2learn.torch import SR2, ProxGEN, ProxSGD, penalized_groups

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_optimizer(make_opt, device, batch, steps, repeats, sr2, clock=time.perf_counter):
    """Median seconds per step, and for SR2 the median seconds outside the closure."""
    torch.manual_seed(0)
    model = small_cnn().to(device)
    opt = make_opt(model)
    X = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    in_closure = [0.0]

    def closure(backward=True):
        start = clock()
        loss = nn.functional.cross_entropy(model(X), y)
        if backward:
            opt.zero_grad()
            loss.backward()
        in_closure[0] += clock() - start
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

    for _ in range(3):  # warm-up (and SR2's sigma0 estimate when lr is None)
        step()
    times, own = [], []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        in_closure[0] = 0.0
        start = clock()
        for _ in range(steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = clock() - start
        times.append(elapsed / steps)
        own.append((elapsed - in_closure[0]) / steps)
    return statistics.median(times), statistics.median(own)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
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
    for _ in range(args.rounds):
        for name, (make, sr2) in optimizers.items():
            results[name].append(
                time_optimizer(make, args.device, args.batch, args.steps, args.repeats, sr2,
                               CLOCKS[args.clock])  # fmt: skip
            )
    base = statistics.median(t for t, _ in results["SGD"])
    print(
        f"device {args.device}, batch {args.batch}, {args.clock} clock, "
        f"{torch.get_num_threads()} threads, small CNN "
        f"({sum(p.numel() for p in small_cnn().parameters())} parameters)\n"
    )
    print("| optimizer | step (ms) | ratio to SGD | SR2's own (ms) |")
    print("|---|---|---|---|")
    for name, values in results.items():
        t = statistics.median(v for v, _ in values)
        own = statistics.median(o for _, o in values) * 1e3
        own = f"{own:.2f}" if optimizers[name][1] is True else ""
        print(f"| {name} | {t * 1e3:.2f} | {t / base:.3f} | {own} |")


if __name__ == "__main__":
    main()
