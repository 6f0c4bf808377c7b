"""Bad or extreme input to SR2Regressor / SR2Classifier: the caller's data is left alone,
a failed fit leaves no half-fitted model, and input SR2 cannot handle is refused with an
error that names it (issue "Honest by default", item 5)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import Lasso

import sr2learn.linear_model as linear_model
from sr2learn import SR2Classifier, SR2Regressor


def lasso_objective(X, y, coef, intercept, alpha):
    return 0.5 * np.mean((y - X @ coef - intercept) ** 2) + alpha * np.abs(coef).sum()


# -- the caller's sparse matrix ------------------------------------------------------------


def non_canonical_csr(X):
    """X as a CSR matrix whose rows hold their entries in reverse order, each one split
    into two duplicates that sum to it."""
    X = sp.csr_matrix(X)
    data, indices, indptr = [], [], [0]
    for i in range(X.shape[0]):
        row = slice(X.indptr[i], X.indptr[i + 1])
        for j, v in zip(X.indices[row][::-1], X.data[row][::-1], strict=True):
            data += [0.25 * v, 0.75 * v]
            indices += [j, j]
        indptr.append(len(data))
    out = sp.csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=X.shape)
    assert not out.has_sorted_indices and not out.has_canonical_format
    return out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Estimator", [SR2Regressor, SR2Classifier])
def test_fit_partial_fit_and_predict_leave_a_non_canonical_sparse_X_unchanged(
    Estimator, diabetes, breast_cancer
):
    X, y = diabetes if Estimator is SR2Regressor else breast_cancer
    X = np.where(np.abs(X) > 0.5, X, 0.0)[:200]
    y = y[:200]
    Xs = non_canonical_csr(X)
    data, indices, indptr = Xs.data.copy(), Xs.indices.copy(), Xs.indptr.copy()

    def unchanged():
        np.testing.assert_array_equal(Xs.data, data)
        np.testing.assert_array_equal(Xs.indices, indices)
        np.testing.assert_array_equal(Xs.indptr, indptr)

    est = Estimator(alpha=1e-2, random_state=0, max_iter=20).fit(Xs, y)
    unchanged()
    ref = Estimator(alpha=1e-2, random_state=0, max_iter=20).fit(sp.csr_matrix(X), y)
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    np.testing.assert_array_equal(est.intercept_, ref.intercept_)
    np.testing.assert_allclose(est.predict(Xs), ref.predict(X))
    unchanged()
    extra = {} if Estimator is SR2Regressor else {"classes": np.unique(y)}
    Estimator(alpha=1e-2, random_state=0).partial_fit(Xs, y, **extra)
    unchanged()


# -- a fit that fails ----------------------------------------------------------------------


class Interrupt:
    """Stands in for the solver: raises ``error`` once called, until ``armed`` is False."""

    def __init__(self, error):
        self.error, self.armed, self.calls = error, True, 0
        self.solve = linear_model.solve

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.armed:
            raise self.error("interrupted inside the solver")
        return self.solve(*args, **kwargs)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("Estimator", [SR2Regressor, SR2Classifier])
def test_an_interrupted_first_fit_leaves_an_unfitted_estimator_that_fits_again(
    Estimator, error, monkeypatch, diabetes, breast_cancer
):
    X, y = diabetes if Estimator is SR2Regressor else breast_cancer
    interrupt = Interrupt(error)
    monkeypatch.setattr(linear_model, "solve", interrupt)
    est = Estimator(alpha=1e-2, random_state=0, max_iter=30)
    with pytest.raises(error, match="interrupted"):
        est.fit(X, y)
    assert interrupt.calls == 1
    with pytest.raises(NotFittedError):
        est.predict(X)
    assert not [name for name in vars(est) if name.endswith("_")]

    interrupt.armed = False
    est.fit(X, y)
    ref = Estimator(alpha=1e-2, random_state=0, max_iter=30).fit(X, y)
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_an_interrupted_refit_does_not_leave_the_previous_model_looking_fitted(
    monkeypatch, diabetes
):
    X, y = diabetes
    est = SR2Regressor(alpha=1e-2, random_state=0, max_iter=30).fit(X, y)
    monkeypatch.setattr(linear_model, "solve", Interrupt(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        est.fit(X[:, :5], y)  # n_features_in_ would already say 5, coef_ still has 10
    with pytest.raises(NotFittedError):
        est.predict(X[:, :5])


def test_an_interrupted_first_partial_fit_forgets_its_classes(monkeypatch, breast_cancer):
    X, y = breast_cancer
    interrupt = Interrupt(RuntimeError)
    monkeypatch.setattr(linear_model, "solve", interrupt)
    clf = SR2Classifier(alpha=1e-2, random_state=0)
    with pytest.raises(RuntimeError):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(NotFittedError):
        clf.predict(X)
    interrupt.armed = False
    clf.partial_fit(X, y, classes=[0, 1])  # not "differs from the first call's classes"
    np.testing.assert_array_equal(clf.classes_, [0, 1])


def test_an_interrupted_later_partial_fit_keeps_the_previous_model(monkeypatch, breast_cancer):
    X, y = breast_cancer
    clf = SR2Classifier(alpha=1e-2, random_state=0).partial_fit(X, y, classes=[0, 1])
    coef = clf.coef_.copy()
    monkeypatch.setattr(linear_model, "solve", Interrupt(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.coef_, coef)
    assert clf.predict(X).shape == y.shape


# -- class and sample weights --------------------------------------------------------------


@pytest.mark.parametrize("weight", [-1.0, np.nan, np.inf])
def test_a_negative_or_non_finite_class_weight_is_refused_by_name(weight, breast_cancer):
    X, y = breast_cancer
    with pytest.raises(ValueError, match=r"class_weight.*non-negative.*class 0"):
        SR2Classifier(class_weight={0: weight, 1: 1.0}).fit(X, y)


def test_class_weights_that_zero_all_classes_but_one_are_refused_by_name(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(ValueError, match="class_weight"):
        SR2Classifier(class_weight={0: 0.0, 1: 1.0}).fit(X, y)
    y3 = np.where(X[:, 0] > 1.0, 2, y)
    with pytest.raises(ValueError, match="class_weight"):
        SR2Classifier(class_weight={0: 0.0, 1: 0.0, 2: 1.0}).fit(X, y3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sample_weights_whose_sum_overflows_are_normalised_like_their_rescaled_copy(diabetes):
    X, y = diabetes
    w = np.random.default_rng(0).uniform(0.5, 1.0, size=y.size)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(w * 1e308))
    big = SR2Regressor(alpha=1e-1, random_state=0, max_iter=30).fit(X, y, sample_weight=w * 1e308)
    ref = SR2Regressor(alpha=1e-1, random_state=0, max_iter=30).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(big.coef_, ref.coef_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(big.intercept_, ref.intercept_, rtol=1e-12)


def test_one_sample_weight_of_1e300_fits_that_sample(diabetes):
    X, y = diabetes
    sample_weight = np.ones(y.size)
    sample_weight[0] = 1e300
    reg = SR2Regressor(random_state=0).fit(X, y, sample_weight=sample_weight)
    assert np.all(np.isfinite(reg.coef_)) and np.isfinite(reg.intercept_)
    # The other samples weigh 1e-300 as much: the fit is the fit of X[0], y[0] alone.
    np.testing.assert_allclose(reg.predict(X[:1]), y[:1], rtol=1e-3)


# -- the scale of the data and of sigma0 ---------------------------------------------------


@pytest.mark.parametrize("Estimator", [SR2Regressor, SR2Classifier])
@pytest.mark.parametrize("standardised", [True, False])
def test_X_whose_squares_overflow_is_refused_by_its_scale(
    Estimator, standardised, diabetes, breast_cancer
):
    if standardised:
        X, y = diabetes if Estimator is SR2Regressor else breast_cancer
    else:
        load = load_diabetes if Estimator is SR2Regressor else load_breast_cancer
        X, y = load(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way to the error
        with pytest.raises(ValueError, match=r"X has entries of magnitude.*[Rr]escale X"):
            Estimator().fit(X * 1e150, y)


def test_float32_X_whose_squares_overflow_float32_is_refused(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match=r"X has entries of magnitude.*float32"):
        SR2Regressor().fit((X * 1e19).astype(np.float32), y)


def test_a_target_whose_squares_overflow_is_refused_by_its_scale(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match=r"y has values of magnitude.*[Rr]escale y"):
        SR2Regressor().fit(X, y * 1e160)


@pytest.mark.parametrize("scale", [1e60, 1e-8, 1e-60])
def test_a_large_or_small_but_representable_X_fits_like_X(scale, diabetes):
    X, y = diabetes
    # Solved tightly: at the default tol diabetes' predictions are only within about 2%.
    ref = SR2Regressor(alpha=1e-1, tol=1e-10, random_state=0).fit(X, y)
    # The same problem in coef / scale: alpha * scale.
    reg = SR2Regressor(alpha=1e-1 * scale, tol=1e-10, random_state=0).fit(X * scale, y)
    np.testing.assert_allclose(reg.predict(X * scale), ref.predict(X), rtol=1e-4)


@pytest.mark.parametrize("sigma0", [1e300, 1e200, 1e-310, np.inf, np.nan])
def test_a_sigma0_out_of_range_is_refused_by_name(sigma0, diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="sigma0"):
        SR2Regressor(sigma0=sigma0).fit(X, y)


# -- tiny problems -------------------------------------------------------------------------


def test_a_regressor_on_one_sample_fits_its_target_with_zero_coefficients(diabetes):
    X, y = diabetes
    reg = SR2Regressor(random_state=0).fit(X[:1], y[:1])
    # min 1/2 (y - x.w - b)^2 + alpha ||w||_1: b = y, w = 0 (and nothing else) is optimal.
    np.testing.assert_array_equal(reg.coef_, 0.0)
    np.testing.assert_allclose(reg.intercept_, y[0], rtol=1e-5)
    assert np.all(np.isfinite(reg.predict(X)))


def test_a_regressor_on_two_samples_above_alpha_max_fits_their_weighted_mean(diabetes):
    X, y = diabetes
    X2, y2, weights = X[:2], y[:2], np.array([1.0, 3.0])
    mean = np.average(y2, weights=weights)
    centred = (X2 - np.average(X2, axis=0, weights=weights)).T @ (weights * (y2 - mean))
    alpha_max = np.max(np.abs(centred)) / weights.sum()
    reg = SR2Regressor(alpha=1.5 * alpha_max, random_state=0).fit(X2, y2, sample_weight=weights)
    np.testing.assert_array_equal(reg.coef_, 0.0)
    np.testing.assert_allclose(reg.intercept_, mean, rtol=1e-5)
    assert np.all(np.isfinite(reg.predict(X)))


def test_a_regressor_on_two_samples_reaches_the_lasso_optimum_or_says_it_did_not(diabetes):
    # Below alpha_max two samples make a degenerate lasso (rank 2 in 10 dimensions), where a
    # first-order method needs about 2e4 steps: the fit must either be near the optimum or
    # warn, never claim convergence far from it.
    X, y = diabetes
    X2, y2, alpha = X[:2], y[:2], 1e-1
    lasso = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X2, y2)
    ref = lasso_objective(X2, y2, lasso.coef_, lasso.intercept_, alpha)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        reg = SR2Regressor(alpha=alpha, random_state=0).fit(X2, y2)
    got = lasso_objective(X2, y2, reg.coef_, reg.intercept_, alpha)
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert warned == (not reg.diagnostics_.converged)
    if reg.diagnostics_.converged:
        assert got - ref <= 2 * reg.tol * ref
    assert np.all(np.isfinite(reg.predict(X)))
    reg = SR2Regressor(alpha=alpha, random_state=0, max_iter=30_000).fit(X2, y2)
    assert reg.diagnostics_.converged
    assert lasso_objective(X2, y2, reg.coef_, reg.intercept_, alpha) - ref <= 2 * reg.tol * ref


# -- a first step far too long -------------------------------------------------------------


def test_a_tiny_sigma0_without_variance_reduction_warns_that_every_step_was_rejected(diabetes):
    X, y = diabetes
    reg = SR2Regressor(sigma0=1e-12, variance_reduction=None, max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning, match="rejected"):
        reg.fit(X, y)
    np.testing.assert_array_equal(reg.coef_, 0.0)  # no step was taken
