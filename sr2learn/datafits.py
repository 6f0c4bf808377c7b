"""Data-fitting terms f(w) = sum_i s_i l(z_i, y_i) / n of linear models, z_i = x_i . w + b.

A datafit works on the linear predictions ``Z`` (shape ``(m, K)``) of ``m`` samples
and their encoded targets ``Y``; the solver owns the matrix products. Sample weights
``s`` are normalised by the caller to mean 1 over the training set, so that the mean
over a uniformly drawn minibatch is an unbiased estimate of f.

Each datafit exposes

- ``loss(Z, Y)``: the per-sample losses, shape ``(m,)``;
- ``derivative(Z, Y)``: dl/dz per sample, shape ``(m, K)``;
- ``bregman(Z, dZ, Y, D)``: l(z + dz) - l(z) - l'(z) dz per sample, computed without
  the cancellation of the plain difference (so the SR2 ratio stays exact when steps reach
  rounding level); ``D = derivative(Z, Y)``, which the solver has already, is reused;
- ``curvature``: a bound on the second derivative of l in z (spectral norm of the
  per-sample Hessian), which turns ||X~||_2^2 / n into the Lipschitz constant of
  grad f (DESIGN §3);
- ``conjugate(U, Y)``: the Fenchel conjugate l*(u_i) per sample, for the dual objective
  -(1/n) sum_i s_i l*(-theta_i) of the duality gap (with ``U = kappa * derivative``, the
  dual point that the estimators use, always inside the conjugate's domain);
- ``hessian_product(D, Y, U)``: l''(z_i) u_i per sample, from ``D = derivative(Z, Y)``
  (the Newton step of the gap certificate, :mod:`sr2learn._certificate`);
- ``intercept_shift(Z, Y, sw)``: the shift delta of every prediction that minimises
  sum_i s_i l(z_i + delta, y_i), i.e. the exact minimisation over the (unpenalised)
  intercept for fixed coefficients.

Beside the array forms each class carries its compiled form, ``Kernel``, whose static
methods are the same formulas for one sample (``z``, ``y``, ``d``: arrays of length K),
compiled by numba for the SR2 epoch engine (:mod:`sr2learn._engine`):
``loss_derivative(kernel, z, y, d)`` writes l'(z) into ``d`` and returns l(z);
``bregman(kernel, z, dz, y, d, loss)`` is the Bregman term at ``z`` (``d`` and ``loss``
from ``loss_derivative``). tests/test_datafits_and_rule.py checks that both forms agree.
"""

import math
from typing import NamedTuple

import numpy as np
from numba.extending import register_jitable
from scipy.special import expit, log_expit, logsumexp, softmax

from ._compiled import name_kernel
from ._intercept import newton_intercept

# Below this |dz| the Bregman terms use their Taylor series (4th order: relative error
# about dz^3 / 60, against a cancellation error of eps / dz^2 in the plain difference).
_TAYLOR_BELOW = 1e-2
_TINY = float(np.finfo(np.float64).tiny)

__all__ = ["Quadratic", "Logistic", "Multinomial"]


def _xlogx(Q):
    """q log q entrywise for q in [0, 1], 0 at q = 0 (0 * log(tiny)): scipy's xlogy(q, q)
    cost ten times np.log, and the conjugate of a duality gap, computed at every
    checkpoint, took as long as a pass over the data."""
    return Q * np.log(np.maximum(Q, _TINY))


class Datafit:
    """Base class: the compiled form's parameters and the intercept's exact minimisation."""

    Kernel = None
    # Whether adding the same number to all K predictions of a sample leaves its loss
    # unchanged (softmax): the Hessian is then singular along such shifts.
    shift_invariant = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name_kernel(cls)

    def kernel(self):
        return self.Kernel(curvature=self.curvature)

    def intercept_shift(self, Z, Y, sw):
        """Newton's method on the compiled loss (:mod:`sr2learn._intercept`)."""
        return newton_intercept(self.kernel(), Z, Y, sw)


class Quadratic(Datafit):
    """Half squared residual, l(z, y) = (z - y)^2 / 2 (the objective of ``Lasso``)."""

    curvature = 1.0

    def conjugate(self, U, Y):
        return 0.5 * np.einsum("ij,ij->i", U, U) + np.einsum("ij,ij->i", U, Y)

    def intercept_shift(self, Z, Y, sw):
        return -(sw @ (Z - Y)) / float(sw.sum())

    def hessian_product(self, D, Y, U):
        return U

    class Kernel(NamedTuple):
        curvature: float

        @staticmethod
        @register_jitable
        def loss_derivative(kernel, z, y, d):
            total = 0.0
            for k in range(z.shape[0]):
                d[k] = z[k] - y[k]
                total += d[k] * d[k]
            return 0.5 * total

        @staticmethod
        @register_jitable
        def bregman(kernel, z, dz, y, d, loss):
            total = 0.0
            for k in range(z.shape[0]):
                total += dz[k] * dz[k]
            return 0.5 * total

    def loss(self, Z, Y):
        R = Z - Y
        return 0.5 * np.einsum("ij,ij->i", R, R)

    def derivative(self, Z, Y):
        return Z - Y

    def bregman(self, Z, dZ, Y, D):
        return 0.5 * np.einsum("ij,ij->i", dZ, dZ)


class Logistic(Datafit):
    """Binary log-loss with labels ``Y`` in {0, 1}: l(z, y) = log(1 + exp(-(2y - 1) z))."""

    curvature = 0.25

    def conjugate(self, U, Y):
        # q = u + y in [0, 1] (a convex combination of y and sigmoid(z) for the dual points used)
        q = np.clip(U[:, 0] + Y[:, 0], 0.0, 1.0)
        return _xlogx(q) + _xlogx(1.0 - q)

    class Kernel(NamedTuple):
        curvature: float

        @staticmethod
        @register_jitable
        def loss_derivative(kernel, z, y, d):
            # One exp and one log1p per sample: the transcendental functions are most of
            # the cost of a sparse step.
            zz = z[0]
            e = math.exp(-abs(zz))
            tail = math.log1p(e)  # softplus(-|z|)
            sig = 1.0 / (1.0 + e) if zz >= 0.0 else e / (1.0 + e)
            d[0] = sig - y[0]
            return max(-(2.0 * y[0] - 1.0) * zz, 0.0) + tail

        @staticmethod
        @register_jitable
        def bregman(kernel, z, dz, y, d, loss):
            p = d[0] + y[0]  # sigmoid(z)
            dd = dz[0]
            if abs(dd) < _TAYLOR_BELOW:
                q = p * (1.0 - p)
                return dd * dd * (q / 2 + dd * (q * (1 - 2 * p) / 6 + dd * q * (1 - 6 * q) / 24))
            zn, zz = z[0] + dd, z[0]
            # softplus(z) afresh, not as l + y z (which cancels when the margin is large)
            softplus_new = max(zn, 0.0) + math.log1p(math.exp(-abs(zn)))
            softplus_old = max(zz, 0.0) + math.log1p(math.exp(-abs(zz)))
            return softplus_new - softplus_old - p * dd

    def loss(self, Z, Y):
        # log(1 + exp(-m)) = -log(sigmoid(m)), computed without overflow.
        return -log_expit((2.0 * Y[:, 0] - 1.0) * Z[:, 0])

    def derivative(self, Z, Y):
        return expit(Z) - Y

    def hessian_product(self, D, Y, U):
        P = D + Y  # sigmoid(z)
        return P * (1.0 - P) * U

    def bregman(self, Z, dZ, Y, D):
        # Independent of y: softplus(z + d) - softplus(z) - sigmoid(z) d.
        d = dZ[:, 0]
        p = D[:, 0] + Y[:, 0]  # sigmoid(z), from the derivative
        q = p * (1.0 - p)
        out = d * d * (q / 2 + d * (q * (1 - 2 * p) / 6 + d * q * (1 - 6 * q) / 24))
        big = np.flatnonzero(np.abs(d) >= _TAYLOR_BELOW)
        if big.size:
            z, db = Z[big, 0], d[big]
            with np.errstate(over="ignore", invalid="ignore"):
                out[big] = np.logaddexp(0.0, z + db) - np.logaddexp(0.0, z) - p[big] * db
        return out


class Multinomial(Datafit):
    """Softmax cross-entropy with one-hot targets ``Y``: l(z, y) = logsumexp(z) - z . y."""

    curvature = 0.5  # the largest eigenvalue of diag(p) - p p^T is at most 1/2
    shift_invariant = True

    def conjugate(self, U, Y):
        Q = np.clip(U + Y, 0.0, 1.0)  # on the simplex for the dual points used
        return np.einsum("ij->i", _xlogx(Q))  # not .sum(axis=1): 5x slower on a few columns

    class Kernel(NamedTuple):
        curvature: float

        @staticmethod
        @register_jitable
        def loss_derivative(kernel, z, y, d):
            top = z[0]
            for k in range(1, z.shape[0]):
                top = max(top, z[k])
            total = 0.0
            for k in range(z.shape[0]):
                d[k] = math.exp(z[k] - top)
                total += d[k]
            lse = top + math.log(total)
            loss = lse
            for k in range(z.shape[0]):
                d[k] = d[k] / total - y[k]
                loss -= z[k] * y[k]
            return loss

        @staticmethod
        @register_jitable
        def bregman(kernel, z, dz, y, d, loss):
            K = z.shape[0]
            big = 0.0
            mean = 0.0
            for k in range(K):
                big = max(big, abs(dz[k]))
                mean += (d[k] + y[k]) * dz[k]
            if big < _TAYLOR_BELOW:
                m2 = m3 = m4 = 0.0
                for k in range(K):
                    c = dz[k] - mean
                    pc2 = (d[k] + y[k]) * c * c
                    m2 += pc2
                    m3 += pc2 * c
                    m4 += pc2 * c * c
                return m2 / 2 + m3 / 6 + (m4 - 3 * m2 * m2) / 24
            # Both logsumexps afresh (l + z.y would cancel for a confident prediction).
            top = z[0] + dz[0]
            top_old = z[0]
            for k in range(1, K):
                top = max(top, z[k] + dz[k])
                top_old = max(top_old, z[k])
            total = total_old = 0.0
            for k in range(K):
                total += math.exp(z[k] + dz[k] - top)
                total_old += math.exp(z[k] - top_old)
            return (top - top_old) + math.log(total / total_old) - mean

    def loss(self, Z, Y):
        return logsumexp(Z, axis=1) - np.einsum("ij,ij->i", Z, Y)

    def derivative(self, Z, Y):
        return softmax(Z, axis=1) - Y

    def hessian_product(self, D, Y, U):
        # (diag(p) - p p^T) u per sample (row sums by einsum: .sum(axis=1) over a few
        # columns cost most of a conjugate-gradient step of the gap certificate)
        P = D + Y
        PU = P * U
        return PU - P * np.einsum("ij->i", PU)[:, None]

    def bregman(self, Z, dZ, Y, D):
        # logsumexp(z + d) - logsumexp(z) - p.d = log E_p[exp(d)] - E_p[d], p = softmax(z).
        P = D + Y  # softmax(z), from the derivative
        C = dZ - np.einsum("ij,ij->i", P, dZ)[:, None]  # centred under p
        m2 = np.einsum("ij,ij->i", P, C**2)
        m3 = np.einsum("ij,ij->i", P, C**3)
        m4 = np.einsum("ij,ij->i", P, C**4)
        out = m2 / 2 + m3 / 6 + (m4 - 3 * m2**2) / 24
        big = np.flatnonzero(np.max(np.abs(dZ), axis=1) >= _TAYLOR_BELOW)
        if big.size:
            Zb, dZb = Z[big], dZ[big]
            with np.errstate(over="ignore", invalid="ignore"):
                out[big] = (
                    logsumexp(Zb + dZb, axis=1)
                    - logsumexp(Zb, axis=1)
                    - np.einsum("ij,ij->i", P[big], dZb)
                )
        return out
