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

    def bregman(self, Z, dZ, Y, D):
        return 0.5 * np.einsum("ij,ij->i", dZ, dZ)


class Logistic:
    """Binary log-loss with labels ``Y`` in {0, 1}: l(z, y) = log(1 + exp(-(2y - 1) z))."""

    curvature = 0.25

    def loss(self, Z, Y):
        # log(1 + exp(-m)) = -log(sigmoid(m)), computed without overflow.
        return -log_expit((2.0 * Y[:, 0] - 1.0) * Z[:, 0])

    def derivative(self, Z, Y):
        return expit(Z) - Y

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


class Multinomial:
    """Softmax cross-entropy with one-hot targets ``Y``: l(z, y) = logsumexp(z) - z . y."""

    curvature = 0.5  # the largest eigenvalue of diag(p) - p p^T is at most 1/2

    def loss(self, Z, Y):
        return logsumexp(Z, axis=1) - np.einsum("ij,ij->i", Z, Y)

    def derivative(self, Z, Y):
        return softmax(Z, axis=1) - Y

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
