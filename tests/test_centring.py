"""SR2Regressor with an intercept on dense columns far from centred (sr2learn._centring):
fitted on X - xbar, the same objective; well-scaled data and no intercept keep X itself."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from sklearn.model_selection import KFold

import sr2learn._centring as centring
from sr2learn import SR2Regressor, SR2RegressorCV
from sr2learn.penalties import L0Ball, check_penalty


def _uncentred(loc, shape, seed):
    rng = np.random.RandomState(seed)
    X = rng.normal(loc=loc, size=shape)
    y = X[:, :2] @ np.array([0.5, -0.5]) + rng.normal(size=shape[0])
    return X, y


def _fit(X, y, **params):
    params = dict(dict(random_state=0), **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return SR2Regressor(**params).fit(X, y)


def _today(monkeypatch):
    """The fit without centring (the path before sr2learn._centring)."""
    monkeypatch.setattr(centring, "CENTRING_RATIO", np.inf)


def _objective(reg, X, y, penalty_value):
    residual = y - X @ reg.coef_ - reg.intercept_
    return 0.5 * np.mean(residual**2) + penalty_value


@pytest.mark.parametrize("loc", [30.0, 100.0, 1000.0])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape, alpha", [((100, 2), 1e-3), ((500, 20), 1e-3),
                                          ((60, 200), 5e-2)])  # fmt: skip
def test_lasso_on_uncentred_columns_matches_sklearn(loc, seed, shape, alpha):
    X, y = _uncentred(loc, shape, seed)
    reg = _fit(X, y, alpha=alpha, tol=1e-13)
    ref = Lasso(alpha=alpha, tol=1e-14, max_iter=10**6).fit(X, y)
    np.testing.assert_allclose(reg.coef_, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(reg.predict(X), ref.predict(X), atol=1e-5)
    assert reg.diagnostics_.converged


def test_weighted_lasso_on_uncentred_columns_matches_sklearn():
    X, y = _uncentred(100.0, (100, 5), 3)
    sw = np.random.RandomState(4).uniform(0, 3, size=100)
    sw[:10] = 0.0
    reg = SR2Regressor(alpha=1e-3, tol=1e-13, random_state=0).fit(X, y, sample_weight=sw)
    ref = Lasso(alpha=1e-3, tol=1e-14, max_iter=10**6).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(reg.coef_, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(reg.intercept_, ref.intercept_, atol=1e-4)


def test_float32_uncentred_columns():
    X, y = _uncentred(100.0, (100, 2), 0)
    reg = _fit(X.astype(np.float32), y, alpha=1e-3, tol=1e-8)
    ref = Lasso(alpha=1e-3, tol=1e-14, max_iter=10**6).fit(X, y)
    assert reg.coef_.dtype == np.float32
    np.testing.assert_allclose(reg.coef_, ref.coef_, atol=1e-4)


@pytest.mark.parametrize("penalty, alpha", [("l0", 1e-3), ("l1/2", 1e-3), ("l2/3", 1e-3),
                                            (L0Ball(2), 0.0)])  # fmt: skip
def test_nonconvex_penalties_on_uncentred_columns(penalty, alpha, monkeypatch):
    X, y = _uncentred(100.0, (100, 5), 0)
    reg = _fit(X, y, penalty=penalty, alpha=alpha)
    value = reg.diagnostics_.last_checkpoint()["objective"]
    with monkeypatch.context() as patch:
        _today(patch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            before = SR2Regressor(penalty=penalty, alpha=alpha, random_state=0).fit(X, y)
    assert reg.diagnostics_.converged
    # Uncentred, SR2 stopped at (or, with l2/3 and the ball, ran its epochs towards) a
    # point of a much higher objective: 0.76 at w = 0 with l0, against 0.50 centred.
    assert value < before.diagnostics_.last_checkpoint()["objective"] - 1e-3
    # The diagnostics' objective is the original problem's at (coef_, intercept_).
    np.testing.assert_allclose(_objective(reg, X, y, check_penalty(penalty, alpha).value(
        reg.coef_[:, None])), value, rtol=1e-9)


def test_warm_start_and_partial_fit_after_a_centred_fit():
    X, y = _uncentred(100.0, (100, 2), 0)
    reg = _fit(X, y, alpha=1e-3, tol=1e-8, warm_start=True)
    coef, intercept, epochs = reg.coef_.copy(), reg.intercept_, reg.n_iter_
    # The state a warm start, partial_fit or a CV's mean of folds reuses: X's coordinates.
    np.testing.assert_allclose(reg._state.W[:, 0], np.r_[coef, intercept], rtol=1e-6)
    reg.fit(X, y)  # from its own solution: the state is kept in the original coordinates
    assert reg.n_iter_ < epochs
    np.testing.assert_allclose(reg.coef_, coef, atol=1e-7)
    np.testing.assert_allclose(reg.intercept_, intercept, atol=1e-5)
    reg.set_params(warm_start=False).partial_fit(X, y)  # X itself, from that solution
    np.testing.assert_allclose(reg.predict(X), X @ coef + intercept, atol=1e-2)


@pytest.mark.parametrize("fit_intercept, loc", [(True, 0.0), (False, 100.0)])
def test_centred_data_and_no_intercept_keep_todays_path(fit_intercept, loc, monkeypatch):
    X, y = _uncentred(loc, (100, 5), 0)
    if fit_intercept:
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    params = dict(alpha=1e-3, fit_intercept=fit_intercept, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = SR2Regressor(**params).fit(X, y)
        _today(monkeypatch)
        before = SR2Regressor(**params).fit(X, y)
    np.testing.assert_array_equal(reg.coef_, before.coef_)
    assert reg.intercept_ == before.intercept_
    assert reg.n_iter_ == before.n_iter_


def test_column_offset_decides_by_mean_against_spread():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    X -= X.mean(axis=0)
    sw = np.ones(200)
    assert centring.column_offset(X, sw) is None
    spread = X[:, 1].std()
    X[:, 1] += 1.1 * spread  # mean^2 = 1.21 var
    np.testing.assert_allclose(centring.column_offset(X, sw), [0, 1.1 * spread, 0],
                               atol=1e-12)  # fmt: skip
    X[:, 1] -= 0.2 * spread  # mean^2 = 0.81 var
    assert centring.column_offset(X, sw) is None


def test_regressor_cv_on_uncentred_columns_matches_lasso_fold_scores():
    # The folds' paths run on centred copies (_refit_on_path in their coordinates).
    X, y = _uncentred(50.0, (300, 10), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        cv = SR2RegressorCV(n_alphas=10, cv=3, tol=1e-9, random_state=0).fit(X, y)
    for fold, (train, test) in enumerate(KFold(3).split(X)):
        ref = [Lasso(alpha=alpha, tol=1e-12, max_iter=10**5).fit(X[train], y[train])
               .score(X[test], y[test]) for alpha in cv.alphas_]  # fmt: skip
        np.testing.assert_allclose(cv.scores_path_[fold], ref, atol=1e-4)
    ref = Lasso(alpha=cv.alpha_, tol=1e-12).fit(X, y)
    np.testing.assert_allclose(cv.coef_, ref.coef_, atol=1e-4)
