"""Least squares with an intercept on dense columns far from centred: fitted on X - xbar.

Why. SR2 is a first-order method in the metric of ``column_metric`` (each column scaled by
the root mean square of its entries). A column whose weighted mean mu is large against its
weighted spread s is then nearly the intercept's column of ones: the Hessian of
[x / rms, 1] has condition about 2 (1 + mu^2 / s^2), 2e4 at mu / s = 100, and SR2 ran its
1,000 epochs far from the solution (X ~ N(100, 1), 100 x 2). Tall dense data avoid it on
their moments (``sr2learn._gram``); shorter dense data come here.

What. The squared loss is the same at (w, b) on X as at (w, b + xbar.w) on the centred
copy X - xbar (xbar: the weighted column means), for every w and b, so the fit runs on
the centred copy with its intercept (now decoupled from the columns, which sum to zero
under the weights) and maps its solution back: intercept = b_c - xbar.w. The objective,
its gradient in w and the duality gap are the original problem's at the corresponding
point; only the step's metric (the centred columns' spreads) differs. The estimator
keeps its solver state in the original coordinates (warm starts, a CV's averaged
solutions), and moves it to the centred ones where a solve starts.
"""

import numpy as np
import scipy.sparse as sp

__all__ = ["CENTRING_RATIO", "centred_copy", "column_offset", "to_centred", "to_original"]

# Centre when some column's mean^2 exceeds this times its variance (weighted), i.e.
# |mean| > std: the condition of [x / rms, 1] is then above about 5.8. Measured on N(loc, 1)
# columns, 100 x 2, lasso at alpha 1e-3: 3 epochs centred at every loc; uncentred 4 at loc
# 0.1, 8 at 0.3, 12 at 0.5, 30 at 1, 398 at 10, 1,000 (not converged, coefficients 0.4
# off) at 100. Not lower: the sample means of a few standard-normal rows (n = 9: mean^2
# about var / 9) would often change the path of small, well-scaled fits for little gain.
CENTRING_RATIO = 1.0


def column_offset(X, sample_weight):
    """The weighted column means of dense X (float64) where centring X matters: some
    column's mean^2 above ``CENTRING_RATIO`` times its variance; None otherwise (sparse X:
    centring would densify it)."""
    if sp.issparse(X) or X.shape[0] == 0:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64)
    total = float(sw.sum())
    mean = np.asarray(sw @ X, dtype=np.float64) / total
    # mean^2 > r var  <=>  mean^2 (1 + r) > r E[x^2]: no difference of large numbers.
    square = np.einsum("i,ij,ij->j", sw, X, X, dtype=np.float64) / total
    if not np.any(np.square(mean) * (1.0 + CENTRING_RATIO) > CENTRING_RATIO * square):
        return None
    return mean


def centred_copy(X, offset):
    """X - ``offset`` in X's dtype (the difference taken in float64)."""
    centred = np.empty_like(X, order="C")
    np.subtract(X, offset, out=centred, casting="same_kind")
    return centred


def to_centred(W, offset):
    """The solver's variables W (coefficients, then the intercept's row) of the original
    problem as those of the centred one, in place: b_c = b + xbar.w."""
    p = offset.size
    W[p] += offset @ W[:p]
    return W


def to_original(W, offset):
    """The inverse of :func:`to_centred`, in place: b = b_c - xbar.w."""
    p = offset.size
    W[p] -= offset @ W[:p]
    return W
