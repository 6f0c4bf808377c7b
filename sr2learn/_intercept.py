"""The exact intercept: the shift delta of every prediction that minimises
phi(delta) = sum_i s_i l(z_i + delta, y_i) for fixed coefficients.

Each checkpoint of a fit solves it (the criterion is measured at the best intercept for
the returned coefficients), so its cost is paid once per epoch: the value, gradient and
Hessian of phi come from one compiled pass over the predictions, through the datafit's
own compiled loss (``loss_derivative`` of its ``Kernel``). Near the minimiser, where
every checkpoint but a fit's first starts, that one pass is all that evaluates the loss:
the next gradients come from the probabilities it stored (:func:`_model_terms`). The
whole method is compiled: on small data (a CV fold of 1,200 rows, 3 classes) the Python
around two passes cost twice the passes themselves.
"""

import numba
import numpy as np

from ._compiled import JIT, loss_derivative

_NEWTON_STEPS = 60
_BACKTRACKS = 20
# The largest |shift| at which the stored probabilities stand in for a pass (see
# _model_terms): the implicit class's probability, known to eps absolutely, is then
# still exact to rounding.
_MODEL_SHIFT = 1.0
# Intercept shifts beyond this (a class absent from the data drives its intercept to
# -inf) are not pursued: exp(-50) is already below any probability that matters.
_INTERCEPT_LIMIT = 50.0
_EPS = float(np.finfo(np.float64).eps)


@numba.njit(**JIT)
def _phi_terms(fit, Z, Y, sw, delta, grad, hess, P):
    """phi(delta), writing its gradient into ``grad``, its Hessian into ``hess`` and, when
    ``P`` has rows, the probabilities p_i into ``P`` (for :func:`_model_terms`).

    The Hessian is sum_i s_i (diag(p_i) - p_i p_i^T) with p_i = l'(z_i) + y_i: the
    curvature of a log-partition, exact for the logistic (K = 1: p (1 - p)) and
    multinomial losses; the squared loss has its closed form and does not come here.
    """
    n, K = Z.shape
    store = P.shape[0] == n
    z = np.empty(K)
    d = np.empty(K)
    p = np.empty(K)
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
            p[k] = d[k] + Y[i, k]
            if store:
                P[i, k] = p[k]
        _add_curvature(hess, s, p)
    return value


@numba.njit(**JIT)
def _add_curvature(hess, s, p):
    """hess += s (diag(p) - p p^T)."""
    for k in range(p.shape[0]):
        sp = s * p[k]
        hess[k, k] += sp
        for j in range(p.shape[0]):
            hess[k, j] -= sp * p[j]


@numba.njit(**JIT)
def _model_terms(P, Y, sw, shift, grad, hess):
    """The gradient and Hessian of phi at ``shift`` from the point where the
    probabilities ``P`` were stored, without an exp per sample: a log-partition's
    probabilities move as p_k(shift) = p_k e^{shift_k} / (r + sum_j p_j e^{shift_j}),
    r = 1 - sum_j p_j the implicit class's (the logistic's class 0; 0 for the
    multinomial). r carries an absolute error of eps, so this is exact to rounding only
    for a shift of order 1 at most (the caller's ``_MODEL_SHIFT``)."""
    n, K = P.shape
    scale = np.exp(shift)
    p = np.empty(K)
    grad[:] = 0.0
    hess[:, :] = 0.0
    for i in range(n):
        s = sw[i]
        if s == 0.0:
            continue
        rest = 1.0
        total = 0.0
        for k in range(K):
            rest -= P[i, k]
            p[k] = P[i, k] * scale[k]
            total += p[k]
        total += max(rest, 0.0)
        for k in range(K):
            p[k] /= total
            grad[k] += s * (p[k] - Y[i, k])
        _add_curvature(hess, s, p)


@numba.njit(**JIT)
def _largest_abs(v):
    out = 0.0
    for x in v:
        out = max(out, abs(x))
    return out


@numba.njit(**JIT)
def _rounding_noise(value, n_terms):
    """The rounding level of phi's value, a sum of ``n_terms`` non-negative losses: |phi|
    is the sum of its terms' sizes, so a multiple of ``n_terms`` eps |phi| bounds the error
    of their sum (a fixed 64 eps |phi| was below the noise on 20,000 rows: steps were
    refused, and Newton ran its 60 steps of 20 halvings each at rounding level)."""
    return 4 * max(n_terms, 16) * _EPS * abs(value)


@numba.njit(**JIT)
def _newton_direction(hess, grad):
    """-H^+ g, the least-squares solution: the multinomial Hessian is singular along
    (1, ..., 1) (and nearly so along a class absent from the data)."""
    K = grad.shape[0]
    return -np.linalg.lstsq(hess, grad, rcond=K * _EPS)[0]


@numba.njit(**JIT)
def _newton(fit, Z, Y, sw):
    """Newton's method on phi; returns (delta, full passes, model passes).

    Near the minimiser (each checkpoint after the first: the epoch moved the intercept by
    about 1e-5) two steps reach rounding level, and the second is taken without a look.
    The first step's result is judged by the gradient there, from the probabilities
    stored by the first pass (:func:`_model_terms`, no exp): accepted when it halves the
    gradient. Otherwise, and from far away, a backtracking line search on phi's values
    (full passes)."""
    n, K = Z.shape
    delta, grad, hess = np.zeros(K), np.empty(K), np.empty((K, K))
    trial_grad, trial_hess = np.empty(K), np.empty((K, K))
    P = np.empty((n, K))
    no_store = np.empty((0, K))
    total = 0.0
    n_terms = 0
    for s in sw:
        total += s
        n_terms += s != 0.0
    value = _phi_terms(fit, Z, Y, sw, delta, grad, hess, P)
    value_at_delta = True
    full, model = 1, 0
    for _ in range(_NEWTON_STEPS):
        size = _largest_abs(grad)
        if not size > 1e-13 * total:
            break
        if not (np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
            break
        if _largest_abs(delta) > _INTERCEPT_LIMIT:
            break  # no finite minimiser (a class absent from the data): stop moving
        step = _newton_direction(hess, grad)
        if not _largest_abs(step) > 1e-15 * (1.0 + _largest_abs(delta)):
            break  # at rounding level
        slope = np.dot(grad, step)
        if -slope <= _rounding_noise(value, n_terms):
            # Newton's predicted decrease (half the decrement, -slope / 2) is below phi's
            # rounding (phi at the last full pass: the scale is what matters): no line
            # search can see it, and the model is exact at this scale.
            delta += step
            break
        if _largest_abs(delta + step) <= _MODEL_SHIFT:
            _model_terms(P, Y, sw, delta + step, trial_grad, trial_hess)
            model += 1
            if _largest_abs(trial_grad) <= 0.5 * size:
                delta += step
                grad, trial_grad = trial_grad, grad
                hess, trial_hess = trial_hess, hess
                value_at_delta = False
                continue
        if not value_at_delta:
            value = _phi_terms(fit, Z, Y, sw, delta, grad, hess, no_store)
            full += 1
            value_at_delta = True
        t, trial, passes = _backtrack(fit, Z, Y, sw, delta, step, value, slope, size,
                                      n_terms, trial_grad, trial_hess)  # fmt: skip
        full += passes
        if t == 0.0:
            break  # no decrease left to find
        shrunk = _largest_abs(trial_grad) < size
        if shrunk or trial <= value:
            delta += t * step
            value = trial
            grad, trial_grad = trial_grad, grad
            hess, trial_hess = trial_hess, hess
        if not shrunk:
            # A step accepted on the value's rounding noise that did not shrink the
            # gradient: nothing is left to gain, and repeating it cost 20 passes a step.
            break
    return delta, full, model


@numba.njit(**JIT)
def _backtrack(fit, Z, Y, sw, delta, step, value, slope, size, n_terms, grad, hess):
    """Armijo's backtracking along ``step``: (t, phi there, passes), with the gradient and
    Hessian there in ``grad`` and ``hess``; t = 0 when no step length is accepted."""
    no_store = np.empty((0, Z.shape[1]))
    t = 1.0
    for attempt in range(_BACKTRACKS):
        trial = _phi_terms(fit, Z, Y, sw, delta + t * step, grad, hess, no_store)
        # Near the minimiser phi's decrease falls below its rounding error, and Armijo's
        # test fails on noise while Newton's step still halves the gradient: such a step
        # is accepted when phi did not rise beyond rounding.
        halved = _largest_abs(grad) <= 0.5 * size
        if trial <= value + 1e-4 * t * slope or (
            halved and trial <= value + _rounding_noise(value, n_terms)
        ):
            return t, trial, attempt + 1
        t *= 0.5
    return 0.0, value, _BACKTRACKS


def newton_intercept(fit, Z, Y, sw):
    """The shift delta minimising phi for the compiled kernel ``fit``."""
    return newton_passes(fit, Z, Y, sw)[0]


def newton_passes(fit, Z, Y, sw):
    """(delta, the passes over the rows that Newton's method made with the loss (an exp
    per sample and class), those from the stored probabilities)."""
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    sw = np.ascontiguousarray(sw, dtype=np.float64)
    return _newton(fit, Z, Y, sw)
