"""A fit holds no copy of X: its NumPy allocations stay far below the size of X.

tracemalloc sees every NumPy array (and Python object) allocated during the fit: a shuffled
copy of X, a float64 copy of float32 data, an int64 copy of CSR indices, a working set's
restricted copy or a temporary of the size of X would each cost at least 0.3x X.nbytes.
benchmarks/bench_memory.py measures the whole process (peak RSS) on larger data.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from sr2learn import SR2Classifier, SR2Regressor

# A fit may allocate arrays of n or p entries (targets, weights, the row permutation, the
# checkpoint's derivatives, the step trace), but nothing of the size of X.
MAX_EXTRA = 0.3


def _nbytes(X):
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def _data(kind, rng):
    """About 25 MB of X: dense (float64 or float32), or CSR with int32 indices, with 1000
    columns or with enough (5000) for the working set to run."""
    if kind.startswith("csr"):
        n, p, per_row = 40_000, 5000 if kind == "csr-wide" else 1000, 50
        cols = rng.integers(p, size=(n, per_row)).astype(np.int32)
        cols.sort(axis=1)
        X = sp.csr_matrix((rng.random(n * per_row), cols.ravel(),
                           np.arange(0, n * per_row + 1, per_row)), shape=(n, p))  # fmt: skip
        X.sum_duplicates()
        assert X.indices.dtype == np.int32
    else:
        dtype = np.float32 if kind == "dense32" else np.float64
        X = rng.standard_normal((15_000 * 8 // dtype().itemsize, 200)).astype(dtype)
    w = np.zeros(X.shape[1])
    w[:10] = rng.standard_normal(10)
    score = np.asarray(X @ w).ravel()
    return X, score


def _traced_peak(fit):
    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["dense64", "dense32", "csr", "csr-wide"])
@pytest.mark.parametrize("Est", [SR2Classifier, SR2Regressor], ids=lambda e: e.__name__)
def test_fit_allocates_far_less_than_x(kind, Est):
    rng = np.random.default_rng(0)
    X, score = _data(kind, rng)
    y = (score > np.median(score)).astype(int) if Est is SR2Classifier else score
    make = lambda: Est(alpha=1e-3, max_iter=3, random_state=0)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Load the compiled code first (numba's cache loading allocates Python objects).
        make().fit(X[:500], y[:500])
        est = make()
        peak = _traced_peak(lambda: est.fit(X, y))
    assert est.n_iter_ >= 1 and np.any(est.coef_)  # the fit ran
    assert peak < MAX_EXTRA * _nbytes(X), f"{peak / _nbytes(X):.2f} x X allocated"
