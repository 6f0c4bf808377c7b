"""Choosing alpha: alpha_max, warm-started regularisation paths, and SR2ClassifierCV /
SR2RegressorCV (like LogisticRegressionCV / LassoCV)."""

import copy
import inspect
import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring, make_scorer
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._gram import FoldGrams, use_compressed
from ._gram_solver import FoldMoments, MomentPath
from ._problem import LinearProblem, column_metric
from ._sr2 import VARIANCE_REDUCTIONS
from .datafits import Logistic, Quadratic
from .linear_model import SR2Classifier, SR2Regressor
from .penalties import PENALTY_NAMES, check_penalty

__all__ = ["alpha_max", "SR2ClassifierCV", "SR2RegressorCV"]


def _check_sr2_estimator(estimator):
    """Raise unless ``estimator`` is an SR2Classifier or SR2Regressor with a named penalty."""
    if not isinstance(estimator, (SR2Classifier, SR2Regressor)):
        got = (f"the class {estimator.__name__} (pass an instance)"
               if isinstance(estimator, type) else repr(estimator))  # fmt: skip
        raise TypeError(
            "alpha_max needs an SR2Classifier or SR2Regressor instance, e.g. "
            f"SR2Regressor(penalty='l1'); got {got}."
        )
    if not isinstance(estimator.penalty, str):
        raise ValueError("alpha_max needs a named penalty ('l1', 'l0', 'l1/2', 'l2/3').")


def alpha_max(estimator, X, y, sample_weight=None):
    """The smallest alpha for which all coefficients stay zero.

    Precisely: at the intercept-only optimum w = 0, the proximal-gradient step with step
    1/L (L the Lipschitz bound of the data) leaves every coefficient at zero for alpha >=
    alpha_max. For "l1" this is the classical ||X^T r||_inf / n (the optimum is then
    exactly 0); for the nonconvex penalties it is where the zero vector stops being a
    fixed point of that step, found by bisection on the penalty's own prox. Used as the
    start of the regularisation path.

    Parameters
    ----------
    estimator : SR2Classifier or SR2Regressor instance
        Gives the datafit, ``penalty`` (a name) and ``fit_intercept``.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    alpha_max : float
        0.0 when no coefficient can leave zero at any alpha (e.g. a constant target).
    """
    _check_sr2_estimator(estimator)
    est = clone(estimator)
    X, y = validate_data(est, X, y, accept_sparse="csr", dtype=[np.float64, np.float32],
                         y_numeric=not is_classifier(est))  # fmt: skip
    n = X.shape[0]
    sw = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
    Y, sw, datafit = est._encode_targets(y, sw, False, None)
    if not sw.sum() > 0:
        raise ValueError("The sample weights sum to zero: there is nothing to fit.")
    sw = sw * (n / sw.sum())
    problem = LinearProblem(X, Y, sw, datafit, est.fit_intercept)
    b = np.zeros((1, problem.K))
    if est.fit_intercept:
        mean = (sw[:, None] * Y).sum(axis=0) / n
        kept = Y[sw > 0]  # a mean lies in [min, max]: exact for a constant target
        mean = np.clip(mean, kept.min(axis=0), kept.max(axis=0))
        if isinstance(datafit, Quadratic):
            b[0] = mean
        elif isinstance(datafit, Logistic):
            b[0] = np.log(mean / (1 - mean))
        else:
            b[0] = np.log(mean)
    Z = np.repeat(b, n, axis=0)
    G = np.asarray(X.T @ (datafit.derivative(Z, Y) * sw[:, None])) / n
    L = problem.lipschitz()
    if not np.any(G) or L <= 0:
        return 0.0
    t = problem.inv_metric[: problem.p, None] / L  # the solver's step, in its metric
    v = -G * t

    def all_zero(alpha):
        return not np.any(check_penalty(estimator.penalty, alpha).prox(v, t))

    hi = float(np.max(np.abs(G))) * 2 + 1e-300
    while not all_zero(hi):
        hi *= 4
    lo = hi * 1e-12
    for _ in range(80):  # geometric bisection
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if all_zero(mid) else (mid, hi)
    return hi


def _walk_path(est, alphas, X, y, sample_weight, after_fit=None, last_fit_params=None,
               constants=None):  # fmt: skip
    """Fit the warm-started ``est`` at each alpha in turn, calling ``after_fit(est)`` after
    each fit; returns how many of the fits did not converge. ``constants``: what is
    already known of the data (e.g. ``{"gram": ...}``, a fold's Gram).

    The first alpha is an ordinary ``fit`` (it validates the data and builds the problem);
    the next ones solve that same problem again (``_refit_on_path``: no validation, no
    diagnostics). With ``last_fit_params``, the last alpha is an ordinary ``fit`` too, with
    these parameters set (the model a user gets, whose ``diagnostics_`` are its own)."""
    unconverged = 0
    est._path_constants = dict(constants or {})  # the same data at every alpha: once
    try:
        for i, alpha in enumerate(alphas):
            ordinary = i == 0
            if i == len(alphas) - 1 and last_fit_params is not None:
                est.set_params(**last_fit_params)
                ordinary = True
            if ordinary:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    est.set_params(alpha=alpha).fit(X, y, sample_weight=sample_weight)
                unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            else:
                unconverged += not est._refit_on_path(alpha)
            if after_fit is not None:
                after_fit(est)
    finally:
        del est._path_constants
    return unconverged


def _unrecorded(base):
    """The parameters of a fit whose diagnostics are not kept (a fold's first fit, the
    refit's first): under SVRG every epoch ends on a checkpoint that checks tol, and
    ``checkpoint_every`` only says which ones also draw the diagnostics' Theorem 4 terms
    (one more data pass each): at the start and end only. Otherwise it also says when tol
    is checked, and stays the base's."""
    return {"checkpoint_every": base.max_iter} if base.variance_reduction == "svrg" else {}


def _fit_path(base, X, y, sample_weight, train, test, alphas, scorer, classes, keep,
              constants=None):  # fmt: skip
    """Scores on ``test`` of the warm-started path fitted on ``train`` (with
    ``sample_weight``, both the fits and the scores are weighted by it), the number of
    unconverged fits, and when ``keep``, each alpha's solution (W, sigma). ``constants``:
    as in :func:`_walk_path`; with ``"moments"`` (a lasso fold on tall dense data), the
    path is solved on the fold's moments (:func:`_fit_path_on_moments`)."""
    if constants and constants.get("moments") is not None:
        return _fit_path_on_moments(base, X, y, sample_weight, test, alphas, scorer, keep,
                                    constants["moments"])  # fmt: skip
    est = clone(base).set_params(warm_start=True, **_unrecorded(base))
    if classes is not None:
        est._all_classes = classes  # every fold fits every class of the whole y
    sw_train, score_params = None, {}
    if sample_weight is not None:
        sw_train, score_params = sample_weight[train], {"sample_weight": sample_weight[test]}
    X_test, y_test = X[test], y[test]
    scores, solutions = [], []

    def after_fit(fitted):
        scores.append(scorer(fitted, X_test, y_test, **score_params))
        if keep:
            solutions.append((fitted._state.W.copy(), fitted.sigma_))

    unconverged = _walk_path(est, alphas, X[train], y[train], sw_train, after_fit=after_fit,
                             constants=constants)  # fmt: skip
    return scores, unconverged, solutions


def _fit_path_on_moments(base, X, y, sample_weight, test, alphas, scorer, keep, path):
    """:func:`_fit_path` of a lasso fold on its moments (``path``, a
    ``sr2learn._gram_solver.MomentPath``): each alpha solved warm-started to ``tol`` (the
    relative duality gap, as SR2Regressor's), with at most ``max_iter`` steps (each from
    the whole gradient, a deterministic R2 step), then scored like a fitted SR2Regressor."""
    # A copy of the unfitted base that is given the solutions to score, never fitted: a
    # shallow copy costs 7 us, clone's parameter checks 150 us (7% of the 2,000 x 100 CV).
    est = copy.copy(base)
    est.n_features_in_ = X.shape[1]
    score_params = {} if sample_weight is None else {"sample_weight": sample_weight[test]}
    X_test, y_test = X[test], y[test]
    scores, solutions, unconverged = [], [], 0
    for alpha in alphas:
        criterion, _, _ = path.solve(check_penalty(base.penalty, alpha), base.tol,
                                     base.max_iter)  # fmt: skip
        unconverged += not criterion <= base.tol
        coef, intercept = path.coef()
        est.alpha = alpha
        est.coef_, est.intercept_ = coef.astype(X.dtype), X.dtype.type(intercept)
        scores.append(scorer(est, X_test, y_test, **score_params))
        if keep:
            W = np.r_[coef, [intercept]] if base.fit_intercept else coef
            solutions.append((W[:, None], float(path.sigma[0])))
    return scores, unconverged, solutions


def _accuracy(est, X, y, sample_weight=None):
    """``est.score``, the accuracy, without the checks of the labels in
    ``accuracy_score`` nor ``predict``'s validation of X (the CV validated it): on small
    data they cost more than a fold's fit at one alpha (3 classes, 300 test rows: 0.4 ms
    a score, 10% of the CV), and the labels are the CV's own."""
    return float(np.average(est._labels(est._scores(X)) == y, weights=sample_weight))


def _neg_mean_squared_error(est, X, y, sample_weight=None):
    """The "neg_mean_squared_error" scorer without ``predict``'s validation of X nor the
    metric's checks of y (the CV validated both): on a 2,000 x 100 regression they cost
    more than a fold's fit at one alpha."""
    return -float(np.average(np.square(y - est._scores(X)[:, 0]), weights=sample_weight))


def _r2(est, X, y, sample_weight=None):
    """``est.score``, R^2, without the validation (see :func:`_neg_mean_squared_error`);
    as ``r2_score``, 1 for a perfect fit of a constant target, 0 for another fit of it,
    and scikit-learn's own scorer (NaN and its warning) for fewer than two samples."""
    if y.shape[0] < 2:
        return float(est.score(X, y, sample_weight=sample_weight))
    residual = -_neg_mean_squared_error(est, X, y, sample_weight)
    spread = np.average(np.square(y - np.average(y, weights=sample_weight)),
                        weights=sample_weight)  # fmt: skip
    if spread == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1.0 - residual / spread)


# Scorers of regressors computed without the checks of scikit-learn's (by ``scoring``).
_REGRESSION_SCORERS = {None: _r2, "r2": _r2, "neg_mean_squared_error": _neg_mean_squared_error}


def _scorer_with_labels(scorer, classes):
    """``scorer`` told all the ``classes`` when its metric takes ``labels`` (e.g. log loss),
    since a test fold may miss some; as in LogisticRegressionCV."""
    func = getattr(scorer, "_score_func", None)
    kwargs = getattr(scorer, "_kwargs", {})
    if func is None or "labels" in kwargs or "labels" not in inspect.signature(func).parameters:
        return scorer
    sign, method = scorer._sign, scorer._response_method
    return make_scorer(func, greater_is_better=sign > 0, response_method=method, labels=classes,
                       **kwargs)  # fmt: skip


def _flat_path_top(X, y, sample_weight, classifier):
    """Top of the grid when alpha_max is 0 (no coefficient leaves zero at any alpha, e.g.
    a constant target): the scale of the gradient at zero coefficients and intercept,
    (largest root-mean-square column of X) * (rms of y, or 1 for classes)."""
    n = X.shape[0]
    sw = np.ones(n) if sample_weight is None else sample_weight * (n / sample_weight.sum())
    scale = 1.0 if classifier else math.sqrt(float(np.dot(sw, np.square(y))) / n)
    sq = X.multiply(X).T @ sw if sp.issparse(X) else np.einsum("ij,ij,i->j", X, X, sw)
    top = math.sqrt(float(np.max(sq, initial=0.0)) / n)
    return (top if top > 0 else 1.0) * scale if scale > 0 else 1.0


_CV_DOC = """
    Parameters
    ----------
    penalty : {{"l1", "l0", "l1/2", "l2/3"}}, default="l1"
    n_alphas : int, default=20
        Number of alphas on the grid, geometric from :func:`alpha_max` down to
        ``eps * alpha_max``. Where alpha_max is 0 (e.g. a constant target) every alpha
        gives the intercept-only model, and the grid starts at the scale of the gradient
        at zero coefficients instead.
    alphas : array-like or None, default=None
        The grid itself, non-empty (overrides ``n_alphas`` and ``eps``).
    eps : float, default=1e-3
    cv : int, cross-validation generator or iterable, default=None
        As in scikit-learn (None: 5-fold{strat}).
    scoring : str or callable, default=None
        None: the estimator's ``score`` ({score}). With ``sample_weight`` in ``fit``, the
        scorer is called with the test fold's weights as ``sample_weight`` (a callable
        must accept it).
    n_jobs : int, default=None
        Folds fitted in parallel.
    fit_intercept, batch_size, variance_reduction, max_iter, tol, random_state :
        As in :class:`{base}`; each fold's path is warm-started from the previous alpha
        (the fold's data validated and its problem built once, for all the alphas).{extra}

    Attributes
    ----------
    alpha_ : float
        The alpha with the best mean cross-validated score.
    alphas_ : ndarray of shape (n_alphas,), decreasing
    scores_path_ : ndarray of shape (n_folds, n_alphas)
    estimator_ : {base}
        Refitted on all the data at ``alpha_``; ``coef_``, ``intercept_``, ``n_iter_`` and
        ``diagnostics_`` are its own. For "l1" (convex) the refit starts from the mean of
        the folds' solutions at ``alpha_``, as LogisticRegressionCV's does; for the
        nonconvex penalties it walks the path down to ``alpha_`` as the folds did (the
        warm starts choose among local minima).{attrs}
"""


class _SR2CVMixin:
    _parameter_constraints = {
        "penalty": [StrOptions(set(PENALTY_NAMES))],
        "n_alphas": [Interval(numbers.Integral, 1, None, closed="left")],
        "alphas": ["array-like", None],
        "eps": [Interval(numbers.Real, 0, 1, closed="neither")],
        "cv": ["cv_object"],
        "scoring": [str, callable, None],
        "n_jobs": [numbers.Integral, None],
        "fit_intercept": ["boolean"],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "variance_reduction": [StrOptions(set(VARIANCE_REDUCTIONS)), None],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def _base(self):
        params = {k: getattr(self, k) for k in self._base_params}
        return self._base_class(**params)

    def fit(self, X, y, sample_weight=None):
        """Choose alpha by cross-validation along warm-started paths, then refit.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the fits (every fold's and the refit's) and of the held-out
            scores: the scorer gets the test fold's weights as ``sample_weight``.

        Returns
        -------
        self : object
        """
        self._validate_params()
        base = self._base()
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32],
                             y_numeric=not is_classifier(self))  # fmt: skip
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)  # fmt: skip
        alphas = self._alpha_grid(base, X, y, sample_weight)
        cv = check_cv(self.cv, y, classifier=is_classifier(self))
        fold_base, classes = self._fold_base(base, y)
        scorer = check_scoring(base, scoring=self.scoring)
        if classes is not None:
            scorer = _scorer_with_labels(scorer, classes)
        if classes is not None and self.scoring is None:
            scorer = _accuracy
        if classes is None and (self.scoring is None or isinstance(self.scoring, str)):
            scorer = _REGRESSION_SCORERS.get(self.scoring, scorer)
        folds = list(cv.split(X, y))
        constants = self._data_constants(X, y, sample_weight, folds)
        # l1 is convex: its refit can start at alpha_ from the folds' mean solution (as
        # LogisticRegressionCV's does). A nonconvex penalty's path chooses among local
        # minima: its refit walks the path, as the folds did.
        from_folds = self.penalty == "l1"
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_path)(fold_base, X, y, sample_weight, train, test, alphas, scorer,
                               classes, from_folds, fold_constants)  # fmt: skip
            for (train, test), fold_constants in zip(folds, constants[:-1], strict=True)
        )
        self.scores_path_ = np.array([scores for scores, _, _ in results])
        unconverged = sum(count for _, count, _ in results)
        self.alphas_ = alphas
        best = int(np.argmax(self.scores_path_.mean(axis=0)))
        self.alpha_ = float(alphas[best])
        est, refits, refit_unconverged = self._refit(base, X, y, sample_weight, best,
                                                     results if from_folds else None,
                                                     constants[-1])  # fmt: skip
        unconverged += refit_unconverged
        if unconverged:
            warnings.warn(
                f"{unconverged} of {len(folds) * len(alphas) + refits} path fits "
                "did not converge "
                f"(tol={self.tol}); the chosen alpha_={self.alpha_:.3e} may be affected. "
                "Increase max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.estimator_ = est.set_params(warm_start=False)
        for name in ("coef_", "intercept_", "n_iter_", "diagnostics_", "classes_"):
            if hasattr(est, name):
                setattr(self, name, getattr(est, name))
        return self

    def _refit(self, base, X, y, sample_weight, best, fold_results, constants):
        """The estimator fitted on all the data at ``alpha_``, how many fits that took, and
        how many of them did not converge. With ``fold_results`` (l1), one fit from the
        folds' mean solution at ``alpha_``; without, a walk down the path to ``alpha_``.
        ``constants``: as in :func:`_walk_path`."""
        est = clone(base).set_params(warm_start=True)
        if fold_results is not None:
            alphas = self.alphas_[best : best + 1]
            at_best = [solutions[best] for _, _, solutions in fold_results]
            est._start_from(np.mean([W for W, _ in at_best], axis=0),
                            float(np.median([sigma for _, sigma in at_best])))  # fmt: skip
        else:
            alphas = self.alphas_[: best + 1]
        # Its diagnostics_ are those of its last fit, at alpha_, with the settings of base;
        # on the way there, as in the folds, none are kept.
        est.set_params(**_unrecorded(base))
        unconverged = _walk_path(est, alphas, X, y, sample_weight,
                                 last_fit_params=dict(checkpoint_every=base.checkpoint_every),
                                 constants=constants)  # fmt: skip
        return est, len(alphas), unconverged

    def _alpha_grid(self, base, X, y, sample_weight):
        """The decreasing alphas: ``alphas`` checked, or geometric from alpha_max."""
        if self.alphas is not None:
            alphas = np.asarray(self.alphas, dtype=float)
            if alphas.ndim != 1 or alphas.size == 0 or not np.all(alphas >= 0):
                raise ValueError(
                    "alphas must be a non-empty 1-D array of alphas >= 0 (or None for a "
                    f"grid from alpha_max), got {self.alphas!r}."
                )
            return np.sort(alphas)[::-1]
        top = alpha_max(base, X, y, sample_weight)
        if top == 0:  # every alpha gives the intercept-only model
            top = _flat_path_top(X, y, sample_weight, is_classifier(self))
        return top * np.geomspace(1.0, self.eps, self.n_alphas)

    def _fold_base(self, base, y):
        """The estimator the folds clone, and the classes they all fit (None: regression)."""
        return base, None

    def _data_constants(self, X, y, sample_weight, folds):
        """What each fold's path knows of its data before its first fit, then the refit's
        (see :func:`_walk_path`): nothing by default."""
        return [{} for _ in range(len(folds) + 1)]

    def predict(self, X):
        check_is_fitted(self)
        return self.estimator_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class SR2RegressorCV(_SR2CVMixin, RegressorMixin, BaseEstimator):
    __doc__ = (
        "SR2Regressor with alpha chosen by cross-validation along warm-started paths.\n"
        + _CV_DOC.format(strat="", score="R^2", base="SR2Regressor", extra="", attrs="")
        + """
    Notes
    -----
    On tall dense data, where :class:`SR2Regressor` runs on rows compressed through the
    Gram matrix of [X, 1, y], one Gram of all the rows serves every fold (and the refit):
    a fold's is that Gram minus its held-out rows' (n p^2 flops in all, not (k - 1) n p^2
    for k folds). A fold whose subtraction or centring would lose digits (a column's mean
    large against its spread; the held-out rows carrying most of a column's squares), or
    whose training rows repeat, forms its own. The scorers None ("r2") and
    "neg_mean_squared_error" are computed directly at each alpha, without scikit-learn's
    checks of data the CV has validated.

    With ``penalty="l1"``, a fold with such a Gram walks its alpha path on the moments
    themselves (``sr2learn/_gram_solver.py``, compiled): SR2's deterministic steps from
    the whole gradient G w - b (each an O(p k) update for the k coordinates it moves, no
    pass over rows), with a Newton step on the support whenever an accepted step keeps
    it, each alpha stopped at the same criterion as SR2Regressor's (relative duality gap
    at most ``tol``, from the same moments), warm-started, with at most ``max_iter``
    steps; ``batch_size`` and ``variance_reduction`` do not apply there. The refit, an
    SR2Regressor fit from the folds' mean solution, solves on the moments the same way
    (see SR2Regressor's Notes). Measured on
    a 2,000 x 100 regression (10 alphas, 5 folds; ``benchmarks/bench_breadth.py --only
    cv``): from about 6 times LassoCV's time to about its time.
"""
    )
    _base_class = SR2Regressor
    _base_params = ("penalty", "fit_intercept", "batch_size", "variance_reduction", "max_iter",
                    "tol", "random_state")  # fmt: skip

    def __init__(
        self,
        penalty="l1",
        *,
        n_alphas=20,
        alphas=None,
        eps=1e-3,
        cv=None,
        scoring=None,
        n_jobs=None,
        fit_intercept=True,
        batch_size="auto",
        variance_reduction="svrg",
        max_iter=1000,
        tol=1e-4,
        random_state=None,
    ):
        self.penalty = penalty
        self.n_alphas = n_alphas
        self.alphas = alphas
        self.eps = eps
        self.cv = cv
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.fit_intercept = fit_intercept
        self.batch_size = batch_size
        self.variance_reduction = variance_reduction
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _data_constants(self, X, y, sample_weight, folds):
        """Least squares on tall dense data: each fold's Gram from one Gram of all the
        rows (``sr2learn._gram.FoldGrams``; used where a fit compresses its rows)."""
        trains = [train for train, _ in folds] + [np.arange(X.shape[0])]
        if not any(use_compressed(X, len(train)) for train in trains):
            return super()._data_constants(X, y, sample_weight, folds)
        grams = FoldGrams(X, y, sample_weight)
        constants = []
        for train in trains:
            if not use_compressed(X, len(train)):
                constants.append({})
                continue
            kept = np.zeros(X.shape[0], dtype=bool)
            kept[train] = True
            if np.count_nonzero(kept) != len(train):  # rows drawn twice: not a subset
                constants.append({})
                continue
            gram = grams.of_rows(np.flatnonzero(~kept), self.fit_intercept)
            constants.append({"gram": gram})
        for fold, train in zip(constants[:-1], trains[:-1], strict=True):
            if fold.get("gram") is not None and self.penalty == "l1":
                fold["moments"] = self._moment_path(X, sample_weight, train, fold["gram"])
        return constants

    def _moment_path(self, X, sample_weight, train, gram):
        """The lasso path of the rows ``train`` on their moments (``sr2learn._gram_solver``):
        the fold's Gram, and the estimator's metric of its rows (X read in place)."""
        weights = np.zeros(X.shape[0])
        weights[train] = 1.0 if sample_weight is None else sample_weight[train]
        metric, _ = column_metric(X, weights)
        moments = FoldMoments(*gram, len(train))
        base = self._base()
        return MomentPath(moments, metric, lambda sigma0: base._make_rule(None, sigma0, None))


class SR2ClassifierCV(_SR2CVMixin, ClassifierMixin, BaseEstimator):
    __doc__ = (
        "SR2Classifier with alpha chosen by cross-validation along warm-started paths.\n"
        + _CV_DOC.format(
            strat=" stratified", score="accuracy", base="SR2Classifier",
            extra="\n    class_weight : dict, 'balanced' or None, default=None",
            attrs=(
                "\n    classes_ : ndarray of shape (n_classes,)"
                "\n        The classes of the whole y. As in LogisticRegressionCV, every fold"
                "\n        fits all of them, also one whose training part misses some: the"
                "\n        probability of a missing class is driven towards 0 (its intercept"
                "\n        keeps falling, so such a fold runs to ``max_iter`` and counts in"
                "\n        the ConvergenceWarning)."
            ),
        )
    )  # fmt: skip
    _base_class = SR2Classifier
    _base_params = ("penalty", "fit_intercept", "batch_size", "variance_reduction", "max_iter",
                    "tol", "random_state", "class_weight")  # fmt: skip
    _parameter_constraints = {
        **_SR2CVMixin._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        penalty="l1",
        *,
        n_alphas=20,
        alphas=None,
        eps=1e-3,
        cv=None,
        scoring=None,
        n_jobs=None,
        fit_intercept=True,
        batch_size="auto",
        variance_reduction="svrg",
        max_iter=1000,
        tol=1e-4,
        random_state=None,
        class_weight=None,
    ):
        self.penalty = penalty
        self.n_alphas = n_alphas
        self.alphas = alphas
        self.eps = eps
        self.cv = cv
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.fit_intercept = fit_intercept
        self.batch_size = batch_size
        self.variance_reduction = variance_reduction
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.class_weight = class_weight

    def _fold_base(self, base, y):
        """The classes of the whole ``y`` (set as ``classes_``), which every fold fits even
        when its training part misses some, and ``class_weight="balanced"`` computed on
        the whole ``y`` (as the refit computes it), as in LogisticRegressionCV. The folds
        do not check their targets again: ``y`` is checked here."""
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.class_weight == "balanced":
            weights = compute_class_weight("balanced", classes=self.classes_, y=y)
            balanced = dict(zip(self.classes_, weights, strict=True))
            base = clone(base).set_params(class_weight=balanced)
        return base, self.classes_

    def decision_function(self, X):
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    def predict_proba(self, X):
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)
