"""Data-fitting terms f(w) = sum_i s_i l(z_i, y_i) / n of linear models, z_i = x_i . w + b.

A datafit works on the linear predictions ``Z`` (shape ``(m, K)``) of ``m`` samples
and their encoded targets ``Y``; the solver owns the matrix products. Sample weights
``s`` are normalised by the caller to mean 1 over the training set, so that the mean
over a uniformly drawn minibatch is an unbiased estimate of f.

Each datafit exposes

- ``loss(Z, Y)``: the per-sample losses, shape ``(m,)``;
- ``derivative(Z, Y)``: dl/dz per sample, shape ``(m, K)``;
- ``curvature``: a bound on the second derivative of l in z (spectral norm of the
  per-sample Hessian), which turns ||X~||_2^2 / n into the Lipschitz constant of
  grad f (DESIGN §3).
"""

import numpy as np
from scipy.special import expit, log_expit, logsumexp, softmax

__all__ = ["Quadratic", "Logistic", "Multinomial"]


class Quadratic:
    """Half squared residual, l(z, y) = (z - y)^2 / 2 (the objective of ``Lasso``)."""

    curvature = 1.0

    def loss(self, Z, Y):
        R = Z - Y
        return 0.5 * np.einsum("ij,ij->i", R, R)

    def derivative(self, Z, Y):
        return Z - Y


class Logistic:
    """Binary log-loss with labels ``Y`` in {0, 1}: l(z, y) = log(1 + exp(-(2y - 1) z))."""

    curvature = 0.25

    def loss(self, Z, Y):
        # log(1 + exp(-m)) = -log(sigmoid(m)), computed without overflow.
        return -log_expit((2.0 * Y[:, 0] - 1.0) * Z[:, 0])

    def derivative(self, Z, Y):
        return expit(Z) - Y


class Multinomial:
    """Softmax cross-entropy with one-hot targets ``Y``: l(z, y) = logsumexp(z) - z . y."""

    curvature = 0.5  # the largest eigenvalue of diag(p) - p p^T is at most 1/2

    def loss(self, Z, Y):
        return logsumexp(Z, axis=1) - np.einsum("ij,ij->i", Z, Y)

    def derivative(self, Z, Y):
        return softmax(Z, axis=1) - Y
