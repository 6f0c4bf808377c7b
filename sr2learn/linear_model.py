"""scikit-learn estimators over the NumPy SR2 solver: SR2Classifier and SR2Regressor."""

import dataclasses
import functools
import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._centring import centred_copy, column_offset, to_centred, to_original
from ._certificate import NewtonCertificate
from ._continuation import continuation, use_continuation
from ._engine import TRACE_COLUMNS
from ._gram import CompressedLeastSquares, use_compressed
from ._gram_solver import FoldMoments, MomentPath
from ._polish import polish
from ._problem import LinearProblem, column_metric
from ._rule import SR2Rule
from ._sr2 import VARIANCE_REDUCTIONS, SolverState, solve
from ._stream_average import StreamAverage
from ._working_set import solve_working_set, use_working_set
from .datafits import Logistic, Multinomial, Quadratic
from .diagnostics import ConvergenceDiagnostics
from .penalties import L1, PENALTY_NAMES, Penalty, check_penalty

__all__ = ["SR2Classifier", "SR2Regressor"]

# A step costs about a microsecond besides its rows, the price of a few hundred stored
# entries; batches hold at least this many entries, and this many rows at least and at most
# (see auto_batch_size).
_BATCH_ENTRIES = 256
_BATCH_ROWS = (32, 256)
# Up to this many samples the whole data set is one batch (deterministic R2 steps).
_FULL_BATCH_UP_TO = 256
# The lasso on the moments (SR2Regressor._solve_on_moments) is recorded this many steps at
# a time.
_TRACE_ROWS = 1024
# Relative range of sigma around sigma0 when sigma_min / sigma_max are not given.
_SIGMA_RANGE = 1e10
# sigma0 in this range keeps the first step 1/sigma0 and the default clamp
# sigma0 * [1e-10, 1e10] positive and finite in float64, and sigma^2 (in the Theorem 4
# constant of the diagnostics) finite up to that sigma_max.
_SIGMA0_BOUNDS = (1e-300, 1e140)


def auto_batch_size(n_samples, nnz_per_row, full_batch=True):
    """The ``batch_size="auto"`` rule.

    Up to 256 samples (``full_batch``, not for partial_fit's chunks), the whole data set:
    each epoch is one deterministic R2 step with the exact gradient (a minibatch of a few
    rows is a poor estimate of the curvature, and a pass costs little). Measured on a
    gene-expression-like 63 x 2308, 4-class problem (l1, alpha 1e-2): the full batch
    converged (relative gap 1e-4) in 840 epochs; 4-row batches (n/16) ended 1000 epochs at
    1.4e-2. On scikit-learn's 15-sample weight-equivalence checks, full batches make the
    weighted and the repeated fits take the same steps. Otherwise a step's fixed cost in the
    compiled engine is about a microsecond, so batches are small: 32 rows, or enough rows
    to hold 256 stored entries when rows are very sparse (at most 256 rows), and at most
    n/16. Small batches make more
    adaptive steps per pass over the data: measured (benchmarks/bench_sparse_highdim.py) on
    Adult and on a text-like 20,000 x 50,000 problem, 32 rows reached 1e-3 suboptimality in
    2-4 epochs against 8-16 with 128-1024 rows, at about the same cost per epoch. n/32
    (twice the steps per pass between 256 and 1,024 rows) was measured and not kept: it
    saved epochs on some l1 fits (3-class 600 x 20: 52 -> 42) and cost them on others
    (standardised breast_cancer, 398 rows, l1 at 1e-2: 83 -> 89), and the l0 fit there at
    alpha 3e-2 then started from the whole data's L (its 13-row first batch gave no
    curvature estimate) and stopped at the zero model, a stationary point of l0 (objective
    0.66 against 0.22).

    Least squares on tall dense data runs on compressed rows (``full_batch=False``, see
    ``sr2learn/_gram.py``): at least 256 of them, in minibatches by the same rule (16 steps
    per pass), never one full-batch step, which needs a pass per step. Measured (epochs to
    the default tol, SR2Regressor): correlated 10,000 x 500 design compressed to 502 rows,
    10 epochs with 32-row batches against 22 with the full batch; a 1,200 x 100
    regression, 9 epochs on 257 rows with 17-row batches against 14 full-batch steps on
    102 rows; a correlated (rho 0.9) 5,000 x 100 design, 27 against 76; diabetes (10
    features) compressed to 12 rows took 853 full-batch steps against 97 epochs of 27-row
    batches of its 442 rows, hence the 256 rows at least (and diabetes, under 1,024 rows,
    is not compressed).
    """
    if full_batch and n_samples <= _FULL_BATCH_UP_TO:
        return int(max(1, n_samples))
    by_steps = int(math.ceil(n_samples / 16))
    low, high = _BATCH_ROWS
    per_row = max(1, int(math.ceil(nnz_per_row)))
    rows = min(high, max(low, _BATCH_ENTRIES // per_row))
    return int(max(1, min(rows, by_steps)))


_COMMON_DOC = """
    penalty : {"l1", "l0", "l1/2", "l2/3"} or Penalty, default="l1"
        The regulariser R: a name (with strength ``alpha``) or a penalty object from
        :mod:`sr2learn.penalties` (e.g. ``L0Ball(k=10)``), which carries its own
        strength; ``alpha`` is then not used. The intercept is never penalised.
    alpha : float, default=1e-3
        Strength of a named penalty (``alpha * ||w||_1`` for "l1").
    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept.
    batch_size : "auto" or int, default="auto"
        Minibatch size. "auto": up to 256 samples, all of them (deterministic R2 steps
        with the exact gradient; not in partial_fit); otherwise 32 rows (more, up to 256,
        for rows with fewer than 8 stored entries), at most n/16 (at least 16 steps per
        epoch); SR2Regressor on tall dense data applies it to its compressed rows (see
        its Notes). The rule is ``sr2learn.linear_model.auto_batch_size``, which says what was
        measured.
    variance_reduction : {"svrg", "growing_batch"} or None, default="svrg"
        How the gradient noise is driven down. "svrg" (the default): one full gradient
        per epoch at a reference point, and rho measured on the consistent surrogate, so
        the iterates converge to the exact optimum (linearly on the convex problems we
        measured) and ``tol`` can be reached. "growing_batch": the batch doubles after an
        epoch whose norm tests mostly failed (slower). None: the paper's plain method
        with a fixed batch, which stalls in a noise-dominated neighbourhood of the
        solution and usually ends with a ConvergenceWarning.
    max_iter : int, default=1000
        Maximum number of epochs.
    tol : float, default=1e-4
        Stop at the first checkpoint (once per epoch) where a scale-free criterion is at
        most ``tol``: for "l1" the relative duality gap (F(w) - D(theta)) / F(w), which
        bounds the relative suboptimality; for the other penalties the stationarity
        measure (the norm of the proximal-gradient mapping at step 1/L, zero exactly at a
        stationary point) relative to the intercept-only model's gradient. Both mean the
        same whatever the start point, the units of X and the number of samples (see the
        user guide, "Convergence and tolerances"); float64 fits reach about 1e-12, float32
        data the same (the arithmetic is float64).
    sigma0 : float in [1e-300, 1e140] or None, default=None
        Initial regularisation sigma; ``1/sigma0`` is the first step size (in the solver's
        metric, see the user guide). None: the curvature of the loss on the first
        minibatch (15 power iterations), capped by the exact Lipschitz bound L: SR2 keeps
        sigma within a band around where it starts, so the start should not be
        conservative.
    eta1, eta2 : float, default=7.5e-4, 0.99
        Acceptance thresholds on rho (paper's Table 1).
    gamma1, gamma3 : float, default=5.56, 0.8
        sigma is multiplied by gamma1 on rejection and by gamma3 when rho >= eta2.
    sigma_min, sigma_max : float or None, default=None
        Clamp of sigma. None means ``sigma0 * 1e10`` for sigma_max and ``sigma0 / 1e10``
        for sigma_min, raised under SVRG to ``L / (2 * batch_size)`` for each problem
        solved (L: the exact Lipschitz bound of the data; each working set's subproblem has
        its own). rho is measured on the minibatch alone, which cannot see curvature the
        batch lacks: with batches of one or two rows, sigma can fall far below L and the
        iterates oscillate. Where rows are very uneven even that floor can be too low for
        the SVRG estimator; an epoch that raises the objective is then undone and the floor
        multiplied by 4 (``diagnostics_.n_restarts``). A floor at the worst-case row
        curvature from the start made well-conditioned fits several times slower and held
        nonconvex penalties at zero. An explicit ``sigma_min`` is used as given.
    random_state : int, RandomState instance or None, default=None
        Seed of the minibatch sampling; a fixed seed gives identical coefficients.
    warm_start : bool, default=False
        Start from the previous solution (and sigma) of this estimator.
    verbose : int, default=0
        Print one line per checkpoint when positive.
    checkpoint_every : int, default=1
        Epochs between two checkpoints of ``diagnostics_`` (full-gradient quantities, one
        extra read of the data each); ``tol`` is checked at checkpoints only. The returned
        point always gets one.
    variance_estimate : {"exact", "batch"}, default="exact"
        How checkpoints compute V = E||grad f(w) - g||^2: exactly from every per-sample
        gradient (free with the checkpoint's data pass, but it needs the squared row norms
        of X once per fit), or the unbiased estimate from the checkpoint's own minibatch.
    working_set : "auto" or bool, default="auto"
        Solve on a growing set of features: start from those with the largest optimality
        violation, run SR2 on the restricted problem, check optimality on all features with
        one full gradient, double the set, until the full problem meets ``tol``. The
        diagnostics refer to the full problem (one checkpoint per outer iteration, which
        replaces ``checkpoint_every``). "auto": on from 2000 features for the separable
        penalties. Not used by ``partial_fit``.
"""

_ATTRS_DOC = """
    n_iter_ : int
        Number of epochs run.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when X has string feature names.
    sigma_ : float
        sigma at the end of the fit (reused by partial_fit and warm_start).
    diagnostics_ : ConvergenceDiagnostics
        The per-step trace, the checkpoints with the Theorem 4 bound, and ``summary()``.
"""


_PARTIAL_FIT_DOC = """One SR2 epoch over a block of the data, continuing from the previous calls.

        Each call runs one epoch (under SVRG: one full gradient of the block, then steps on
        its minibatches) from the iterate and sigma the previous call ended with; blocks may
        differ in size. The model it sets draws on the iterates of all the calls, so that a
        stream of blocks (the blocks of a dask array under ``dask_ml.wrappers.Incremental``)
        fits the whole data, not the last block: two passes over the blocks come within 1%%
        of an in-memory ``fit`` (see Notes, and the user guide, "Out-of-core fits with
        dask").

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            One block of the training data; sparse input is used as CSR.
        y : array-like of shape (n_samples,)
            %(y)s
%(classes)s        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights within the block (normalised to mean 1 there); a block
            weighs in the average by its number of rows.

        Returns
        -------
        self : %(name)s
            The estimator, its model drawn from every call so far.

        Notes
        -----
        The iterate of one call ends next to the minimiser of its block alone; over a
        stream it stayed 0.3%% to 10%% above the whole data's optimal objective however many
        passes were made. The model set (``coef_``, ``intercept_``) is instead, of three
        candidates, the one with the lowest objective on the blocks that came after it
        (each call first scores the previous calls' candidates on its own block): the last
        iterate, or one proximal-gradient step from the mean of the iterates along the mean
        of the blocks' gradients at them, later calls weighing more, with the coordinate
        steps ``1 / L_j`` (best on nearly uncorrelated columns) or with the same steps
        damped by the correlation of the columns (best on correlated ones); see
        ``sr2learn/_stream_average.py``. The averages are sparse and move to the fit of the
        whole data as the blocks' noise averages out; the first call returns its iterate.
        Measured with blocks of 1,500 to 3,000 rows, dense, correlated and CSR
        (``benchmarks/bench_out_of_core.py``, the tests, the gallery): after **two passes**
        the objective was within 1%% of the in-memory fit's (0.001%% to 0.7%%) and the
        held-out accuracy or R^2 within 0.01; after one pass, within 1.2%%. ``sigma_``,
        ``n_iter_`` (the number of calls) and ``diagnostics_`` are about the iterate, on
        the blocks; ``max_iter``, ``tol`` and ``working_set`` are not used.
        """

_CLASSES_DOC = """        classes : array-like of shape (n_classes,), default=None
            All the labels that will ever appear: required on the first call (a block may
            lack some), checked against the first call's on the later ones.
"""


class _BaseSR2(BaseEstimator):
    _parameter_constraints = {
        "penalty": [StrOptions(set(PENALTY_NAMES)), Penalty],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "variance_reduction": [StrOptions(set(VARIANCE_REDUCTIONS)), None],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "sigma0": [Interval(numbers.Real, *_SIGMA0_BOUNDS, closed="both"), None],
        "eta1": [Interval(numbers.Real, 0, 1, closed="neither")],
        "eta2": [Interval(numbers.Real, 0, 1, closed="neither")],
        "gamma1": [Interval(numbers.Real, 1, None, closed="neither")],
        "gamma3": [Interval(numbers.Real, 0, 1, closed="right")],
        "sigma_min": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "sigma_max": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
        "variance_estimate": [StrOptions({"exact", "batch"})],
        "working_set": [StrOptions({"auto"}), "boolean"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- hooks of the subclasses ---------------------------------------------------------
    def _encode_targets(self, y, sample_weight, partial, classes):
        raise NotImplementedError

    # -- fitting ---------------------------------------------------------------------------
    def _validate(self, X, y, reset):
        return validate_data(
            self,
            X,
            y,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            order="C",
            y_numeric=not isinstance(self, ClassifierMixin),
            reset=reset,
        )

    def _fit(self, X, y, sample_weight, *, partial, classes=None):
        first = not (partial and hasattr(self, "_state"))
        X, y = self._validate(X, y, reset=first)
        X = _canonical_csr(X)
        _check_data_scale(X, y if isinstance(self, RegressorMixin) else None)
        n = X.shape[0]
        # float64 whatever X's dtype: the solver's sums and iterates are float64.
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        Y, sample_weight, datafit = self._encode_targets(y, sample_weight, partial, classes)
        sample_weight = _rescale_sample_weight(sample_weight)
        total = float(sample_weight.sum())
        if not total > 0:
            raise ValueError("The sample weights sum to zero: there is nothing to fit.")
        sample_weight = sample_weight * (n / total)
        penalty = check_penalty(self.penalty, self.alpha)
        problem = self._problem(X, Y, sample_weight, datafit, None if first else self._metric,
                                partial)  # fmt: skip
        b = self._batch_size(problem, partial)
        seed = check_random_state(self.random_state).randint(2**31 - 1)
        gen = np.random.default_rng(seed)
        state, sigma0 = self._start(problem, b, partial, first, gen, seed)
        fresh = not np.any(state.W)
        rule = self._rule if not first and hasattr(self, "_rule") else self._make_rule(
            problem, sigma0, b)  # fmt: skip
        state.sigma = min(rule.sigma_max, max(rule.sigma_min, state.sigma))
        if partial and not first:
            diagnostics = self.diagnostics_
            state.n_steps, state.n_epochs = diagnostics.n_steps, self.n_iter_
        else:
            diagnostics = ConvergenceDiagnostics(tol=None if partial else self.tol,
                                                 variance_reduction=self.variance_reduction)
        diagnostics.column_scale = np.sqrt(problem.metric)
        common = dict(variance_reduction=self.variance_reduction, rng=gen,
                      diagnostics=diagnostics, variance_estimate=self.variance_estimate,
                      verbose=self.verbose, stability_floor=self.sigma_min is None)  # fmt: skip
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if not partial and fresh and use_continuation(problem, penalty):
                # The stages stop by half of max_iter: at tol=0, or where a stage cannot
                # reach its tol, they would leave the fit at its alpha no epoch.
                stage_resolve = self._resolver(problem, rule, common, until=self.max_iter // 2)
                state, stages = continuation(problem, penalty, state, rule, tol=self.tol,
                                             resolve=stage_resolve)  # fmt: skip
                for stage in stages:
                    diagnostics.extend_steps(stage)
                fresh = not np.any(state.W)
            state = self._solve(problem, penalty, state, rule, partial, fresh, common)
            if not partial and penalty.polish:
                resolve = self._resolver(problem, rule, common)
                state = polish(problem, penalty, state, rule, tol=self.tol, rng=gen,
                               max_epochs=self.max_iter - state.n_epochs,
                               diagnostics=diagnostics,
                               resolve=lambda s: resolve(s, penalty))  # fmt: skip
        self._remember_path_constants(problem)
        average = self._stream_average(problem, penalty, state.W, first) if partial else None
        # Only a finished solve makes the estimator fitted.
        self._state, self._rule, self._average = state, rule, average
        self._metric = (problem.metric, problem.intercept_metric)
        self.sigma_ = state.sigma
        self.n_iter_ = state.n_epochs
        self.diagnostics_ = diagnostics
        W = state.W if average is None else average.model(problem, penalty)
        self._set_coef(W, problem, X.dtype)
        if not partial and not diagnostics.converged:
            warnings.warn(_not_converged_message(self, diagnostics, rule), ConvergenceWarning,
                          stacklevel=3)  # fmt: skip
        return self

    def _solve(self, problem, penalty, state, rule, partial, fresh, common, tol=None,
               until=None):  # fmt: skip
        """The SR2 solve of ``_fit`` from ``state`` within the epochs left of max_iter, or
        of ``until`` epochs in all (to ``tol``, by default the estimator's)."""
        left = 1 if partial else (self.max_iter if until is None else until) - state.n_epochs
        tol = self.tol if tol is None else tol
        if not partial and use_working_set(self.working_set, problem.p, penalty):
            return solve_working_set(problem, penalty, state, rule, max_epochs=left,
                                     tol=tol, **common)  # fmt: skip
        return solve(problem, penalty, state, rule, max_epochs=left,
                     tol=None if partial else tol, min_epochs=int(fresh),
                     checkpoint_every=self.checkpoint_every, **common)  # fmt: skip

    def _resolver(self, problem, rule, common, until=None):
        """``resolve(state, penalty, tol=None, diagnostics=None, rule=None, light=False)``:
        the fit's own solve of ``problem`` from ``state`` with another penalty, tol,
        diagnostics or rule (the continuation's stages, the polish), up to ``until`` epochs
        in all (default: max_iter); ``light``: without the diagnostics' Theorem 4 terms
        (see :func:`sr2learn._sr2.solve`)."""
        fit_rule = rule

        def resolve(state, penalty, tol=None, diagnostics=None, rule=None, light=False):
            options = common if diagnostics is None else dict(common, diagnostics=diagnostics)
            if light:
                options = dict(options, light=True)
            return self._solve(problem, penalty, state, rule or fit_rule, False,
                               not np.any(state.W), options, tol=tol, until=until)  # fmt: skip

        return resolve

    def _problem(self, X, Y, sample_weight, datafit, metric, partial=False):
        """The fit's problem. Along a regularisation path (``_walk_path`` sets
        ``_path_constants`` for fits on the same data) the data's constants, the metric, L
        and the criterion's scale, are computed by the first fit only."""
        known = getattr(self, "_path_constants", None) or {}
        metric = metric or known.get("metric")
        problem = None if partial else self._compressed_problem(X, Y, sample_weight, datafit,
                                                                metric)  # fmt: skip
        if problem is None:
            problem = LinearProblem(X, Y, sample_weight, datafit, self.fit_intercept, metric)
        if known.get("lipschitz") is not None:
            problem._lipschitz = known["lipschitz"]
        problem.null_scale = known.get("null_scale")
        return problem

    def _compressed_problem(self, X, Y, sample_weight, datafit, metric):
        """The same objective on fewer rows, or None (see SR2Regressor)."""
        return None

    def _remember_path_constants(self, problem):
        known = getattr(self, "_path_constants", None)
        if known is not None:
            known.update(metric=(problem.metric, problem.intercept_metric),
                         lipschitz=problem.lipschitz(), null_scale=problem.null_scale,
                         problem=problem)  # fmt: skip

    def _start_from(self, W, sigma):
        """Make the next warm-started fit start from ``W`` (the solver's variables, in the
        user's coordinates) and ``sigma``, e.g. the folds' mean solution for a CV refit."""
        p = W.shape[0] - int(self.fit_intercept)
        intercept = W[p] if self.fit_intercept else np.zeros(W.shape[1])
        self.coef_, self.intercept_ = self._shape_coef(W[:p].T.copy(), intercept.copy())
        self._state = SolverState(W=W, sigma=sigma, batch_size=1)
        self.sigma_ = sigma

    def _refit_on_path(self, alpha):
        """Solve the last fit's problem again at ``alpha``, warm-started; returns whether it
        converged. Along a path (``_walk_path``) the data are the same at every alpha: they
        are not validated again, no diagnostics are recorded (``diagnostics_`` stays the
        last fit's), and the solve starts from the previous one's last checkpoint (its
        passes over the data do not depend on alpha). Sets ``alpha`` and the model."""
        known = self._path_constants
        problem = known["problem"]
        penalty = check_penalty(self.penalty, alpha)
        seed = known.get("seed")
        if seed is None:
            seed = check_random_state(self.random_state).randint(2**31 - 1)
            if isinstance(self.random_state, numbers.Integral):
                # The same at every alpha: drawn once (a RandomState each time cost about
                # a twentieth of a 2,000 x 100 regression's CV).
                known["seed"] = seed
        gen = np.random.default_rng(seed)
        b = self._batch_size(problem, False)
        state = SolverState(W=self._state.W.copy(), sigma=self.sigma_, batch_size=b)
        rule = self._make_rule(problem, self.sigma_, b)
        state.sigma = min(rule.sigma_max, max(rule.sigma_min, state.sigma))
        common = dict(variance_reduction=self.variance_reduction, rng=gen,
                      diagnostics=ConvergenceDiagnostics(), max_epochs=self.max_iter,
                      tol=self.tol, stability_floor=self.sigma_min is None)  # fmt: skip
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if use_working_set(self.working_set, problem.p, penalty):
                state = solve_working_set(problem, penalty, state, rule, **common)
                converged = common["diagnostics"].converged
            else:
                start = self._path_start(known.pop("checkpoint", None), penalty)
                certificate = known.setdefault("certificate", NewtonCertificate())
                state, known["checkpoint"] = solve(
                    problem, penalty, state, rule, min_epochs=int(not np.any(state.W)),
                    start=start, light=True, return_checkpoint=True,
                    certificate=certificate, **common)  # fmt: skip
                converged = known["checkpoint"].criterion <= self.tol
        self.alpha = alpha
        self._state, self._rule = state, rule
        self.sigma_ = state.sigma
        self.n_iter_ = state.n_epochs
        # X's dtype (the problem's rows may be a float64 compression of X).
        self._set_coef(state.W, problem, self.coef_.dtype)
        return converged

    def _path_start(self, last, penalty):
        """The previous alpha's last checkpoint (None: none) as the start of the solve with
        ``penalty``: the same point and passes, its objective with the new penalty (the
        SVRG safeguard compares the next checkpoints with it)."""
        if last is None:
            return None
        p = last.W.shape[0] - int(self.fit_intercept)
        old = check_penalty(self.penalty, self.alpha).value(last.W[:p])
        objective = last.objective - old + penalty.value(last.W[:p])
        return dataclasses.replace(last, objective=objective, gap=math.nan,
                                   criterion=math.nan, record=None)  # fmt: skip

    def _batch_size(self, problem, partial):
        X, n = problem.X, problem.n
        if self.batch_size != "auto":
            return min(n, self.batch_size)
        nnz_per_row = X.nnz / max(1, n) if sp.issparse(X) else X.shape[1]
        # A partial_fit chunk is not the data set: never one full-batch step per chunk;
        # nor are compressed rows (see auto_batch_size).
        full_batch = not (partial or isinstance(problem, CompressedLeastSquares))
        return auto_batch_size(n, nnz_per_row, full_batch=full_batch)

    def _stream_average(self, problem, penalty, W, first):
        """partial_fit's model: the running average with this block's iterate ``W`` (see
        sr2learn._stream_average); a fit or a first call starts a new one."""
        average = None if first else getattr(self, "_average", None)
        if average is None:
            average = StreamAverage.start(problem)
        return average.add(problem, penalty, W)

    def _start(self, problem, b, partial, first, gen, seed):
        """The start point and sigma0: the previous solution (partial_fit, warm_start), or
        zero with sigma0 from the curvature of a first minibatch."""
        reuse = (partial and not first) or (self.warm_start and hasattr(self, "coef_"))
        if reuse and self._state.W.shape == (problem.n_rows, problem.K):
            return SolverState(W=self._state.W.copy(), sigma=self.sigma_, batch_size=b), \
                self.sigma_  # fmt: skip
        W0 = np.zeros((problem.n_rows, problem.K))
        if self.sigma0 is not None:
            sigma0 = float(self.sigma0)
        else:
            # The curvature of a first minibatch, capped by the exact L: SR2 keeps sigma
            # within a band around where it starts, so the start is the less
            # conservative of the two.
            idx = np.sort(gen.choice(problem.n, size=b, replace=False))
            sigma0 = min(problem.curvature_estimate(idx, seed=seed), problem.lipschitz())
            if not (math.isfinite(sigma0) and sigma0 > 0):
                sigma0 = 1.0
        return SolverState(W=W0, sigma=sigma0, batch_size=b), sigma0

    def _make_rule(self, problem, sigma0, b):
        # Under SVRG the solver raises a default sigma_min to the stability floor of each
        # problem it solves (sr2learn._sr2.svrg_sigma_floor).
        sigma_min = sigma0 / _SIGMA_RANGE if self.sigma_min is None else self.sigma_min
        sigma_max = self.sigma_max
        if sigma_max is None:
            sigma_max = max(sigma0, sigma_min) * _SIGMA_RANGE
        return SR2Rule(eta1=self.eta1, eta2=self.eta2, gamma1=self.gamma1, gamma3=self.gamma3,
                       sigma_min=sigma_min, sigma_max=sigma_max)  # fmt: skip

    def _set_coef(self, W, problem, dtype):
        p = problem.p
        coef = W[:p].T.astype(dtype)
        intercept = W[p] if problem.fit_intercept else np.zeros(problem.K)
        self.coef_, self.intercept_ = self._shape_coef(coef, intercept.astype(dtype))

    def _decision(self, X):
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False
        )
        return self._scores(X)

    def _scores(self, X):
        """``X @ coef_.T + intercept_``, shape (n_samples, K), for an X already validated."""
        coef = np.atleast_2d(self.coef_).astype(X.dtype, copy=False)
        return np.asarray(X @ coef.T) + np.atleast_1d(self.intercept_).astype(X.dtype, copy=False)


def _not_converged_message(est, diagnostics, rule):
    """Why the fit stopped short of tol, with the numbers, and what helps."""
    last = diagnostics.last_checkpoint()
    h = diagnostics.history
    head = (f"SR2 did not converge: the {diagnostics.criterion_name} is "
            f"{last['criterion']:.3e} > tol = {est.tol:.3e} after {int(last['epoch'])} epochs "
            f"(measured dist(0, dF(w)) = {last['dist']:.3e}). ")  # fmt: skip
    last_epoch = h["epoch"] == h["epoch"].max() if h["epoch"].size else h["epoch"] > 0
    if not np.isfinite(last["objective"]):
        return head + ("The loss became non-finite: check X and y for extreme values, or "
                       "rescale X.")  # fmt: skip
    if h["accepted"].size and not h["accepted"][last_epoch].any():
        return head + (f"Every step of the last epoch was rejected (sigma = {est.sigma_:.3e}, "
                       f"sigma_max = {rule.sigma_max:.3e}): the model decrease never matched "
                       "the actual one. Check sigma0 / sigma_min (steps 1/sigma far too "
                       "long), or use variance_reduction='svrg'.")  # fmt: skip
    at_clamp = diagnostics.n_sigma_clamps and (
        math.isclose(est.sigma_, rule.sigma_max) or math.isclose(est.sigma_, rule.sigma_min))
    if at_clamp:
        bound = "sigma_max" if math.isclose(est.sigma_, rule.sigma_max) else "sigma_min"
        return head + (f"sigma is held at its clamp {bound} = {est.sigma_:.3e}: widen "
                       "[sigma_min, sigma_max] or leave them at None.")  # fmt: skip
    advice = ("Increase max_iter, or use variance_reduction='svrg' (plain SR2 stalls at the "
              "noise level of the minibatch gradient)." if est.variance_reduction is None
              else "Increase max_iter (or tol).")  # fmt: skip
    return head + f"It reached the iteration limit max_iter={est.max_iter}. " + advice


# -- what fit accepts ------------------------------------------------------------------------


def _canonical_csr(X):
    """X, or a copy without duplicate or unsorted entries where it has some.

    ``validate_data`` may return the caller's own matrix, and summing its duplicates in
    place would change the caller's data.
    """
    if sp.issparse(X) and not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _check_data_scale(X, y=None):
    """Refuse X (and the regression target y) whose squares overflow.

    The steps of SR2 come from the curvature of the loss: with sample weights of mean 1
    the Lipschitz bound L is at most ``||[X, c 1]||_F^2 <= max|X|^2 (nnz(X) + n)``, and
    sigma ranges over 1e10 times a curvature (sigma_max), so that bound must stay 1e10
    below the largest float64, and below the largest value of X's dtype, in which the
    sums of squares of rows and columns are taken. The squared loss at w = 0 is at most
    ``n max|y|^2 / 2``.
    """
    n = X.shape[0]
    data = X.data if sp.issparse(X) else X
    dtype = np.dtype(X.dtype)
    if data.size:
        top = max(abs(float(np.max(data))), abs(float(np.min(data))))
        squares = top * top * (data.size + n)  # a Python float: inf on overflow
        limit = min(np.finfo(np.float64).max / _SIGMA_RANGE, float(np.finfo(dtype).max))
        if not squares < limit:
            raise ValueError(
                f"X has entries of magnitude up to {top:.3g}: the sum of their squares "
                f"(up to {squares:.3g}), which sets the step sizes of SR2, must stay below "
                f"{limit:.3g} for {dtype.name} data. Rescale X, for example with "
                "sklearn.preprocessing.StandardScaler."
            )
    if y is not None:
        top = max(abs(float(np.max(y))), abs(float(np.min(y))))
        squares = top * top * n
        limit = float(np.finfo(dtype).max)
        if not squares < limit:
            raise ValueError(
                f"y has values of magnitude up to {top:.3g}: the squared loss at "
                f"coef = 0 (up to n_samples * max|y|^2 = {squares:.3g}) overflows "
                f"{dtype.name}. Rescale y, for example with "
                "sklearn.compose.TransformedTargetRegressor."
            )


def _check_class_weight(weights, classes):
    """Refuse a negative or non-finite weight of a class (``weights[k]`` of ``classes[k]``)."""
    bad = np.flatnonzero(~(np.isfinite(weights) & (weights >= 0)))
    if bad.size:
        k = bad[0]
        raise ValueError(
            f"class_weight must be finite and non-negative, got {weights[k].item()!r} for "
            f"class {classes[k].item()!r}."
        )


def _rescale_sample_weight(sample_weight):
    """The sample weights divided by the largest one, so that their sum (normalising them
    to mean 1 next) cannot overflow; a weight of 1e300 then dominates as it should."""
    top = float(np.max(sample_weight)) if sample_weight.size else 0.0
    if not math.isfinite(top):
        raise ValueError(
            "sample_weight multiplied by class_weight overflows: rescale the weights."
        )
    return sample_weight / sample_weight.dtype.type(top) if top > 0 else sample_weight


# Private attributes a fit sets, besides the public ones ending in "_".
_PRIVATE_FIT_STATE = ("_state", "_rule", "_metric", "_average")


def _unfitted_on_failure(fit_method):
    """Decorator of fit and partial_fit: an exception out of a fit from scratch (``fit``,
    or a first ``partial_fit``), a KeyboardInterrupt included, leaves the estimator
    unfitted.

    ``_fit`` sets ``n_features_in_``, ``classes_`` and private state before the solver
    runs: an interrupted first fit would look fitted to ``check_is_fitted`` (and predict
    fail with an AttributeError), and a failed refit would leave the previous
    coefficients next to the new ``n_features_in_``. A later ``partial_fit`` sets nothing
    before the solver returns, so its failure keeps the model of the previous calls.
    """
    partial = fit_method.__name__ == "partial_fit"

    @functools.wraps(fit_method)
    def wrapper(self, *args, **kwargs):
        fresh = not (partial and hasattr(self, "_state"))
        before = set(vars(self))
        try:
            return fit_method(self, *args, **kwargs)
        except BaseException:
            if fresh:
                for name in list(vars(self)):
                    fitted = name.endswith("_") and not name.startswith("__")
                    if fitted or name in _PRIVATE_FIT_STATE or name not in before:
                        delattr(self, name)
            raise

    return wrapper


class SR2Regressor(RegressorMixin, _BaseSR2):
    __doc__ = (
        """Sparse linear regression fitted by SR2 (squared loss + l1, l0, lp or k-sparse).

    Minimises ``1/(2n) sum_i s_i (y_i - x_i.w - b)^2 + R(w)`` with ``s`` the sample
    weights normalised to mean 1: with ``penalty="l1"`` exactly the objective of
    ``sklearn.linear_model.Lasso(alpha=alpha)``.

    Parameters
    ----------""" + _COMMON_DOC + """
    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float""" + _ATTRS_DOC + """
    See Also
    --------
    SR2Classifier : the same solver for logistic and multinomial regression.

    Notes
    -----
    On dense X with at least 4 m rows, m = max(n_features + 2, 256), ``fit`` forms the
    Gram matrix of [X, 1, y] once (one product over X, about n p^2 flops) and runs SR2 on
    m rows with the same weighted means and second moments (``sr2learn/_gram.py``): the
    same objective, gradient, exact intercept, duality gap and Lipschitz bound L (taken
    from that Gram) for every coefficient vector, at m / n of the cost of a pass over X.
    ``n_iter_`` then counts passes over those m rows, and the diagnostics' variance term
    is that of their minibatches, the ones the solver draws; the objective, the criterion,
    L and the distances are the user's problem's. Memory: the m rows (at most n / 4, in
    float64) and the Gram. Sparse X, ``partial_fit`` and shorter data run on X itself.
    On a correlated 10,000 x 500 design this took the time to 1e-6 relative suboptimality
    from about 4 times scikit-learn's coordinate descent to under 2 times (the Gram is most
    of it; ``benchmarks/bench_breadth.py --only lasso``).

    With the l1 penalty the fit then first solves the lasso on the moments themselves
    (``sr2learn/_gram_solver.py``, compiled, the intercept eliminated exactly): SR2's
    deterministic steps from the whole gradient (each an O(p k) update for the k
    coordinates it moves), with a Newton step on the support whenever an accepted step
    keeps it, to the relative duality gap ``tol`` computed from the same moments. Each of
    these steps counts as an epoch (one step of the whole batch, as for data of at most
    256 rows) and is recorded in ``diagnostics_.history``; a Newton step has sigma = 0
    (no regularisation: its model, the quadratic on the orthant face, is F there) and
    rho = 1. SR2's minibatch epochs on the m rows then start from that point, and their
    first checkpoint (the one ``diagnostics_`` reports, with its Theorem 4 terms) usually
    certifies ``tol`` at once. On X + 100 (3,000 x 40) the minibatch epochs alone ran
    1,000 epochs and stopped far from the solution; the moments give it in 7 steps.

    Shorter dense data with an intercept, some column of which has a weighted mean larger
    than its weighted spread (``sr2learn/_centring.py``), are fitted on the
    centred copy X - xbar (in X's dtype: one copy of X), with ``intercept_ = b - xbar.w``:
    the objective is the same at every point, so ``diagnostics_`` (objective, criterion,
    distances) describe the user's problem, with the step's metric that of the centred
    columns. Uncentred, such a column is nearly the intercept's column of ones: on
    X ~ N(100, 1), 100 x 2, the fit ran 1,000 epochs and ended 0.37 off scikit-learn's
    Lasso coefficients; centred it converges in 3. Sparse X (centring would densify it)
    and ``partial_fit`` keep X itself: centre such data, or scale them, beforehand.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sr2learn import SR2Regressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> reg = SR2Regressor(penalty="l0", alpha=1.0, random_state=0).fit(X, y)
    >>> int((reg.coef_ != 0).sum()) < X.shape[1]
    True
    >>> reg.diagnostics_.converged
    True
    """
    )

    def __init__(
        self,
        penalty="l1",
        alpha=1e-3,
        *,
        fit_intercept=True,
        batch_size="auto",
        variance_reduction="svrg",
        max_iter=1000,
        tol=1e-4,
        sigma0=None,
        eta1=SR2Rule.eta1,
        eta2=SR2Rule.eta2,
        gamma1=SR2Rule.gamma1,
        gamma3=SR2Rule.gamma3,
        sigma_min=None,
        sigma_max=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        checkpoint_every=1,
        variance_estimate="exact",
        working_set="auto",
    ):
        self.penalty = penalty
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.batch_size = batch_size
        self.variance_reduction = variance_reduction
        self.max_iter = max_iter
        self.tol = tol
        self.sigma0 = sigma0
        self.eta1 = eta1
        self.eta2 = eta2
        self.gamma1 = gamma1
        self.gamma3 = gamma3
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.checkpoint_every = checkpoint_every
        self.variance_estimate = variance_estimate
        self.working_set = working_set

    def _encode_targets(self, y, sample_weight, partial, classes):
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}.")
        return y.astype(sample_weight.dtype)[:, None], sample_weight, Quadratic()

    def _shape_coef(self, coef, intercept):
        return coef[0], float(intercept[0])

    def _problem(self, X, Y, sample_weight, datafit, metric, partial=False):
        """With an intercept on dense X too short for the compressed rows, and some column
        far from centred against its spread, the problem on the centred copy X - xbar
        (``sr2learn._centring``): the same objective at b = b_c - xbar.w for every w, b_c.
        Its ``x_offset`` is xbar (None: X itself)."""
        offset = None
        if self.fit_intercept and not partial and not use_compressed(X):
            offset = column_offset(X, sample_weight)
        if offset is not None:
            X = centred_copy(X, offset)
        problem = super()._problem(X, Y, sample_weight, datafit, metric, partial)
        problem.x_offset = offset
        return problem

    def _start(self, problem, b, partial, first, gen, seed):
        # A reused state is kept in the original coordinates (see _set_coef).
        state, sigma0 = super()._start(problem, b, partial, first, gen, seed)
        if getattr(problem, "x_offset", None) is not None:
            to_centred(state.W, problem.x_offset)
        return state, sigma0

    def _refit_on_path(self, alpha):
        # The path's problem may be a centred copy; the kept state is in X's coordinates.
        offset = getattr(self._path_constants["problem"], "x_offset", None)
        if offset is not None:
            self._state.W = to_centred(self._state.W.copy(), offset)
        return super()._refit_on_path(alpha)

    def _set_coef(self, W, problem, dtype):
        # Called on the state just solved: back to the original coordinates, in which the
        # state is kept (warm starts, partial_fit, a CV's averaged fold solutions).
        offset = getattr(problem, "x_offset", None)
        if offset is not None:
            W = to_original(W.copy(), offset)
            self._state.W = W
        super()._set_coef(W, problem, dtype)

    def _compressed_problem(self, X, Y, sample_weight, datafit, metric):
        """On dense X with at least 4 max(p + 2, 256) rows, the squared loss on
        max(p + 2, 256) rows with the moments of the data (``sr2learn._gram``): the same
        objective, gradient, duality gap and L for every coefficient, at a fraction of the
        cost of a pass over X; L comes from the same Gram matrix. None otherwise. A
        cross-validation fold's Gram may be given (``_path_constants["gram"]``, see
        ``sr2learn._gram.FoldGrams``)."""
        if not use_compressed(X):
            return None
        if metric is None:
            metric = column_metric(X, sample_weight)
        gram = (getattr(self, "_path_constants", None) or {}).get("gram")
        return CompressedLeastSquares(X, Y, sample_weight, datafit, self.fit_intercept, metric,
                                      gram)  # fmt: skip

    def _solve(self, problem, penalty, state, rule, partial, fresh, common, tol=None,
               until=None):  # fmt: skip
        """On tall dense data with the l1 penalty, first the lasso on the data's moments
        (:meth:`_solve_on_moments`), then SR2 from there, whose first checkpoint usually
        certifies tol; otherwise SR2 alone (see ``_BaseSR2._solve``)."""
        if not partial and isinstance(problem, CompressedLeastSquares) and isinstance(penalty,
                                                                                      L1):
            # At most half of the epochs left: a sigma clamp (sigma_max) below the whole
            # batch's curvature would have every step on the moments rejected.
            steps = ((self.max_iter if until is None else until) - state.n_epochs) // 2
            epochs = state.n_epochs
            state = self._solve_on_moments(problem, penalty, state, rule, common["diagnostics"],
                                           self.tol if tol is None else tol, steps)  # fmt: skip
            # A fresh fit still runs an epoch where the moments' start already met tol
            # (n_iter_ >= 1, scikit-learn's convention), not after steps on the moments.
            fresh = fresh and state.n_epochs == epochs
        return super()._solve(problem, penalty, state, rule, partial, fresh, common, tol=tol,
                              until=until)  # fmt: skip

    def _solve_on_moments(self, problem, penalty, state, rule, diagnostics, tol, max_steps):
        """The lasso solved from ``state`` on the moments of the compressed problem
        (``sr2learn._gram_solver``): deterministic SR2 steps from the whole gradient and
        Newton steps on the support, to ``tol`` (the relative duality gap) within
        ``max_steps`` steps, each counted as an epoch (a step of the whole batch) and
        recorded in ``diagnostics`` (Newton's with sigma = 0). SR2's own sigma is kept for
        the epochs that may follow."""
        path = MomentPath(FoldMoments(*problem.gram, problem.n_samples), problem.metric,
                          lambda sigma0: rule)  # fmt: skip
        path.start_at(state.W[: problem.p, 0], float(path.sigma[0]))
        # Solved in runs of at most _TRACE_ROWS steps, each recorded (max_iter may be 1e6).
        trace = np.empty((min(max(max_steps, 0), _TRACE_ROWS), len(TRACE_COLUMNS)))
        done = 0
        while done < max_steps:
            run = min(max_steps - done, _TRACE_ROWS)
            criterion, steps, _ = path.solve(penalty, tol, run, trace)
            if steps:
                first = state.n_epochs + done + 1
                diagnostics.record_trace(state.n_steps + done + 1,
                                         np.arange(first, first + steps), trace[:steps])
            done += steps
            if criterion <= tol or steps < run:  # converged, or stuck at sigma_max
                break
        coef, intercept = path.coef()
        W = np.r_[coef, [intercept]] if problem.fit_intercept else coef
        return SolverState(W=W[:, None], sigma=state.sigma, batch_size=state.batch_size,
                           n_steps=state.n_steps + done, n_epochs=state.n_epochs + done)

    @_fit_context(prefer_skip_nested_validation=True)
    @_unfitted_on_failure
    def fit(self, X, y, sample_weight=None):
        """Fit the model with SR2.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; sparse input is used as CSR without densifying.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : SR2Regressor
        """
        return self._fit(X, y, sample_weight, partial=False)

    @_fit_context(prefer_skip_nested_validation=True)
    @_unfitted_on_failure
    def partial_fit(self, X, y, sample_weight=None):
        return self._fit(X, y, sample_weight, partial=True)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC % {
        "y": "Targets.", "classes": "", "name": "SR2Regressor"
    }

    def predict(self, X):
        """Predict with the fitted linear model."""
        return self._decision(X)[:, 0]


class SR2Classifier(ClassifierMixin, _BaseSR2):
    __doc__ = (
        """Sparse logistic (binary) and multinomial regression fitted by SR2.

    Minimises ``1/n sum_i s_i logloss_i + R(w)`` with ``s`` the sample weights
    normalised to mean 1: for two classes and ``penalty="l1"`` the objective of
    ``LogisticRegression(l1_ratio=1, C=1/(n*alpha))``; for more classes the native
    multinomial (softmax) loss with one coefficient row per class.

    Parameters
    ----------""" + _COMMON_DOC + """
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into the sample weights.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)""" + _ATTRS_DOC + """
    See Also
    --------
    SR2Regressor : the same solver for least squares.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sr2learn import SR2Classifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), SR2Classifier(penalty="l1", alpha=1e-2,
    ...                                                     random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
    """
    )

    _parameter_constraints = {
        **_BaseSR2._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        penalty="l1",
        alpha=1e-3,
        *,
        fit_intercept=True,
        batch_size="auto",
        variance_reduction="svrg",
        max_iter=1000,
        tol=1e-4,
        sigma0=None,
        eta1=SR2Rule.eta1,
        eta2=SR2Rule.eta2,
        gamma1=SR2Rule.gamma1,
        gamma3=SR2Rule.gamma3,
        sigma_min=None,
        sigma_max=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        checkpoint_every=1,
        variance_estimate="exact",
        working_set="auto",
        class_weight=None,
    ):
        self.penalty = penalty
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.batch_size = batch_size
        self.variance_reduction = variance_reduction
        self.max_iter = max_iter
        self.tol = tol
        self.sigma0 = sigma0
        self.eta1 = eta1
        self.eta2 = eta2
        self.gamma1 = gamma1
        self.gamma3 = gamma3
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.checkpoint_every = checkpoint_every
        self.variance_estimate = variance_estimate
        self.working_set = working_set
        self.class_weight = class_weight

    def _validate(self, X, y, reset):
        """As the base's, except on a fold of SR2ClassifierCV (``_all_classes`` set), whose
        rows are those of data the CV validated (and whose targets it checked): there the
        checks cost more than the fold's first fit itself (3 classes, 1,200 x 10: 1 ms
        against 0.8 ms a path fit)."""
        if reset and getattr(self, "_all_classes", None) is not None:
            self.n_features_in_ = X.shape[1]
            # Rows taken by fancy indexing keep no particular memory order.
            return (X if sp.issparse(X) else np.ascontiguousarray(X)), y
        return super()._validate(X, y, reset)

    def _encode_targets(self, y, sample_weight, partial, classes):
        # Set by SR2ClassifierCV on its folds: fit these classes even if y misses some
        # (the CV checked its targets).
        all_classes = getattr(self, "_all_classes", None)
        if all_classes is None:
            check_classification_targets(y)
        if partial and hasattr(self, "classes_"):
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(
                    f"classes={classes!r} differs from the classes of the first partial_fit "
                    f"call, {self.classes_!r}."
                )
        elif partial:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = np.unique(classes)
        else:
            self.classes_ = np.unique(y) if all_classes is None else all_classes
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels {unknown!r} not in classes {self.classes_!r}.")
        if self.classes_.size < 2:
            raise ValueError(
                "SR2Classifier needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {self.classes_[0]!r}."
            )
        codes = np.searchsorted(self.classes_, y)
        if self.class_weight is not None:
            if partial and self.class_weight == "balanced":
                raise ValueError(
                    "class_weight='balanced' is not supported for partial_fit: the class "
                    "frequencies of later batches are unknown. Pass a dict instead."
                )
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            _check_class_weight(cw, self.classes_)
            sample_weight = sample_weight * cw[codes].astype(sample_weight.dtype)
        if not partial and all_classes is None:
            present = np.bincount(codes, weights=sample_weight, minlength=self.classes_.size)
            if np.count_nonzero(present > 0) < 2:
                raise ValueError(
                    "SR2Classifier needs samples of at least 2 classes with positive weight, "
                    "but after sample_weight and class_weight only one class remains."
                )
        dtype = sample_weight.dtype
        if self.classes_.size == 2:
            return (codes == 1).astype(dtype)[:, None], sample_weight, Logistic()
        Y = np.zeros((y.shape[0], self.classes_.size), dtype=dtype)
        Y[np.arange(y.shape[0]), codes] = 1.0
        return Y, sample_weight, Multinomial()

    def _shape_coef(self, coef, intercept):
        return coef, intercept

    @_fit_context(prefer_skip_nested_validation=True)
    @_unfitted_on_failure
    def fit(self, X, y, sample_weight=None):
        """Fit the model with SR2.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; sparse input is used as CSR without densifying.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : SR2Classifier
        """
        return self._fit(X, y, sample_weight, partial=False)

    @_fit_context(prefer_skip_nested_validation=True)
    @_unfitted_on_failure
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        return self._fit(X, y, sample_weight, partial=True, classes=classes)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC % {
        "y": "Class labels.", "classes": _CLASSES_DOC, "name": "SR2Classifier"
    }

    def decision_function(self, X):
        """Linear scores: shape (n_samples,) for two classes, else (n_samples, n_classes)."""
        Z = self._decision(X)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict_proba(self, X):
        """Class probabilities (logistic for two classes, softmax otherwise)."""
        Z = self._decision(X)
        if Z.shape[1] == 1:
            p = expit(Z[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(Z, axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted class labels."""
        return self._labels(self._decision(X))

    def _labels(self, Z):
        """The class of each row of the scores ``Z`` (shape (n_samples, K))."""
        if Z.shape[1] == 1:
            return self.classes_[(Z[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(Z, axis=1)]
