"""The exact intercept: the shift delta of every prediction that minimises
phi(delta) = sum_i s_i l(z_i + delta, y_i) for fixed coefficients.

Each checkpoint of a fit solves it (the criterion is measured at the best intercept for
the returned coefficients), so its cost is paid once per epoch: the value, gradient and
Hessian of phi come from one compiled pass over the predictions, through the datafit's
own compiled loss (``loss_derivative`` of its ``Kernel``), and Newton's method needs
only a few passes.
"""

import numba
import numpy as np

from ._compiled import JIT, loss_derivative

_NEWTON_STEPS = 60
# Intercept shifts beyond this (a class absent from the data drives its intercept to
# -inf) are not pursued: exp(-50) is already below any probability that matters.
_INTERCEPT_LIMIT = 50.0


@numba.njit(**JIT)
def _phi_terms(fit, Z, Y, sw, delta, grad, hess):
    """phi(delta), writing its gradient into ``grad`` and its Hessian into ``hess``.

    The Hessian is sum_i s_i (diag(p_i) - p_i p_i^T) with p_i = l'(z_i) + y_i: the
    curvature of a log-partition, exact for the logistic (K = 1: p (1 - p)) and
    multinomial losses; the squared loss has its closed form and does not come here.
    """
    n, K = Z.shape
    z = np.empty(K)
    d = np.empty(K)
    grad[:] = 0.0
    hess[:, :] = 0.0
    value = 0.0
    for i in range(n):
        s = sw[i]
        if s == 0.0:
            continue
        for k in range(K):
            z[k] = Z[i, k] + delta[k]
        value += s * loss_derivative(fit, z, Y[i], d)
        for k in range(K):
            grad[k] += s * d[k]
            pk = s * (d[k] + Y[i, k])
            hess[k, k] += pk
            for j in range(K):
                hess[k, j] -= pk * (d[j] + Y[i, j])
    return value


def newton_intercept(fit, Z, Y, sw):
    """Newton's method with a backtracking line search on phi (the compiled kernel
    ``fit``); the multinomial Hessian is singular along (1, ..., 1), hence the
    least-squares solve."""
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    sw = np.ascontiguousarray(sw, dtype=np.float64)
    K = Z.shape[1]
    delta, grad, hess = np.zeros(K), np.empty(K), np.empty((K, K))
    total = float(sw.sum())
    n_terms = int(np.count_nonzero(sw))
    value = _phi_terms(fit, Z, Y, sw, delta, grad, hess)
    for _ in range(_NEWTON_STEPS):
        if not np.max(np.abs(grad)) > 1e-13 * total:
            break
        if not np.all(np.isfinite(grad)) or np.max(np.abs(delta)) > _INTERCEPT_LIMIT:
            break  # no finite minimiser (a class absent from the data): stop moving
        step = -np.linalg.lstsq(hess, grad, rcond=None)[0]
        if not np.max(np.abs(step)) > 1e-15 * (1.0 + np.max(np.abs(delta))):
            break  # at rounding level
        slope = float(grad @ step)
        if -slope <= _rounding_noise(value, n_terms):
            # Newton's predicted decrease (half the decrement, -slope / 2) is below phi's
            # rounding: no line search can see it, and the model is exact at this scale.
            delta = delta + step
            break
        t = 1.0
        trial_grad, trial_hess = np.empty(K), np.empty((K, K))
        for _ in range(20):
            trial = _phi_terms(fit, Z, Y, sw, delta + t * step, trial_grad, trial_hess)
            if trial <= value + 1e-4 * t * slope or _rounding_level_progress(
                value, trial, grad, trial_grad, n_terms
            ):
                break
            t *= 0.5
        else:
            break  # no decrease left to find
        if not np.max(np.abs(trial_grad)) < np.max(np.abs(grad)):
            # A step accepted on the value's rounding noise that did not shrink the
            # gradient: nothing is left to gain, and repeating it cost 20 passes a step.
            if trial <= value:
                delta, value, grad, hess = delta + t * step, trial, trial_grad, trial_hess
            break
        delta, value, grad, hess = delta + t * step, trial, trial_grad, trial_hess
    return delta


def _rounding_level_progress(value, trial, grad, trial_grad, n_terms):
    """Near the minimiser phi's decrease falls below its rounding error, and Armijo's
    test fails on noise while Newton's step still halves the gradient: accept such a step
    when phi did not rise beyond rounding."""
    halved = np.max(np.abs(trial_grad)) <= 0.5 * np.max(np.abs(grad))
    return trial <= value + _rounding_noise(value, n_terms) and halved


def _rounding_noise(value, n_terms):
    """The rounding level of phi's value, a sum of ``n_terms`` non-negative losses: |phi|
    is the sum of its terms' sizes, so a multiple of ``n_terms`` eps |phi| bounds the error
    of their sum (a fixed 64 eps |phi| was below the noise on 20,000 rows: steps were
    refused, and Newton ran its 60 steps of 20 halvings each at rounding level)."""
    return 4 * max(n_terms, 16) * np.finfo(np.float64).eps * abs(value)
