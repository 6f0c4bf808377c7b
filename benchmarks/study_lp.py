"""Multi-seed study: SR2Classifier with l1/2 and l2/3 against skglm (AndersonCD, fixpoint).

For each data shape and seed, alpha = alpha_max / 10 (as bench_breadth.py's lp section),
the objective ratio SR2 / skglm - 1, both nnz and both fit times (best of two). The
fix for a nonconvex penalty must hold on data the benchmark does not have, hence several
shapes and seeds.

Usage: python benchmarks/study_lp.py [--seeds 0,1,2] [--shapes dense,text] [--pen l1/2,l2/3]
"""

import argparse
import functools
import time
import warnings

import numpy as np
from _common import sparse_text_like
from bench_breadth import logistic_objective, p_gg_n
from skglm import GeneralizedLinearEstimator
from skglm.datafits import Logistic
from skglm.penalties import L0_5, L2_3
from skglm.solvers import AndersonCD

from sr2learn import SR2Classifier, alpha_max

SHAPES = {
    "dense": [(200, 5000), (100, 2000), (400, 3000)],
    "text": [(2000, 8000), (5000, 20000)],
}
PENALTIES = {"l1/2": (L0_5, 0.5), "l2/3": (L2_3, 2.0 / 3.0)}


def data(kind, n, p, seed):
    if kind == "dense":
        return p_gg_n(n=n, p=p, seed=seed)
    return sparse_text_like(n=n, p=p, seed=seed)


def timed(make, X, y, repeat=2):
    best = None
    for _ in range(repeat):
        est = make()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        t = time.perf_counter() - t0
        if best is None or t < best[0]:
            best = (t, est)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--shapes", default="dense,text")
    ap.add_argument("--pen", default="l1/2,l2/3")
    ap.add_argument("--divisor", type=float, default=10.0)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| data | seed | pen | obj SR2/skglm - 1 | nnz SR2 | nnz skglm | t SR2 | t skglm | "
          "t ratio | conv |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios, tratios = [], []
    for kind in args.shapes.split(","):
        for n, p in SHAPES[kind]:
            for seed in seeds:
                X, y = data(kind, n, p, seed)
                for pen in args.pen.split(","):
                    cls, q = PENALTIES[pen]
                    alpha = alpha_max(SR2Classifier(penalty=pen), X, y) / args.divisor
                    obj = functools.partial(logistic_objective, X, y, alpha=alpha, q=q)
                    ts, s = timed(lambda: SR2Classifier(penalty=pen, alpha=alpha,
                                                        random_state=0), X, y)
                    tg, g = timed(lambda: GeneralizedLinearEstimator(
                        Logistic(), cls(alpha), AndersonCD(ws_strategy="fixpoint")), X, y)
                    fs = obj(np.ravel(s.coef_), np.ravel(s.intercept_))
                    fg = obj(np.ravel(g.coef_), np.ravel(g.intercept_))
                    ratios.append(fs / fg - 1)
                    tratios.append(ts / tg)
                    print(f"| {kind} {n}x{p} | {seed} | {pen} | {fs / fg - 1:+.2e} | "
                          f"{np.count_nonzero(s.coef_)} | {np.count_nonzero(g.coef_)} | "
                          f"{ts:.3f} | {tg:.3f} | {ts / tg:.2f} | "
                          f"{s.diagnostics_.converged} |", flush=True)
    r = np.array(ratios)
    print(f"\nobj ratio - 1: max {r.max():+.2e}, median {np.median(r):+.2e}, "
          f"over +1e-3: {int(np.sum(r > 1e-3))}/{r.size}; time ratio: median "
          f"{np.median(tratios):.2f}, max {np.max(tratios):.2f}")


if __name__ == "__main__":
    main()
