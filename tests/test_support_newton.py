"""Newton's method on the support of an lp fit (sr2learn._support_newton).

The references are computed here: F and its gradient on the support in closed form
(logistic loss plus alpha |w|^p), and a quasi-Newton minimisation by scipy of F restricted
to the support with the signs fixed.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from sr2learn import SR2Classifier, _support_newton, _working_set, alpha_max
from sr2learn._problem import LinearProblem
from sr2learn.datafits import Logistic
from sr2learn.penalties import L1, Lp


def _problem(seed, n=300, p=40, sparse=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    if sparse:
        X = sp.csr_matrix(X * (rng.random((n, p)) < 0.3))
    w = np.zeros(p)
    w[:6] = rng.choice([-2.0, 2.0], 6)
    y = (X @ w + 0.5 * rng.standard_normal(n) > 0).astype(float)
    return X, y, LinearProblem(X, y[:, None], np.ones(n), Logistic(), True), w


def _objective(X, y, w, b, alpha, q):
    z = X @ w + b
    return -np.mean(log_expit((2.0 * y - 1.0) * z)) + alpha * np.sum(np.abs(w) ** q)


def _support_gradient(X, y, w, b, alpha, q):
    """The gradient of F in (w_S, b) on the support S of w."""
    S = np.flatnonzero(w)
    r = expit(X @ w + b) - y
    gw = np.asarray(X[:, S].T @ r).ravel() / y.size
    gw += alpha * q * np.abs(w[S]) ** (q - 1) * np.sign(w[S])
    return np.r_[gw, r.mean()]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("q", [0.5, 2.0 / 3.0])
def test_newton_reaches_the_minimum_on_the_support(q, sparse):
    """From a point near a local minimum, Newton's point has a zero gradient on the
    support (to rounding), the same signs, and F as low as scipy's minimisation on the
    support with the signs fixed."""
    X, y, problem, truth = _problem(0, sparse=sparse)
    alpha = 0.02
    rng = np.random.default_rng(1)
    W = np.zeros((problem.n_rows, 1))
    W[:6, 0] = truth[:6] * (0.6 + 0.2 * rng.random(6))
    new, F = _support_newton.newton_on_support(problem, Lp(alpha, q), W)
    w, b = new[:-1, 0], new[-1, 0]
    assert F == pytest.approx(_objective(X, y, w, b, alpha, q), rel=1e-12)
    S = np.flatnonzero(w)
    assert np.all(np.sign(w[S]) == np.sign(W[S, 0]))
    grad = _support_gradient(X, y, w, b, alpha, q)
    start_grad = _support_gradient(X, y, W[:-1, 0], W[-1, 0], alpha, q)
    assert np.linalg.norm(grad) <= 1e-8 * np.linalg.norm(start_grad)

    signs = np.sign(W[S, 0])

    def on_support(v):
        full = np.zeros(X.shape[1])
        full[S] = signs * np.abs(v[:-1])
        return _objective(X, y, full, v[-1], alpha, q)

    ref = minimize(on_support, np.r_[np.abs(W[S, 0]), W[-1, 0]], method="BFGS",
                   options={"gtol": 1e-10})  # fmt: skip
    assert _objective(X, y, w, b, alpha, q) <= ref.fun + 1e-12


def test_a_coefficient_on_its_way_to_zero_leaves_the_support():
    """A small coefficient on an uninformative feature: Newton's method takes it to zero
    (where |w|^p falls fastest) and goes on without it; F decreases."""
    X, y, problem, truth = _problem(2)
    alpha, q = 0.02, 0.5
    W = np.zeros((problem.n_rows, 1))
    W[:6, 0] = 0.7 * truth[:6]
    W[30, 0] = 1e-3  # an uninformative feature, barely in
    new, F = _support_newton.newton_on_support(problem, Lp(alpha, q), W)
    assert new[30, 0] == 0.0
    assert np.count_nonzero(new[:6, 0]) == 6
    before = _objective(X, y, W[:-1, 0], W[-1, 0], alpha, q)
    assert _objective(X, y, new[:-1, 0], new[-1, 0], alpha, q) < before


def test_only_for_one_output_and_a_penalty_with_a_second_derivative():
    X, y, problem, _ = _problem(0)
    assert _support_newton.smooth_on_support(problem, Lp(0.1, 0.5))
    assert not _support_newton.smooth_on_support(problem, L1(0.1))
    three = LinearProblem(X, np.eye(3)[np.arange(y.size) % 3], np.ones(y.size), Logistic(), True)
    assert not _support_newton.smooth_on_support(three, Lp(0.1, 0.5))


def test_without_support_or_descent_the_point_is_returned():
    problem = _problem(0)[2]
    W = np.zeros((problem.n_rows, 1))
    new, F = _support_newton.newton_on_support(problem, Lp(0.02, 0.5), W)
    assert new is W and F is None


def test_working_set_fits_take_fewer_epochs_with_newton(monkeypatch, text_like):
    """On text-like data the lp solves with working sets converge in fewer epochs with
    Newton's method after each inner solve than without it (first-order steps converge
    slowly near lp's threshold). Without the polish, which also uses Newton's method.
    (Which local minimum the solve alone reaches changes; the polished fit's quality is
    tested in test_nonconvex.py.)"""
    epochs = {}
    monkeypatch.setattr(Lp, "polish", False)  # the working set's solve alone
    for newton in (True, False):
        monkeypatch.setattr(_working_set, "smooth_on_support",
                            lambda problem, penalty, on=newton: on and problem.K == 1)  # fmt: skip
        for seed in (1, 2):
            X, y = text_like(seed)
            alpha = alpha_max(SR2Classifier(penalty="l1/2"), X, y) / 10
            est = SR2Classifier(penalty="l1/2", alpha=alpha, random_state=0).fit(X, y)
            assert est.diagnostics_.converged
            epochs[newton, seed] = est.n_iter_
    for seed in (1, 2):
        assert epochs[True, seed] < epochs[False, seed]
