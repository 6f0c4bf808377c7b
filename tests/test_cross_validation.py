"""alpha_max and the cross-validated estimators."""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LassoCV
from sklearn.model_selection import KFold

from sr2learn import SR2Classifier, SR2ClassifierCV, SR2Regressor, SR2RegressorCV, alpha_max
from sr2learn._certificate import NewtonCertificate
from sr2learn.cross_validation import _walk_path


def test_alpha_max_l1_matches_the_closed_form(diabetes):
    X, y = diabetes
    expected = np.max(np.abs(X.T @ (y - y.mean()))) / len(y)
    assert alpha_max(SR2Regressor(), X, y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("make", ["regressor", "classifier"])
def test_l1_alpha_max_is_where_the_model_becomes_empty(diabetes, breast_cancer, make):
    if make == "regressor":
        (X, y), est = diabetes, SR2Regressor(random_state=0, tol=1e-4)
    else:
        (X, y), est = breast_cancer, SR2Classifier(random_state=0, tol=1e-4)
    top = alpha_max(est, X, y)
    assert np.count_nonzero(est.set_params(alpha=top * 1.01).fit(X, y).coef_) == 0
    assert np.count_nonzero(est.set_params(alpha=top * 0.9).fit(X, y).coef_) > 0


@pytest.mark.parametrize("penalty", ["l0", "l1/2", "l2/3"])
def test_nonconvex_alpha_max_is_where_zero_stops_being_a_fixed_point(diabetes, penalty):
    from sr2learn._problem import LinearProblem
    from sr2learn.datafits import Quadratic
    from sr2learn.penalties import check_penalty

    X, y = diabetes
    top = alpha_max(SR2Regressor(penalty=penalty), X, y)
    # The proximal-gradient step with step 1/L from (w = 0, intercept = mean y):
    n = len(y)
    G = X.T @ (y.mean() - y) / n
    L = LinearProblem(X, y[:, None], np.ones(n), Quadratic(), 1.0).lipschitz()
    step = lambda alpha: check_penalty(penalty, alpha).prox(-G / L, 1 / L)  # noqa: E731
    assert not np.any(step(top * 1.001)) and np.any(step(top * 0.999))


def test_regressor_cv_chooses_the_alpha_lassocv_chooses(diabetes):
    X, y = diabetes
    alphas = np.geomspace(10.0, 0.01, 8)
    lasso = LassoCV(alphas=alphas, cv=4, tol=1e-10, max_iter=100_000).fit(X, y)
    # Both solved tightly: the comparison is of the objective and the folds, not of tol
    # (diabetes is ill-conditioned: at a relative gap of 1e-8 coefficients still move 1e-2).
    sr2 = SR2RegressorCV(alphas=alphas, cv=4, tol=1e-12, random_state=0).fit(X, y)
    assert sr2.alpha_ == pytest.approx(lasso.alpha_)
    assert sr2.scores_path_.shape == (4, 8)
    np.testing.assert_allclose(sr2.coef_, lasso.coef_, atol=1e-3)
    assert sr2.predict(X).shape == y.shape


def test_classifier_cv_with_alpha_grid_from_alpha_max(breast_cancer):
    X, y = breast_cancer
    clf = SR2ClassifierCV(penalty="l0", n_alphas=6, cv=3, random_state=0, tol=1e-4, n_jobs=2)
    clf.fit(X, y)
    assert clf.alphas_[0] == pytest.approx(alpha_max(SR2Classifier(penalty="l0"), X, y))
    assert np.all(np.diff(clf.alphas_) < 0) and clf.alpha_ in clf.alphas_
    best = clf.scores_path_.mean(axis=0).argmax()
    assert clf.alpha_ == clf.alphas_[best]
    assert clf.score(X, y) > 0.9 and clf.predict_proba(X).shape == (len(y), 2)
    assert np.count_nonzero(clf.coef_) < X.shape[1]


# -- honest by default: weights, missing classes, constant targets, clear errors --------


def test_held_out_scores_are_weighted_by_the_test_fold_like_lassocv(diabetes):
    X, y = diabetes
    sw = np.random.default_rng(0).integers(0, 4, len(y)).astype(float)
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    alphas = np.geomspace(10.0, 0.01, 8)
    lasso = LassoCV(alphas=alphas, cv=folds, tol=1e-10, max_iter=100_000)
    lasso.fit(X, y, sample_weight=sw)
    sr2 = SR2RegressorCV(alphas=alphas, cv=folds, scoring="neg_mean_squared_error", tol=1e-12,
                         random_state=0).fit(X, y, sample_weight=sw)  # fmt: skip
    # Weighted fold fits scored by the weighted test-fold MSE, and a weighted refit.
    np.testing.assert_allclose(-sr2.scores_path_.T, lasso.mse_path_, rtol=1e-4)
    assert sr2.alpha_ == pytest.approx(lasso.alpha_)
    np.testing.assert_allclose(sr2.coef_, lasso.coef_, atol=1e-3)


@pytest.mark.parametrize("make", ["regressor", "classifier"])
def test_a_scoring_callable_gets_the_test_folds_sample_weight(diabetes, breast_cancer, make):
    if make == "regressor":
        (X, y), CV = diabetes, SR2RegressorCV
    else:
        (X, y), CV = breast_cancer, SR2ClassifierCV
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    seen = []

    def scoring(est, X_test, y_test, sample_weight=None):
        seen.append(sample_weight)
        return est.score(X_test, y_test, sample_weight=sample_weight)

    CV(alphas=[1.0, 0.1], cv=folds, scoring=scoring, tol=1e-3, random_state=0).fit(
        X, y, sample_weight=sw
    )
    assert len(seen) == 2 * len(folds)
    for weights, (_, test) in zip(seen[::2], folds, strict=True):
        np.testing.assert_array_equal(weights, sw[test])


# 3 classes, 7 samples, one class with a single sample: with KFold(3) the first training
# part misses class 0 and the last misses class 2.
_X7 = np.random.default_rng(0).standard_normal((7, 3))
_Y7 = np.array([0, 0, 0, 1, 1, 1, 2])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_every_fold_fits_every_class(class_weight):
    folds = list(KFold(3).split(_X7))
    seen = []

    def scoring(est, X_test, y_test):
        seen.append((est.classes_, est.coef_.shape, est.predict_proba(X_test).shape,
                     est.predict(X_test)))  # fmt: skip
        return est.score(X_test, y_test)

    clf = SR2ClassifierCV(alphas=[0.1], cv=folds, scoring=scoring, class_weight=class_weight,
                          max_iter=50, random_state=0).fit(_X7, _Y7)  # fmt: skip
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    for (classes, coef_shape, proba_shape, pred), (train, test) in zip(seen, folds, strict=True):
        np.testing.assert_array_equal(classes, [0, 1, 2])
        assert coef_shape == (3, 3) and proba_shape == (len(test), 3)
        assert set(pred) <= set(_Y7[train])  # a class missing from training is never predicted


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "y, scoring",
    [(_Y7, "neg_log_loss"),  # the test parts miss classes too
     (np.array([0, 0, 0, 0, 0, 1, 1]), None)],  # the last training part has one class
)  # fmt: skip
def test_small_data_with_missing_classes_does_not_crash(y, scoring):
    clf = SR2ClassifierCV(n_alphas=3, cv=KFold(3), scoring=scoring, max_iter=50, random_state=0)
    clf.fit(_X7, y)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    assert np.all(np.isfinite(clf.scores_path_)) and clf.scores_path_.shape == (3, 3)
    assert clf.predict_proba(_X7).shape == (7, len(clf.classes_))


@pytest.mark.parametrize("weighted", [False, True])
def test_constant_target_gives_the_constant_like_lassocv(weighted):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5)) * 10.0 + 5.0
    y = np.full(40, -1000.0)
    sw = rng.uniform(0.0, 3.0, 40) if weighted else None
    lasso = LassoCV(cv=3).fit(X, y, sample_weight=sw)
    sr2 = SR2RegressorCV(cv=3, random_state=0).fit(X, y, sample_weight=sw)
    np.testing.assert_array_equal(sr2.coef_, lasso.coef_)  # all zero
    assert sr2.intercept_ == pytest.approx(-1000.0, rel=1e-9)
    np.testing.assert_allclose(sr2.predict(X), -1000.0, rtol=1e-9)
    assert alpha_max(SR2Regressor(), X, y, sw) == 0.0


def test_empty_alphas_raise_a_clear_error(diabetes):
    with pytest.raises(ValueError, match="alphas must be a non-empty"):
        SR2RegressorCV(alphas=[]).fit(*diabetes)


@pytest.mark.parametrize("estimator", [SR2Regressor, "l1", Lasso()])
def test_alpha_max_names_the_estimator_it_needs(diabetes, estimator):
    with pytest.raises(TypeError, match="needs an SR2Classifier or SR2Regressor instance"):
        alpha_max(estimator, *diabetes)


def test_alpha_max_rejects_weights_summing_to_zero(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="sum to zero|at least one non-zero"):
        alpha_max(SR2Regressor(), X, y, np.zeros(len(y)))


@pytest.mark.parametrize(
    "CV, Base", [(SR2RegressorCV, SR2Regressor), (SR2ClassifierCV, SR2Classifier)]
)
def test_cv_defaults_are_the_base_estimators_defaults(CV, Base):
    # tol above all: the criterion is scale-free, so the default means the same on a path.
    cv, base = CV().get_params(), Base().get_params()
    for name in CV._base_params:
        assert cv[name] == base[name], name


# -- the path: each fold's problem built once and solved again at every alpha ---------------


@pytest.mark.parametrize("make", [SR2Regressor, SR2Classifier])
@pytest.mark.parametrize("working_set", ["auto", True])
def test_the_path_solves_what_warm_started_fits_solve(diabetes, breast_cancer, make,
                                                      working_set, monkeypatch):  # fmt: skip
    # Without the Newton certificate, whose tries (and backoff) start one checkpoint later
    # along the path (its start is the previous alpha's checkpoint, not checked again):
    # with it both still meet tol, at epochs that may differ.
    monkeypatch.setattr(NewtonCertificate, "due", lambda self, criterion, tol, support=None: False)
    X, y = diabetes if make is SR2Regressor else breast_cancer
    alphas = alpha_max(make(), X, y) * np.geomspace(1.0, 1e-2, 5)
    params = dict(warm_start=True, working_set=working_set, tol=1e-6, random_state=0)
    walked = []
    _walk_path(make(**params), alphas, X, y, None,
               after_fit=lambda est: walked.append((est.coef_.copy(), est.intercept_)))
    est = make(**params)
    for alpha, (coef, intercept) in zip(alphas, walked, strict=True):
        est.set_params(alpha=alpha).fit(X, y)
        np.testing.assert_allclose(coef, est.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(intercept, est.intercept_, rtol=1e-9, atol=1e-12)


def test_cv_validates_each_fold_once_and_diagnoses_only_the_refit(diabetes, count_calls):
    # Along a path the data are validated and the diagnostics' Theorem 4 terms drawn only
    # by a fold's first fit and by the refit, which (l1) starts at alpha_ from the folds'
    # mean solution: its diagnostics_ are its own.
    import sr2learn._checkpoint as checkpoint
    import sr2learn.linear_model as linear_model

    validations = count_calls(linear_model._BaseSR2, "_validate")
    diagnostics = count_calls(checkpoint, "_trial_pass")
    X, y = diabetes
    alphas = alpha_max(SR2Regressor(), X, y) * np.geomspace(1.0, 1e-3, 8)
    reg = SR2RegressorCV(alphas=alphas, cv=3, random_state=0).fit(X, y)
    assert reg.alpha_ < alphas[1]  # a walk would take at least two fits
    assert len(validations) == 3 + 1
    # a fold's first fit draws at its start and at its end; the refit at every epoch
    # (checkpoint_every=1, as the base estimator's) and at its start
    assert len(diagnostics) <= 2 * 3 + 1 + reg.n_iter_
    assert reg.estimator_.diagnostics_.converged
    assert reg.estimator_.diagnostics_.n_checkpoints >= 1
    assert reg.n_iter_ == reg.estimator_.n_iter_


@pytest.mark.parametrize("penalty", ["l1", "l0"])
@pytest.mark.parametrize("CV, data", [(SR2RegressorCV, "diabetes"),
                                      (SR2ClassifierCV, "breast_cancer")])  # fmt: skip
def test_unconverged_path_fits_are_all_counted(CV, data, penalty, request):
    X, y = request.getfixturevalue(data)
    base = SR2Regressor(penalty) if CV is SR2RegressorCV else SR2Classifier(penalty)
    alphas = alpha_max(base, X, y) * np.array([0.5, 0.1, 0.05])
    cv = CV(penalty, alphas=alphas, cv=3, tol=0.0, max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning) as record:
        cv.fit(X, y)
    # the l1 refit is one fit at alpha_; a nonconvex one walks the path down to alpha_
    refits = 1 if penalty == "l1" else int(np.flatnonzero(alphas == cv.alpha_)[0]) + 1
    total = 3 * len(alphas) + refits
    assert f"{total} of {total} path fits did not converge" in str(record[0].message)


@pytest.mark.parametrize("CV, Base, data", [(SR2RegressorCV, SR2Regressor, "diabetes"),
                                            (SR2ClassifierCV, SR2Classifier, "breast_cancer")])
def test_the_l1_refit_from_the_folds_mean_solves_the_problem_at_alpha(CV, Base, data, request):
    X, y = request.getfixturevalue(data)
    alphas = alpha_max(Base(), X, y) * np.geomspace(1.0, 1e-2, 6)
    # Solved tightly (on diabetes, a relative gap of 1e-8 still leaves coefficients 1e-3 apart).
    cv = CV(alphas=alphas, cv=3, tol=1e-12, random_state=0).fit(X, y)
    assert cv.alpha_ < alphas[0]
    plain = Base(alpha=cv.alpha_, tol=1e-12, random_state=0).fit(X, y)
    np.testing.assert_allclose(cv.coef_, plain.coef_, atol=1e-4 * np.abs(plain.coef_).max())
    assert cv.estimator_.diagnostics_.converged
    # and the folds' mean is a good start: at the default tol, under 3/4 of the epochs
    # from zero (measured: 5-12 against 17-27)
    cv = CV(alphas=alphas, cv=3, random_state=0).fit(X, y)
    plain = Base(alpha=cv.alpha_, random_state=0).fit(X, y)
    assert cv.n_iter_ < 0.75 * plain.n_iter_


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_default_scores_are_the_accuracy_scorers(breast_cancer, n_classes):
    X, y = breast_cancer
    if n_classes == 3:  # a third class, "large", for the multinomial's labels
        y = np.where(X[:, 0] > 1.0, 2, y)
    labels = np.array(["benign", "malignant", "large"])[y]
    sw = np.random.default_rng(0).uniform(0.0, 2.0, len(y))
    alphas = alpha_max(SR2Classifier(), X, labels, sw) * np.array([1.0, 0.3, 0.1, 0.03])
    params = dict(alphas=alphas, cv=3, random_state=0)
    default = SR2ClassifierCV(**params).fit(X, labels, sample_weight=sw)
    scored = SR2ClassifierCV(scoring="accuracy", **params).fit(X, labels, sample_weight=sw)
    np.testing.assert_array_equal(default.scores_path_, scored.scores_path_)


def test_each_alpha_starts_from_the_previous_alphas_last_checkpoint(diabetes, count_calls):
    # A checkpoint's passes over the data do not depend on alpha: along the path each solve
    # starts from the previous one's last checkpoint, so an SVRG solve makes one checkpoint
    # an epoch (none at its start), without the stationarity measure (l1: the gap decides).
    import sr2learn._checkpoint as checkpoint
    import sr2learn._sr2 as sr2

    checkpoints = count_calls(sr2, "checkpoint")
    measures = count_calls(checkpoint, "_stationarity_measure")
    X, y = diabetes
    alphas = alpha_max(SR2Regressor(), X, y) * np.geomspace(0.5, 1e-2, 5)
    per_fit = []

    def after_fit(est):
        per_fit.append((len(checkpoints), len(measures), est.n_iter_))
        checkpoints.clear()
        measures.clear()

    _walk_path(SR2Regressor(warm_start=True, random_state=0), alphas, X, y, None,
               after_fit=after_fit)  # fmt: skip
    for checkpoints, measures, epochs in per_fit[2:]:  # after the first fit's and a start
        assert checkpoints == epochs and measures == 0


@pytest.mark.parametrize("CV, data", [(SR2RegressorCV, "diabetes"),
                                      (SR2ClassifierCV, "breast_cancer")])  # fmt: skip
def test_folds_without_svrg_check_tol_at_every_epoch(CV, data, request, count_calls):
    # Without SVRG checkpoint_every also says when tol is checked: a fold's first fit,
    # whose diagnostics are not kept, must not run max_iter epochs for want of a check.
    import sr2learn._sr2 as sr2

    epochs = count_calls(sr2, "_epoch")
    X, y = request.getfixturevalue(data)
    base = SR2Regressor() if CV is SR2RegressorCV else SR2Classifier()
    alphas = alpha_max(base, X, y) * np.array([1.0, 0.3])
    CV(alphas=alphas, cv=3, variance_reduction="growing_batch", max_iter=300, tol=1e-3,
       random_state=0).fit(X, y)  # fmt: skip
    assert len(epochs) < 3 * 300  # the three folds' first fits alone made 900


@pytest.mark.parametrize("scoring, metric", [(None, "r2"), ("r2", "r2"),
                                             ("neg_mean_squared_error", "mse")])  # fmt: skip
@pytest.mark.parametrize("weighted", [False, True])
def test_the_regression_scores_are_scikit_learns(diabetes, scoring, metric, weighted):
    # The path's own R^2 and MSE (no validation at each alpha) against scikit-learn's
    # scorers, with the test folds' weights.
    from sklearn.metrics import make_scorer, mean_squared_error, r2_score

    X, y = diabetes
    sw = np.random.default_rng(0).uniform(0.0, 2.0, len(y)) if weighted else None
    reference = (make_scorer(r2_score) if metric == "r2"
                 else make_scorer(mean_squared_error, greater_is_better=False))  # fmt: skip
    alphas = alpha_max(SR2Regressor(), X, y) * np.array([1.0, 0.1, 0.01])
    params = dict(alphas=alphas, cv=3, random_state=0)
    fast = SR2RegressorCV(scoring=scoring, **params).fit(X, y, sample_weight=sw)
    slow = SR2RegressorCV(scoring=reference, **params).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(fast.scores_path_, slow.scores_path_, rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_r2_of_a_constant_target_is_r2_scores(weighted):
    from sklearn.metrics import r2_score

    from sr2learn.cross_validation import _r2

    X = np.random.default_rng(0).standard_normal((20, 3))
    sw = np.random.default_rng(1).uniform(0.5, 2.0, 20) if weighted else None
    est = SR2Regressor(alpha=10.0).fit(X, np.full(20, 3.0))
    for y in (np.full(20, 3.0), np.full(20, 4.0)):
        expected = r2_score(y, est.predict(X), sample_weight=sw)
        assert _r2(est, X, y, sample_weight=sw) == expected
