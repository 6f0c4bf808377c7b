"""Least squares on tall dense data, compressed to about p rows through the Gram matrix.

Why. On dense X with many more samples than features, the squared loss depends on the data
only through the moments of [X, 1, y]: f(w, b) = 1/(2n) sum_i s_i (y_i - x_i.w - b)^2 is
a quadratic whose coefficients are those moments. The exact Lipschitz bound L already
needs the Gram matrix X^T S X (about n p^2 flops, as much as scikit-learn's whole
coordinate-descent fit on a correlated 10,000 x 500 design); once it is formed,
m = max(p + 2, MIN_ROWS) rows with the same moments give the same f for every (w, b),
and SR2 runs on them at m / n of the cost per pass.

What. :func:`compressed_least_squares` returns the rows z_k = mu + sqrt(m / n) q_k,
unit-weighted, where mu is the weighted mean of the rows of [X, y] (zero without
intercept) and the q_k (summing to zero with an intercept) have
q^T q = sum_i s_i (z_i - mu)(z_i - mu)^T: a Cholesky factor of that centred Gram (its
rank rows; pivoted where the Gram is singular), padded with zero rows to m, mixed by
random signs and an orthonormal cosine transform so that the rows weigh about the same (a
minibatch of them then estimates the gradient as well as one of the original rows would:
unmixed, the 10,000 x 500 design took 9 to 19 epochs against 7 to 13).
Then sum_k z_k z_k^T / m = sum_i s_i z_i z_i^T / n and sum_k z_k / m = mu, so that
f, its gradient, the exact intercept, the duality gap and L on the compressed rows are
those of the data (up to rounding): the fit, its stopping criterion and its diagnostics
are about the user's objective.

Cross-validation. :class:`FoldGrams` gives each fold's weighted mean and centred Gram from
one Gram of [X, y, 1] over all the rows, minus the Gram of the fold's held-out rows
(SR2RegressorCV); the compressed problem also keeps its moments, from which the Newton
certificate takes its Hessian on a support (``support_hessian``).
"""

import math

import numpy as np
import scipy.sparse as sp
from scipy.fft import idct
from scipy.linalg import lapack

from ._problem import LinearProblem

__all__ = ["CompressedLeastSquares", "FoldGrams", "compressed_least_squares",
           "compressed_rows", "use_compressed"]

# At least this many compressed rows (zero rows of the factor, mixed in by the cosine
# transform): SVRG needs enough steps of small batches per pass. With p + 2 rows only, a
# 10-feature problem (diabetes) had 12 rows, whose full-batch R2 steps need a pass each:
# 853 epochs against 97 on the 442 rows themselves.
MIN_ROWS = 256
# Compress when the rows are at most this fraction of the n rows: their copy (m x p
# floats) and the Gram ((p + 1)^2) stay a fraction of X, and a pass over them saves most
# of a pass over X.
MAX_ROW_FRACTION = 0.25
# The centred Gram is summed over slices of this many bytes of rows (float64 copies:
# bounded well below X, as tests/test_memory.py asks).
_SLICE_BYTES = 2**21
# Centring X^T X after the product is used while n mean_j^2 is at most this times the
# centred sum of squares of column j (at most 4 of float64's 16 digits lost).
_CANCELLATION = 1e4


def compressed_rows(n_features):
    """The number of compressed rows for ``n_features`` columns (and an intercept)."""
    return max(n_features + 2, MIN_ROWS)


def use_compressed(X, n_samples=None):
    """Whether least squares on X should run on its compressed rows: dense X with at least
    ``1 / MAX_ROW_FRACTION`` times as many rows as the compression has. ``n_samples``:
    the rows a fit takes from X (e.g. a fold's training rows; default: all of them)."""
    n = X.shape[0] if n_samples is None else n_samples
    return not sp.issparse(X) and compressed_rows(X.shape[1]) <= MAX_ROW_FRACTION * n


def _row_slices(n, p):
    step = max(1, _SLICE_BYTES // (8 * (p + 1)))
    return (slice(a, min(a + step, n)) for a in range(0, n, step))


def _weighted_mean(X, y, sw):
    """sum_i s_i [x_i, y_i] / n, over slices of rows (float32 X is not copied whole)."""
    n, p = X.shape
    total = np.zeros(p + 1)
    for rows in _row_slices(n, p):
        total[:p] += sw[rows] @ X[rows]
    total[p] = sw @ y
    return total / n


def _centred_gram(X, y, sw, mean):
    """sum_i s_i (z_i - mean)(z_i - mean)^T for z_i = [x_i, y_i].

    Equal weights and float64 X: X^T X in one product read in place (BLAS's symmetric
    rank-k update, about 40% faster than over centred copies of slices), centred after,
    unless a column's mean is so large against its spread that the subtraction would lose
    more than ``_CANCELLATION`` of float64's digits. Otherwise over centred, weighted
    float64 copies of slices of rows.
    """
    n, p = X.shape
    if X.dtype == np.float64 and X.flags.c_contiguous and np.all(sw == sw[0]):
        gram = np.empty((p + 1, p + 1))
        gram[:p, :p] = X.T @ X
        gram[:p, p] = gram[p, :p] = X.T @ y
        gram[p, p] = y @ y
        gram *= sw[0]
        gram -= np.outer(mean, mean) * n
        if _centring_keeps_digits(n, mean, gram):
            return gram
    return _sliced_gram(X, y, sw, mean=mean)


def _sliced_gram(X, y, sw, *, mean=None, ones=False):
    """sum_i s_i b_i b_i^T for b_i = [x_i, y_i] - ``mean`` (then 1, with ``ones``), over
    weighted float64 copies of slices of rows."""
    n, p = X.shape
    width = p + 1 + int(ones)
    gram = np.zeros((width, width))
    root = np.sqrt(sw)
    for rows in _row_slices(n, width - 1):
        B = np.empty((rows.stop - rows.start, width))
        B[:, :p] = X[rows]
        B[:, p] = y[rows]
        if mean is not None:
            B[:, : p + 1] -= mean
        if ones:
            B[:, p + 1] = 1.0
        B *= root[rows, None]
        gram += B.T @ B  # a symmetric rank-k update (BLAS syrk)
    return gram


def _centring_keeps_digits(n, mean, centred):
    """Whether a Gram centred after its sums kept its digits: no column's mean so large
    against its spread that the subtraction lost more than ``_CANCELLATION`` of them."""
    return bool(np.all(n * np.square(mean) <= _CANCELLATION * np.maximum(np.diag(centred), 0.0)))


def _factor(gram):
    """R with R^T R = gram (positive semi-definite), rank rows: Cholesky, or where it
    fails (a singular Gram: collinear columns, y in their span) pivoted Cholesky, which
    drops the null directions. NumPy's Cholesky, not SciPy's dpotrf: under a BLAS thread
    limit set at run time on busy cores, SciPy's OpenBLAS spent up to 0.5 s of CPU on a
    501 x 501 factor that takes 3 ms (see :func:`largest_eig_moments`)."""
    try:
        return np.linalg.cholesky(gram).T
    except np.linalg.LinAlgError:
        pass
    U, piv, rank, info = lapack.dpstrf(gram, lower=0)
    if info < 0:
        raise ValueError(f"LAPACK dpstrf failed (info={info}).")
    R = np.zeros((rank, gram.shape[0]))
    R[:, piv - 1] = np.triu(U)[:rank]
    return R


class FoldGrams:
    """The centred Grams of the training parts of cross-validation folds, from one Gram of
    all the rows minus each fold's held-out rows' Gram.

    Why. Each fold's compressed problem needs the centred Gram of its training rows:
    formed fold by fold, k folds cost (k - 1) n p^2 flops (and the refit n p^2 more);
    from the Gram of [X, y, 1] over all n rows, n p^2 flops, each fold only subtracts
    the Gram of its n / k held-out rows. The moments are taken about the weighted mean of
    all the rows (a fold's mean is close to it), so that centring a fold's after the
    subtraction loses no digits where a column's mean is large against its spread (y + 1e6,
    X + 100: such folds formed their own Grams, and their SR2 fits on uncentred rows were
    slow). Digits are still lost where the held-out rows carry most of a column's squares
    about that mean: such a fold gets None, and its fit forms its own Gram
    (``_centred_gram``'s careful way).

    Parameters
    ----------
    X : ndarray of shape (n, p), dense
    y : ndarray of shape (n,)
    sample_weight : ndarray of shape (n,) or None
    """

    def __init__(self, X, y, sample_weight):
        self._X, self._y = X, np.asarray(y, dtype=np.float64).ravel()
        n = X.shape[0]
        self._sw = (np.ones(n) if sample_weight is None
                    else np.asarray(sample_weight, dtype=np.float64))  # fmt: skip
        total = float(self._sw.sum())
        self._shift = _weighted_mean(X, self._y, self._sw) * (n / total if total > 0 else 0.0)
        self._total = _raw_moments(self._X, self._y, self._sw, self._shift)

    def of_rows(self, held_out, fit_intercept):
        """(mean, centred Gram) of the rows other than ``held_out`` (indices), as
        :func:`compressed_least_squares` forms them with the fold's weights normalised to
        mean 1; None where the subtraction or the centring would lose too many digits."""
        held_out = np.asarray(held_out, dtype=np.intp)
        kept = self._total
        if held_out.size:
            kept = kept - _raw_moments(self._X[held_out], self._y[held_out],
                                       self._sw[held_out], self._shift)  # fmt: skip
        n = self._X.shape[0] - held_out.size
        weight = kept[-1, -1]
        lost = np.diag(kept)[:-1] * _CANCELLATION < np.diag(self._total)[:-1]
        if not weight > 0 or np.any(lost):
            return None
        sums, shift = kept[:-1, -1], self._shift  # sum_i s_i (z_i - shift), and shift
        if not fit_intercept:  # the moments about zero, unless they cancel out
            cross = np.outer(shift, sums)
            raw = kept[:-1, :-1] + cross + cross.T + weight * np.outer(shift, shift)
            size = np.diag(kept)[:-1] + 2.0 * np.abs(np.diag(cross)) + weight * shift**2
            if np.any(np.diag(raw) * _CANCELLATION < size):
                return None
            return np.zeros(kept.shape[0] - 1), raw * (n / weight)
        offset = sums / weight  # the fold's mean, less shift
        centred = (kept[:-1, :-1] - weight * np.outer(offset, offset)) * (n / weight)
        if not _centring_keeps_digits(n, offset, centred):
            return None
        return offset + shift, centred


def _raw_moments(X, y, sw, shift):
    """sum_i s_i z_i z_i^T for z_i = [x_i - shift[:p], y_i - shift[p], 1], in float64 over
    slices of rows."""
    return _sliced_gram(X, y, sw, mean=shift, ones=True)


def compressed_least_squares(X, y, sample_weight, fit_intercept, gram=None):
    """Rows (Xc, yc) of float64, unit-weighted, with the squared loss of (X, y, weights).

    Parameters
    ----------
    X : ndarray of shape (n, p), dense (float64 or float32, read in slices)
    y : ndarray of shape (n,)
    sample_weight : ndarray of shape (n,), normalised to mean 1
    fit_intercept : bool
    gram : tuple (mean, centred) or None, default=None
        The weighted mean of the rows of [X, y] (zero without intercept) and the centred
        Gram sum_i s_i (z_i - mean)(z_i - mean)^T, when known (:class:`FoldGrams`);
        None: formed here from X.

    Returns
    -------
    Xc : ndarray of shape (m, p)
    yc : ndarray of shape (m,)
    moments : ndarray of shape (p + 1, p + 1)
        sum_i s_i x~_i x~_i^T / n for x~_i = [x_i, 1] (the Gram of L), or [x_i] padded
        with a zero row and column without intercept.
    """
    n, p = X.shape
    mean, centred = data_gram(X, y, sample_weight, fit_intercept) if gram is None else gram
    R = _factor(centred)
    # Random signs, then an orthonormal cosine basis: with an intercept its columns 1..r
    # (orthogonal to the constant: the q_k sum to zero), else all r of them.
    R *= np.random.default_rng(0).choice([-1.0, 1.0], size=R.shape[0])[:, None]
    pad = max(0, compressed_rows(p) - R.shape[0] - int(fit_intercept))
    R = np.vstack([np.zeros((int(fit_intercept), p + 1)), R, np.zeros((pad, p + 1))])
    q = idct(R, norm="ortho", axis=0)
    m = q.shape[0]
    Z = q * math.sqrt(m / n)
    Z += mean
    moments = np.zeros((p + 1, p + 1))
    moments[:p, :p] = centred[:p, :p] / n + np.outer(mean[:p], mean[:p])
    if fit_intercept:
        moments[:p, p] = moments[p, :p] = mean[:p]
        moments[p, p] = 1.0
    return np.ascontiguousarray(Z[:, :p]), np.ascontiguousarray(Z[:, p]), moments


def data_gram(X, y, sample_weight, fit_intercept):
    """(mean, centred Gram) of the rows of [X, y] with ``sample_weight`` (normalised to mean
    1): the weighted mean (zero without intercept) and sum_i s_i (z_i - mean)(z_i - mean)^T."""
    sw = np.asarray(sample_weight, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    mean = _weighted_mean(X, y, sw) if fit_intercept else np.zeros(X.shape[1] + 1)
    return mean, _centred_gram(X, y, sw, mean)


def largest_eig_moments(moments, inv_metric):
    """The top eigenvalue of D^(-1/2) M D^(-1/2) for the moments M of
    :func:`compressed_least_squares` (on the coefficients and the intercept that
    ``inv_metric`` covers): the Lipschitz bound of the squared loss, exact up to rounding.
    LAPACK's symmetric eigenvalue solver, through NumPy: Lanczos needed 200 products on
    the clustered top of a correlated design's spectrum (three times the time on 500 x
    500). Not SciPy's selected-eigenvalue driver, though it computes less (5 ms against
    8 ms on 500 x 500, 0.2 against 0.3 ms on 101 x 101, alone): under a BLAS thread
    limit set at run time (threadpoolctl, as benchmarks/bench_breadth.py sets) on busy
    cores, SciPy's OpenBLAS spent 11-15 ms of CPU on it at 101 x 101 (half of
    SR2RegressorCV's time on a 2,000 x 100 regression) and 1-2 s at 500 x 500, where
    NumPy's took 0.3 ms and 14-22 ms."""
    k = inv_metric.size
    scale = np.sqrt(inv_metric)
    scaled = moments[:k, :k] * np.outer(scale, scale)
    return float(np.linalg.eigvalsh(scaled)[-1])


class CompressedLeastSquares(LinearProblem):
    """The problem of least squares on dense (X, y, weights), on its compressed rows
    (:func:`compressed_least_squares`), with the exact L from the same Gram matrix.

    ``metric``: the step's metric, of X (:func:`sr2learn._problem.column_metric` of X:
    the iterates are those of the uncompressed problem's metric); ``gram``: as in
    :func:`compressed_least_squares`, kept as ``gram`` with the number of rows of X,
    ``n_samples`` (the lasso on the moments, ``sr2learn._gram_solver``, solves on them)."""

    def __init__(self, X, Y, sample_weight, datafit, fit_intercept, metric, gram=None):
        if gram is None:
            gram = data_gram(X, Y[:, 0], sample_weight, fit_intercept)
        self.gram, self.n_samples = gram, X.shape[0]
        Xc, yc, moments = compressed_least_squares(X, Y[:, 0], sample_weight, fit_intercept,
                                                   gram)  # fmt: skip
        super().__init__(Xc, yc[:, None], np.ones(yc.size), datafit, fit_intercept, metric)
        self.moments = moments
        self._lipschitz = datafit.curvature * largest_eig_moments(moments, self.inv_metric)

    def support_hessian(self, rows):
        """The Hessian of the loss on the variables ``rows`` (coefficients, and p for the
        intercept), from the moments: the Newton certificate's, without a pass over the
        rows (sr2learn._certificate)."""
        return self.datafit.curvature * self.moments[np.ix_(rows, rows)]
