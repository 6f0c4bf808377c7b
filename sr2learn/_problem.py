"""The data of one solver call: a linear model's f(w) = sum_i s_i l(x_i . w + b, y_i) / n.

Holds X (dense or CSR, float64 or float32, never copied to float64), the encoded targets,
the sample weights and the datafit; gives the compiled full passes (predictions, gradient),
the exact Lipschitz bound and the diagonal metric of the steps (``column_metric``), in which
the iterates do not depend on the units of the columns.

X is held as the caller gave it: no pass over the data makes a copy of X or a temporary of
its size (the compiled passes read it in place, and the Gram matrix of the Lipschitz bound
is summed over slices of rows), so a fit's memory is X plus arrays of n or p entries.
"""

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from ._engine import (
    AllColumns,
    ColumnSubset,
    EngineData,
    column_moments,
    csr_columns,
    gradient_into,
    gradient_pair_into,
    gram_matvec_into,
    predict_into,
    row_norms_into,
)

__all__ = ["LinearProblem", "column_metric", "data_nbytes"]

# A working set's columns are copied when the copy is at most this fraction of X, or at
# most RESTRICTED_COPY_ARRAYS arrays of the coefficients' size (see LinearProblem.restricted).
RESTRICTED_COPY_FRACTION = 0.1
RESTRICTED_COPY_ARRAYS = 12


def data_nbytes(X):
    """The bytes of X's arrays (for CSR: data, indices and indptr)."""
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def column_metric(X, sample_weight):
    """The step's diagonal metric: (d_j^2 per feature, the intercept's).

    d_j^2 is the weighted mean square of the nonzero entries of column j (1 for an empty
    column): each coordinate is measured in the units of its column's typical entry, not
    its frequency, so X -> X diag(c) leaves the iterates d_j w_j unchanged, and one-hot or
    TF-IDF columns (entries of size one, present in few rows) keep the steps of the
    unscaled method. The intercept's column of ones then weighs as much as the densest
    feature: its metric is 1 / (largest weighted fraction of nonzeros in a column), which
    keeps it from dominating L on sparse data."""
    X = X.tocsr() if sp.issparse(X) else np.ascontiguousarray(X)
    n, p = X.shape
    sw = np.ascontiguousarray(sample_weight, dtype=np.float64)
    data = _engine_data(X, np.empty((n, 0)), sw, False, np.ones(p))
    sq, mass = np.zeros(p), np.zeros(p)
    column_moments(data, sq, mass)
    metric = np.ones(p)
    good = (mass > 0) & (sq > 0) & np.isfinite(sq)
    metric[good] = sq[good] / mass[good]
    total = float(np.sum(sample_weight))
    densest = float(np.max(mass[good], initial=0.0)) / total if total > 0 else 0.0
    return metric, (1.0 / densest if densest > 0 else 1.0)


def _engine_data(X, Y, sw, fit_intercept, inv_metric, columns=None):
    """The arrays of X that the compiled engine reads, as they are (no copy); ``columns``:
    the working set that the coordinates stand for (None: all the columns)."""
    n, width = X.shape
    if sp.issparse(X):
        arrays = (False, X.data, X.indices, X.indptr)
    else:
        # int32 placeholders: dense data share the compiled code of int32-indexed CSR.
        empty = np.zeros(1, dtype=np.int32)
        arrays = (True, X.reshape(-1), empty, empty)
    if columns is None:
        p, coords = width, AllColumns(width)
    else:
        p = columns.size
        slot = np.full(width, -1, dtype=np.int64)
        slot[columns] = np.arange(p)
        coords = ColumnSubset(width, columns, slot)
    return EngineData(*arrays, n, p, Y, sw, bool(fit_intercept), inv_metric, coords)


class LinearProblem:
    """Data of f(w) = sum_i s_i l(x_i . w + b, y_i) / n for one solver call.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n, p), float64 or float32 (never copied)
    Y : ndarray of shape (n, K), targets encoded for ``datafit``
    sample_weight : ndarray of shape (n,), normalised to mean 1
    datafit : a datafit of :mod:`sr2learn.datafits`
    fit_intercept : bool
    metric : (ndarray of shape (p,), float) or None
        The step's diagonal metric on the coefficients and on the intercept
        (:func:`column_metric` when None).
    columns : ndarray of int or None
        The columns of X that the coefficients stand for (a working set, see
        :meth:`restricted`); None: all of them.
    """

    def __init__(self, X, Y, sample_weight, datafit, fit_intercept, metric=None, columns=None):
        self.X = X.tocsr() if sp.issparse(X) else np.ascontiguousarray(X)
        self.Y = np.ascontiguousarray(Y, dtype=np.float64)
        self.sw = np.ascontiguousarray(sample_weight, dtype=np.float64)
        self.datafit = datafit
        self.fit_intercept = bool(fit_intercept)
        self.columns = None if columns is None else np.ascontiguousarray(columns, np.int64)
        self.n = X.shape[0]
        self.p = X.shape[1] if columns is None else self.columns.size
        self.K = self.Y.shape[1]
        self.dtype = X.dtype
        if metric is None:
            metric = column_metric(self.X, self.sw)
        self.metric, self.intercept_metric = metric
        self.inv_metric = 1.0 / np.r_[self.metric, [self.intercept_metric] * self.fit_intercept]
        self._lipschitz = None
        self._row_norms_sq = None
        self._column_counts = None  # stored entries per column of X (CSR), for restricted
        self._data = None
        self.null_scale = None  # the nonconvex criterion's scale (see _null_scale)
        # The full problem's coefficients that these stand for (a restricted problem's),
        # and the Newton dual point shared with them (see sr2learn._certificate.NewtonMemo).
        self.in_full = None
        self.newton_memo = None

    @property
    def n_rows(self):
        return self.p + int(self.fit_intercept)

    @property
    def data(self):
        """The arrays the compiled engine reads (X itself, not a copy)."""
        if self._data is None:
            self._data = _engine_data(self.X, self.Y, self.sw, self.fit_intercept,
                                      self.inv_metric, self.columns)  # fmt: skip
        return self._data

    @property
    def _blas_reads_x(self):
        """Whether BLAS can read X in place: dense float64, all of its columns."""
        return self.columns is None and not sp.issparse(self.X) and self.dtype == np.float64

    def predict(self, W):
        """Z = X W (+ the intercept row), float64 (compiled: no float64 copy of float32 X).
        Zero coefficients (a fit's start, a working set's first checkpoint) read no X."""
        W = np.ascontiguousarray(W, dtype=np.float64)
        Z = np.empty((self.n, W.shape[1]))
        if np.any(W[: self.p]):
            predict_into(self.data, W, Z)
        else:
            Z[:] = W[self.p] if self.fit_intercept else 0.0
        return Z

    def gradient(self, E):
        """X~^T E / n (float64).

        With several columns (a multinomial checkpoint's), dense float64 X read whole
        goes through BLAS: the compiled row loop, which adds each row into G, took 2 to 10
        times as long on 10,000 x 500 and 500 x 1,000. One column stays compiled (dense
        rows four at a time, as fast as BLAS: 0.27 against 0.28 ms on 200 x 5,000; and
        threaded gemv stalled on a busy machine: 16 ms for a 500 x 1,000 product), as do
        float32 X (BLAS would copy it to float64) and a working set's column subset (BLAS
        would gather it).
        """
        return self._gradient(E)

    def _gradient(self, E, blas=None):
        """``blas``: whether dense float64 X read whole goes through BLAS (default: for
        several columns)."""
        E = np.ascontiguousarray(E, dtype=np.float64)
        G = np.empty((self.n_rows, E.shape[1]))
        if (E.shape[1] > 1 if blas is None else blas) and self._blas_reads_x:
            np.matmul(self.X.T, E, out=G[: self.p])
            if self.fit_intercept:
                G[self.p] = E.sum(axis=0)
        else:
            gradient_into(self.data, E, G)
        G /= self.n
        return G

    def gradient_pair(self, E, F):
        """X~^T E / n and X~^T F / n in one pass over X (float64). Dense X read whole gets
        [E, F] side by side (X dwarfs them), through the pass that ``gradient(E)`` takes
        alone (BLAS for several outputs of float64 X, else compiled: each column's sums
        then the same as alone, so that a checkpoint's gradient does not depend on whether
        it computes the diagnostics' trial gradient too); otherwise the compiled pass reads
        each row once for both, without an (n, 2K) copy of the residuals (on one-hot CSR
        each vector of n floats is about 5% of X)."""
        K = E.shape[1]
        if self.columns is None and not sp.issparse(self.X):
            G = self._gradient(np.hstack([E, F]), blas=K > 1)
            # Contiguous copies ((p + 1) x K): a strided gradient, as the SVRG reference,
            # gave the epoch engine a second compiled version (loaded or compiled on a
            # CV's first path solve: 40 ms of a 0.3 s fit in a fresh process).
            return np.ascontiguousarray(G[:, :K]), np.ascontiguousarray(G[:, K:])
        G = np.empty((self.n_rows, K))
        H = np.empty((self.n_rows, F.shape[1]))
        gradient_pair_into(self.data, np.ascontiguousarray(E, dtype=np.float64),
                           np.ascontiguousarray(F, dtype=np.float64), G, H)  # fmt: skip
        return G / self.n, H / self.n

    def rows(self, idx):
        """X, Y and the weights of the rows ``idx`` (a copy of those rows of X only, or X
        itself, read-only to the callers, for all the rows of a C-ordered dense X: a full
        batch's copy of dense 200 x 5000 took 0.8 ms, four times a fit)."""
        every_row = (isinstance(self.X, np.ndarray) and self.X.flags.c_contiguous
                     and np.size(idx) == self.n
                     and np.array_equal(idx, np.arange(self.n)))  # fmt: skip
        XB = self.X if every_row else self.X[idx]
        if self.columns is not None:
            XB = XB[:, self.columns]
        return XB, self.Y[idx], self.sw[idx]

    def batch_linear(self, XB, W):
        return _affine(XB, W, self.fit_intercept)

    def batch_transpose(self, XB, E):
        return _affine_transpose(XB, E, self.fit_intercept)

    def restricted(self, columns):
        """The problem on a subset of the columns (for working sets); its L is bounded by
        the full problem's, which it reuses (its own, 10-20% smaller on text-like data,
        cost 16 ms a working set there and saved no epoch).

        Those columns of X are copied when the copy is small: its rows are then
        contiguous, the fastest to read. Small is at most ``RESTRICTED_COPY_FRACTION`` of
        X (e.g. a few of many dense columns), or at most ``RESTRICTED_COPY_ARRAYS`` arrays
        of the coefficients' size: each full-problem checkpoint of the working set
        allocates more than that anyway (gradients at w and at a trial point, the trial
        iterate and step, ...), and the copy lives only during the inner solve, so that it
        does not raise the fit's peak memory where coefficients outnumber samples
        (text-like 20,000 x 50,000: sets of 30-38% of X copied, the traced peak of the
        fit's arrays unchanged at 0.95-1.04x the size of X, fits 10-23% faster).
        Otherwise X is read in place through the columns,
        which keeps the fit's memory at X plus arrays of n or p entries at some cost in
        speed (a gather of dense rows, skipped entries of CSR rows).
        """
        columns = np.asarray(columns, dtype=np.int64)
        metric = (self.metric[columns], self.intercept_metric)
        of_x = columns if self.columns is None else self.columns[columns]
        budget = max(RESTRICTED_COPY_FRACTION * data_nbytes(self.X),
                     RESTRICTED_COPY_ARRAYS * 8 * self.n_rows * self.K)  # fmt: skip
        if self._restricted_bytes(of_x) <= budget:
            counts = None if self._column_counts is None else self._column_counts[of_x]
            X, of_x = _copy_columns(self.X, of_x), None
        else:
            X, counts = self.X, self._column_counts
        sub = LinearProblem(X, self.Y, self.sw, self.datafit, self.fit_intercept, metric, of_x)
        sub._lipschitz = self.lipschitz()
        sub._column_counts = counts  # its copy's, or X's (counted once per fit)
        sub.null_scale = self.null_scale
        sub.in_full = columns if self.in_full is None else self.in_full[columns]
        sub.newton_memo = self.newton_memo
        return sub

    def _restricted_bytes(self, of_x):
        """The size of a copy of the columns ``of_x`` of X."""
        if not sp.issparse(self.X):
            return self.n * of_x.size * self.X.itemsize
        entry = self.X.data.itemsize + self.X.indices.itemsize
        return self.stored_entries(of_x) * entry + self.X.indptr.nbytes

    def stored_entries(self, of_x):
        """The entries of X stored in its columns ``of_x`` (all n of each for dense X;
        for CSR counted once per problem and cached)."""
        if not sp.issparse(self.X):
            return self.n * of_x.size
        if self._column_counts is None:
            self._column_counts = _column_counts(self.X)
        return int(self._column_counts[of_x].sum())

    @property
    def row_norms_sq(self):
        """||x~_i||^2 per sample in the metric's dual norm (sum_j x_ij^2 / d_j^2, plus the
        intercept's inverse metric), cached."""
        if self._row_norms_sq is None:
            self._row_norms_sq = np.empty(self.n)
            row_norms_into(self.data, self._row_norms_sq)
        return self._row_norms_sq

    def lipschitz(self, gram=None):
        """Lipschitz constant of grad f in the metric (a bound from the data): the curvature
        of the loss times the top eigenvalue of D^(-1/2) X~^T S X~ D^(-1/2) / n, that
        eigenvalue exact up to rounding or to Lanczos' tolerance (rounded up), or for
        nonnegative X a certified upper bound at most 0.1% above it (see
        :func:`_largest_eig_gram`). ``gram``: the small side's Gram matrix, when the
        caller has it (:func:`_small_gram`)."""
        if self._lipschitz is None:
            self._lipschitz = self.datafit.curvature * _largest_eig_gram(self, gram) / self.n
        return self._lipschitz

    def curvature_estimate(self, idx, n_power=15, seed=0):
        """Curvature of f_B on the rows ``idx`` in the metric: a few power iterations, on
        the columns that the rows store (the others are zero in f_B's Hessian: on
        text-like 20,000 x 50,000, 32 rows store 1,600 of them, and iterating on all p
        took 4 ms against 2).

        On every row of a problem whose L is still to be computed from its small side's
        Gram matrix, that Gram serves both: L is computed from it, and the same power
        iterations run on it (the same estimate up to rounding) instead of on X (on
        dense 200 x 5,000: 30 products with X, 8.5 ms, against the Gram's 0.3 ms)."""
        XB, _, swB = self.rows(idx)
        v = np.random.default_rng(seed).standard_normal((self.n_rows, 1))
        if XB is self.X and self._lipschitz is None and _gram_is_small(self):
            gram = _small_gram(self)
            self.lipschitz(gram)
            lam = _power_on_gram(self, gram, v, n_power)
            return self.datafit.curvature * lam
        inv_metric = self.inv_metric
        if sp.issparse(XB):
            XB, present = _stored_columns(XB)
            keep = np.r_[present, np.arange(self.p, self.n_rows)]
            v, inv_metric = v[keep], inv_metric[keep]
        root = np.sqrt(inv_metric)[:, None]
        lam = 0.0
        for _ in range(n_power):
            v /= np.linalg.norm(v)
            u = _affine(XB, root * v, self.fit_intercept)
            u *= swB[:, None]
            v = _affine_transpose(XB, u, self.fit_intercept)
            v *= root / swB.shape[0]
            lam = float(np.linalg.norm(v))
            if not lam > 0.0:
                break
        return self.datafit.curvature * lam


def _affine(XB, W, fit_intercept):
    """XB W[:q] (+ the intercept row W[q]), in float64, for XB of q columns."""
    q = XB.shape[1]
    Z = np.asarray(XB @ W[:q], dtype=np.float64)
    return Z + W[q] if fit_intercept else Z


def _affine_transpose(XB, E, fit_intercept):
    """XB^T E (then the column sums of E, the intercept's row), for XB of q columns."""
    q = XB.shape[1]
    G = np.empty((q + int(fit_intercept), E.shape[1]))
    G[:q] = np.asarray(XB.T @ E)
    if fit_intercept:
        G[q] = E.sum(axis=0)
    return G


def _copy_columns(X, columns):
    """X[:, columns] (CSR: a compiled copy, for distinct columns)."""
    if not sp.issparse(X):
        return X[:, columns]
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    slot[columns] = np.arange(columns.size)
    indptr, indices, values = csr_columns(X.indptr, X.indices, X.data, slot)
    return sp.csr_matrix((values, indices, indptr), shape=(X.shape[0], columns.size))


def _stored_columns(XB):
    """A CSR matrix on the columns that it stores, and those columns (sorted)."""
    present = np.unique(XB.indices)
    indices = np.searchsorted(present, XB.indices)
    return sp.csr_matrix((XB.data, indices, XB.indptr), shape=(XB.shape[0], present.size)), present


# NumPy formulas applied sample by sample run over slices of this many rows, so that their
# temporaries stay small (on one-hot data each vector of n floats is about 5% of X).
ROW_SLICE = 2**15


def row_slices(n):
    """Slices of ROW_SLICE rows covering range(n)."""
    return (slice(a, min(a + ROW_SLICE, n)) for a in range(0, n, ROW_SLICE))


def loss_derivatives(E, sw):
    """l'(z_i) per sample from E = s_i l'(z_i), zero where the weight s_i is zero."""
    sw = sw[:, None]
    return np.divide(E, sw, out=np.zeros_like(E), where=sw > 0)


def _column_counts(X):
    """The stored entries per column of a CSR matrix, counted over slices of its indices
    (bincount makes an int64 copy of what it counts)."""
    counts = np.zeros(X.shape[1], dtype=np.int64)
    step = _GRAM_SLICE_BYTES // 8
    for a in range(0, X.indices.size, step):
        counts += np.bincount(X.indices[a : a + step], minlength=X.shape[1])
    return counts


# The Gram matrix of a small side is summed over slices of this many bytes of X (as float64):
# BLAS speed, and no temporary of the size of X.
_GRAM_SLICE_BYTES = 2**20


# ARPACK's tolerance: the Ritz value is within this relative distance of an eigenvalue,
# and the bound returned is raised by as much (Lanczos converges from below).
_LANCZOS_TOL = 1e-7
# Gram matrices up to this size get the full eigendecomposition; larger ones Lanczos
# (eigvalsh of a 500 x 500 Gram took twice Lanczos' time on it, and more than the Gram).
_EIGVALSH_UP_TO = 64


def _gram_is_small(problem):
    """Whether L comes from the Gram matrix of A's small side (:func:`_small_gram`)."""
    return min(problem.n, problem.n_rows) <= (16 if sp.issparse(problem.X) else 1500)


def _largest_eig_gram(problem, gram=None):
    """Largest eigenvalue of A^T A, A = S^(1/2) X~ D^(-1/2): exact up to rounding (a small
    side's Gram, ``gram`` when given), a certified bound at most ``_CERTIFIED_TOL`` above
    it (nonnegative X, :func:`_collatz_wielandt_top`), or Lanczos' value within
    ``_LANCZOS_TOL``, rounded up."""
    if _gram_is_small(problem):
        gram = _small_gram(problem) if gram is None else gram
        if gram.shape[0] <= _EIGVALSH_UP_TO:
            return float(np.linalg.eigvalsh(gram)[-1])
        return _lanczos_top(gram.shape[0], gram.__matmul__)
    scale = np.sqrt(problem.inv_metric)

    def matvec(v):
        v = scale * np.asarray(v, dtype=np.float64).ravel()
        out = np.empty((problem.n_rows, 1))
        gram_matvec_into(problem.data, np.ascontiguousarray(v[:, None]), out)
        return scale * out.ravel()

    if _is_nonnegative(problem.X):
        stored = problem.X.nnz if sp.issparse(problem.X) else problem.X.size
        top = _collatz_wielandt_top(problem.n_rows, matvec, stored + problem.n)
        if top is not None:
            return top
    return _lanczos_top(problem.n_rows, matvec)


def _is_nonnegative(X):
    """Whether every entry of X is at least zero (then so is every entry of A^T A)."""
    values = X.data if sp.issparse(X) else X
    return values.size == 0 or bool(values.min() >= 0)


# The Collatz-Wielandt iteration stops once its upper bound is within this factor of its
# lower bound (so within it of the eigenvalue): 4 products with X on text-like 20,000 x
# 50,000 data, 3 on one-hot data, where Lanczos took 7 to 10 to within 1e-7.
_CERTIFIED_TOL = 1e-3
# ... and gives up (Lanczos then) after this many products: a slow spectral gap.
_COLLATZ_WIELANDT_PRODUCTS = 10


def _collatz_wielandt_top(size, matvec, summed):
    """The top eigenvalue of a nonnegative symmetric matrix G, bounded on both sides by
    power iteration from the vector of ones. Above: for v > 0, lambda_max <= max_j
    (Gv)_j / v_j (Collatz-Wielandt), over the nonzero rows of G (a zero row is a zero
    column too: it adds the eigenvalue 0 only). Below: the Rayleigh quotient v^T G v /
    v^T v, or min_j (Gv)_j / v_j (Collatz-Wielandt again, for nonnegative G), whichever
    is larger (the Rayleigh quotient converges where G is reducible, blocks of columns
    sharing no row, and the minimum then does not). Returns the upper bound, raised by
    the rounding of sums of at most ``summed`` nonnegative terms, once the lower one is
    within ``_CERTIFIED_TOL`` of it; None when that takes more than
    ``_COLLATZ_WIELANDT_PRODUCTS`` products."""
    v = np.ones(size)
    support = None
    for _ in range(_COLLATZ_WIELANDT_PRODUCTS):
        w = matvec(v)
        if support is None:
            support = w > 0  # (G 1)_j = 0 only on a zero row
            if not support.any():
                return 0.0
        ratio = w[support] / v[support]
        if not np.all(np.isfinite(ratio)):
            return None  # an entry of v underflowed
        upper = float(ratio.max())
        lower = max(float(ratio.min()), float(v @ w) / float(v @ v))
        if upper <= (1.0 + _CERTIFIED_TOL) * lower:
            return upper * (1.0 + 2.0 * summed * np.finfo(np.float64).eps)
        v = np.where(support, w / upper, 0.0)
    return None


def _lanczos_top(size, matvec):
    """The top eigenvalue of a symmetric positive semi-definite operator, raised by
    ``_LANCZOS_TOL`` to stay a bound (a looser tolerance than 1e-10 saved a third of
    the passes over X on text-like data; the value moved by 1e-8 relative)."""
    op = LinearOperator((size, size), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(size)  # deterministic
    top = eigsh(op, k=1, which="LA", ncv=min(6, size), tol=_LANCZOS_TOL, v0=v0,
                return_eigenvectors=False)[0]  # fmt: skip
    return float(top) * (1.0 + _LANCZOS_TOL)


def _power_on_gram(problem, gram, v, n_power):
    """The top eigenvalue of A^T A / n by ``curvature_estimate``'s power iterations from
    ``v``, run on the small side's Gram matrix. A tall problem's Gram is A^T A itself.
    A wide one's is A A^T: after the first product, v_k = A^T c_k, so that
    A^T A v_k = A^T (G c_k) and ||v_k||^2 = c_k^T G c_k (G = A A^T): one product with X,
    then products with G only."""
    n = problem.n
    v = v / np.linalg.norm(v)
    if problem.n > problem.n_rows:
        lam = 0.0
        for _ in range(n_power):
            v = gram @ v / n
            lam = float(np.linalg.norm(v))
            if not lam > 0.0:
                break
            v /= lam
        return lam
    scale = np.sqrt(problem.inv_metric)[:, None]
    c = _affine(problem.X, scale * v, problem.fit_intercept) * np.sqrt(problem.sw)[:, None] / n
    lam = 0.0
    for step in range(n_power):
        if step:
            c = gram @ c / (n * lam)
        lam = math.sqrt(max(float(c[:, 0] @ (gram @ c[:, 0])), 0.0))
        if not lam > 0.0:
            break
    return lam


def _small_gram(problem):
    """The Gram matrix of A = S^(1/2) X~ D^(-1/2) on its small side (A A^T when n is at
    most the number of coefficients, else A^T A), summed over slices of the long side."""
    n, p = problem.n, problem.p
    scale = np.sqrt(problem.inv_metric)
    root = np.sqrt(problem.sw)
    if n <= problem.n_rows:
        # A A^T over slices of the coefficients; the intercept's column adds a rank one.
        gram = np.zeros((n, n))
        if problem.fit_intercept:
            gram += scale[-1] ** 2 * np.outer(root, root)
        step = max(1, _GRAM_SLICE_BYTES // (8 * n))
        for a in range(0, p, step):
            A = _weighted_slice(problem, slice(None), slice(a, min(a + step, p)), root, scale)
            gram += A @ A.T
        return gram
    return _tall_gram(problem, scale)


# The tall Gram's slices of rows when they are views of X (no copy): large enough that each
# product runs at BLAS speed (1 MB slices took 1.6 times as long as one product on
# 10,000 x 500). Slices that are copies keep _GRAM_SLICE_BYTES.
_TALL_VIEW_BYTES = 2**23


def _tall_gram(problem, scale):
    """A^T A = D^(-1/2) X~^T S X~ D^(-1/2) for n above the number of coefficients: X^T S X
    over slices of rows, scaled by D^(-1/2) on both sides once at the end. Equal weights
    (the usual case) and dense float64 X make each slice a view of X and its product a
    symmetric rank-k update; the intercept's row and column are D^(-1/2) X^T s."""
    n, p, sw = problem.n, problem.p, problem.sw
    equal = bool(np.all(sw == sw[0]))
    root = np.sqrt(sw)
    gram = np.zeros((problem.n_rows, problem.n_rows))
    column_sums = np.zeros(p)  # X^T s
    views = problem._blas_reads_x and equal  # else each slice is copied (weighted)
    step = max(1, (_TALL_VIEW_BYTES if views else _GRAM_SLICE_BYTES) // (8 * max(1, p)))
    for a in range(0, n, step):
        rows = slice(a, min(a + step, n))
        B = _dense_rows(problem, rows)
        weighted = B if equal else B * root[rows, None]
        gram[:p, :p] += weighted.T @ weighted
        column_sums += sw[rows] @ B
    if equal:
        gram[:p, :p] *= sw[0]
    gram[:p, :p] *= np.outer(scale[:p], scale[:p])
    if problem.fit_intercept:
        gram[:p, p] = gram[p, :p] = column_sums * scale[:p] * scale[p]
        gram[p, p] = float(sw.sum()) * scale[p] ** 2
    return gram


def _dense_rows(problem, rows):
    """The rows ``rows`` of X on the problem's columns, dense float64 (a view of dense
    float64 X read whole, else a copy of that block)."""
    XB = problem.X[rows]
    if problem.columns is not None:
        XB = XB[:, problem.columns]
    return np.asarray(XB.toarray() if sp.issparse(XB) else XB, dtype=np.float64)


def _weighted_slice(problem, rows, coefs, root, scale):
    """S^(1/2) X D^(-1/2) on a slice of rows and a slice of coefficients, dense float64
    (a copy of that block of X only)."""
    columns = coefs if problem.columns is None else problem.columns[coefs]
    XB = problem.X[rows][:, columns]
    A = (XB.toarray() if sp.issparse(XB) else XB) * root[rows, None]  # float64
    A *= scale[: problem.p][coefs]
    return A
