"""l1 logistic regression on high-dimensional sparse, one-hot and dense data (issue 7).

Time to 1e-3 and 1e-4 relative suboptimality (against the best objective found by any run
of any solver; each solver is rerun with growing budgets, as in bench_logistic.py) for
SR2Classifier at its defaults (working sets on from 2000 features), saga and skglm's
SparseLogisticRegression, alpha in {1e-3, 1e-4}, on:

(a) a synthetic text-like problem: 20,000 documents x 50,000 features, ~50 nonzeros per
    row with power-law feature frequencies, labels from a sparse ground truth;
(b) Adult one-hot (``get-data.sh DIR`` and ``SR2LEARN_DATA=DIR``);
(c) a dense 10,000 x 500 problem.

Usage: python benchmarks/bench_sparse_highdim.py [--quick]
"""

import argparse
import sys

from _common import data_home, dense_logistic, sparse_text_like
from bench_logistic import first_reaching, run, solvers

from sr2learn.datasets import load_adult


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 5,000 x 20,000 text problem")
    args = parser.parse_args()
    sets = {}
    n_text, p_text = (5_000, 20_000) if args.quick else (20_000, 50_000)
    X, y = sparse_text_like(n=n_text, p=p_text)
    sets[f"text-like {n_text} x {p_text}"] = (X, y)
    try:
        X, y, _ = load_adult(data_home(), "train")
        sets["Adult one-hot"] = (X, y)
    except FileNotFoundError as exc:
        print(f"(Adult skipped: {exc})", file=sys.stderr)
    X, y = dense_logistic(n=10_000, p=500)
    sets["dense 10000 x 500"] = (X, y)

    print(
        "| data | alpha | solver | time to 1e-3 (s) | time to 1e-4 (s) | best rel. subopt. | nnz |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (X, y) in sets.items():
        for alpha in (1e-3, 1e-4):
            chosen = {k: v for k, v in solvers(alpha, X.shape[0]).items() if k != "SGDClassifier"}
            results = {
                solver: run(solver, make, budgets, X, y, X[:100], y[:100], alpha)
                for solver, (make, budgets) in chosen.items()
            }
            best = min(r["objective"] for rows in results.values() for r in rows)
            for solver, rows in results.items():
                sub = min((r["objective"] - best) / abs(best) for r in rows)
                print(
                    f"| {name} | {alpha:g} | {solver} | "
                    f"{first_reaching(rows, best, 1e-3, 'time'):.3g} | "
                    f"{first_reaching(rows, best, 1e-4, 'time'):.3g} | {max(sub, 0):.1e} | "
                    f"{rows[-1]['nnz']} |",
                    flush=True,
                )
    print("\nnan: not reached within the budgets (a run over 30 s stops a solver's budgets).")


if __name__ == "__main__":
    main()
