"""Cost of one SR2 epoch relative to one pass of X @ w plus one of X.T @ r (issue 2).

Prints, for each data set and variant, the ratio

    (time of one SR2 epoch) / (time of X @ w + X.T @ r over all rows)

measured in the same process (logistic loss unless the row says squared loss). Floors:
plain SR2 reads X_B three times per step (X_B w, X_B^T r, X_B s), i.e. 1.5 reference
units; SVRG adds the full gradient of the epoch (X w~ and X^T r~, one unit) and reuses
X w~, about 2.5. The logistic loss adds two transcendental functions per sample and step,
which cost more than a sparse row of 14 entries: on such data the ratio measures them.
Checkpoints (exact full-gradient diagnostics, the default once per epoch) are timed apart,
as is the cost of recording the per-step trace (issue 3: under 5% of the fit).

Usage: python benchmarks/bench_epoch.py [--quick]
"""

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp
from _common import best_time, data_home, dense_logistic, sparse_text_like

from sr2learn import SR2Classifier
from sr2learn._problem import LinearProblem
from sr2learn._rule import SR2Rule
from sr2learn._sr2 import SolverState, solve
from sr2learn.datafits import Logistic, Quadratic
from sr2learn.diagnostics import ConvergenceDiagnostics
from sr2learn.linear_model import auto_batch_size
from sr2learn.penalties import L1


class _NoTrace(ConvergenceDiagnostics):
    def record_step(self, *args):
        pass


def make_problem(X, y, datafit=None):
    n = X.shape[0]
    Y = y.astype(np.float64)[:, None]
    return LinearProblem(X, Y, np.ones(n), datafit or Logistic(), True)


def run(problem, epochs, vr, checkpoint_every, diag_cls=ConvergenceDiagnostics):
    nnz = problem.X.nnz / problem.n if sp.issparse(problem.X) else problem.p
    b = auto_batch_size(problem.n, nnz)
    state = SolverState(W=np.zeros((problem.n_rows, 1)), sigma=1.0, batch_size=b)
    problem.lipschitz()  # computed once per data set; not part of an epoch
    start = time.perf_counter()
    solve(
        problem, L1(1e-4), state, SR2Rule(), max_epochs=epochs, tol=None,
        variance_reduction=vr, rng=np.random.default_rng(0), diagnostics=diag_cls(),
        checkpoint_every=checkpoint_every,
    )  # fmt: skip
    return time.perf_counter() - start


def epoch_time(problem, vr, checkpoint_every, epochs, diag_cls=ConvergenceDiagnostics):
    # Difference of a long and a 1-epoch run removes the start-up (first checkpoint).
    long = min(run(problem, epochs + 1, vr, checkpoint_every, diag_cls) for _ in range(2))
    short = min(run(problem, 1, vr, checkpoint_every, diag_cls) for _ in range(2))
    return (long - short) / epochs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer epochs")
    args = parser.parse_args()
    epochs = 2 if args.quick else 4
    sets = {}
    sets["dense 100k x 100"] = dense_logistic(n=20_000 if args.quick else 100_000)
    sets["dense 100k x 100, squared loss"] = sets["dense 100k x 100"]
    try:
        from sr2learn.datasets import load_adult

        X, y, _ = load_adult(data_home())
        sets[f"Adult {X.shape[0]} x {X.shape[1]} (CSR)"] = (X, y)
    except FileNotFoundError as exc:
        print(f"(Adult skipped: {exc})", file=sys.stderr)
    n_text = 5_000 if args.quick else 20_000
    sets["text-like 20k x 20k (CSR, 50 nnz/row)"] = sparse_text_like(n=n_text)

    print("| data | batch | reference (ms) | plain | svrg | ckpt / epoch | trace overhead |")
    print("|---|---|---|---|---|---|---|")
    for name, (X, y) in sets.items():
        problem = make_problem(X, y, Quadratic() if "squared" in name else Logistic())
        w = np.random.default_rng(0).standard_normal((problem.p, 1))
        r = np.random.default_rng(1).standard_normal((problem.n, 1))
        ref = best_time(lambda X=X, w=w, r=r: (X @ w, X.T @ r), repeat=7)
        no_ckpt = 10**9
        plain = epoch_time(problem, None, no_ckpt, epochs)
        svrg = epoch_time(problem, "svrg", no_ckpt, epochs)
        svrg_ckpt = epoch_time(problem, "svrg", 1, epochs)
        svrg_untraced = epoch_time(problem, "svrg", 1, epochs, _NoTrace)
        nnz = X.nnz / X.shape[0] if sp.issparse(X) else X.shape[1]
        b = auto_batch_size(X.shape[0], nnz)
        print(
            f"| {name} | {b} | {ref * 1e3:.1f} | {plain / ref:.2f} | "
            f"{svrg / ref:.2f} | {(svrg_ckpt - svrg) / ref:.2f} | "
            f"{100 * (svrg_ckpt - svrg_untraced) / svrg_ckpt:+.1f}% |"
        )
    print(
        "\nplain, svrg: epoch time / reference (no checkpoints). ckpt / epoch: what a per-epoch "
        "checkpoint adds, in reference units. trace overhead: per-step recording, share of an "
        "epoch with checkpoints (noise is a few %)."
    )
    # Keep the estimator honest too: the default fit on the dense set, end to end.
    X, y = sets["dense 100k x 100"]
    start = time.perf_counter()
    clf = SR2Classifier(alpha=1e-4, random_state=0).fit(X, y)
    print(
        f"\nSR2Classifier(alpha=1e-4) on the dense set: {time.perf_counter() - start:.2f} s, "
        f"{clf.n_iter_} epochs, converged={clf.diagnostics_.converged}"
    )


if __name__ == "__main__":
    main()
