"""Newton's method on the support of an lp fit: the last digits of a local minimum.

Why. Near a local minimum of an lp penalty, the coefficients close to lp's threshold sit
where the datafit's curvature and the penalty's concavity nearly cancel, and first-order
steps converge slowly there. Measured on text-like 2000 x 8000 (benchmarks/study_lp.py,
seed 1, l1/2): SR2's working-set solves took 46, 165 and 198 epochs for the criterion's
decades from 7e-3 to 1e-4, and did not reach 1e-6 in 1,000 epochs; the full batch, in
SR2's metric or in coordinate descent's, did not reach 1e-4 in 1,000 steps either.

What. Off zero, R(w) = alpha sum |w_j|^p is smooth on each orthant, so once a solve has
found a support, F restricted to it (the support's coefficients with their signs, and the
intercept) is a smooth function of a few variables. Newton's method on it, with the
explicit Hessian X~_S^T diag(s_i l''(z_i)) X~_S / n + diag(R''(w_S)) and a backtracking
line search on F, converges quadratically where that Hessian is positive definite (a
strict local minimum on the support). A step never takes a coefficient across zero: the
line search starts at most where the first one reaches it, and a coefficient set to zero
leaves the support (|w|^p falls fastest there). The iteration ends where the Hessian is
not positive definite, where F stops decreasing, or after ``MAX_ITER`` steps. Only F's
decrease is asked of it: the solver's criterion, on the full problem, decides what
happens next (a feature that should enter or leave the support).
One output only (the binary and the squared datafits).
"""

import math

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from ._certificate import _curvature_weights, _gram_affordable, support_hessian
from ._engine import loss_pass

__all__ = ["newton_on_support", "smooth_on_support"]

MAX_ITER = 20
# Armijo's constant of the line search, and its shortest step.
ARMIJO = 1e-4
MIN_STEP = 1e-10


def smooth_on_support(problem, penalty):
    """Whether :func:`newton_on_support` applies: a penalty with a second derivative off
    zero (``support_curvature``) and one output."""
    return problem.K == 1 and hasattr(penalty, "support_curvature")


def newton_on_support(problem, penalty, W):
    """Newton's method on F restricted to the support of ``W`` (and the intercept), from
    ``W``; returns (the new W, F there), W itself where no step lowered F, and F None
    where there is no support or its Hessian costs too much. A coefficient that a step
    takes to zero leaves the support, and the method goes on without it."""
    p = problem.p
    budget, F = MAX_ITER, None
    while budget > 0:
        columns = np.flatnonzero(W[:p, 0])
        if columns.size == 0 or not _gram_affordable(problem, columns):
            break
        rows = np.r_[columns, np.arange(p, problem.n_rows)]
        V, F, taken, dropped = _newton_iterations(problem.restricted(columns), penalty,
                                                  np.array(W[rows], dtype=np.float64),
                                                  budget)  # fmt: skip
        if taken:
            W = np.array(W, dtype=np.float64)
            W[rows] = V
        budget -= max(taken, 1)
        if not dropped:
            break
    return W, F


def _newton_iterations(sub, penalty, V, budget):
    """At most ``budget`` Newton steps on the restricted problem ``sub`` from V; returns
    (V, F there, the number of steps taken, whether the last one took a coefficient to
    zero)."""
    F, E = _objective(sub, penalty, V)
    for taken in range(budget):
        step = _newton_step(sub, penalty, V, E)
        found = None if step is None else _line_search(sub, penalty, V, F, *step)
        if found is None:
            return V, F, taken, False
        V, F_new, E, dropped = found
        if dropped or not F_new < F - 4.0 * np.finfo(float).eps * abs(F):
            return V, F_new, taken + 1, dropped
        F = F_new
    return V, F, budget, False


def _objective(sub, penalty, V):
    """F at V on the restricted problem, and s_i l'(z_i) there."""
    Z = sub.predict(V)
    f = loss_pass(sub.datafit.kernel(), Z, sub.Y, sub.sw, Z) / sub.n
    return f + penalty.value(V[: sub.p]), Z


def _newton_step(sub, penalty, V, E):
    """The Newton direction (the Hessian shifted where it is not positive definite) and
    F's slope along it, or None (no descent)."""
    q = sub.p
    G = sub.gradient(E)
    G[:q] += penalty.support_gradient(V[:q])
    H = support_hessian(sub, np.arange(q), _curvature_weights(sub, E))
    H[np.arange(q), np.arange(q)] += penalty.support_curvature(V[:q, 0])
    try:
        d = -cho_solve(cho_factor(H), G)
    except LinAlgError:
        d = -_shifted_solve(H, G)
    slope = float(np.vdot(G, d))
    if not (slope < 0 and math.isfinite(slope)):
        return None
    return d, slope


def _shifted_solve(H, G):
    """(H + mu I)^-1 G for an indefinite H, mu twice its most negative eigenvalue's size:
    a descent direction that is longest along the negative curvature (a coefficient on
    its way to zero, where R's concavity outweighs the datafit's curvature), so that the
    line search can take that coefficient to zero."""
    eigenvalues, vectors = np.linalg.eigh(H)
    shifted = eigenvalues + 2.0 * max(-float(eigenvalues[0]), 0.0) + 1e-12 * max(
        float(np.max(np.abs(eigenvalues))), 1e-300)
    return vectors @ ((vectors.T @ G) / shifted[:, None])


def _line_search(sub, penalty, V, F, d, slope):
    """Backtracking from the full step, or from the step that takes the first coefficient
    whose sign the full step would change exactly to zero; returns (V + t d, F there,
    s_i l'(z_i) there, whether a coefficient went to zero) at the first step with
    Armijo's decrease, or None."""
    q = sub.p
    with np.errstate(divide="ignore", invalid="ignore"):
        to_zero = np.where(np.sign(d[:q, 0]) == -np.sign(V[:q, 0]), -V[:q, 0] / d[:q, 0], np.inf)
    first = int(np.argmin(to_zero))
    t = min(1.0, float(to_zero[first]))
    while t >= MIN_STEP:
        trial = V + t * d
        dropped = t == to_zero[first]
        if dropped:
            trial[first] = 0.0
        F_trial, E = _objective(sub, penalty, trial)
        if F_trial <= F + ARMIJO * t * slope:
            return trial, F_trial, E, dropped
        t *= 0.5
    return None
