"""Out-of-core fits: passes of ``dask_ml.wrappers.Incremental`` against an in-memory fit.

``Incremental(est).partial_fit(X, y)`` on a dask array calls ``est.partial_fit`` once per
block, in a random block order, on a ``distributed`` cluster (here a local one: 2 worker
processes, 1 thread each; the estimator travels between them pickled). Each call to it is one
pass over the data. After each pass we report, for the model it returns:

- the held-out score (accuracy, or R^2) minus that of ``fit`` on the same training rows in
  memory (default settings);
- the relative objective gap (F - F*) / F* on the training rows, F* from a tight in-memory
  fit (tol 1e-8), F the mean loss plus the penalty computed here from coef_ and intercept_;
- the number of nonzero coefficients (in memory: the row "in memory").

Two baselines: "last block" fits the last block alone (10 partial_fit calls on it): a
partial_fit that forgot the earlier blocks would do about as well; "last iterate" is the SR2
iterate at the end of the pass, the model partial_fit returned before it chose among
averages (``sr2learn._stream_average``).

The column "returned" names the candidate partial_fit returned (``sr2learn._stream_average``:
"average", "damped average" or "last" iterate, whichever did best on the blocks that came
after it).

Problems (40,000 rows: 75% for training, in blocks of --block rows): binary and 4-class l1
logistic regression (make_classification, 50 features, 10 informative), l1 least squares
(make_regression, 100 features, 10 informative, noise 60), l1 least squares
on equicorrelated columns (correlation 0.5 and 0.9, 50 features, 5 informative), and a
sparse binary l1 logistic regression on CSR blocks (2,000 features, 1% density, 50
informative).
Run: ``python benchmarks/bench_out_of_core.py [--passes 5] [--block 3000]``; with the
defaults the output is also saved to docs/benchmark_results/out_of_core.txt.
"""

import argparse
import os
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import train_test_split

from sr2learn import SR2Classifier, SR2Regressor
from sr2learn.datafits import Logistic, Multinomial, Quadratic
from sr2learn.penalties import check_penalty


def objective(est, X, y, coef=None, intercept=None):
    """Mean loss + penalty of a fitted SR2 estimator (or of the given coef, intercept)."""
    coef = np.atleast_2d(est.coef_ if coef is None else coef)
    intercept = est.intercept_ if intercept is None else intercept
    Z = np.asarray(X @ coef.T) + intercept
    if isinstance(est, SR2Regressor):
        datafit, Y = Quadratic(), np.asarray(y, dtype=float)[:, None]
    elif len(est.classes_) == 2:
        datafit, Y = Logistic(), (y == est.classes_[1]).astype(float)[:, None]
    else:
        datafit, Y = Multinomial(), (y[:, None] == est.classes_[None]).astype(float)
    penalty = check_penalty(est.penalty, est.alpha)
    return float(datafit.loss(Z, Y).mean()) + penalty.value(coef.ravel())


def problems():
    X, y = make_classification(n_samples=40_000, n_features=50, n_informative=10,
                               random_state=0)  # fmt: skip
    yield "binary l1", SR2Classifier(alpha=1e-3, random_state=0), X, y, [0, 1]
    X, y = make_classification(n_samples=40_000, n_features=50, n_informative=10,
                               n_classes=4, random_state=0)  # fmt: skip
    yield "4-class l1", SR2Classifier(alpha=1e-3, random_state=0), X, y, [0, 1, 2, 3]
    X, y = make_regression(n_samples=40_000, n_features=100, n_informative=10, noise=60,
                           random_state=0)  # fmt: skip
    yield "regression l1", SR2Regressor(alpha=1e-2, random_state=0), X, y / y.std(), None
    rng = np.random.default_rng(0)
    for rho in (0.5, 0.9):
        # Equicorrelated columns: x = sqrt(rho) z_0 + sqrt(1 - rho) z, 5 of 50 informative.
        common = rng.standard_normal((40_000, 1))
        X = np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.standard_normal((40_000, 50))
        y = X[:, :5] @ np.array([2.0, -1.5, 1.0, 0.5, -0.5]) + 2 * rng.standard_normal(40_000)
        est = SR2Regressor(alpha=1e-2, random_state=0)
        yield f"regression l1, correlation {rho}", est, X, y, None
    X = sp.random(40_000, 2000, density=0.01, format="csr", random_state=0,
                  data_rvs=lambda k: rng.exponential(size=k))  # fmt: skip
    w = np.zeros(2000)
    w[:50] = 3 * rng.standard_normal(50)
    y = (rng.random(X.shape[0]) < 1 / (1 + np.exp(-(X @ w)))).astype(int)
    yield "sparse binary l1 (CSR)", SR2Classifier(alpha=1e-3, random_state=0), X, y, [0, 1]


def last_block_alone(est, X, y, block, classes):
    """10 partial_fit calls on the last block only."""
    start = (X.shape[0] - 1) // block * block
    kw = {} if classes is None else {"classes": classes}
    alone = clone(est)
    for _ in range(10):
        alone.partial_fit(X[start:], y[start:], **kw)
    return alone


RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmark_results", "out_of_core.txt"
)


def run(name, est, X, y, classes, block, passes):
    """The table of one problem, as lines."""
    import dask.array as da
    from dask_ml.wrappers import Incremental

    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    memory = clone(est).fit(Xtr, ytr)
    best = objective(clone(est).set_params(tol=1e-8, max_iter=5000).fit(Xtr, ytr), Xtr, ytr)
    score = memory.score(Xte, yte)
    rows = [("in memory", score, 0.0, objective(memory, Xtr, ytr), memory.coef_, "", "")]
    alone = last_block_alone(est, Xtr, ytr, block, classes)
    rows.append(("last block", alone.score(Xte, yte), 0.0, objective(alone, Xtr, ytr),
                 alone.coef_, "", ""))  # fmt: skip
    Xd = da.from_array(Xtr, chunks=(block, -1), asarray=False)
    yd = da.from_array(ytr, chunks=block)
    inc = Incremental(clone(est), random_state=0)
    kw = {} if classes is None else {"classes": classes}
    for k in range(1, passes + 1):
        start = time.perf_counter()
        inc.partial_fit(Xd, yd, **kw)
        seconds = time.perf_counter() - start
        fitted = inc.estimator_
        p = Xtr.shape[1]
        W = fitted._state.W
        last = objective(fitted, Xtr, ytr, W[:p].T, W[p])
        heldout = fitted._average.heldout
        rows.append((f"pass {k}", fitted.score(Xte, yte), seconds,
                     objective(fitted, Xtr, ytr), fitted.coef_,
                     f"{(last - best) / best:.1e}", min(heldout, key=heldout.get)))  # fmt: skip
    n_blocks = len(Xd.chunks[0])
    lines = [
        "",
        f"{name}: {Xtr.shape[0]} training rows in {n_blocks} blocks, {Xte.shape[0]} held out",
        "| model | score - in memory | (F - F*) / F* | nonzeros | returned "
        "| last iterate (F - F*) / F* | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, held_out, seconds, F, coef, last, returned in rows:
        lines.append(f"| {label} | {held_out - score:+.4f} | {(F - best) / best:.1e} | "
                     f"{np.count_nonzero(coef)} | {returned or '-'} | {last or '-'} | "
                     f"{seconds:.2f} |")  # fmt: skip
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--block", type=int, default=3000)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    warnings.simplefilter("ignore")  # the in-memory reference runs stop at max_iter
    lines = [f"Incremental(est).partial_fit: passes over blocks of {args.block} rows, "
             "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)"]  # fmt: skip
    print(lines[0])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster):  # fmt: skip
        for name, est, X, y, classes in problems():
            table = run(name, est, X, y, classes, args.block, args.passes)
            print("\n".join(table), flush=True)
            lines += table
    if (args.passes, args.block) == (5, 3000):
        with open(RESULTS, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
