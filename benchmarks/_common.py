"""Helpers shared by the benchmark scripts (data sets, timing)."""

import os
import time
import warnings

import numpy as np
import scipy.sparse as sp


def data_home():
    """Where get-data.sh put the real data: $SR2LEARN_DATA, else ../data beside the repo."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("SR2LEARN_DATA", os.path.join(here, "..", "..", "data"))


def best_time(fn, repeat=5):
    """Smallest wall time of ``repeat`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def timed_fit(est, X, y):
    """Fit ``est`` (its ConvergenceWarnings silenced: budgets are cut on purpose) and
    return the wall time."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - start


def dense_logistic(n=100_000, p=100, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = rng.standard_normal(p) * (rng.random(p) < 0.1)
    y = (X @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    return X, y


def sparse_text_like(n=20_000, p=20_000, nnz_per_row=50, seed=0):
    """Power-law feature frequencies, tf-idf-like positive values, sparse ground truth."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, p + 1) ** 1.1
    freq /= freq.sum()
    cols = rng.choice(p, size=n * nnz_per_row, p=freq)
    rows = np.repeat(np.arange(n), nnz_per_row)
    vals = rng.random(n * nnz_per_row)
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n, p))
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    w = np.zeros(p)
    support = rng.choice(200, size=40, replace=False)
    w[support] = rng.standard_normal(40) * 5
    y = (X @ w + 0.1 * rng.standard_normal(n) > 0).astype(np.int64)
    return sp.csr_matrix(X), y
