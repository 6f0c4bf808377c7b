"""Least squares on tall dense data, compressed through the Gram matrix (sr2learn._gram)."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Lasso

from sr2learn import SR2Regressor, _gram
from sr2learn._checkpoint import _dual_objective, checkpoint
from sr2learn._gram import CompressedLeastSquares, compressed_least_squares, use_compressed
from sr2learn._problem import LinearProblem, column_metric
from sr2learn.datafits import Quadratic
from sr2learn.penalties import L1


def _tall(n=1500, p=30, seed=0, offset=3.0):
    """Correlated columns with a nonzero mean, two of them equal (a singular Gram)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 1:] = 0.6 * X[:, :-1] + 0.8 * X[:, 1:]
    X += offset
    X[:, 5] = X[:, 4]
    w = np.zeros(p)
    w[:6] = rng.standard_normal(6) * 2
    y = X @ w + rng.standard_normal(n) + 7.0
    sw = rng.uniform(0.0, 2.0, n)
    return X, y, sw * (n / sw.sum())


def _objective(X, y, sw, w, b):
    return 0.5 * np.mean(sw * (y - X @ w - b) ** 2)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compressed_rows_have_the_loss_of_the_data(fit_intercept, weighted, dtype):
    X, y, sw = _tall()
    X = X.astype(dtype)
    if not weighted:
        sw = np.ones_like(sw)
    Xc, yc, moments = compressed_least_squares(X, y, sw, fit_intercept)
    assert Xc.shape == (_gram.compressed_rows(X.shape[1]), X.shape[1])
    X64 = X.astype(np.float64)
    rng = np.random.default_rng(1)
    for _ in range(3):
        w = rng.standard_normal(X.shape[1])
        b = rng.standard_normal() if fit_intercept else 0.0
        full = _objective(X64, y, sw, w, b)
        assert _objective(Xc, yc, 1.0, w, b) == pytest.approx(full, rel=1e-11)
    # The Gram of L: sum_i s_i x~_i x~_i^T / n, x~_i = [x_i, 1] (or [x_i, 0]).
    tilde = np.c_[X64, np.full(X.shape[0], float(fit_intercept))]
    np.testing.assert_allclose(moments, (tilde.T * sw) @ tilde / X.shape[0], rtol=1e-12,
                               atol=1e-12)  # fmt: skip


def test_checkpoint_on_compressed_rows_is_the_data_checkpoint():
    """Objective, gradient, exact intercept, duality gap and L: those of the data."""
    X, y, sw = _tall()
    datafit, penalty = Quadratic(), L1(0.05)
    metric = column_metric(X, sw)
    full = LinearProblem(X, y[:, None], sw, datafit, True, metric)
    small = CompressedLeastSquares(X, y[:, None], sw, datafit, True, metric)
    assert small.n < X.shape[0] / 4
    assert small.lipschitz() == pytest.approx(full.lipschitz(), rel=1e-9)
    W = np.zeros((X.shape[1] + 1, 1))
    W[:8, 0] = np.random.default_rng(2).standard_normal(8)
    a, b = checkpoint(full, penalty, W), checkpoint(small, penalty, W)
    assert b.objective == pytest.approx(a.objective, rel=1e-12)
    assert b.gap == pytest.approx(a.gap, rel=1e-9)
    np.testing.assert_allclose(b.W, a.W, rtol=1e-12)  # the same exact intercept
    np.testing.assert_allclose(b.G, a.G, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_newton_certificate_takes_the_hessian_from_the_moments(fit_intercept, count_calls):
    """No pass over the rows for the Newton step; the data's dual point all the same."""
    from sr2learn import _certificate

    X, y, sw = _tall()
    datafit, penalty = Quadratic(), L1(0.05)
    metric = column_metric(X, sw)
    full = LinearProblem(X, y[:, None], sw, datafit, fit_intercept, metric)
    small = CompressedLeastSquares(X, y[:, None], sw, datafit, fit_intercept, metric)
    W = np.zeros((full.n_rows, 1))
    W[:8, 0] = np.random.default_rng(2).standard_normal(8)
    passes = count_calls(_certificate, "_gram_newton_step")
    duals = []
    for problem in (full, small):
        ck = checkpoint(problem, penalty, W)
        (E, kappa), solved = _certificate.newton_dual_point(problem, penalty, ck.W, ck.G, ck.D)
        duals.append((_dual_objective(problem, E, kappa), kappa))
    assert len(passes) == 1  # the full problem's
    np.testing.assert_allclose(duals[1], duals[0], rtol=1e-9)


def test_rank_deficient_and_constant_data():
    """A singular Gram (y in the span of X, constant columns) compresses exactly."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1200, 6))
    X[:, 2] = 1.0
    y = X @ np.arange(6.0)
    for fit_intercept in (True, False):
        Xc, yc, _ = compressed_least_squares(X, y, np.ones(1200), fit_intercept)
        w = rng.standard_normal(6)
        assert _objective(Xc, yc, 1.0, w, 0.0) == pytest.approx(
            _objective(X, y, 1.0, w, 0.0), rel=1e-10)  # fmt: skip
    Xc, yc, _ = compressed_least_squares(np.zeros((1200, 3)), np.zeros(1200), np.ones(1200),
                                         False)  # fmt: skip
    assert np.all(Xc == 0) and np.all(yc == 0)


def test_when_the_fit_compresses(count_calls):
    X, y, _ = _tall()
    assert use_compressed(X)
    assert not use_compressed(X[:1000])  # fewer than 4 x 256 rows
    assert not use_compressed(X, n_samples=1000) and use_compressed(X[:1000], n_samples=1024)
    assert not use_compressed(sp.csr_matrix(X))
    calls = count_calls(_gram, "compressed_least_squares")
    SR2Regressor(alpha=0.05, random_state=0).fit(X, y)
    assert len(calls) == 1
    SR2Regressor(alpha=0.05, random_state=0).partial_fit(X, y)
    SR2Regressor(alpha=0.05, random_state=0).fit(sp.csr_matrix(X), y)
    assert len(calls) == 1


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_compressed_fit_solves_the_lasso_and_reports_its_objective(fit_intercept):
    """The fit reaches Lasso's optimum, and its diagnostics are about the user's
    objective (evaluated here on X itself)."""
    X, y, _ = _tall(n=4000, p=60, offset=0.0)
    alpha = 0.05
    est = SR2Regressor(alpha=alpha, tol=1e-10, fit_intercept=fit_intercept,
                       random_state=0).fit(X, y)  # fmt: skip
    ref = Lasso(alpha=alpha, tol=1e-14, max_iter=100_000,
                fit_intercept=fit_intercept).fit(X, y)  # fmt: skip

    def objective(coef, intercept):
        return _objective(X, y, 1.0, coef, intercept) + alpha * np.abs(coef).sum()

    best = objective(ref.coef_, ref.intercept_)
    mine = objective(est.coef_, est.intercept_)
    assert est.diagnostics_.converged
    assert mine <= best * (1 + 1e-8)
    assert est.diagnostics_.last_checkpoint()["objective"] == pytest.approx(mine, rel=1e-10)
    assert est.coef_.dtype == X.dtype


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_folds_gram_is_the_gram_of_its_rows(fit_intercept, weighted, dtype):
    X, y, sw = _tall()
    X = X.astype(dtype)
    sw = sw if weighted else None
    held_out = np.random.default_rng(4).choice(X.shape[0], 300, replace=False)
    kept = np.setdiff1d(np.arange(X.shape[0]), held_out)
    mean, centred = _gram.FoldGrams(X, y, sw).of_rows(held_out, fit_intercept)
    # The fit's weights: normalised to mean 1 over the fold's rows.
    s = np.ones(kept.size) if sw is None else sw[kept] * (kept.size / sw[kept].sum())
    Z = np.c_[X[kept].astype(np.float64), y[kept]]
    expected_mean = s @ Z / kept.size if fit_intercept else np.zeros(Z.shape[1])
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-10, atol=1e-12)
    expected = ((Z - expected_mean).T * s) @ (Z - expected_mean)
    np.testing.assert_allclose(centred, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_a_folds_gram_that_would_lose_digits_is_not_given():
    X, y, _ = _tall()
    held_out = np.arange(300)
    X[held_out, 3] = 1e6  # the held-out rows carry a column's squares: the subtraction
    for fit_intercept in (True, False):
        assert _gram.FoldGrams(X, y, None).of_rows(held_out, fit_intercept) is None


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_large_means_keep_a_folds_gram_exact(fit_intercept):
    # The moments are taken about all the rows' mean: a fold's centring loses no digits
    # where the means are large against the spread.
    X, y, sw = _tall()
    X, y = X + 1e6, y - 1e6
    held_out = np.arange(300)
    kept = np.arange(300, X.shape[0])
    mean, centred = _gram.FoldGrams(X, y, sw).of_rows(held_out, fit_intercept)
    s = sw[kept] * (kept.size / sw[kept].sum())
    Z = np.c_[X[kept], y[kept]]
    expected_mean = s @ Z / kept.size if fit_intercept else np.zeros(Z.shape[1])
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    B = Z - (s @ Z / kept.size if fit_intercept else 0.0)
    expected = (B.T * s) @ B
    np.testing.assert_allclose(centred, expected, rtol=1e-7, atol=1e-7 * np.abs(expected).max())


@pytest.mark.parametrize("cv", ["kfold", "shuffle", "bootstrap"])
def test_cv_folds_take_their_grams_from_one_gram(cv, count_calls):
    from sklearn.model_selection import KFold, ShuffleSplit

    from sr2learn import SR2RegressorCV

    X, y, sw = _tall(n=2000)
    rng = np.random.default_rng(5)
    splits = {"kfold": KFold(4, shuffle=True, random_state=0),
              "shuffle": ShuffleSplit(3, train_size=0.6, test_size=0.2, random_state=0),
              "bootstrap": [(rng.integers(0, 2000, 2000), np.arange(300)) for _ in range(3)]}
    # solved tightly: the two differ in rounding, which moves where a fit meets tol
    params = dict(alphas=[0.5, 0.1, 0.02], cv=splits[cv], tol=1e-10, random_state=0)
    formed = count_calls(_gram, "_centred_gram")
    shared = SR2RegressorCV(**params).fit(X, y, sample_weight=sw)
    # one Gram of all the rows (no fold forms its own), but for rows drawn twice
    assert len(formed) == (0 if cv != "bootstrap" else 3)
    own = SR2RegressorCV(**params)
    own._data_constants = lambda X, y, sw, folds: [{} for _ in range(len(folds) + 1)]
    own.fit(X, y, sample_weight=sw)
    assert len(formed) > (0 if cv != "bootstrap" else 3)
    assert shared.alpha_ == own.alpha_
    np.testing.assert_allclose(shared.scores_path_, own.scores_path_, rtol=1e-6)


def test_only_folds_that_compress_get_a_gram(count_calls):
    from sklearn.model_selection import KFold

    from sr2learn import SR2RegressorCV

    X, y, _ = _tall(n=1200)  # all the rows compress (1200 >= 4 x 256), a fold's 900 do not
    raw = count_calls(_gram, "_raw_moments")
    cv = SR2RegressorCV(alphas=[0.5, 0.1], cv=KFold(4), random_state=0, n_jobs=2).fit(X, y)
    assert len(raw) == 1  # all the rows', for the refit (nothing held out)
    assert cv.estimator_.diagnostics_.converged
