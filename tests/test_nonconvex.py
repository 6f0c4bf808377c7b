"""Quality of the lp fits: the coordinate-wise polish (sr2learn._polish).

The reference is computed here, independently of the solver: at a point where coordinate
descent stops (skglm's "fixpoint" criterion), no zero coefficient enters under the
one-coordinate proximal step of length 1/L_j, L_j = ||x_j||^2 / (4 n) for the logistic
loss; and the objective is no higher than that of the fit without the polish.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, log_expit

from sr2learn import SR2Classifier, alpha_max
from sr2learn.penalties import Lp


def _text_like(seed, n=1000, p=3000, nnz_per_row=50):
    """Power-law column frequencies, row-normalised positive entries, sparse truth."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, p + 1) ** 1.1
    cols = rng.choice(p, size=n * nnz_per_row, p=freq / freq.sum())
    X = sp.csr_matrix((rng.random(n * nnz_per_row), (np.repeat(np.arange(n), nnz_per_row), cols)),
                      shape=(n, p))  # fmt: skip
    X.sum_duplicates()
    X = sp.csr_matrix(sp.diags(1.0 / np.sqrt(X.multiply(X).sum(axis=1).A1)) @ X)
    w = np.zeros(p)
    w[rng.choice(200, size=40, replace=False)] = 5.0 * rng.standard_normal(40)
    y = (X @ w + 0.1 * rng.standard_normal(n) > 0).astype(int)
    return X, y


def _objective(X, y, est, alpha, q):
    z = X @ est.coef_.ravel() + est.intercept_[0]
    return -np.mean(log_expit((2.0 * y - 1.0) * z)) + alpha * np.sum(np.abs(est.coef_) ** q)


def _entering(X, y, est, penalty):
    """The zero coefficients that one coordinate-descent step at 1/L_j would move."""
    n = X.shape[0]
    w = est.coef_.ravel()
    grad = np.asarray(X.T @ (expit(X @ w + est.intercept_[0]) - y)).ravel() / n
    sq = X.multiply(X).sum(axis=0).A1
    seen = np.flatnonzero(sq > 0)  # an empty column has no gradient and no curvature
    step = 4.0 * n / sq[seen]
    moved = penalty.prox(w[seen] - step * grad[seen], step) != 0
    return seen[moved & (w[seen] == 0)]


def _fit(X, y, name, alpha, polish=True, monkeypatch=None):
    if not polish:
        monkeypatch.setattr(Lp, "polish", False)
    return SR2Classifier(penalty=name, alpha=alpha, random_state=0).fit(X, y)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 3])
@pytest.mark.parametrize("name, q", [("l1/2", 0.5), ("l2/3", 2.0 / 3.0)])
def test_lp_fit_is_a_coordinate_descent_fixed_point(seed, name, q, monkeypatch):
    X, y = _text_like(seed)
    alpha = alpha_max(SR2Classifier(penalty=name), X, y) / 10
    est = _fit(X, y, name, alpha)
    assert est.diagnostics_.converged
    assert _entering(X, y, est, Lp(alpha, q)).size == 0
    unpolished = _fit(X, y, name, alpha, polish=False, monkeypatch=monkeypatch)
    assert _objective(X, y, est, alpha, q) <= _objective(X, y, unpolished, alpha, q) * (1 + 1e-9)
