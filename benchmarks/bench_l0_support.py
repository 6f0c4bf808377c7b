"""l0 support recovery: SR2 against abess and iterative hard thresholding (issue 5).

Synthetic sparse regression (n = 500, p = 1000, k = 10 true nonzeros, SNR 10 as the
ratio of signal to noise standard deviations), over several seeds. Methods:

- SR2Regressor(penalty="l0") with alpha chosen on a held-out fifth (a path from alpha_max,
  warm-started);
- SR2Regressor(penalty=L0Ball(k)), the known-k budget;
- abess (best-subset selection; given k, and with its own information criterion), if
  installed;
- IHT: iterative hard thresholding with the known k and step 1/L, 500 iterations (the
  textbook method, written here).

The table gives the mean F1 score of the recovered support and the mean time.

Usage: python benchmarks/bench_l0_support.py [--seeds 5]
"""

import argparse
import sys
import time

import numpy as np

from sr2learn import L0Ball, SR2Regressor, alpha_max


def problem(seed, n=500, p=1000, k=10, snr=10.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    support = rng.choice(p, k, replace=False)
    w[support] = rng.choice([-1.0, 1.0], k) * rng.uniform(1.0, 2.0, k)
    signal = X @ w
    y = signal + rng.standard_normal(n) * signal.std() / snr
    return X, y, w != 0


def f1(found, true):
    tp = np.sum(found & true)
    return 2 * tp / (found.sum() + true.sum())


def sr2_l0_validated(X, y, k):
    n = X.shape[0]
    cut = 4 * n // 5
    est = SR2Regressor(penalty="l0", warm_start=True, tol=1e-4, random_state=0)
    alphas = alpha_max(est, X[:cut], y[:cut]) * np.geomspace(1.0, 1e-3, 15)
    errors = []
    for alpha in alphas:
        est.set_params(alpha=alpha).fit(X[:cut], y[:cut])
        errors.append(np.mean((est.predict(X[cut:]) - y[cut:]) ** 2))
    best = int(np.argmin(errors))  # the largest alpha among equal errors: the sparsest
    # l0 is nonconvex: refit along the same warm-started path, not from a cold start.
    full = SR2Regressor(penalty="l0", warm_start=True, tol=1e-4, random_state=0)
    for alpha in alphas[: best + 1]:
        full.set_params(alpha=alpha).fit(X, y)
    return full.coef_


def sr2_ball(X, y, k):
    return SR2Regressor(penalty=L0Ball(k), tol=1e-4, random_state=0).fit(X, y).coef_


def iht(X, y, k, iterations=500):
    n, p = X.shape
    Xc, yc = X - X.mean(0), y - y.mean()
    L = np.linalg.norm(Xc, 2) ** 2 / n
    w = np.zeros(p)
    for _ in range(iterations):
        w = w - Xc.T @ (Xc @ w - yc) / (n * L)
        w[np.argsort(np.abs(w))[:-k]] = 0.0
    return w


def methods():
    out = {"SR2 l0 (alpha validated)": sr2_l0_validated, "SR2 L0Ball(k)": sr2_ball,
           "IHT (known k)": iht}  # fmt: skip
    try:
        from abess.linear import LinearRegression as Abess

        out["abess (known k)"] = lambda X, y, k: Abess(support_size=k).fit(X, y).coef_
        out["abess (GIC)"] = lambda X, y, k: Abess().fit(X, y).coef_
    except ImportError as exc:
        print(f"(abess not installed: {exc}; pip install abess)", file=sys.stderr)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    scores = {name: ([], []) for name in methods()}
    for seed in range(args.seeds):
        X, y, true = problem(seed)
        for name, method in methods().items():
            start = time.perf_counter()
            coef = method(X, y, int(true.sum()))
            scores[name][1].append(time.perf_counter() - start)
            scores[name][0].append(f1(coef != 0, true))
    print(f"n = 500, p = 1000, k = 10, SNR 10, {args.seeds} seeds\n")
    print("| method | mean F1 of the support | min F1 | mean time (s) |")
    print("|---|---|---|---|")
    for name, (f1s, times) in scores.items():
        print(f"| {name} | {np.mean(f1s):.3f} | {np.min(f1s):.3f} | {np.mean(times):.3f} |")


if __name__ == "__main__":
    main()
