"""The NumPy SR2 solver for regularised linear models (a pure function of its inputs).

Variables are stored as ``W`` of shape ``(n_features + fit_intercept, K)``: the first
``n_features`` rows are penalised coefficients, the optional last row is the intercept
in scaled units (intercept = ``intercept_scale * W[-1]``; see :class:`LinearProblem`).
"""

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from ._kernel import kernel_codes, sr2_epoch
from ._rule import SR2Rule

__all__ = ["LinearProblem", "SolverState", "solve"]

VARIANCE_REDUCTIONS = ("svrg", "growing_batch")
# Norm test of the growing batch: grow when the in-batch variance of the mean gradient
# exceeds THETA^2 times the squared prox-gradient step (||sigma s||^2), in more than
# half of an epoch's steps.
NORM_TEST_THETA = 0.9


def _product(A, B):
    """A @ B for a 2-D B. Dense BLAS runs a skinny product with 2 or 3 columns several
    times slower than as many matrix-vector products (measured: 100k x 100 times 2
    columns, 48 ms against 31 ms), so those are done column by column."""
    if B.shape[1] in (2, 3) and not sp.issparse(A):
        return np.column_stack([A @ B[:, j] for j in range(B.shape[1])])
    return np.asarray(A @ B)


class LinearProblem:
    """Data of f(w) = sum_i s_i l(x_i . w + b, y_i) / n for one solver call.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n, p)
    Y : ndarray of shape (n, K), targets encoded for ``datafit``
    sample_weight : ndarray of shape (n,), normalised to mean 1
    datafit : a datafit of :mod:`sr2learn.datafits`
    intercept_scale : float
        0 for no intercept. Otherwise the intercept is fitted as ``intercept_scale * beta``
        (a column of that constant appended to X, never materialised). Chosen as the
        largest root-mean-square column of X, so the intercept is as well conditioned
        as the best-scaled feature; the optimum is unchanged since it is unpenalised.
    """

    def __init__(self, X, Y, sample_weight, datafit, intercept_scale):
        self.X = X
        self.Y = Y
        self.sw = sample_weight
        self.datafit = datafit
        self.c = float(intercept_scale)
        self.fit_intercept = self.c > 0
        self.n, self.p = X.shape
        self.K = Y.shape[1]
        self.dtype = X.dtype
        self._row_norms_sq = None
        self._lipschitz = None

    @property
    def n_rows(self):
        return self.p + int(self.fit_intercept)

    # -- linear algebra on X~ = [X, c 1] --------------------------------------------------
    def linear(self, XB, W):
        Z = _product(XB, W[: self.p])
        if self.fit_intercept:
            Z = Z + self.c * W[self.p]
        return Z

    def transpose(self, XB, D):
        G = np.empty((self.n_rows, D.shape[1]), dtype=D.dtype)
        G[: self.p] = _product(XB.T, D)
        if self.fit_intercept:
            G[self.p] = self.c * D.sum(axis=0)
        return G

    def rows(self, idx):
        return self.X[idx], self.Y[idx], self.sw[idx]

    def shuffled(self, rng):
        """The same problem with its rows in a random order (one copy of the data).

        Minibatches are then contiguous slices (views for dense X): no per-step copy of
        X_B. Every full-data quantity (f, grad f, L, V) is invariant to the row order.
        """
        order = rng.permutation(self.n)
        other = LinearProblem(self.X[order], self.Y[order], self.sw[order], self.datafit, self.c)
        other.order = order
        other._lipschitz = self._lipschitz
        if self._row_norms_sq is not None:
            other._row_norms_sq = self._row_norms_sq[order]
        return other

    @property
    def row_norms_sq(self):
        """||x~_i||^2 per sample (one pass over X, cached)."""
        if self._row_norms_sq is None:
            if sp.issparse(self.X):
                sq = _sparse_row_sq_norms(self.X)
            else:
                sq = np.einsum("ij,ij->i", self.X, self.X)
            self._row_norms_sq = sq + self.c**2
        return self._row_norms_sq

    def lipschitz(self):
        """Exact bound on the Lipschitz constant of grad f: curvature * ||S^(1/2) X~||_2^2 / n."""
        if self._lipschitz is None:
            self._lipschitz = self.datafit.curvature * _largest_eig_gram(self) / self.n
        return self._lipschitz

    def curvature_estimate(self, idx, n_power=15, seed=0):
        """Cheap curvature of f_B on the rows ``idx``: a few power iterations."""
        XB, _, swB = self.rows(idx)
        v = np.random.default_rng(seed).standard_normal((self.n_rows, 1)).astype(self.dtype)
        lam = 0.0
        for _ in range(n_power):
            v /= np.linalg.norm(v)
            u = self.linear(XB, v) * swB[:, None]
            v = self.transpose(XB, u) / swB.shape[0]
            lam = float(np.linalg.norm(v))
            if lam == 0.0:
                break
        return self.datafit.curvature * lam


def _sparse_row_sq_norms(X):
    """||x_i||^2 of each row of a sparse matrix, from its stored entries (no squared copy
    of X as a sparse matrix)."""
    X = X.tocsr()
    counts = np.diff(X.indptr)
    sq = np.zeros(X.shape[0], dtype=np.float64)
    rows = np.flatnonzero(counts)
    if rows.size:
        sq[rows] = np.add.reduceat(np.square(X.data, dtype=np.float64), X.indptr[rows])
    return sq


def _largest_eig_gram(problem):
    """Largest eigenvalue of X~^T S X~ (S = diag(sample_weight)), exact up to rounding."""
    X, c, sw = problem.X, problem.c, problem.sw.astype(np.float64)
    n, p = X.shape
    root = np.sqrt(sw)
    small = min(n, problem.n_rows)
    # Sparse X: Lanczos with 6 vectors converges in 7-10 products on the benchmark sets
    # (a 124-column Gram product by scipy took longer). Dense X: the Gram matrix by BLAS.
    if small <= (16 if sp.issparse(X) else 1500):
        # Small side: form the Gram matrix densely and take its top eigenvalue.
        A = sp.diags(root) @ X if sp.issparse(X) else X * root[:, None]
        if n <= problem.n_rows:
            gram = A @ A.T
            gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram, dtype=np.float64)
            if problem.fit_intercept:
                gram = gram + c**2 * np.outer(root, root)
        else:
            gram = A.T @ A
            gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram, dtype=np.float64)
            if problem.fit_intercept:
                col = np.asarray(A.T @ root).ravel() * c
                corner = np.array([[c**2 * sw.sum()]])
                gram = np.block([[gram, col[:, None]], [col[None, :], corner]])
        return float(np.linalg.eigvalsh(gram)[-1])

    def matvec(v):
        v = np.asarray(v, dtype=np.float64).reshape(-1, 1)
        u = problem.linear(X, v) * sw[:, None]
        return problem.transpose(X, u).ravel()

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
    derivatives: np.ndarray | None = None  # s_i l'(z_i) at W (SVRG), in the caller's row order


@dataclass
class _Reference:
    """SVRG reference point: full gradient ``mu`` and per-sample derivatives ``D``."""

    D: np.ndarray
    mu: np.ndarray


def _reference(problem, W):
    """The SVRG reference at W: one full gradient pass."""
    _, grads, Ds = _full_pass(problem, [W], with_value=False)
    return _Reference(Ds[0], grads[0])


@dataclass
class _Draw:
    """One SR2 step drawn at W on a minibatch (not yet accepted or rejected)."""

    XB: object
    YB: np.ndarray
    swB: np.ndarray
    ZB: np.ndarray
    DB: np.ndarray  # s_i l'(z_i) / m: the batch gradient is X~_B^T DB
    f_batch: float
    g: np.ndarray
    S: np.ndarray
    W_trial: np.ndarray
    R_trial: float
    xi: float
    per_sample_D: np.ndarray  # s_i l'(z_i), for the norm test
    dloss: np.ndarray  # l'(z_i), reused by the Bregman term


def _prox_step(problem, penalty, W, g, sigma):
    """s = prox_{R/sigma}(w - g/sigma) - w; the intercept row is never penalised."""
    V = W - g / sigma
    W_trial = V.copy()
    W_trial[: problem.p] = penalty.prox(V[: problem.p], 1.0 / sigma)
    return W_trial


def _model_step(problem, penalty, W, R_w, g, sigma):
    """The SR2 step for gradient g: (w + s, s, R(w + s), xi)."""
    W_trial = _prox_step(problem, penalty, W, g, sigma)
    S = W_trial - W
    R_trial = penalty.value(W_trial[: problem.p])
    xi = SR2Rule.model_decrease(R_w, R_trial, float(np.vdot(g, S)), float(np.vdot(S, S)), sigma)
    return W_trial, S, R_trial, xi


def _draw(problem, penalty, W, R_w, sigma, idx, ref):
    XB, YB, swB = problem.rows(idx)
    m = swB.shape[0]
    ZB = problem.linear(XB, W)
    datafit = problem.datafit
    dloss = datafit.derivative(ZB, YB)
    per_sample_D = dloss * swB[:, None]
    DB = per_sample_D / m
    f_batch = float(np.dot(swB, datafit.loss(ZB, YB))) / m
    if ref is None:
        g = problem.transpose(XB, DB)
    else:
        # SVRG: g = g_B(w) - g_B(w~) + grad f(w~), with one product by X_B^T.
        g = problem.transpose(XB, DB - ref.D[idx] / m) + ref.mu
    W_trial, S, R_trial, xi = _model_step(problem, penalty, W, R_w, g, sigma)
    return _Draw(XB, YB, swB, ZB, DB, f_batch, g, S, W_trial, R_trial, xi, per_sample_D, dloss)


def _full_pass(problem, Ws, with_value=True):
    """f at ``Ws[0]`` and the gradients of f at each W in ``Ws``, with one read of X.

    Returns (f(Ws[0]) or None, gradients, per-sample derivatives s_i l'(z_i)).
    """
    K = problem.K
    Wcat = np.concatenate(Ws, axis=1)
    Z = problem.linear(problem.X, Wcat)
    value = None
    if with_value:
        value = float(np.dot(problem.sw, problem.datafit.loss(Z[:, :K], problem.Y))) / problem.n
    Ds = []
    for j in range(len(Ws)):
        Zj = Z[:, j * K : (j + 1) * K]
        Ds.append(problem.datafit.derivative(Zj, problem.Y) * problem.sw[:, None])
    G = problem.transpose(problem.X, np.concatenate(Ds, axis=1) / problem.n)
    grads = [G[:, j * K : (j + 1) * K] for j in range(len(Ws))]
    return value, grads, Ds


def _subdiff_dist(problem, penalty, W, G):
    d = penalty.subdiff_distance(W[: problem.p], G[: problem.p])
    total = float(np.sum(np.square(d, dtype=np.float64)))
    if problem.fit_intercept:
        total += float(np.sum(np.square(G[problem.p], dtype=np.float64)))
    return math.sqrt(total)


def _in_batch_variance(norms_sq, E, mean, n):
    """Unbiased estimate of the variance of a batch mean of m per-sample gradients
    h_i = x~_i e_i^T drawn without replacement from n: (1 - m/n) / (m (m - 1)) times
    sum_i ||h_i - mean||^2, with ||h_i||^2 = ||x~_i||^2 ||e_i||^2 (rank one)."""
    m = E.shape[0]
    if m <= 1 or m >= n:
        return 0.0
    total = float(np.dot(norms_sq, np.einsum("ij,ij->i", E, E))) - m * float(np.vdot(mean, mean))
    return (1.0 - m / n) / (m * (m - 1)) * max(total, 0.0)


def _batch_variance(problem, draw, ref, idx):
    """In-batch estimate of E||grad f(w) - g||^2 from the draw's own rows, for the
    estimator in use (per-sample gradients minus the reference's under SVRG)."""
    E = draw.per_sample_D if ref is None else draw.per_sample_D - ref.D[idx]
    mean = draw.g if ref is None else draw.g - ref.mu
    XB = draw.XB
    if sp.issparse(XB):
        norms = _sparse_row_sq_norms(XB)
    else:
        norms = np.einsum("ij,ij->i", XB, XB)
    return _in_batch_variance(norms + problem.c**2, E, mean, problem.n)


def _stationarity_measure(problem, penalty, W, R_w, G, sigma):
    """R2's sqrt(sigma * xi) for the full-gradient step at ``sigma`` (the number tol is
    compared to). The solvers pass sigma = L, so the measure does not move with the
    adaptive sigma: it is the norm of the proximal-gradient mapping with step 1/L."""
    xi = _model_step(problem, penalty, W, R_w, G, sigma)[3]  # xi >= 0 by its floor
    return math.sqrt(sigma * xi)


def _exact_variance(problem, E, mean_grad, batch_size):
    """E||grad f(w) - g||^2 for the batch mean of per-sample gradients x~_i e_i^T.

    ``E`` holds s_i l'(z_i) (minus the reference's, under SVRG); a batch of b samples
    drawn without replacement from n has variance (n - b) / (b (n - 1)) sigma^2.
    """
    n = problem.n
    if n <= 1 or batch_size >= n:
        return 0.0
    second = float(np.dot(problem.row_norms_sq, np.einsum("ij,ij->i", E, E))) / n
    pop = max(0.0, second - float(np.vdot(mean_grad, mean_grad)))
    return (n - batch_size) / (batch_size * (n - 1)) * pop


def _nnz(problem, W):
    return int(np.count_nonzero(W[: problem.p]))


class _CompiledData:
    """The arrays the compiled epoch reads (made once per solver call)."""

    def __init__(self, problem, codes):
        X = problem.X
        self.dense = not sp.issparse(X)
        if self.dense:
            self.data = np.ascontiguousarray(X).reshape(-1)
            self.indices = self.indptr = np.zeros(1, dtype=np.int32)
        else:
            X = X.tocsr()
            self.data, self.indices, self.indptr = X.data, X.indices, X.indptr
        self.y = np.ascontiguousarray(problem.Y[:, 0])
        self.loss, self.pen = codes


def _compiled_epoch(problem, penalty, data, W, R_w, sigma, edges, order, ref, rule, eps, lazy,
                    diagnostics, state):  # fmt: skip
    """All steps of one epoch in the compiled kernel; returns (W, sigma, trace)."""
    w = np.array(W[:, 0], dtype=W.dtype)
    n_batches = order.size
    trace = [np.empty(n_batches) for _ in range(7)]
    if ref is None:
        refD, mu = np.zeros(0, dtype=W.dtype), np.zeros(problem.n_rows, dtype=W.dtype)
    else:
        refD, mu = np.ascontiguousarray(ref.D[:, 0]), np.ascontiguousarray(ref.mu[:, 0])
    _, sigma, clamps, _ = sr2_epoch(
        data.dense, data.data, data.indices, data.indptr, problem.p, data.y, problem.sw,
        problem.c, data.loss, data.pen, float(penalty.alpha), w, R_w, sigma,
        edges.astype(np.int64), order.astype(np.int64), refD, mu, ref is not None, lazy,
        rule.eta1, rule.eta2, rule.gamma1, rule.gamma3, rule.sigma_min, rule.sigma_max, eps,
        *trace,
    )  # fmt: skip
    diagnostics.n_sigma_clamps += clamps
    diagnostics.record_steps(state.n_steps + 1, state.n_epochs + 1, *trace)
    state.n_steps += n_batches
    return w[:, None], sigma, trace


def solve(
    problem,
    penalty,
    state,
    rule,
    *,
    max_epochs,
    tol,
    variance_reduction,
    rng,
    diagnostics,
    checkpoint_every=1,
    variance_estimate="exact",
    tol_scale=None,
    verbose=0,
    compiled=True,
    lazy=True,
    reference=None,
    light=False,
):
    """Run SR2 for at most ``max_epochs`` epochs from ``state``; returns the new state.

    Stops when the stationarity measure sqrt(sigma * xi) of a full-gradient step is at
    most ``tol * diagnostics.tol_scale`` (``tol=None``: never; the scale is
    max(1, ||grad f||) at the start unless ``tol_scale`` is given). Checkpoints are recorded
    in ``diagnostics`` every ``checkpoint_every`` epochs and at the returned point; their
    variance V is exact (all per-sample gradients, ``variance_estimate="exact"``) or the
    unbiased in-batch estimate from the checkpoint's own draw (``"batch"``).

    With ``compiled=True`` the steps of an epoch run in the compiled kernel of
    :mod:`sr2learn._kernel` where it applies (single output, squared or logistic loss, l1 or
    l0, SVRG or none), visiting only the coordinates a batch touches plus the active ones
    (``lazy=True``) or every coordinate (``lazy=False``, for testing): the same iterates as
    the NumPy steps up to rounding.

    ``reference`` (per-sample derivatives s_i l'(z_i) and the gradient at ``state.W``, in
    the caller's row order) replaces the first checkpoint's data pass under SVRG, and
    ``light=True`` reduces the checkpoints to the full gradient and the measure, recorded
    nowhere: both serve the inner solves of the working set, whose own full-problem
    checkpoints are the ones reported.
    """
    if max_epochs > 0:
        problem = problem.shuffled(rng)
    n, p = problem.n, problem.p
    W = state.W.copy()
    sigma = state.sigma
    b = state.batch_size
    eps = float(np.finfo(problem.dtype).eps)
    R_w = penalty.value(W[:p])
    if not math.isfinite(R_w):
        # A start outside an indicator's domain (e.g. L0Ball): project it first.
        W[:p] = penalty.prox(W[:p], 1.0)
        R_w = penalty.value(W[:p])
    diag_rng = np.random.default_rng(rng.integers(2**32))
    svrg = variance_reduction == "svrg"
    codes = kernel_codes(problem, penalty, variance_reduction) if compiled else None
    data = _CompiledData(problem, codes) if codes is not None and max_epochs > 0 else None
    ref = None
    sigma_max_seen = sigma  # for C = 3 (L^2 + sigma_max^2)
    accepted_steps = []
    tol_abs = None
    last_grad = None

    def measure_at(G):
        L = problem.lipschitz()
        return _stationarity_measure(problem, penalty, W, R_w, G, L if L > 0 else sigma)

    def light_checkpoint():
        nonlocal ref, last_grad
        _, grads, Ds = _full_pass(problem, [W], with_value=False)
        last_grad = grads[0]
        if svrg:
            ref = _Reference(Ds[0], last_grad)
        measure = measure_at(last_grad)
        return tol is not None and measure <= tol * (1.0 if tol_scale is None else tol_scale)

    def checkpoint():
        nonlocal ref, tol_abs, last_grad
        if light:
            return light_checkpoint()
        idx = np.sort(diag_rng.choice(n, size=min(b, n), replace=False))
        if svrg and ref is None:
            # No reference yet: the pass at W is the reference (and the checkpoint's own).
            value, (G,), (D,) = _full_pass(problem, [W])
            ref = _Reference(D, G)
            draw = _draw(problem, penalty, W, R_w, sigma, idx, ref)
            _, (G_trial,), _ = _full_pass(problem, [draw.W_trial], with_value=False)
            Ds = [D]
        else:
            draw = _draw(problem, penalty, W, R_w, sigma, idx, ref)
            value, (G, G_trial), Ds = _full_pass(problem, [W, draw.W_trial])
        L = problem.lipschitz()
        measure = measure_at(G)
        if variance_estimate == "batch":
            V = _batch_variance(problem, draw, ref, idx)
        elif svrg:
            V = _exact_variance(problem, Ds[0] - ref.D, G - ref.mu, min(b, n))
        else:
            V = _exact_variance(problem, Ds[0], G, min(b, n))
        smax = sigma_max_seen
        C = 3.0 * (L**2 + smax**2)
        step_sq = float(np.mean(accepted_steps)) if accepted_steps else math.nan
        diagnostics.record_checkpoint(
            iteration=state.n_steps,
            epoch=state.n_epochs,
            objective=value + R_w,
            nnz=_nnz(problem, W),
            sigma=sigma,
            batch_size=b,
            step_sq=step_sq,
            step_max=math.sqrt(max(accepted_steps)) if accepted_steps else math.nan,
            measure=measure,
            lipschitz=L,
            sigma_max=smax,
            variance=V,
            dist=_subdiff_dist(problem, penalty, W, G),
            dist_trial=_subdiff_dist(problem, penalty, draw.W_trial, G_trial),
            bound=C * float(np.vdot(draw.S, draw.S)) + 3.0 * float(np.sum((G - draw.g) ** 2)),
            bound_expected=C * step_sq + 3.0 * V,
        )
        accepted_steps.clear()
        if tol_abs is None and tol is not None:
            if tol_scale is None:
                diagnostics.tol_scale = max(1.0, float(np.linalg.norm(G)))
            else:
                diagnostics.tol_scale = tol_scale
            tol_abs = tol * diagnostics.tol_scale
            diagnostics.tol = tol_abs
        last_grad = G
        if svrg:
            ref = _Reference(Ds[0], G)  # the next epoch's reference, free here
        if verbose:
            print(
                f"[SR2] epoch {state.n_epochs:4d}  F = {value + R_w:.8e}  measure = "
                f"{measure:.3e}  sigma = {sigma:.3e}  nnz = {_nnz(problem, W)}"
            )
        return tol_abs is not None and measure <= tol_abs

    if reference is not None:
        order = getattr(problem, "order", slice(None))
        ref = _Reference(reference[0][order], reference[1])
    elif diagnostics.n_steps == 0:
        checkpoint()  # recorded, but a fit always runs at least one epoch
    converged = False
    if svrg and ref is None and max_epochs > 0:
        ref = _reference(problem, W)
    epochs_run = 0
    while not converged and epochs_run < max_epochs:
        # Random reshuffling of blocks of the pre-shuffled rows: a random shift of the block
        # edges and a random block order each epoch.
        shift = int(rng.integers(b)) if b < n else 0
        edges = np.unique(np.r_[0, np.arange(shift, n, b), n])
        violations = 0
        n_batches = 0
        order = rng.permutation(edges.size - 1)
        if data is not None:
            W, sigma, trace = _compiled_epoch(
                problem, penalty, data, W, R_w, sigma, edges, order, ref, rule, eps, lazy,
                diagnostics, state,
            )  # fmt: skip
            sigma_max_seen = max(sigma_max_seen, float(trace[0].max()), sigma)
            accepted_steps.extend(trace[3][trace[2] > 0].tolist())
            R_w = penalty.value(W[:p])  # afresh: the kernel kept it by increments
        else:
            for k in order:
                idx = slice(int(edges[k]), int(edges[k + 1]))
                d = _draw(problem, penalty, W, R_w, sigma, idx, ref)
                ZS = problem.linear(d.XB, d.S)
                m = d.swB.shape[0]
                # Decrease of the batch objective, F_B(w) - F_B(w+s) = xi - D_B(w+s, w) with
                # D_B the Bregman divergence of f_B; under SVRG the same formula is the
                # decrease of the consistent surrogate f_B(w) + <grad f(w~) - g_B(w~), w>,
                # whose gradient at w is exactly g. D_B is summed per sample without
                # cancellation, so rho stays meaningful when steps reach rounding level.
                breg = problem.datafit.bregman(d.ZB, ZS, d.YB, d.dloss)
                bregman = float(np.dot(d.swB, breg)) / m
                actual = d.xi - bregman
                objective = d.f_batch + R_w
                rho = rule.ratio(actual, d.xi, objective, eps)
                accepted, new_sigma, clamped = rule.update(rho, sigma)
                step_sq = float(np.vdot(d.S, d.S))
                if accepted:
                    W, R_w = d.W_trial, d.R_trial
                    accepted_steps.append(step_sq)
                if variance_reduction == "growing_batch" and m > 1:
                    var = _in_batch_variance(problem.row_norms_sq[idx], d.per_sample_D, d.g, n)
                    violations += var > NORM_TEST_THETA**2 * sigma**2 * step_sq
                    n_batches += 1
                state.n_steps += 1
                diagnostics.n_sigma_clamps += clamped
                diagnostics.record_step(
                    state.n_steps,
                    state.n_epochs + 1,
                    sigma,
                    rho,
                    float(accepted),
                    step_sq,
                    d.xi,
                    objective,
                    _nnz(problem, W),
                )
                sigma = new_sigma
                sigma_max_seen = max(sigma_max_seen, sigma)
        state.n_epochs += 1
        epochs_run += 1
        if n_batches and violations > n_batches / 2 and b < n:
            b = min(n, 2 * b)
        last = epochs_run == max_epochs
        if last or epochs_run % checkpoint_every == 0:
            converged = checkpoint()
        elif svrg:
            ref = _reference(problem, W)
    diagnostics.converged = bool(converged)
    derivatives = None
    if ref is not None and last_grad is ref.mu:
        derivatives = ref.D
        order = getattr(problem, "order", None)
        if order is not None:
            derivatives = np.empty_like(ref.D)
            derivatives[order] = ref.D
    return SolverState(W, sigma, b, state.n_steps, state.n_epochs, grad=last_grad,
                       derivatives=derivatives)  # fmt: skip
