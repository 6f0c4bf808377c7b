"""SR2Regressor / SR2Classifier: optimality against scikit-learn, API behaviour, bad input."""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sr2learn import L0Ball, SR2Classifier, SR2Regressor


def lasso_objective(X, y, coef, intercept, alpha):
    return 0.5 * np.mean((y - X @ coef - intercept) ** 2) + alpha * np.abs(coef).sum()


def logistic_objective(X, y, coef, intercept, alpha):
    z = X @ coef.ravel() + intercept
    return np.mean(np.logaddexp(0.0, -(2.0 * y - 1.0) * z)) + alpha * np.abs(coef).sum()


# -- optimality -------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 1.0, 5.0])
def test_l1_regressor_reaches_the_lasso_optimum(diabetes, alpha):
    X, y = diabetes
    lasso = Lasso(alpha=alpha, tol=1e-10, max_iter=100_000).fit(X, y)
    sr2 = SR2Regressor(penalty="l1", alpha=alpha, random_state=0).fit(X, y)
    ref = lasso_objective(X, y, lasso.coef_, lasso.intercept_, alpha)
    got = lasso_objective(X, y, sr2.coef_, sr2.intercept_, alpha)
    assert (got - ref) / ref <= 1e-4
    assert sr2.diagnostics_.converged
    # The support once solved as tightly (at tol 1e-4 a coefficient may still be leaving it).
    tight = SR2Regressor(penalty="l1", alpha=alpha, tol=1e-11, random_state=0).fit(X, y)
    np.testing.assert_array_equal(tight.coef_ != 0, lasso.coef_ != 0)


@pytest.mark.parametrize("alpha", [1e-2, 3e-2])
def test_l1_classifier_reaches_the_logistic_regression_optimum(breast_cancer, alpha):
    X, y = breast_cancer
    n = X.shape[0]
    ref_model = LogisticRegression(
        l1_ratio=1.0, C=1.0 / (n * alpha), solver="saga", tol=1e-12, max_iter=100_000
    ).fit(X, y)
    sr2 = SR2Classifier(penalty="l1", alpha=alpha, random_state=0).fit(X, y)
    ref = logistic_objective(X, y, ref_model.coef_, ref_model.intercept_[0], alpha)
    got = logistic_objective(X, y, sr2.coef_, sr2.intercept_[0], alpha)
    assert (got - ref) / ref <= 1e-3
    assert sr2.coef_.shape == (1, X.shape[1]) and sr2.intercept_.shape == (1,)


def test_multinomial_classifier_matches_logistic_regression():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    n, alpha = X.shape[0], 1e-2
    ref = LogisticRegression(
        l1_ratio=1.0, C=1.0 / (n * alpha), solver="saga", tol=1e-12, max_iter=200_000
    ).fit(X, y)
    sr2 = SR2Classifier(alpha=alpha, random_state=0, tol=1e-8, max_iter=3000).fit(X, y)
    assert sr2.coef_.shape == (3, 4) and sr2.intercept_.shape == (3,)
    np.testing.assert_allclose(sr2.predict_proba(X), ref.predict_proba(X), atol=1e-4)


@pytest.mark.slow
def test_l0_recovers_the_true_support(sparse_regression):
    X, y, w = sparse_regression
    sr2 = SR2Regressor(penalty="l0", alpha=0.05, random_state=0).fit(X, y)
    found, true = sr2.coef_ != 0, w != 0
    tp = np.sum(found & true)
    f1 = 2 * tp / (found.sum() + true.sum())
    assert f1 >= 0.95


def test_same_random_state_gives_identical_coefficients(breast_cancer):
    X, y = breast_cancer
    a = SR2Classifier(penalty="l0", alpha=1e-2, random_state=3).fit(X, y)
    b = SR2Classifier(penalty="l0", alpha=1e-2, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.diagnostics_.history["sigma"], b.diagnostics_.history["sigma"])


def test_scaling_x_by_1000_still_converges(diabetes):
    X, y = diabetes
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sr2 = SR2Regressor(alpha=0.1, random_state=0).fit(X * 1000.0, y)
    lasso = Lasso(alpha=0.1, tol=1e-12, max_iter=100_000).fit(X * 1000.0, y)
    ref = lasso_objective(X * 1000, y, lasso.coef_, lasso.intercept_, 0.1)
    assert lasso_objective(X * 1000, y, sr2.coef_, sr2.intercept_, 0.1) <= ref * (1 + 1e-4)


def test_plain_sr2_stalls_and_warns_with_numbers(diabetes):
    X, y = diabetes
    est = SR2Regressor(alpha=0.1, variance_reduction=None, batch_size=32, max_iter=20,
                       random_state=0)  # fmt: skip
    pattern = (
        r"SR2 did not converge: the relative duality gap .* is \S+ > tol = "
        + re.escape(f"{est.tol:.3e}")
        + r" after 20 epochs \(measured dist\(0, dF\(w\)\) = \S+\)\. "
        r"It reached the iteration limit max_iter=20\. .*use variance_reduction='svrg' "
        r"\(plain SR2 stalls at the noise level of the minibatch gradient\)"
    )
    with pytest.warns(ConvergenceWarning, match=pattern) as record:
        est.fit(X, y)
    # The numbers are the diagnostics' own, at the returned point.
    last = est.diagnostics_.last_checkpoint()
    assert last["criterion"] > est.tol and not est.diagnostics_.converged
    message = str(record[0].message)
    assert f"is {last['criterion']:.3e} > tol" in message
    assert f"dist(0, dF(w)) = {last['dist']:.3e})" in message


@pytest.mark.parametrize("vr", ["svrg", "growing_batch", None])
def test_all_variance_reduction_modes_decrease_the_objective(diabetes, vr):
    X, y = diabetes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sr2 = SR2Regressor(alpha=0.1, variance_reduction=vr, max_iter=30, random_state=0).fit(X, y)
    objective = sr2.diagnostics_.checkpoints["objective"]
    assert objective[-1] < 0.6 * objective[0]
    assert np.all(np.isfinite(sr2.coef_))



def test_l0_from_zero_on_a_few_hundred_rows_leaves_the_zero_model(breast_cancer):
    # The demo's l0 fit (``python -m sr2learn``): with a first batch too small to estimate
    # the curvature, sigma0 fell back to the whole data's L and the fit stopped at w = 0,
    # a stationary point of l0 (objective 0.66 against 0.22).
    X, y = breast_cancer
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=0)
    zero = SR2Classifier(penalty="l0", alpha=3e-2, max_iter=1, random_state=0)
    zero.fit(X_train, y_train)
    fit = SR2Classifier(penalty="l0", alpha=3e-2, random_state=0).fit(X_train, y_train)
    objective = fit.diagnostics_.last_checkpoint()["objective"]
    assert np.count_nonzero(fit.coef_) > 0
    assert objective < 0.5 * zero.diagnostics_.checkpoints["objective"][0]

# -- input types --------------------------------------------------------------------------


def test_sparse_input_gives_the_dense_result_without_densifying(breast_cancer, monkeypatch):
    X, y = breast_cancer
    # Solved tightly (dense and sparse data get L by different methods, equal to 1e-7: the
    # iterates differ by about that much, and so would two fits stopped at tol 1e-4).
    dense = SR2Classifier(alpha=1e-2, tol=1e-12, random_state=0).fit(X, y)

    def no_toarray(self, *args, **kwargs):
        raise AssertionError("the estimator densified its sparse input")

    monkeypatch.setattr(sp.csr_matrix, "toarray", no_toarray)
    monkeypatch.setattr(sp.csr_array, "toarray", no_toarray)
    for container in (sp.csr_matrix, sp.csr_array, sp.csc_matrix):
        sparse = SR2Classifier(alpha=1e-2, tol=1e-12, random_state=0).fit(container(X), y)
        np.testing.assert_allclose(sparse.coef_, dense.coef_, atol=1e-4)
        np.testing.assert_allclose(sparse.predict_proba(container(X)), dense.predict_proba(X),
                                   rtol=1e-5)  # fmt: skip


def test_float32_stays_float32(breast_cancer):
    X, y = breast_cancer
    # float32 rounding limits the attainable measure to about 1e-5 of the gradient scale.
    clf = SR2Classifier(alpha=1e-2, random_state=0, tol=1e-5).fit(X.astype(np.float32), y)
    assert clf.coef_.dtype == np.float32 and clf.intercept_.dtype == np.float32
    assert clf.decision_function(X.astype(np.float32)).dtype == np.float32
    ref = SR2Classifier(alpha=1e-2, random_state=0).fit(X, y)
    f32 = logistic_objective(X, y, clf.coef_.astype(float), float(clf.intercept_[0]), 1e-2)
    f64 = logistic_objective(X, y, ref.coef_, ref.intercept_[0], 1e-2)
    assert abs(f32 - f64) / f64 < 1e-5


def test_sample_weight_and_class_weight(breast_cancer):
    X, y = breast_cancer
    sw = np.where(y == 1, 2.0, 1.0)
    by_sample = SR2Classifier(alpha=1e-2, random_state=0, tol=1e-9).fit(X, y, sample_weight=sw)
    by_class = SR2Classifier(alpha=1e-2, random_state=0, tol=1e-9, class_weight={0: 1, 1: 2})
    by_class.fit(X, y)
    np.testing.assert_allclose(by_sample.coef_, by_class.coef_, atol=1e-6)
    plain = SR2Classifier(alpha=1e-2, random_state=0).fit(X, y)
    assert not np.allclose(plain.coef_, by_class.coef_, atol=1e-3)


def test_l0_ball_penalty_object_gives_k_nonzeros(breast_cancer):
    X, y = breast_cancer
    clf = SR2Classifier(penalty=L0Ball(k=5), random_state=0, tol=1e-4).fit(X, y)
    assert np.count_nonzero(clf.coef_) <= 5
    assert clf.score(X, y) > 0.9


# -- partial_fit, warm_start ------------------------------------------------------------------


def test_partial_fit_carries_sigma_and_coefficients(breast_cancer):
    X, y = breast_cancer
    clf = SR2Classifier(alpha=1e-2, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    objectives, sigmas, steps = [], [], []
    for _ in range(15):
        clf.partial_fit(X, y, classes=[0, 1])
        objectives.append(logistic_objective(X, y, clf.coef_, clf.intercept_[0], 1e-2))
        sigmas.append(clf.sigma_)
        steps.append(clf.diagnostics_.n_steps)
    assert clf.n_iter_ == 15
    history = clf.diagnostics_.history
    assert len(history["sigma"]) == steps[-1]
    # Each call's first step uses the sigma the previous call ended with.
    for k in range(1, 15):
        assert history["sigma"][steps[k - 1]] == sigmas[k - 1]
    assert np.all(np.diff(objectives) < 1e-12)
    full = SR2Classifier(alpha=1e-2, random_state=0).fit(X, y)
    best = logistic_objective(X, y, full.coef_, full.intercept_[0], 1e-2)
    assert (objectives[-1] - best) / best < 5e-2


def test_partial_fit_chunks_of_a_stream(breast_cancer):
    X, y = breast_cancer
    reg = SR2Classifier(alpha=1e-2, random_state=0)
    for _epoch in range(10):
        for chunk in np.array_split(np.arange(X.shape[0]), 4):
            reg.partial_fit(X[chunk], y[chunk], classes=[0, 1])
    assert reg.score(X, y) > 0.95


def test_warm_start_continues_from_the_previous_solution(diabetes):
    X, y = diabetes
    reg = SR2Regressor(alpha=0.1, warm_start=True, random_state=0).fit(X, y)
    first_epochs = reg.n_iter_
    reg.fit(X, y)
    assert reg.n_iter_ < first_epochs  # starts next to the optimum
    cold = SR2Regressor(alpha=0.5, random_state=0).fit(X, y)
    warm = clone(reg).set_params(alpha=0.5, warm_start=True)
    warm.fit(X, y)
    f_warm = lasso_objective(X, y, warm.coef_, warm.intercept_, 0.5)
    f_cold = lasso_objective(X, y, cold.coef_, cold.intercept_, 0.5)
    assert f_warm == pytest.approx(f_cold, rel=1e-7)
    np.testing.assert_array_equal(warm.coef_ != 0, cold.coef_ != 0)


# -- scikit-learn integration -------------------------------------------------------------------


def test_pipeline_gridsearch_clone_pickle():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SR2Classifier(random_state=0, tol=1e-4))
    grid = GridSearchCV(
        pipe,
        {"sr2classifier__penalty": ["l1", "l0"], "sr2classifier__alpha": [1e-2, 1e-1]},
        cv=3,
        n_jobs=2,
    ).fit(X, y)
    assert grid.best_score_ > 0.9
    restored = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(restored.predict(X), grid.best_estimator_.predict(X))
    assert clone(pipe).get_params()["sr2classifier__tol"] == 1e-4


# -- bad input and faults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y), "NaN"),
        (
            lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), y),
            "infinity",
        ),
        (lambda X, y: (X, np.where(np.arange(y.size) == 2, np.nan, y)), "NaN"),
        (lambda X, y: (X[:-1], y), "inconsistent numbers of samples"),
        (lambda X, y: (X[:, 0], y), "Expected 2D array"),
    ],
)
def test_bad_data_is_refused_with_a_clear_message(diabetes, change, match):
    X, y = change(*diabetes)
    with pytest.raises(ValueError, match=match):
        SR2Regressor().fit(X, y)


def test_bad_parameters_and_labels(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(ValueError, match="'penalty' parameter"):
        SR2Classifier(penalty="l3").fit(X, y)
    with pytest.raises(ValueError, match="only one class"):
        SR2Classifier().fit(X, np.zeros_like(y))
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        SR2Classifier().fit(X, y, sample_weight=-np.ones_like(y, dtype=float))
    with pytest.raises(ValueError, match="(sum to zero|at least one non-zero)"):
        SR2Regressor().fit(X, y.astype(float), sample_weight=np.zeros(y.shape))
    with pytest.raises(ValueError, match="X has 29 features"):
        SR2Classifier(tol=1e-3).fit(X, y).predict(X[:, 1:])


def test_a_step_with_non_finite_trial_loss_is_rejected(diabetes):
    X, y = diabetes
    # sigma0 = 1e-300 makes the first step about 1e300 long: the squared trial loss
    # overflows to inf, and the step must be rejected, never taken.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = SR2Regressor(alpha=1e-3, sigma0=1e-300, variance_reduction=None, max_iter=2)
        reg.fit(X, y)
    history = reg.diagnostics_.history
    assert np.isnan(history["rho"][0]) and history["accepted"][0] == 0.0
    assert history["sigma"][1] == pytest.approx(5.56 * history["sigma"][0])
    assert np.all(np.isfinite(reg.coef_)) and np.isfinite(reg.intercept_)
