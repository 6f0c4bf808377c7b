"""Data-fitting terms f(w) = sum_i s_i l(z_i, y_i) / n of linear models, z_i = x_i . w + b.

A datafit works on the linear predictions ``Z`` (shape ``(m, K)``) of ``m`` samples
and their encoded targets ``Y``; the solver owns the matrix products. Sample weights
``s`` are normalised by the caller to mean 1 over the training set, so that the mean
over a uniformly drawn minibatch is an unbiased estimate of f.

Each datafit exposes

- ``loss(Z, Y)``: the per-sample losses, shape ``(m,)``;
- ``derivative(Z, Y)``: dl/dz per sample, shape ``(m, K)``;
- ``bregman(Z, dZ, Y)``: l(z + dz) - l(z) - l'(z) dz per sample, computed without the
  cancellation of the plain difference (so the SR2 ratio stays exact when steps reach
  rounding level);
- ``curvature``: a bound on the second derivative of l in z (spectral norm of the
  per-sample Hessian), which turns ||X~||_2^2 / n into the Lipschitz constant of
  grad f (DESIGN §3).
"""

import numpy as np
from scipy.special import expit, log_expit, logsumexp, softmax

# Below this |dz| the Bregman terms use their Taylor series (4th order: relative error
# about dz^3 / 60, against a cancellation error of eps / dz^2 in the plain difference).
_TAYLOR_BELOW = 1e-2

__all__ = ["Quadratic", "Logistic", "Multinomial"]


class Quadratic:
    """Half squared residual, l(z, y) = (z - y)^2 / 2 (the objective of ``Lasso``)."""

    curvature = 1.0

    def loss(self, Z, Y):
        R = Z - Y
        return 0.5 * np.einsum("ij,ij->i", R, R)

    def derivative(self, Z, Y):
        return Z - Y

    def bregman(self, Z, dZ, Y):
        return 0.5 * np.einsum("ij,ij->i", dZ, dZ)


class Logistic:
    """Binary log-loss with labels ``Y`` in {0, 1}: l(z, y) = log(1 + exp(-(2y - 1) z))."""

    curvature = 0.25

    def loss(self, Z, Y):
        # log(1 + exp(-m)) = -log(sigmoid(m)), computed without overflow.
        return -log_expit((2.0 * Y[:, 0] - 1.0) * Z[:, 0])

    def derivative(self, Z, Y):
        return expit(Z) - Y

    def bregman(self, Z, dZ, Y):
        # Independent of y: softplus(z + d) - softplus(z) - sigmoid(z) d.
        z, d = Z[:, 0], dZ[:, 0]
        p = expit(z)
        q = p * (1.0 - p)
        series = d * d * (q / 2 + d * (q * (1 - 2 * p) / 6 + d * q * (1 - 6 * q) / 24))
        with np.errstate(over="ignore", invalid="ignore"):
            direct = np.logaddexp(0.0, z + d) - np.logaddexp(0.0, z) - p * d
        return np.where(np.abs(d) < _TAYLOR_BELOW, series, direct)


class Multinomial:
    """Softmax cross-entropy with one-hot targets ``Y``: l(z, y) = logsumexp(z) - z . y."""

    curvature = 0.5  # the largest eigenvalue of diag(p) - p p^T is at most 1/2

    def loss(self, Z, Y):
        return logsumexp(Z, axis=1) - np.einsum("ij,ij->i", Z, Y)

    def derivative(self, Z, Y):
        return softmax(Z, axis=1) - Y

    def bregman(self, Z, dZ, Y):
        # logsumexp(z + d) - logsumexp(z) - p.d = log E_p[exp(d)] - E_p[d], with p = softmax(z).
        P = softmax(Z, axis=1)
        C = dZ - np.einsum("ij,ij->i", P, dZ)[:, None]  # centred under p
        m2 = np.einsum("ij,ij->i", P, C**2)
        m3 = np.einsum("ij,ij->i", P, C**3)
        m4 = np.einsum("ij,ij->i", P, C**4)
        series = m2 / 2 + m3 / 6 + (m4 - 3 * m2**2) / 24
        with np.errstate(over="ignore", invalid="ignore"):
            direct = logsumexp(Z + dZ, axis=1) - logsumexp(Z, axis=1) - np.einsum("ij,ij->i", P, dZ)
        small = np.max(np.abs(dZ), axis=1) < _TAYLOR_BELOW
        return np.where(small, series, direct)
