"""Lasso-type regression: SR2Regressor against scikit-learn's Lasso and skglm (issue 5).

Objective 1/(2n) ||y - Xw - b||^2 + alpha ||w||_1 for every solver. As in
bench_logistic.py, each solver runs with a growing budget; the best objective of any run is
the reference; the table gives time to 1e-3 and 1e-6 relative suboptimality, the best
reached, nonzeros and the support's agreement with the reference solution. A plot is saved
in docs/benchmark_results/.

Data (generated, no download): a dense sparse-recovery problem (10,000 x 500, 20 true
nonzeros, correlated features) and scikit-learn's diabetes (standardised).

Usage: python benchmarks/bench_lasso.py
"""

import os
import sys

import numpy as np
from _common import timed_fit
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler

from sr2learn import SR2Regressor

RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmark_results"
)


def correlated_regression(n=10_000, p=500, k=20, rho=0.5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 1:] = rho * X[:, :-1] + np.sqrt(1 - rho**2) * X[:, 1:]  # neighbour correlation
    w = np.zeros(p)
    w[rng.choice(p, k, replace=False)] = rng.standard_normal(k) * 2
    y = X @ w + rng.standard_normal(n)
    return X, y


def objective(X, y, coef, intercept, alpha):
    return 0.5 * np.mean((y - X @ coef - intercept) ** 2) + alpha * np.abs(coef).sum()


def solvers(alpha):
    out = {
        "SR2": (
            lambda k: SR2Regressor(alpha=alpha, max_iter=k, tol=0.0, random_state=0),
            [1, 2, 4, 8, 16, 32, 64, 128],
        ),
        "Lasso (cd)": (
            lambda k: Lasso(alpha=alpha, max_iter=k, tol=0.0),
            [1, 2, 4, 8, 16, 32, 64, 128, 256],
        ),
    }
    try:
        from skglm import Lasso as SkglmLasso

        out["skglm"] = (
            lambda k: SkglmLasso(alpha=alpha, max_iter=k, tol=1e-14),
            [1, 2, 3, 5, 8, 12, 20, 30],
        )
    except ImportError as exc:
        print(f"(skglm not installed: {exc}; pip install skglm)", file=sys.stderr)
    return out


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Xd, yd = load_diabetes(return_X_y=True)
    sets = {
        "correlated 10000 x 500": correlated_regression(),
        "diabetes": (StandardScaler().fit_transform(Xd), yd),
    }
    os.makedirs(RESULTS, exist_ok=True)
    print(
        "| data | alpha | solver | time to 1e-3 (s) | time to 1e-6 (s) | best rel. subopt. | "
        "nnz | support = reference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    fig, axes = plt.subplots(1, 2 * len(sets), figsize=(5.5 * 2 * len(sets), 4),
                             constrained_layout=True)  # fmt: skip
    axes = iter(axes)
    for data_name, (X, y) in sets.items():
        alpha_top = np.max(np.abs(X.T @ (y - y.mean()))) / len(y)
        for alpha in (alpha_top / 10, alpha_top / 100):
            results = {}
            for name, (make, budgets) in solvers(alpha).items():
                rows = []
                for k in budgets:
                    est = make(k)
                    seconds = timed_fit(est, X, y)
                    rows.append((seconds, objective(X, y, est.coef_, est.intercept_, alpha),
                                 est.coef_.copy()))  # fmt: skip
                results[name] = rows
            best_rows = min((r for rows in results.values() for r in rows), key=lambda r: r[1])
            best, support = best_rows[1], best_rows[2] != 0
            ax = next(axes)
            for name, rows in results.items():
                sub = [max((o - best) / best, 1e-16) for _, o, _ in rows]
                ax.loglog([t for t, _, _ in rows], sub, "o-", label=name)

                def reach(level, rows=rows, sub=sub):
                    hits = [t for (t, _, _), s in zip(rows, sub, strict=True) if s <= level]
                    return hits[0] if hits else np.nan

                coef = rows[-1][2]
                print(f"| {data_name} | {alpha:.3g} | {name} | {reach(1e-3):.3g} | "
                      f"{reach(1e-6):.3g} | {min(sub):.1e} | {np.count_nonzero(coef)} | "
                      f"{np.array_equal(coef != 0, support)} |")  # fmt: skip
            ax.axhline(1e-3, color="k", lw=0.8, ls="--")
            ax.set(xlabel="time (s)", ylabel="relative suboptimality",
                   title=f"{data_name}, alpha = {alpha:.3g}")  # fmt: skip
            ax.legend(fontsize=8)
    fig.savefig(os.path.join(RESULTS, "lasso.png"), dpi=80)
    print("\nnan: not reached within the largest budget.")


if __name__ == "__main__":
    main()
