"""The data of one solver call: a linear model's f(w) = sum_i s_i l(x_i . w + b, y_i) / n.

Holds X (dense or CSR, float64 or float32, never copied to float64), the encoded targets,
the sample weights and the datafit; gives the compiled full passes (predictions, gradient),
the exact Lipschitz bound and the diagonal metric of the steps (``column_metric``), in which
the iterates do not depend on the units of the columns.
"""


import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from ._engine import EngineData, gradient_into, predict_into

__all__ = ["LinearProblem", "column_metric"]


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
        """Z = X W (+ the intercept row), float64 (compiled: no float64 copy of float32 X)."""
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
