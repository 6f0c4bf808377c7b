"""The lasso on its moments (sr2learn._gram_solver) and SR2RegressorCV's folds on it."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LassoCV
from sklearn.model_selection import KFold, ShuffleSplit

from sr2learn import SR2Regressor, SR2RegressorCV, _gram_solver, alpha_max
from sr2learn._checkpoint import checkpoint
from sr2learn._gram import FoldGrams
from sr2learn._gram_solver import FoldMoments, MomentPath, _relative_gap
from sr2learn._problem import LinearProblem, column_metric
from sr2learn.datafits import Quadratic
from sr2learn.linear_model import _BaseSR2
from sr2learn.penalties import L1


def _tall(n=2000, p=30, seed=0, offset=3.0):
    """Correlated columns with a nonzero mean, sparse true coefficients, uneven weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 1:] = 0.6 * X[:, :-1] + 0.8 * X[:, 1:]
    X += offset
    w = np.zeros(p)
    w[:6] = rng.standard_normal(6) * 2
    y = X @ w + rng.standard_normal(n) + 7.0
    sw = rng.uniform(0.1, 2.0, n)
    return X, y, sw * (n / sw.sum())


def _path(X, y, sw, fit_intercept):
    mean, centred = FoldGrams(X, y, sw).of_rows(np.arange(0), fit_intercept)
    metric, _ = column_metric(X, sw)
    return MomentPath(FoldMoments(mean, centred, X.shape[0]), metric,
                      lambda sigma0: SR2Regressor()._make_rule(None, sigma0, None))  # fmt: skip


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_gap_from_the_moments_is_the_checkpoints_gap(fit_intercept):
    X, y, sw = _tall()
    path = _path(X, y, sw, fit_intercept)
    problem = LinearProblem(X, y[:, None], sw, Quadratic(), fit_intercept)
    w = np.zeros(X.shape[1])
    w[[0, 2, 3, 7]] = [1.5, -0.5, 0.7, 0.01]
    for alpha in (10.0, 0.3, 0.01):
        W = np.r_[w, [0.0] * fit_intercept][:, None]
        ck = checkpoint(problem, L1(alpha), W)
        m = path.moments
        criterion, objective = _relative_gap(m.G @ w, m.b, m.c, w, alpha, L1(alpha).value(w))
        assert objective == pytest.approx(ck.objective, rel=1e-10)
        assert criterion == pytest.approx(ck.criterion, rel=1e-7)
        if fit_intercept:  # the exact intercept, as the checkpoint sets it
            assert m.intercept(w) == pytest.approx(ck.W[-1, 0], rel=1e-10)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_path_on_the_moments_solves_the_lasso(fit_intercept):
    X, y, sw = _tall(seed=1)
    path = _path(X, y, sw, fit_intercept)
    top = alpha_max(SR2Regressor(fit_intercept=fit_intercept), X, y, sw)
    for alpha in top * np.geomspace(0.5, 1e-3, 6):
        criterion, steps, _ = path.solve(L1(alpha), 1e-12, 1000)
        assert criterion <= 1e-12 and steps < 1000
        coef, intercept = path.coef()
        lasso = Lasso(alpha=alpha, fit_intercept=fit_intercept, tol=1e-14, max_iter=10**6)
        lasso.fit(X, y, sample_weight=sw)
        scale = np.abs(lasso.coef_).max()
        np.testing.assert_allclose(coef, lasso.coef_, atol=1e-6 * scale)
        assert intercept == pytest.approx(lasso.intercept_, abs=1e-6 * scale)


def test_every_step_on_the_moments_decreases_the_objective():
    # SR2's accepted steps decrease F (rho >= eta1 > 0); so must the Newton steps, cut at
    # the first coefficient that changes sign. The solve is deterministic: its first k
    # steps are those of a solve stopped after k steps.
    X, y, sw = _tall(seed=2)
    path = _path(X, y, sw, True)
    m = path.moments
    top = alpha_max(SR2Regressor(), X, y, sw)
    newton = 0
    for alpha in top * np.array([0.3, 0.05, 0.003]):
        penalty = L1(alpha)
        start = path.w.copy(), float(path.sigma[0])
        objectives = []
        for k in range(1, 100):
            path.start_at(*start)
            criterion, steps, tries = path.solve(penalty, 1e-13, k)
            objectives.append(_relative_gap(path.G_w, m.b, m.c, path.w, alpha,
                                            penalty.value(path.w))[1])  # fmt: skip
            np.testing.assert_allclose(path.G_w, m.G @ path.w, rtol=1e-9, atol=1e-12)
            if criterion <= 1e-13:
                break
        assert criterion <= 1e-13
        newton += tries
        assert np.all(np.diff(objectives) <= 1e-14 * objectives[0])
    assert newton > 0


def _counting_routes(count_calls):
    return (count_calls(_gram_solver, "lasso_on_moments"),
            count_calls(_BaseSR2, "_refit_on_path"))  # fmt: skip


@pytest.mark.parametrize("case", ["plain", "weighted", "no intercept", "float32", "shuffle"])
def test_lasso_cv_folds_run_on_their_moments_and_choose_lassocvs_alpha(case, count_calls,
                                                                      monkeypatch):  # fmt: skip
    X, y, sw = _tall(n=2400, seed=3, offset=1.0)
    sw = sw if case == "weighted" else None
    X = X.astype(np.float32) if case == "float32" else X
    folds = (ShuffleSplit(4, test_size=0.2, random_state=0) if case == "shuffle"
             else KFold(5, shuffle=True, random_state=0))  # fmt: skip
    fit_intercept = case != "no intercept"
    top = alpha_max(SR2Regressor(fit_intercept=fit_intercept), X, y, sw)
    params = dict(alphas=top * np.geomspace(1.0, 1e-3, 8), cv=folds,
                  fit_intercept=fit_intercept, scoring="neg_mean_squared_error",
                  random_state=0)  # fmt: skip
    on_moments, on_rows = _counting_routes(count_calls)
    new = SR2RegressorCV(**params).fit(X, y, sample_weight=sw)
    assert len(on_moments) >= 8 * folds.get_n_splits() and not on_rows
    lasso = LassoCV(alphas=params["alphas"], cv=folds, fit_intercept=fit_intercept)
    lasso.fit(X, y, sample_weight=sw)
    assert new.alpha_ == lasso.alpha_
    # Today's route (the SR2 epochs on the compressed rows) solves the same path.
    monkeypatch.setattr(SR2RegressorCV, "_moment_path", lambda *args: None)
    old = SR2RegressorCV(**params).fit(X, y, sample_weight=sw)
    assert on_rows
    assert new.alpha_ == old.alpha_
    spread = np.abs(old.scores_path_).max()
    np.testing.assert_allclose(new.scores_path_, old.scores_path_, atol=1e-2 * spread)
    # Its refit at alpha_ is the lasso's solution (today's, to tol 1e-4 on this correlated
    # design, is a few percent off it).
    exact = Lasso(alpha=new.alpha_, fit_intercept=fit_intercept, tol=1e-14, max_iter=10**6)
    exact.fit(X.astype(np.float64), y, sample_weight=sw)
    np.testing.assert_allclose(new.coef_, exact.coef_, atol=1e-3 * np.abs(exact.coef_).max())
    assert new.estimator_.diagnostics_.converged


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_a_lasso_fit_on_tall_data_solves_on_the_moments_and_records_it(offset):
    # The fit solves on the moments (one recorded step per epoch, Newton's with sigma 0
    # and rho 1), then SR2's first checkpoint certifies tol. Offset columns (mean 100,
    # spread 1) once made the minibatch epochs run 1,000 epochs far from the solution.
    X, y, sw = _tall(seed=4, offset=offset)
    alpha = 0.05 * alpha_max(SR2Regressor(), X, y, sw)
    reg = SR2Regressor(alpha=alpha, random_state=0).fit(X, y, sample_weight=sw)
    diagnostics = reg.diagnostics_
    assert diagnostics.converged and diagnostics.n_checkpoints == 1
    history = diagnostics.history
    assert diagnostics.n_steps == reg.n_iter_ > 0  # no minibatch epoch was needed
    np.testing.assert_array_equal(history["epoch"], np.arange(1, reg.n_iter_ + 1))
    newton = history["sigma"] == 0
    assert newton.any() and np.all(history["rho"][newton] == 1.0)
    accepted = history["accepted"] == 1
    assert np.all(np.diff(history["batch_objective"][accepted]) <= 0)
    lasso = Lasso(alpha=alpha, tol=1e-14, max_iter=10**6).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(reg.coef_, lasso.coef_, atol=1e-4 * np.abs(lasso.coef_).max())
    assert reg.intercept_ == pytest.approx(lasso.intercept_, rel=1e-6)


def test_the_cv_refit_solves_on_the_moments_from_the_folds_mean():
    X, y, sw = _tall(seed=4)
    cv = SR2RegressorCV(n_alphas=8, cv=4, random_state=0).fit(X, y, sample_weight=sw)
    diagnostics = cv.estimator_.diagnostics_
    assert diagnostics.converged and diagnostics.n_steps == cv.n_iter_
    lasso = Lasso(alpha=cv.alpha_, tol=1e-14, max_iter=10**6).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(cv.coef_, lasso.coef_, atol=1e-3 * np.abs(lasso.coef_).max())


@pytest.mark.parametrize("case", ["l0", "short"])
def test_other_penalties_and_short_data_keep_the_sr2_route(case, count_calls):
    X, y, _ = _tall(n=800 if case == "short" else 2000, seed=5)
    on_moments, on_rows = _counting_routes(count_calls)
    penalty = "l0" if case == "l0" else "l1"
    alphas = alpha_max(SR2Regressor(penalty), X, y) * np.geomspace(0.5, 1e-2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        SR2RegressorCV(penalty, alphas=alphas, cv=3, random_state=0).fit(X, y)
    assert not on_moments and on_rows


def test_unconverged_fits_on_the_moments_are_counted():
    X, y, _ = _tall(seed=6)
    alphas = alpha_max(SR2Regressor(), X, y) * np.array([0.5, 0.1, 0.05])
    cv = SR2RegressorCV(alphas=alphas, cv=3, tol=0.0, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning) as record:
        cv.fit(X, y)
    assert "10 of 10 path fits did not converge" in str(record[0].message)


def test_the_steps_on_the_moments_keep_the_users_sigma_clamp():
    # The path's own first sigma (the largest diagonal curvature, 1 in the metric) lies
    # below sigma_min here: the user's clamp holds from the first step, as on the rows.
    X, y, sw = _tall(seed=7)
    alpha = 0.05 * alpha_max(SR2Regressor(), X, y, sw)
    reg = SR2Regressor(alpha=alpha, sigma_min=5.0, sigma_max=10.0, random_state=0)
    history = reg.fit(X, y, sample_weight=sw).diagnostics_.history
    sigma = history["sigma"][history["sigma"] > 0]  # Newton's rows have sigma 0
    assert sigma.size and np.all((sigma >= 5.0) & (sigma <= 10.0))


def test_a_step_rejected_at_sigma_max_ends_the_solve_on_the_moments():
    # Rejected at a sigma that cannot grow, the same step would be tried again unchanged:
    # the solve on the moments stops there instead of spending half of max_iter on it.
    X, y, sw = _tall(seed=7)
    alpha = 0.05 * alpha_max(SR2Regressor(), X, y, sw)
    mean, centred = FoldGrams(X, y, sw).of_rows(np.arange(0), True)
    metric, _ = column_metric(X, sw)
    rule = SR2Regressor(sigma_max=1e-3)._make_rule(None, 1e-3, None)
    path = MomentPath(FoldMoments(mean, centred, X.shape[0]), metric, lambda sigma0: rule)
    criterion, steps, _ = path.solve(L1(alpha), 1e-4, 100)
    assert criterion > 1e-4 and steps == 1
    reg = SR2Regressor(alpha=alpha, sigma_max=1e-3, max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y, sample_weight=sw)
    rejected_alone = (reg.diagnostics_.history["accepted"] == 0) & (
        np.bincount(reg.diagnostics_.history["epoch"].astype(int))[
            reg.diagnostics_.history["epoch"].astype(int)] == 1)  # fmt: skip
    assert rejected_alone.sum() <= 1


def test_a_lasso_without_intercept_on_offset_columns_converges_on_the_moments():
    # Without intercept, columns of mean 100 make G one large eigenvalue over small ones.
    # A Newton step cut at a sign change tries again on the smaller support: when SR2's
    # next step had to keep the support first, it re-entered the zeroed coefficient, the
    # next Newton step cut it again, and the fit ran 1,000 epochs 1.7 off Lasso's.
    rng = np.random.default_rng(8)
    Z = rng.standard_normal((2000, 12))
    y = Z[:, :3] @ np.array([1.5, -2.0, 0.7]) + rng.standard_normal(2000)
    X = Z + 100.0
    alpha = 0.0072
    reg = SR2Regressor(alpha=alpha, fit_intercept=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg.fit(X, y)
    lasso = Lasso(alpha=alpha, fit_intercept=False, tol=1e-8, max_iter=10**6).fit(X, y)

    def objective(coef):
        return 0.5 * np.mean((y - X @ coef) ** 2) + alpha * np.abs(coef).sum()

    assert objective(reg.coef_) <= objective(lasso.coef_) * (1 + reg.tol)


@pytest.mark.parametrize("target", ["constant", "alpha_above_alpha_max"])
def test_a_fit_whose_start_is_optimal_on_the_moments_still_runs_an_epoch(target):
    # scikit-learn's convention (check_non_transformer_estimators_n_iter): n_iter_ >= 1,
    # also where the moments' exact intercept alone already meets tol.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 10))
    y = np.full(3000, 2.0) if target == "constant" else 1e-3 * X[:, 0]
    fit = SR2Regressor(alpha=10.0).fit(X, y)
    assert fit.diagnostics_.converged
    assert np.all(fit.coef_ == 0)
    assert fit.n_iter_ >= 1
