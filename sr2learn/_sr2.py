"""The SR2 solver for regularised linear models: a pure function of its inputs.

Variables are stored as ``W`` of shape ``(n_features + fit_intercept, K)`` in float64, in the
user's coordinates: the first ``n_features`` rows are the penalised coefficients, the
optional last row the intercept. Steps are taken in a diagonal metric (``column_metric``),
so the iterates do not depend on the units of the columns.

:func:`solve` is a short loop of two pieces: :func:`checkpoint` (full-data quantities: the
objective, the gradient, the stopping criterion and the diagnostics' Theorem 4 terms) and
the compiled epoch of :mod:`sr2learn._engine`.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from ._engine import (
    EngineData,
    EpochPlan,
    EpochState,
    Reference,
    RuleParams,
    gradient_into,
    predict_into,
    sr2_epoch,
)  # fmt: skip
from ._rule import SR2Rule

__all__ = ["LinearProblem", "SolverState", "Checkpoint", "checkpoint", "solve", "draw_step"]

VARIANCE_REDUCTIONS = ("svrg", "growing_batch")
# Norm test of the growing batch: grow when the in-batch variance of the mean gradient
# exceeds NORM_TEST_THETA^2 times ||sigma D s||^2, in more than half of an epoch's steps.
NORM_TEST_THETA = 0.9


def column_metric(X, sample_weight):
    """The step's diagonal metric: (d_j^2 per feature, the intercept's).

    d_j^2 is the weighted mean square of the nonzero entries of column j (1 for an empty
    column): each coordinate is measured in the units of its column's typical entry, not
    its frequency, so X -> X diag(c) leaves the iterates d_j w_j unchanged, and one-hot or
    TF-IDF columns (entries of size one, present in few rows) keep the steps of the
    unscaled method. The intercept's column of ones then weighs as much as the densest
    feature: its metric is 1 / (largest weighted fraction of nonzeros in a column), which
    keeps it from dominating L on sparse data."""
    p = X.shape[1]
    if sp.issparse(X):
        X = X.tocsr()
        rows = np.repeat(sample_weight.astype(np.float64), np.diff(X.indptr))
        present = X.data != 0
        sq = np.bincount(X.indices, weights=np.square(X.data, dtype=np.float64) * rows,
                         minlength=p)  # fmt: skip
        mass = np.bincount(X.indices[present], weights=rows[present], minlength=p)
    else:
        sw = sample_weight.astype(np.float64)
        sq = np.einsum("ij,ij,i->j", X, X, sw, dtype=np.float64)
        mass = (X != 0).T.astype(np.float64) @ sw
    metric = np.ones(p)
    good = (mass > 0) & (sq > 0) & np.isfinite(sq)
    metric[good] = sq[good] / mass[good]
    total = float(np.sum(sample_weight))
    densest = float(np.max(mass[good], initial=0.0)) / total if total > 0 else 0.0
    return metric, (1.0 / densest if densest > 0 else 1.0)


class LinearProblem:
    """Data of f(w) = sum_i s_i l(x_i . w + b, y_i) / n for one solver call.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n, p), float64 or float32 (never copied to float64)
    Y : ndarray of shape (n, K), targets encoded for ``datafit``
    sample_weight : ndarray of shape (n,), normalised to mean 1
    datafit : a datafit of :mod:`sr2learn.datafits`
    fit_intercept : bool
    metric : (ndarray of shape (p,), float) or None
        The step's diagonal metric on the coefficients and on the intercept
        (:func:`column_metric` when None).
    """

    def __init__(self, X, Y, sample_weight, datafit, fit_intercept, metric=None):
        self.X = X.tocsr() if sp.issparse(X) else np.ascontiguousarray(X)
        self.Y = np.ascontiguousarray(Y, dtype=np.float64)
        self.sw = np.ascontiguousarray(sample_weight, dtype=np.float64)
        self.datafit = datafit
        self.fit_intercept = bool(fit_intercept)
        self.n, self.p = X.shape
        self.K = self.Y.shape[1]
        self.dtype = X.dtype
        if metric is None:
            metric = column_metric(self.X, self.sw)
        self.metric, self.intercept_metric = metric
        self.inv_metric = 1.0 / np.r_[self.metric, [self.intercept_metric] * self.fit_intercept]
        self._lipschitz = None
        self._row_norms_sq = None
        self._data = None
        self.order = None
        self.null_scale = None  # the nonconvex criterion's scale (see _null_scale)

    @property
    def n_rows(self):
        return self.p + int(self.fit_intercept)

    @property
    def data(self):
        """The arrays the compiled engine reads."""
        if self._data is None:
            X = self.X
            if sp.issparse(X):
                arrays = (False, X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64))
            else:
                empty = np.zeros(1, dtype=np.int64)
                arrays = (True, X.reshape(-1), empty, empty)
            self._data = EngineData(*arrays, self.n, self.p, self.Y, self.sw,
                                    self.fit_intercept, self.inv_metric)  # fmt: skip
        return self._data

    def predict(self, W):
        Z = np.empty((self.n, W.shape[1]))
        predict_into(self.data, np.ascontiguousarray(W, dtype=np.float64), Z)
        return Z

    def gradient(self, E):
        """X~^T E / n (float64)."""
        G = np.empty((self.n_rows, E.shape[1]))
        gradient_into(self.data, np.ascontiguousarray(E, dtype=np.float64), G)
        return G / self.n

    def rows(self, idx):
        return self.X[idx], self.Y[idx], self.sw[idx]

    def batch_linear(self, XB, W):
        Z = np.asarray(XB @ W[: self.p], dtype=np.float64)
        return Z + W[self.p] if self.fit_intercept else Z

    def batch_transpose(self, XB, E):
        G = np.empty((self.n_rows, E.shape[1]))
        G[: self.p] = np.asarray(XB.T @ E)
        if self.fit_intercept:
            G[self.p] = E.sum(axis=0)
        return G

    def shuffled(self, rng):
        """The same problem with its rows in a random order (one copy of the data).

        Minibatches are then contiguous slices: no per-step copy. Every full-data quantity
        (f, grad f, L, V) is invariant to the row order.
        """
        order = rng.permutation(self.n)
        other = LinearProblem(self.X[order], self.Y[order], self.sw[order], self.datafit,
                              self.fit_intercept, (self.metric, self.intercept_metric))  # fmt: skip
        other.order = order
        other._lipschitz = self._lipschitz
        other.null_scale = self.null_scale
        if self._row_norms_sq is not None:
            other._row_norms_sq = self._row_norms_sq[order]
        return other

    def restricted(self, columns):
        """The problem on a subset of the columns (for working sets); its L is bounded by
        the full problem's, which it reuses."""
        metric = (self.metric[columns], self.intercept_metric)
        sub = LinearProblem(self.X[:, columns], self.Y, self.sw, self.datafit,
                            self.fit_intercept, metric)  # fmt: skip
        sub._lipschitz = self.lipschitz()
        sub.null_scale = self.null_scale
        return sub

    @property
    def row_norms_sq(self):
        """||x~_i||^2 per sample in the metric's dual norm (sum_j x_ij^2 / d_j^2, plus the
        intercept's inverse metric), cached."""
        if self._row_norms_sq is None:
            inv = self.inv_metric[: self.p]
            if sp.issparse(self.X):
                X = self.X
                sq = np.square(X.data, dtype=np.float64) * inv[X.indices]
                sq = np.add.reduceat(np.r_[sq, 0.0], X.indptr[:-1]) * (np.diff(X.indptr) > 0)
            else:
                sq = np.einsum("ij,ij,j->i", self.X, self.X, inv, dtype=np.float64)
            self._row_norms_sq = sq + (self.inv_metric[-1] if self.fit_intercept else 0.0)
        return self._row_norms_sq

    def lipschitz(self):
        """Lipschitz constant of grad f in the metric (an exact bound): the curvature of the
        loss times the top eigenvalue of D^(-1/2) X~^T S X~ D^(-1/2) / n."""
        if self._lipschitz is None:
            self._lipschitz = self.datafit.curvature * _largest_eig_gram(self) / self.n
        return self._lipschitz

    def curvature_estimate(self, idx, n_power=15, seed=0):
        """Curvature of f_B on the rows ``idx`` in the metric: a few power iterations."""
        XB, _, swB = self.rows(idx)
        root = np.sqrt(self.inv_metric)[:, None]
        v = np.random.default_rng(seed).standard_normal((self.n_rows, 1))
        lam = 0.0
        for _ in range(n_power):
            v /= np.linalg.norm(v)
            u = self.batch_linear(XB, root * v) * swB[:, None]
            v = root * self.batch_transpose(XB, u) / swB.shape[0]
            lam = float(np.linalg.norm(v))
            if not lam > 0.0:
                break
        return self.datafit.curvature * lam


def _largest_eig_gram(problem):
    """Largest eigenvalue of A^T A, A = S^(1/2) X~ D^(-1/2), exact up to rounding."""
    X, sw = problem.X, problem.sw
    n = X.shape[0]
    root = np.sqrt(sw)
    scale = np.sqrt(problem.inv_metric)
    small = min(n, problem.n_rows)
    if small <= (16 if sp.issparse(X) else 1500):
        # Small side: form the Gram matrix densely and take its top eigenvalue.
        cols = scale[: problem.p]
        A = sp.diags(root) @ X @ sp.diags(cols) if sp.issparse(X) else (X * root[:, None]) * cols
        if n <= problem.n_rows:
            gram = A @ A.T
            gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram, dtype=np.float64)
            if problem.fit_intercept:
                gram = gram + scale[-1] ** 2 * np.outer(root, root)
        else:
            gram = A.T @ A
            gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram, dtype=np.float64)
            if problem.fit_intercept:
                col = np.asarray(A.T @ root, dtype=np.float64).ravel() * scale[-1]
                corner = np.array([[float(sw.sum()) * scale[-1] ** 2]])
                gram = np.block([[gram, col[:, None]], [col[None, :], corner]])
        return float(np.linalg.eigvalsh(gram)[-1])

    def matvec(v):
        v = scale * np.asarray(v, dtype=np.float64).ravel()
        u = problem.predict(v[:, None]) * sw[:, None]
        return scale * (problem.gradient(u).ravel() * n)

    op = LinearOperator((problem.n_rows, problem.n_rows), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(problem.n_rows)  # deterministic
    top = eigsh(op, k=1, which="LA", ncv=min(6, problem.n_rows), tol=1e-10, v0=v0,
                return_eigenvectors=False)[0]  # fmt: skip
    return float(top) * (1.0 + 1e-8)  # Lanczos converges from below: keep a bound


@dataclass
class SolverState:
    """What a solver call carries to the next one (warm start, partial_fit)."""

    W: np.ndarray
    sigma: float
    batch_size: int
    n_steps: int = 0
    n_epochs: int = 0
    grad: np.ndarray | None = None  # grad f at W, from the last checkpoint
    derivatives: np.ndarray | None = None  # s_i l'(z_i) at W, in the caller's row order


# -- one NumPy step: the checkpoint's draw, and the tests' reference for the engine --------
@dataclass
class Draw:
    """One SR2 step drawn at W on a minibatch (not yet accepted or rejected)."""

    idx: object
    ZB: np.ndarray
    dloss: np.ndarray  # l'(z_i)
    losses: np.ndarray
    g: np.ndarray
    S: np.ndarray
    W_trial: np.ndarray
    R_trial: float
    xi: float
    step_sq: float  # ||s||_D^2


def _metric_sq(problem, A):
    """sum_j d_j^2 ||A_j||^2 (the metric's norm)."""
    return float(np.sum(np.square(A) / problem.inv_metric[:, None]))


def _dual_sq(problem, A):
    """sum_j ||A_j||^2 / d_j^2 (the metric's dual norm, for gradients)."""
    return float(np.sum(np.square(A) * problem.inv_metric[:, None]))


def prox_step(problem, penalty, W, R_w, g, sigma):
    """The SR2 step for gradient g in the metric: (w + s, R(w + s), xi, ||s||_D^2)."""
    t = problem.inv_metric[:, None] / sigma
    W_trial = W - g * t
    W_trial[: problem.p] = penalty.prox(W_trial[: problem.p], t[: problem.p])
    S = W_trial - W
    step_sq = _metric_sq(problem, S)
    R_trial = penalty.value(W_trial[: problem.p])
    xi = SR2Rule.model_decrease(R_w, R_trial, float(np.vdot(g, S)), step_sq, sigma)
    return W_trial, R_trial, xi, step_sq


def draw_step(problem, penalty, W, R_w, sigma, idx, ref):
    """The step drawn at W on the rows ``idx`` with the gradient estimator of ``ref``
    (a :class:`~sr2learn._engine.Reference`, or None for the plain minibatch gradient)."""
    XB, YB, swB = problem.rows(idx)
    m = swB.shape[0]
    ZB = problem.batch_linear(XB, W)
    dloss = problem.datafit.derivative(ZB, YB)
    losses = problem.datafit.loss(ZB, YB)
    E = dloss * swB[:, None] / m
    if ref is not None and ref.svrg:
        E = E - ref.D[idx] / m
    g = problem.batch_transpose(XB, E)
    if ref is not None and ref.svrg:
        g = g + ref.mu
    W_trial, R_trial, xi, step_sq = prox_step(problem, penalty, W, R_w, g, sigma)
    return Draw(idx, ZB, dloss, losses, g, W_trial - W, W_trial, R_trial, xi, step_sq)


# -- checkpoints ---------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """Full-data quantities at W (after the exact intercept update)."""

    W: np.ndarray
    R: float
    objective: float
    G: np.ndarray  # grad f at W, user coordinates
    D: np.ndarray  # s_i l'(z_i) per sample, in the problem's row order
    measure: float  # sqrt(L xi) of the full-gradient step at sigma = L, in the metric
    gap: float  # duality gap (NaN for the nonconvex penalties)
    criterion: float  # the scale-free number compared with tol
    record: dict | None = None  # the diagnostics' row (full checkpoints only)


def _stationarity_measure(problem, penalty, W, R_w, G):
    """R2's sqrt(sigma xi) for the full-gradient step at sigma = L in the metric: the
    norm of the proximal-gradient mapping with step 1/L, zero exactly at stationarity."""
    L = problem.lipschitz()
    L = L if L > 0 else 1.0
    return math.sqrt(L * prox_step(problem, penalty, W, R_w, G, L)[2])


def _null_scale(problem, penalty):
    """The nonconvex criterion's scale: the size of the gradient of the intercept-only
    model (w = 0) in the metric's dual norm, a number fixed by the problem, not by the
    start of the fit (its stationarity measure would not do: w = 0 is often a stationary
    point of a nonconvex penalty, with a measure of zero)."""
    if problem.null_scale is None:
        W0 = np.zeros((problem.n_rows, problem.K))
        Z = np.zeros((problem.n, problem.K))
        if problem.fit_intercept:
            W0[-1] = problem.datafit.intercept_shift(Z, problem.Y, problem.sw)
            Z += W0[-1]
        E = problem.datafit.derivative(Z, problem.Y) * problem.sw[:, None]
        G = problem.gradient(E)
        problem.null_scale = math.sqrt(_dual_sq(problem, G))
    return problem.null_scale


def _subdiff_dist_sq(problem, penalty, W, G):
    """Per row of W, the squared distance from 0 to the subdifferential of F (user
    coordinates); the intercept's is its gradient."""
    d = np.square(penalty.subdiff_distance(W[: problem.p], G[: problem.p]))
    out = np.empty(problem.n_rows)
    out[: problem.p] = d.sum(axis=1)
    if problem.fit_intercept:
        out[problem.p] = float(np.sum(np.square(G[problem.p])))
    return out


def _exact_variance(problem, E, mean_grad, batch_size):
    """E||grad f(w) - g||^2 (metric's dual norm) of the batch mean of per-sample gradients
    x~_i e_i^T drawn without replacement: (n - b) / (b (n - 1)) times their variance."""
    n = problem.n
    if n <= 1 or batch_size >= n:
        return 0.0
    second = float(np.dot(problem.row_norms_sq, np.einsum("ij,ij->i", E, E))) / n
    pop = max(0.0, second - _dual_sq(problem, mean_grad))
    return (n - batch_size) / (batch_size * (n - 1)) * pop


def _in_batch_variance(problem, draw, ref):
    """Unbiased in-batch estimate of E||grad f(w) - g||^2 from the draw's own rows."""
    idx = draw.idx
    XB, _, swB = problem.rows(idx)
    m = swB.shape[0]
    if m <= 1 or m >= problem.n:
        return 0.0
    E = draw.dloss * swB[:, None]
    mean = draw.g
    if ref is not None and ref.svrg:
        E, mean = E - ref.D[idx], mean - ref.mu
    norms = problem.row_norms_sq[idx]
    total = float(np.dot(norms, np.einsum("ij,ij->i", E, E))) - m * _dual_sq(problem, mean)
    return (1.0 - m / problem.n) / (m * (m - 1)) * max(total, 0.0)


def checkpoint(problem, penalty, W, *, scale=None, diagnostic=None):
    """Full-data quantities at W: one pass for the predictions, the exact intercept, one
    pass for the gradient. The criterion is the relative duality gap gap / F(w) for a
    convex penalty (``penalty.dual_scale``), else the stationarity measure relative to
    ``scale`` (default: the intercept-only model's, see :func:`_null_scale`).

    ``diagnostic`` (a dict with ``sigma``, ``batch_size``, ``ref``, ``rng``,
    ``variance_estimate``) adds the diagnostics' Theorem 4 terms for one step drawn at W
    (one more pass for the prediction at w + s; the trial gradient shares the pass).
    """
    datafit, Y, sw, n, p = problem.datafit, problem.Y, problem.sw, problem.n, problem.p
    W = np.array(W, dtype=np.float64)
    Z = problem.predict(W)
    if problem.fit_intercept:
        shift = datafit.intercept_shift(Z, Y, sw)
        W[p] += shift
        Z += shift
    R_w = penalty.value(W[:p])
    dloss = datafit.derivative(Z, Y)
    E = dloss * sw[:, None]
    f = float(sw @ datafit.loss(Z, Y)) / n
    draw = None
    if diagnostic is None:
        G = problem.gradient(E)
    else:
        draw, G, G_trial, E_trial = _trial_pass(problem, penalty, W, R_w, Z, E, diagnostic)
    objective = f + R_w
    measure = _stationarity_measure(problem, penalty, W, R_w, G)
    kappa = penalty.dual_scale(G[:p])
    gap = math.nan
    if kappa is not None:
        dual = -float(sw @ datafit.conjugate(kappa * dloss, Y)) / n
        gap = max(objective - dual, 0.0)
        criterion = gap / objective if objective > 0 else 0.0
    else:
        scale = _null_scale(problem, penalty) if scale is None else scale
        criterion = measure / scale if scale > 0 else (0.0 if measure == 0 else math.inf)
    ck = Checkpoint(W, R_w, objective, G, E, measure, gap, criterion)
    if draw is not None:
        ck.record = _theorem4_terms(problem, penalty, ck, draw, G_trial, E_trial, diagnostic)
    return ck


def _trial_pass(problem, penalty, W, R_w, Z, E, diagnostic):
    """A step drawn at W, and the full gradients at W and at w + s in one pass."""
    n, b = problem.n, diagnostic["batch_size"]
    idx = np.sort(diagnostic["rng"].choice(n, size=min(b, n), replace=False))
    draw = draw_step(problem, penalty, W, R_w, diagnostic["sigma"], idx, diagnostic["ref"])
    Z_trial = Z + problem.predict(draw.S)
    K = problem.K
    E_trial = problem.datafit.derivative(Z_trial, problem.Y) * problem.sw[:, None]
    both = problem.gradient(np.concatenate([E, E_trial], axis=1))
    return draw, both[:, :K], both[:, K:], E_trial


def _theorem4_terms(problem, penalty, ck, draw, G_trial, E_trial, diagnostic):
    """The diagnostics' row: dist in user coordinates; the Theorem 4 terms in the metric."""
    ref, b = diagnostic["ref"], min(diagnostic["batch_size"], problem.n)
    if diagnostic["variance_estimate"] == "batch":
        V = _in_batch_variance(problem, draw, ref)
    elif ref is not None and ref.svrg:
        V = _exact_variance(problem, ck.D - ref.D, ck.G - ref.mu, b)
    else:
        V = _exact_variance(problem, ck.D, ck.G, b)
    trial_sq = _subdiff_dist_sq(problem, penalty, draw.W_trial, G_trial)
    return dict(
        objective=ck.objective,
        nnz=int(np.count_nonzero(ck.W[: problem.p])),
        measure=ck.measure,
        gap=ck.gap,
        criterion=ck.criterion,
        lipschitz=problem.lipschitz(),
        variance=V,
        dist=math.sqrt(float(_subdiff_dist_sq(problem, penalty, ck.W, ck.G).sum())),
        dist_trial=math.sqrt(float(np.dot(trial_sq, problem.inv_metric))),
        trial_step_sq=draw.step_sq,
        trial_grad_error_sq=_dual_sq(problem, ck.G - draw.g),
    )


def svrg_sigma_floor(problem, b):
    """L / (2 b), in the metric: rho is measured on the minibatch alone, which cannot see
    curvature the batch lacks, so steps are kept within 2 b / L (the full-gradient
    stability limit 2 / L for b = 1, relaxed as batches see more). This is not always
    enough: with very uneven rows (one row 118 times heavier than the mean, seen on a
    working set's subproblem) a batch without the heavy rows looks linear along the
    coordinates it does not touch, sigma falls below the SVRG estimator's stability limit
    and the iterates drift away. :func:`solve` then undoes the epoch (F rose over it) and
    raises the floor. A floor at that limit from the start (about L_max / b) made
    well-conditioned fits several times slower and held nonconvex penalties at zero.
    With the full batch (deterministic R2) there is no floor.
    """
    if b >= problem.n:
        return 0.0  # full batch: the ratio sees the whole objective, no floor is needed
    return problem.lipschitz() / (2.0 * max(1, b))


def with_floor(rule, floor):
    """``rule`` with sigma_min raised to ``floor`` (and sigma_max at least as high)."""
    if floor <= rule.sigma_min or not math.isfinite(floor):
        return rule
    return replace(rule, sigma_min=floor, sigma_max=max(rule.sigma_max, floor))


# -- the loop ----------------------------------------------------------------------------
@dataclass
class _Settings:
    max_epochs: int
    tol: float | None
    variance_reduction: str | None
    checkpoint_every: int = 1
    variance_estimate: str = "exact"
    lazy: bool = True
    light: bool = False
    scale: float | None = None
    verbose: int = 0


class _StepLog:
    """The accepted steps since the last checkpoint and the largest sigma so far."""

    def __init__(self, sigma):
        self.sigma_max = sigma
        self.accepted = []

    def add(self, trace):
        self.sigma_max = max(self.sigma_max, float(trace[:, 0].max(initial=0.0)))
        self.accepted.extend(trace[trace[:, 2] > 0, 3].tolist())

    def take(self):
        steps, self.accepted = self.accepted, []
        if not steps:
            return math.nan, math.nan
        return float(np.mean(steps)), math.sqrt(max(steps))


def _rule_params(rule):
    # The ratio's rounding guard uses float64's epsilon: the iterate, the predictions and
    # every sum are float64 whatever the dtype of X.
    eps = float(np.finfo(np.float64).eps)
    return RuleParams(rule.eta1, rule.eta2, rule.gamma1, rule.gamma3, rule.sigma_min,
                      rule.sigma_max, eps)  # fmt: skip


def _epoch(problem, penalty, W, R_w, sigma, b, ref, rng, settings, rule):
    """One compiled epoch: random reshuffling of blocks of the pre-shuffled rows (a random
    shift of the block edges and a random block order). Returns (W, R, sigma, trace,
    clamps, norm test failures, norm tests)."""
    n = problem.n
    shift = int(rng.integers(b)) if b < n else 0
    edges = np.unique(np.r_[0, np.arange(shift, n, b), n]).astype(np.int64)
    order = rng.permutation(edges.size - 1).astype(np.int64)
    theta = NORM_TEST_THETA if settings.variance_reduction == "growing_batch" else 0.0
    lazy = settings.lazy and penalty.lazy_exact
    plan = EpochPlan(edges, order, lazy, theta)
    state = EpochState(W, np.array([sigma, R_w]))
    trace = np.empty((order.size, 7))
    if ref is None:
        ref = Reference(False, np.zeros((1, problem.K)), np.zeros((problem.n_rows, problem.K)))
    clamps, _, failed, tested = sr2_epoch(problem.data, problem.datafit.kernel(),
                                          penalty.kernel(), _rule_params(rule),
                                          state, ref, plan, trace)  # fmt: skip
    return W, float(state.scalars[1]), float(state.scalars[0]), trace, clamps, failed, tested


def solve(problem, penalty, state, rule, *, max_epochs, tol, variance_reduction, rng,
          diagnostics, checkpoint_every=1, variance_estimate="exact", verbose=0, lazy=True,
          reference=None, light=False, scale=None, stability_floor=True,
          min_epochs=0):  # fmt: skip
    """Run SR2 for at most ``max_epochs`` epochs from ``state``; returns a new state.

    Stops at a checkpoint whose scale-free criterion (see :func:`checkpoint`) is at most
    ``tol`` (``tol=None``: never); a start that already meets it takes no step. Checkpoints
    are recorded in ``diagnostics`` every ``checkpoint_every`` epochs and at the returned
    point. ``reference`` (per-sample derivatives and the gradient at ``state.W``, in the
    caller's row order) replaces the first data pass under SVRG; ``light=True`` records no
    checkpoint (the working set's inner solves, whose full-problem checkpoints are the
    ones reported); ``scale`` fixes the nonconvex criterion's scale;
    ``stability_floor`` raises sigma_min to :func:`svrg_sigma_floor` under SVRG; at least
    ``min_epochs`` epochs are run (a fresh fit runs one: for a nonconvex penalty w = 0 is
    often stationary at the criterion's step 1/L, yet SR2's own first steps, longer, leave
    it). ``state`` and
    ``diagnostics``' past records are not modified; the new checkpoints and steps are
    appended to ``diagnostics``.
    """
    s = _Settings(max_epochs, tol, variance_reduction, checkpoint_every, variance_estimate,
                  lazy, light, scale, verbose)  # fmt: skip
    work = problem.shuffled(rng) if max_epochs > 0 else problem
    W = np.array(state.W, dtype=np.float64)
    if not math.isfinite(penalty.value(W[: problem.p])):
        # A start outside an indicator's domain (e.g. L0Ball): project it first.
        W[: problem.p] = penalty.prox(W[: problem.p], 1.0)
    sigma, b = state.sigma, state.batch_size
    svrg = variance_reduction == "svrg"
    if svrg and stability_floor and max_epochs > 0:
        rule = with_floor(rule, svrg_sigma_floor(problem, b))
        sigma = max(sigma, rule.sigma_min)
    n_steps, n_epochs = state.n_steps, state.n_epochs
    diag_rng = np.random.default_rng(rng.integers(2**32))
    ref = None
    if reference is not None:
        order = slice(None) if work.order is None else work.order
        ref = Reference(True, np.ascontiguousarray(reference[0][order]), reference[1])
    log = _StepLog(sigma)
    converged = False
    ck = prev = None  # the checkpoint at W (None once W moved), the last one passed
    epochs = 0
    while True:
        due = _checkpoint_due(epochs, s, diagnostics)
        if due or (svrg and epochs > 0):
            full = due and not light
            ck = _checkpoint(work, penalty, W, sigma, b, ref, s, diag_rng, full)
            if svrg and prev is not None and _went_up(ck.objective, prev.objective):
                # An unstable SVRG epoch (steps too long for the estimator's drift, which
                # the batch ratio cannot see): back to where it started, longer sigma floor.
                W, ck = prev.W.copy(), prev
                rule = with_floor(rule, _RESTART_FACTOR * rule.sigma_min)
                sigma = rule.sigma_min
                diagnostics.n_restarts += 1
                if full:
                    ck = _checkpoint(work, penalty, W, sigma, b, ref, s, diag_rng, True)
            prev = ck
            W = ck.W
            if full:
                _record(diagnostics, ck, sigma, b, log, n_steps, n_epochs, s.verbose)
            converged = tol is not None and ck.criterion <= tol and epochs >= min_epochs
            if svrg:
                ref = Reference(True, ck.D, ck.G)
        if converged or epochs >= max_epochs:
            break
        ck = None
        if svrg and ref is None:
            ck = prev = _checkpoint(work, penalty, W, sigma, b, ref, s, diag_rng, False)
            W, ref = ck.W, Reference(True, ck.D, ck.G)
        R_w = penalty.value(W[: problem.p])
        W, R_w, sigma, trace, clamps, failed, tested = _epoch(
            work, penalty, W.copy(), R_w, sigma, b, ref, rng, s, rule)  # fmt: skip
        ck = None
        log.add(trace)
        diagnostics.n_sigma_clamps += clamps
        diagnostics.record_trace(n_steps + 1, n_epochs + 1, trace)
        n_steps += trace.shape[0]
        n_epochs += 1
        epochs += 1
        if tested and failed > tested / 2 and b < problem.n:
            b = min(problem.n, 2 * b)
    if not light:
        diagnostics.converged = bool(converged)
    grad = derivatives = None
    if ck is not None:
        grad = ck.G
        derivatives = ck.D if work.order is None else _unshuffle(ck.D, work.order)
    return SolverState(W, sigma, b, n_steps, n_epochs, grad=grad, derivatives=derivatives)


def _checkpoint_due(epochs, s, diagnostics):
    """At the end, every ``checkpoint_every`` epochs, and at the start when the criterion
    must be checked or nothing has been recorded yet (``partial_fit`` calls after the
    first skip it)."""
    if epochs == s.max_epochs:
        return True
    if epochs == 0:
        return s.tol is not None or (not s.light and diagnostics.n_checkpoints == 0)
    return epochs % s.checkpoint_every == 0


def _unshuffle(D, order):
    out = np.empty_like(D)
    out[order] = D
    return out


# An SVRG epoch that raised F(w) is undone and the sigma floor multiplied by this.
_RESTART_FACTOR = 4.0


def _went_up(new, old):
    """F rose over an epoch by more than rounding (or became non-finite)."""
    return not new <= old + 1e-6 * abs(old)


def _checkpoint(problem, penalty, W, sigma, b, ref, s, rng, full):
    """A checkpoint at W, with the diagnostics' Theorem 4 terms when ``full``."""
    diagnostic = None
    if full:
        diagnostic = dict(sigma=sigma, batch_size=b, ref=ref, rng=rng,
                          variance_estimate=s.variance_estimate)  # fmt: skip
    return checkpoint(problem, penalty, W, scale=s.scale, diagnostic=diagnostic)


def _record(diagnostics, ck, sigma, b, log, n_steps, n_epochs, verbose):
    step_sq, step_max = log.take()
    diagnostics.record_checkpoint(iteration=n_steps, epoch=n_epochs, sigma=sigma,
                                  batch_size=b, step_sq=step_sq, step_max=step_max,
                                  sigma_max=max(log.sigma_max, sigma), **ck.record)  # fmt: skip
    if verbose:
        print(f"[SR2] epoch {n_epochs:4d}  F = {ck.objective:.8e}  criterion = "
              f"{ck.criterion:.3e}  sigma = {sigma:.3e}  nnz = {ck.record['nnz']}")  # fmt: skip

