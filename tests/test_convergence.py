"""Honest stopping: the criterion means the same whatever the units of X, the start point and
the number of samples; unstandardised data converge; warm starts of a converged model take
no step; no divergence (randomized stress test against reference solvers); warnings name
their cause."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso

from sr2learn import SR2Classifier, SR2Regressor
from sr2learn.penalties import check_penalty


def objective(est, X, y):
    coef, intercept = np.ravel(est.coef_), np.ravel(est.intercept_)[0]
    z = np.asarray(X @ coef).ravel() + intercept
    if isinstance(est, SR2Regressor):
        loss = 0.5 * np.mean((y - z) ** 2)
    else:
        loss = np.mean(np.logaddexp(0.0, -(2.0 * y - 1.0) * z))
    return loss + check_penalty(est.penalty, est.alpha).value(coef)


def reference_objective(X, y, alpha, kind):
    """The optimal objective by an independent solver: scikit-learn's coordinate descent for
    the lasso; for l1 logistic regression L-BFGS-B on w = u - v, u, v >= 0 (smooth, with
    bounds), which is fast and exact to ~1e-10 on these sizes (liblinear took minutes)."""
    if kind == "squared":
        ref = Lasso(alpha=alpha, tol=1e-12, max_iter=200_000).fit(X, y)
        z = np.asarray(X @ ref.coef_).ravel() + ref.intercept_
        return 0.5 * np.mean((y - z) ** 2) + alpha * np.abs(ref.coef_).sum()
    n, p = X.shape
    sign = 2.0 * y - 1.0

    def fun(theta):
        u, v, b = theta[:p], theta[p : 2 * p], theta[-1]
        m = sign * (np.asarray(X @ (u - v)).ravel() + b)
        value = np.mean(np.logaddexp(0.0, -m)) + alpha * (u.sum() + v.sum())
        r = -sign * expit(-m) / n
        gw = np.asarray(X.T @ r).ravel()
        return value, np.r_[gw + alpha, -gw + alpha, r.sum()]

    bounds = [(0, None)] * (2 * p) + [(None, None)]
    res = minimize(fun, np.zeros(2 * p + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 100_000, "ftol": 1e-15, "gtol": 1e-12})  # fmt: skip
    return float(res.fun)


def quiet_fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


@pytest.mark.parametrize("kind", ["squared", "logistic"])
def test_columns_in_units_1e4_apart_converge_to_the_optimum(kind):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 12)) * np.logspace(-4, 4, 12)
    w = np.zeros(12)
    w[[0, 5, 11]] = np.array([3.0, -2.0, 1.0]) / np.logspace(-4, 4, 12)[[0, 5, 11]]
    z = X @ w + 0.3 * rng.standard_normal(300)
    if kind == "squared":
        y, est = z, SR2Regressor(alpha=0.05, tol=1e-8, random_state=0)
    else:
        y, est = (z > 0).astype(int), SR2Classifier(alpha=1e-2, tol=1e-8, random_state=0)
    est.fit(X, y)
    assert est.diagnostics_.converged
    ref = reference_objective(X, y, est.alpha, kind)
    assert objective(est, X, y) <= ref * (1 + 1e-6)


def test_a_column_1e8_larger_never_ends_converged_far_from_the_optimum():
    X, y = make_regression(200, 10, n_informative=5, noise=1.0, random_state=0)
    X[:, 0] *= 1e8
    X[:, 1] *= 1e-8
    est = quiet_fit(SR2Regressor(alpha=0.1, random_state=0), X, y)
    ref = reference_objective(X, y, 0.1, "squared")
    got = objective(est, X, y)
    assert est.diagnostics_.converged
    # converged means within tol of the optimum, relatively (the gap bounds it)
    assert got <= ref * (1 + 2 * est.tol)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
@pytest.mark.parametrize("penalty", ["l1", "l1/2"])
def test_scaling_X_and_alpha_gives_the_same_model(scale, penalty):
    X, y = make_regression(150, 8, n_informative=4, noise=0.5, random_state=1)
    alpha = 0.5
    # For R(w) = alpha sum |w|^p, X -> cX and w -> w / c leave f unchanged and multiply R by
    # c^-p: alpha -> alpha c^p gives the same problem in the new units.
    p = 1.0 if penalty == "l1" else 0.5
    base = SR2Regressor(penalty=penalty, alpha=alpha, tol=1e-10, random_state=0).fit(X, y)
    scaled = SR2Regressor(penalty=penalty, alpha=alpha * scale**p, tol=1e-10,
                          random_state=0).fit(X * scale, y)  # fmt: skip
    assert base.diagnostics_.converged and scaled.diagnostics_.converged
    np.testing.assert_allclose(scaled.coef_ * scale, base.coef_, rtol=1e-5, atol=1e-8)
    # The same iterates in other units, up to rounding (which may flip a late decision).
    assert abs(scaled.n_iter_ - base.n_iter_) <= 0.5 * base.n_iter_


@pytest.mark.parametrize("scale", [1e-4, 1e4])
@pytest.mark.parametrize("penalty", ["l1", "l1/2"])
def test_scaling_y_and_alpha_gives_the_same_model_in_the_units_of_y(scale, penalty):
    # y -> c y with alpha -> c^(2-p) alpha: w -> c w and F -> c^2 F. A criterion relative
    # to the problem's own scale stops at the same point; an absolute one would stop far
    # earlier or far later.
    X, y = make_regression(150, 8, n_informative=4, noise=0.5, random_state=7)
    p = 1.0 if penalty == "l1" else 0.5
    # At the default tol the two fits take the same steps (in their units) and stop at the
    # same epoch.
    base = SR2Regressor(penalty=penalty, alpha=0.5, random_state=0).fit(X, y)
    scaled = SR2Regressor(penalty=penalty, alpha=0.5 * scale ** (2 - p),
                          random_state=0).fit(X, y * scale)  # fmt: skip
    assert base.diagnostics_.converged and scaled.diagnostics_.converged
    assert abs(scaled.n_iter_ - base.n_iter_) <= 1
    np.testing.assert_allclose(scaled.coef_ / scale, base.coef_, rtol=1e-4, atol=1e-8)


def test_the_criterion_does_not_depend_on_the_number_of_samples():
    X, y = make_classification(300, 10, random_state=2)
    # Solved tightly: at a relative gap of 1e-9 the coefficients may still differ by 1e-4.
    one = SR2Classifier(alpha=1e-2, tol=1e-12, random_state=0).fit(X, y)
    twice = SR2Classifier(alpha=1e-2, tol=1e-12, random_state=0).fit(np.vstack([X, X]),
                                                                   np.r_[y, y])  # fmt: skip
    assert one.diagnostics_.converged and twice.diagnostics_.converged
    np.testing.assert_allclose(twice.coef_, one.coef_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("penalty", ["l1", "l0"])
def test_a_warm_started_refit_of_a_converged_model_takes_at_most_one_epoch(penalty):
    X, y = make_regression(200, 20, n_informative=5, noise=1.0, random_state=3)
    est = SR2Regressor(penalty=penalty, alpha=1.0, warm_start=True, random_state=0).fit(X, y)
    assert est.diagnostics_.converged
    coef = est.coef_.copy()
    est.fit(X, y)
    assert est.n_iter_ <= 1
    assert est.diagnostics_.converged
    np.testing.assert_allclose(est.coef_, coef, rtol=0, atol=1e-12)


def test_a_tiny_sigma0_without_variance_reduction_says_every_step_was_rejected():
    X, y = make_regression(100, 5, random_state=4)
    est = SR2Regressor(sigma0=1e-12, variance_reduction=None, max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning, match="rejected"):
        est.fit(X, y)


def test_the_iteration_limit_is_named_as_the_cause():
    X, y = make_regression(500, 50, random_state=5)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        SR2Regressor(alpha=1e-3, max_iter=1, tol=1e-12, random_state=0).fit(X, y)


STRESS = [
    # (n, p, density, seed, loss, penalty, working_set, noise)
    (1000, 20000, 0.005, 0, "squared", "l1", "auto", 0.0),  # the reported divergence
    (1000, 20000, 0.005, 0, "squared", "l1/2", "auto", 0.0),
    (400, 3000, 0.01, 1, "squared", "l1", True, 0.0),
    (400, 3000, 0.01, 2, "logistic", "l1", True, 1.0),
    (600, 2500, 0.01, 3, "squared", "l1", False, 0.1),
    (400, 60, 1.0, 4, "logistic", "l1", False, 1.0),
    (600, 4000, 0.003, 5, "logistic", "l1/2", True, 1.0),
    (200, 5000, 0.02, 6, "squared", "l1/2", False, 0.0),
]


@pytest.mark.slow
@pytest.mark.parametrize(("n", "p", "density", "seed", "loss", "penalty", "ws", "noise"), STRESS)
def test_stress_no_divergence_and_the_reference_optimum(n, p, density, seed, loss, penalty, ws,
                                                        noise):  # fmt: skip
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=density, random_state=seed, format="csr")
    if density == 1.0:
        X = X.toarray()
    w = np.zeros(p)
    w[rng.choice(p, 20, replace=False)] = 5.0 * rng.choice([-1.0, 1.0], 20)
    z = np.asarray(X @ w).ravel() + noise * rng.standard_normal(n)
    if loss == "squared":
        y, Est = z, SR2Regressor
    else:
        y, Est = (z > np.median(z)).astype(int), SR2Classifier
    est = quiet_fit(Est(penalty=penalty, alpha=1e-3, working_set=ws, random_state=seed), X, y)
    assert np.all(np.isfinite(est.coef_)) and np.isfinite(est.intercept_).all()
    objectives = est.diagnostics_.checkpoints["objective"]
    assert np.all(np.isfinite(objectives))
    got = objective(est, X, y)
    assert got <= objectives[0] * (1 + 1e-12)  # never worse than the start
    if penalty == "l1":
        assert got <= reference_objective(X, y, 1e-3, loss) * 1.001


def test_sigma_held_at_its_clamp_is_named_as_the_cause():
    X, y = make_regression(200, 10, random_state=6)
    est = SR2Regressor(sigma_min=1e6, max_iter=3, tol=1e-12, random_state=0)
    with pytest.warns(ConvergenceWarning, match="held at its clamp sigma_min"):
        est.fit(X, y)
