"""The accuracy-sparsity front of SR2 and the tuned baselines in networks (issue 14).

Three problems: (mlp) an MLP 784-300-100-10 on MNIST-5k, (cnn) the small CNN of
benchmarks/_cnn.py on MNIST-5k, (fashion) the same CNN on 20,000 Fashion-MNIST training
images. For each penalty (l1, l0) and each strength alpha (from a nearly dense to a nearly
empty network, chosen by a short probe), the script trains

* SR2 at its defaults, ``SR2(groups, module=model)``: no learning rate given;
* SR2 at lr (sigma0 = 1/lr) in LRS;
* ProxGEN (l1 and l0) at lr in LRS: plain proximal SGD (no momentum, no preconditioner),
  the setting of the SR2 paper's comparison;
* ProxSGD (l1) at lr in LRS, with momentum 0.9 (an average of the gradients, so lr keeps
  its meaning); without momentum it would repeat ProxGEN's runs step for step;

and records the test accuracy, the fraction of exact zeros among the penalised weights
(conv and linear weights, ``sparsity_report``) and the training time. Every run starts
from the same initial weights and sees the same batches.

Budget: the full run is sized for about 25 minutes of ONE quiet core (``--threads 1``,
the default; 30 minutes of CPU time on the shared, loaded project machine: 3.5 for the MLP,
6 for the MNIST-5k CNN, 20 for Fashion-MNIST). Hence few epochs (15 for the MLP, 3 for the
MNIST-5k CNN, 2 for Fashion-MNIST: 470, 94 and 314 steps), 3-4 alphas per penalty, one
seed, 1,000 MNIST-5k test images and a random 2,000 of Fashion-MNIST's 10,000. The figures
are one draw each, with a test-accuracy standard error of about 1 point (MNIST-5k) and 0.8
point (Fashion); read differences below that as ties.

Printed, per problem and penalty: every run as accuracy / % zeros, then per alpha SR2 at
its defaults against the best-tuned baseline (the highest test accuracy over its lrs at
that alpha) with two targets marked met or missed:

(i) SR2 at its defaults within 1 point of the best-tuned baseline's accuracy;
(ii) l0 only: SR2 at its defaults at least 20 points sparser than the best-tuned ProxGEN
     at no more than 1 point lower accuracy;

and, not a target, the same question at equal sparsity instead of equal alpha: the most
accurate baseline run, at any alpha and lr, with at least SR2's zeros.

Each run is cached as JSON in ``--cache`` (keyed by its settings; a run made with other
sources of the optimizers is redone), so the table and the plots are rebuilt without
training; ``--from-cache`` never trains and accepts runs of older sources. Unless
``--quick``, the table goes to docs/benchmark_results/torch_front.txt and the plots
(accuracy against the fraction of zeros, one panel per problem, one marker per method and
lr, a line joining the alphas of one setting) to torch_front_l1.png and torch_front_l0.png.
They cover the sections of ``--only`` plus every other section whose runs are all cached.

Data: ``get-data.sh DIR`` and ``SR2LEARN_DATA=DIR``.

Usage: python benchmarks/bench_torch_front.py [--quick] [--only mlp,cnn,fashion]
       [--threads 1] [--cache bench_torch_front_cache] [--from-cache]
"""

import argparse
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from _cnn import small_cnn
from torch import nn

import sr2learn
from sr2learn.datasets import load_fashion_mnist, load_mnist5k
from sr2learn.torch import SR2, ProxGEN, ProxSGD, penalized_groups
from sr2learn.torch.pruning import sparsity_report

RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmark_results"
)
LRS = (0.003, 0.03, 0.3, 1.0)
BATCH = 128
PROXSGD_MOMENTUM = 0.9
ACCURACY_SLACK = 0.01  # targets (i) and (ii): 1 point of accuracy
SPARSITY_MARGIN = 0.20  # target (ii): 20 points of zeros


def mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )  # fmt: skip


@dataclass(frozen=True)
class Section:
    """One problem: its data, its network and its grid."""

    title: str
    data: str  # "mnist5k" or "fashion"
    build: object
    epochs: int
    n_train: int
    n_test: int
    alphas: dict = field(default_factory=dict)  # penalty -> alphas


# Alphas from a short probe (SR2 at sigma0 10 and ProxGEN at lr 0.03, 0.3, 1): the first
# leaves most weights nonzero, the last empties the network at most learning rates.
SECTIONS = {
    "mlp": Section(
        "MNIST-5k, MLP 784-300-100-10", "mnist5k", mlp, epochs=15, n_train=4000, n_test=1000,
        alphas={"l1": (1e-4, 3e-4, 1e-3, 3e-3), "l0": (3e-5, 1e-4, 3e-4, 1e-3)},
    ),
    "cnn": Section(
        "MNIST-5k, small CNN", "mnist5k", small_cnn, epochs=3, n_train=4000, n_test=1000,
        alphas={"l1": (1e-3, 1e-2, 3e-2), "l0": (1e-4, 1e-3, 3e-3)},
    ),
    "fashion": Section(
        "Fashion-MNIST (20,000 images), small CNN", "fashion", small_cnn, epochs=2,
        n_train=20_000, n_test=2000,
        alphas={"l1": (1e-3, 1e-2, 3e-2), "l0": (1e-4, 1e-3, 3e-3)},
    ),
}  # fmt: skip


def quick_section(section):
    """A smoke-check version: a few hundred images, one epoch, one alpha per penalty."""
    return Section(
        section.title, section.data, section.build, epochs=1, n_train=256, n_test=256,
        alphas={penalty: alphas[1:2] for penalty, alphas in section.alphas.items()},
    )  # fmt: skip


def runs(penalty, lrs):
    """(method, lr) of one alpha; lr None is SR2 at its defaults."""
    out = [("SR2", None)] + [("SR2", lr) for lr in lrs] + [("ProxGEN", lr) for lr in lrs]
    if penalty == "l1":  # ProxSGD is defined for convex penalties only
        out += [("ProxSGD", lr) for lr in lrs]
    return out


@functools.cache
def read_images(data):
    """Training and test tensors of a data set ("mnist5k" or "fashion"), images of shape
    (n, 1, 28, 28); read once per process."""
    if data == "mnist5k":
        X, y = load_mnist5k()
        parts = (X[:4000], y[:4000], X[4000:], y[4000:])
    else:
        parts = (*load_fashion_mnist(subset="train"), *load_fashion_mnist(subset="test"))
    Xtr, ytr, Xte, yte = (torch.from_numpy(np.ascontiguousarray(a)) for a in parts)
    Xtr, Xte = (X.to(torch.float32).reshape(-1, 1, 28, 28) for X in (Xtr, Xte))
    return Xtr, ytr, Xte, yte


def load(section):
    """The training images of ``section`` and a fixed random subset of its test images
    (Fashion-MNIST's test file is in no useful order)."""
    Xtr, ytr, Xte, yte = read_images(section.data)
    test = torch.randperm(len(Xte), generator=torch.Generator().manual_seed(2))[: section.n_test]
    return Xtr[: section.n_train], ytr[: section.n_train], Xte[test], yte[test]


def make_optimizer(method, groups, lr, model):
    if method == "SR2":
        return SR2(groups, module=model) if lr is None else SR2(groups, lr=lr, module=model)
    if method == "ProxGEN":
        return ProxGEN(groups, lr=lr)
    return ProxSGD(groups, lr=lr, momentum=PROXSGD_MOMENTUM)


def train(section, data, penalty, alpha, method, lr):
    """Train one network; returns it, its optimizer and whether the loss blew up."""
    Xtr, ytr = data
    torch.manual_seed(0)  # the same initial weights and dropout draws for every run
    model = section.build()
    opt = make_optimizer(method, penalized_groups(model, penalty, alpha), lr, model)
    generator = torch.Generator().manual_seed(1)  # the same batches for every run
    for _ in range(section.epochs):
        total = torch.zeros(())
        for idx in torch.randperm(len(Xtr), generator=generator).split(BATCH):
            X, y = Xtr[idx], ytr[idx]

            def closure(backward=True, X=X, y=y):
                loss = nn.functional.cross_entropy(model(X), y)
                if backward:
                    opt.zero_grad()
                    loss.backward()
                return loss

            if method == "SR2":
                loss = opt.step(closure)
            else:
                loss = closure()
                opt.step()
            total += loss.detach()
        if not torch.isfinite(total):  # one check an epoch: no host sync per step
            return model, opt, True
    return model, opt, False


@torch.no_grad()
def accuracy(model, X, y):
    model.eval()
    correct = sum(int((model(Xb).argmax(1) == yb).sum()) for Xb, yb in
                  zip(X.split(1000), y.split(1000), strict=True))  # fmt: skip
    return correct / len(X)


def run_one(section, data, penalty, alpha, method, lr):
    Xtr, ytr, Xte, yte = data
    start, start_cpu = time.perf_counter(), time.process_time()
    model, opt, diverged = train(section, (Xtr, ytr), penalty, alpha, method, lr)
    record = {
        "seconds": time.perf_counter() - start,
        # With one thread, the CPU time is the one-core cost even on a loaded machine.
        "cpu_seconds": time.process_time() - start_cpu,
        "accuracy": accuracy(model, Xte, yte),
        "zero_fraction": sparsity_report(model)["total"]["zero_fraction"],
        "diverged": diverged,
    }
    if isinstance(opt, SR2):
        history = opt.diagnostics.history
        record.update(
            sigma0=float(history["sigma"][0]),
            sigma=opt.sigma,
            acceptance_rate=float(history["accepted"].mean()),
        )
    return record


def code_digest():
    """Digest of the sources that decide a run's result (the optimizers, the penalties,
    the rule, the CNN): a cached run of other sources is redone."""
    package = os.path.dirname(os.path.abspath(sr2learn.__file__))
    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for path in (
        os.path.join(package, "torch", "optim.py"),
        os.path.join(package, "penalties.py"),
        os.path.join(package, "_rule.py"),
        os.path.join(here, "_cnn.py"),
    ):
        with open(path, "rb") as handle:
            h.update(handle.read())
    return h.hexdigest()[:16]


def settings(name, section, penalty, alpha, method, lr):
    return {
        "section": name, "epochs": section.epochs, "n_train": section.n_train,
        "n_test": section.n_test, "batch": BATCH, "penalty": penalty, "alpha": alpha,
        "method": method, "lr": lr,
        "momentum": PROXSGD_MOMENTUM if method == "ProxSGD" else 0.0,
    }  # fmt: skip


def cache_path(cache, key):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return os.path.join(cache, key["section"], f"{digest}.json")


def cached(cache, key, digest, any_source):
    """The cached record of ``key``, or None (missing, or made by other sources)."""
    path = cache_path(cache, key)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        entry = json.load(handle)
    if entry["settings"] != key or (entry["code"] != digest and not any_source):
        return None
    return entry["result"]


def store(cache, key, digest, result):
    path = cache_path(cache, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump({"settings": key, "code": digest, "result": result}, handle, indent=1)


def grid(name, section):
    for penalty, alphas in section.alphas.items():
        for alpha in alphas:
            for method, lr in runs(penalty, LRS):
                yield settings(name, section, penalty, alpha, method, lr)


def collect(name, section, args, digest, train_missing):
    """Every run of ``section``: from the cache, or trained (and cached) when
    ``train_missing``; None when a run is missing and may not be trained."""
    rows, data = [], None
    for key in grid(name, section):
        result = cached(args.cache, key, digest, args.from_cache)
        if result is None:
            if not train_missing:
                return None
            if data is None:
                data = load(section)
            result = run_one(section, data, key["penalty"], key["alpha"], key["method"],
                             key["lr"])  # fmt: skip
            store(args.cache, key, digest, result)
            print(f"  {name} {key['penalty']} {key['alpha']:g} {label(key)}: "
                  f"{100 * result['accuracy']:.1f}% accuracy, "
                  f"{100 * result['zero_fraction']:.1f}% zeros, {result['seconds']:.1f} s "
                  f"({result['cpu_seconds']:.1f} s CPU)",
                  file=sys.stderr, flush=True)  # fmt: skip
        rows.append({**key, **result})
    return rows


def label(row):
    if row["lr"] is None:
        return f"{row['method']} default"
    return f"{row['method']} lr {row['lr']:g}"


def best(rows):
    """The run of highest accuracy (the sparser one on a tie), or None."""
    return max(rows, key=lambda r: (r["accuracy"], r["zero_fraction"]), default=None)


def pct(x):
    return f"{100 * x:.1f}"


def point(row):
    return f"{pct(row['accuracy'])} / {pct(row['zero_fraction'])}"


def target_within(sr2, base):
    """(i): SR2's accuracy at most 1 point below the best-tuned baseline's."""
    gap = sr2["accuracy"] - base["accuracy"]
    status = "met" if gap >= -ACCURACY_SLACK - 1e-12 else "missed"
    return f"{status} ({100 * gap:+.1f} pt)"


def target_sparser(sr2, proxgen):
    """(ii): at least 20 points sparser than ProxGEN at no more than 1 point lower accuracy."""
    gap = sr2["accuracy"] - proxgen["accuracy"]
    sparser = sr2["zero_fraction"] - proxgen["zero_fraction"]
    met = sparser >= SPARSITY_MARGIN - 1e-12 and gap >= -ACCURACY_SLACK - 1e-12
    return f"{'met' if met else 'missed'} ({100 * sparser:+.1f} pt zeros, {100 * gap:+.1f} pt acc)"


def runs_table(rows, penalty):
    """Every run as accuracy / % zeros: one line per alpha and method, one column per lr."""
    methods = ["SR2", "ProxGEN"] + (["ProxSGD"] if penalty == "l1" else [])
    lines = [
        "| alpha | method | default | " + " | ".join(f"lr {lr:g}" for lr in LRS) + " |",
        "|---|---|---|" + "---|" * len(LRS),
    ]
    for alpha in sorted({r["alpha"] for r in rows}):
        for method in methods:
            cells = {r["lr"]: r for r in rows if r["alpha"] == alpha and r["method"] == method}
            shown = [point(cells[lr]) + (" (diverged)" if cells[lr]["diverged"] else "")
                     if lr in cells else "" for lr in (None, *LRS)]  # fmt: skip
            lines.append(f"| {alpha:g} | {method} | " + " | ".join(shown) + " |")
    return lines


def on_the_front(sr2, baselines):
    """Not a target, the same question at equal sparsity instead of equal alpha: the most
    accurate baseline run, at any alpha and lr, with at least SR2's zeros."""
    rival = best([r for r in baselines if r["zero_fraction"] >= sr2["zero_fraction"]])
    if rival is None:
        return "no baseline run as sparse"
    gap = sr2["accuracy"] - rival["accuracy"]
    return f"{point(rival)} ({label(rival)}, alpha {rival['alpha']:g}): {100 * gap:+.1f} pt"


def targets_table(rows, penalty):
    head = "| alpha | SR2 default | best-tuned baseline | (i) within 1 pt |"
    rule = "|---|---|---|---|"
    if penalty == "l0":
        head += " (ii) 20 pt sparser than best ProxGEN, <= 1 pt less accurate |"
        rule += "---|"
    lines = [head + " front: best baseline at least as sparse, any alpha |", rule + "---|"]
    baselines = [r for r in rows if r["method"] != "SR2"]
    for alpha in sorted({r["alpha"] for r in rows}):
        sr2 = next(
            r for r in rows if r["alpha"] == alpha and r["method"] == "SR2" and r["lr"] is None
        )
        base = best([r for r in baselines if r["alpha"] == alpha])
        line = (f"| {alpha:g} | {point(sr2)} | {point(base)} ({label(base)}) | "
                f"{target_within(sr2, base)} |")  # fmt: skip
        if penalty == "l0":
            line += f" {target_sparser(sr2, base)} |"  # the l0 baselines are ProxGEN's
        lines.append(f"{line} {on_the_front(sr2, baselines)} |")
    return lines


def robustness_line(rows):
    """How far each method's accuracy moves over its lrs, at each alpha (in points)."""
    parts = []
    for alpha in sorted({r["alpha"] for r in rows}):
        spans = []
        for method in ("SR2", "ProxGEN", "ProxSGD"):
            accs = [
                r["accuracy"]
                for r in rows
                if r["alpha"] == alpha and r["method"] == method and r["lr"] is not None
            ]
            if accs:
                spans.append(f"{method} {100 * (max(accs) - min(accs)):.1f}")
        parts.append(f"alpha {alpha:g}: " + ", ".join(spans))
    return "accuracy range over lr (pt): " + "; ".join(parts)


def report(name, section, rows):
    minutes = sum(r["seconds"] for r in rows) / 60
    cpu_minutes = sum(r["cpu_seconds"] for r in rows) / 60
    lines = [
        f"== {section.title} ({name}): {section.n_train} training images, {section.epochs} "
        f"epochs, batch {BATCH}, {section.n_test} test images; {len(rows)} runs, "
        f"{minutes:.1f} min of training ({cpu_minutes:.1f} min CPU) ==",
    ]
    sr2_default = [r for r in rows if r["method"] == "SR2" and r["lr"] is None]
    sigma0 = sorted({f"{r['sigma0']:.3g}" for r in sr2_default})
    lines.append(f"SR2 default: sigma0 {', '.join(sigma0)} (lr = 1/sigma0)")
    for penalty in section.alphas:
        at = [r for r in rows if r["penalty"] == penalty]
        lines += ["", f"-- {penalty}: test accuracy (%) / penalised weights exactly 0 (%) --"]
        lines += runs_table(at, penalty)
        lines.append(robustness_line(at))
        lines += ["", f"-- {penalty}: targets --"]
        lines += targets_table(at, penalty)
    return lines


MARKERS = {"SR2": "o", "ProxGEN": "s", "ProxSGD": "^"}
SHOWN_BELOW_BEST = 25  # points of accuracy shown under a panel's best run


def plot_panel(ax, rows, colours):
    """One problem's front: a line per (method, lr) through its alphas."""
    seen = sorted({(r["method"], r["lr"]) for r in rows},
                  key=lambda m: (m[0], -1 if m[1] is None else m[1]))  # fmt: skip
    for method, lr in seen:
        line = sorted((r for r in rows if r["method"] == method and r["lr"] == lr),
                      key=lambda r: r["alpha"])  # fmt: skip
        default = lr is None
        ax.plot(
            [100 * r["zero_fraction"] for r in line], [100 * r["accuracy"] for r in line],
            marker="*" if default else MARKERS[method], markersize=14 if default else 6,
            color="crimson" if default else colours[lr], linewidth=2 if default else 0.8,
            linestyle="-" if method == "SR2" else ":", label=label({"method": method, "lr": lr}),
            zorder=3 if default else 2,
        )  # fmt: skip
    # Collapsed networks (chance accuracy) would squash the front: zoom on the useful band.
    top = 100 * max(r["accuracy"] for r in rows)
    floor = 5 * math.floor((top - SHOWN_BELOW_BEST) / 5)
    below = sum(100 * r["accuracy"] < floor for r in rows)
    ax.set_ylim(floor, top + 1.5)
    ax.set_xlim(-2, 102)
    ax.text(0.02, 0.02, f"{below} of {len(rows)} runs below {floor}% accuracy",
            transform=ax.transAxes, fontsize=8)  # fmt: skip
    ax.set(xlabel="penalised weights exactly 0 (%)", ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)


def plot(sections, all_rows, penalty, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sections)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names) + 2.2, 4.4),
                             squeeze=False, layout="constrained")  # fmt: skip
    colours = dict(zip(LRS, plt.cm.viridis(np.linspace(0, 0.9, len(LRS))), strict=True))
    for ax, name in zip(axes[0], names, strict=True):
        plot_panel(ax, [r for r in all_rows[name] if r["penalty"] == penalty], colours)
        ax.set_title(sections[name].title, fontsize=10)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
    fig.suptitle(f"{penalty} penalty: one point per alpha; a line joins one method at one lr")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke check, < 1 minute")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="sections to run, comma-separated: mlp,cnn,fashion")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--cache", default="bench_torch_front_cache",
                        help="folder of the cached runs")  # fmt: skip
    parser.add_argument("--from-cache", action="store_true",
                        help="never train; accept cached runs of older sources")  # fmt: skip
    args = parser.parse_args()
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    args.cache = os.path.join(args.cache, "quick" if args.quick else "full")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    digest = code_digest()
    sections = {name: quick_section(s) if args.quick else s for name, s in SECTIONS.items()}
    all_rows = {}
    for name, section in sections.items():
        chosen = name in args.only
        try:
            rows = collect(name, section, args, digest, chosen and not args.from_cache)
        except FileNotFoundError as exc:
            sys.exit(f"The data of section {name} are needed: {exc}")
        if rows is not None:
            all_rows[name] = rows
        elif chosen:
            sys.exit(f"section {name}: runs missing from {args.cache}")
    header = [
        f"bench_torch_front.py{' --quick' if args.quick else ''}: {args.threads} thread(s), "
        f"torch {torch.__version__}, one seed; sources {digest}",
        f"lr grid {', '.join(f'{lr:g}' for lr in LRS)}; ProxGEN: no momentum, no "
        f"preconditioner; ProxSGD: momentum {PROXSGD_MOMENTUM}; SR2 default: "
        "SR2(groups, module=model)",
        "best-tuned baseline: the highest test accuracy over the baselines' lrs at that alpha",
    ]
    lines = list(header)
    for name, rows in all_rows.items():
        lines += [""] + report(name, sections[name], rows)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.quick:
        return
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "torch_front.txt"), "w") as handle:
        handle.write(text)
    shown = {name: sections[name] for name in all_rows}
    for penalty in ("l1", "l0"):
        path = plot(shown, all_rows, penalty, os.path.join(RESULTS, f"torch_front_{penalty}.png"))
        print(f"saved {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
