"""Working-set outer loop around the SR2 solver, for problems with many features.

Start from the features with the largest optimality violation (``penalty.subdiff_distance``
of the full gradient), run SR2 on the problem restricted to them, then check optimality on
all features with one full gradient and grow the set, doubling it as skglm and celer do,
until the full problem's stationarity measure meets ``tol``. The diagnostics stay about the
full problem: each outer iteration records a full-problem checkpoint, and the steps of the
inner solves are appended to the same trace. For a penalty smooth off zero (lp, one
output), each inner solve ends with Newton's method on the support
(:mod:`sr2learn._support_newton`), whose steps are not in the trace.
"""

import math
from dataclasses import replace

import numpy as np

from ._certificate import NewtonCertificate, NewtonMemo
from ._sr2 import SolverState, _checkpoint, _record, _Settings, _StepLog, solve
from ._support_newton import newton_on_support, smooth_on_support
from .diagnostics import ConvergenceDiagnostics

__all__ = ["solve_working_set", "use_working_set"]

# Below this many features a working set cannot save much: the full problem is solved.
MIN_FEATURES = 2000
INITIAL_SIZE = 64


def use_working_set(option, n_features, penalty):
    """Resolve ``working_set="auto"``: on for at least MIN_FEATURES features and a
    separable penalty (a non-separable one couples all coordinates)."""
    if option == "auto":
        return n_features >= MIN_FEATURES and penalty.separable
    return bool(option)


def _violation(problem, penalty, W, G):
    """Per feature, how far from optimal it is, in the metric's units: the larger of
    dist(-grad_j, dR_j(w_j)) and the size of its proximal-gradient step at sigma = L. The
    second matters for the nonconvex penalties, whose subdifferential at zero is the whole
    line (a zero coordinate never "violates"), yet a step can leave zero."""
    p = problem.p
    scale = np.sqrt(problem.inv_metric[:p])[:, None]
    dist = penalty.subdiff_distance(W[:p], G[:p]) * scale
    L = problem.lipschitz()
    if L > 0 and math.isfinite(L):
        t = problem.inv_metric[:p, None] / L
        move = np.abs(penalty.prox(W[:p] - G[:p] * t, t) - W[:p]) * L / scale
        dist = np.maximum(dist, move)
    return np.linalg.norm(np.atleast_2d(dist).reshape(p, -1), axis=1)


def _working_set(problem, penalty, W, G, size):
    """The ``size`` features with the largest violation, the support always included;
    among equal violations (zero, mostly), the largest gradient first."""
    p = problem.p
    violation = _violation(problem, penalty, W, G)
    support = np.flatnonzero(np.any(W[:p] != 0, axis=1))
    violation[support] = np.inf
    grad_size = np.linalg.norm(G[:p].reshape(p, -1) * np.sqrt(problem.inv_metric[:p, None]),
                               axis=1)  # fmt: skip
    size = min(p, size)
    if size == p:
        return np.arange(p)
    # The first ``size`` of the order (violation, then gradient, then index, descending)
    # without sorting all p features (a lexsort of 50,000 took 4 ms an outer iteration,
    # an argsort of the ties at zero violation 2.5 ms): those above the size-th largest
    # violation, then the ties at it by their gradient, by the same selection.
    cut = np.partition(violation, p - size)[p - size]
    above = np.flatnonzero(violation > cut)
    tied = np.flatnonzero(violation == cut)
    return np.sort(np.r_[above, tied[_largest(grad_size[tied], size - above.size)]])


def _largest(values, k):
    """The positions of the k largest values, the first ones among equal values."""
    if k >= values.size:
        return np.arange(values.size)
    cut = np.partition(values, values.size - k)[values.size - k]
    above = np.flatnonzero(values > cut)
    return np.sort(np.r_[above, np.flatnonzero(values == cut)[: k - above.size]])


def solve_working_set(problem, penalty, state, rule, *, max_epochs, tol, variance_reduction,
                      rng, diagnostics, variance_estimate="exact", verbose=0,
                      stability_floor=True, light=False):  # fmt: skip
    """Solve with a growing working set; returns the new full-problem state.

    ``max_epochs`` bounds the epochs of the inner solves together; ``tol`` is compared with
    the full problem's criterion (see :func:`sr2learn._checkpoint.checkpoint`).
    ``light=True`` (as :func:`sr2learn._sr2.solve`'s): the full-problem checkpoints skip
    the diagnostics' Theorem 4 terms and only the inner solves' steps reach
    ``diagnostics`` (a continuation's stages, whose checkpoints are of another alpha).
    """
    # The inner solves' Newton dual points serve the full checkpoints that follow them.
    problem.newton_memo = NewtonMemo()
    try:
        return _outer_loop(problem, penalty, state, rule, max_epochs=max_epochs, tol=tol,
                           variance_reduction=variance_reduction, rng=rng,
                           diagnostics=diagnostics, variance_estimate=variance_estimate,
                           verbose=verbose, stability_floor=stability_floor,
                           light=light)  # fmt: skip
    finally:
        problem.newton_memo = None


def _outer_loop(problem, penalty, state, rule, *, max_epochs, tol, variance_reduction, rng,
                diagnostics, variance_estimate, verbose, stability_floor, light):  # fmt: skip
    p = problem.p
    W = np.array(state.W, dtype=np.float64)
    sigma, b = state.sigma, state.batch_size
    epochs, steps = state.n_epochs, state.n_steps
    size = INITIAL_SIZE
    log = _StepLog(sigma)
    diag_rng = np.random.default_rng(rng.integers(2**32))
    converged = False
    last_criterion = None
    # The last digits of an lp fit's local minimum from Newton's method on its support.
    newton = smooth_on_support(problem, penalty)
    # Each outer iteration costs an inner solve: its certificate is tried every time.
    settings = _Settings(0, tol, variance_reduction, variance_estimate=variance_estimate,
                         verbose=verbose, certificate=NewtonCertificate(backoff=False))  # fmt: skip
    while True:
        ck = _checkpoint(problem, penalty, W, sigma, b, None, settings, diag_rng, not light)
        if not light:
            _record(diagnostics, ck, sigma, b, log, steps, epochs, verbose)
        W = ck.W
        converged = tol is not None and ck.criterion <= tol
        if converged or epochs - state.n_epochs >= max_epochs:
            break
        # Twice the support (at least INITIAL_SIZE); doubled only when the last inner
        # solve did not gain a decade on the full problem (features it lacked mattered).
        support = int(np.count_nonzero(np.any(W[:p] != 0, axis=1)))
        stalled = last_criterion is not None and ck.criterion > 0.1 * last_criterion
        size = max(INITIAL_SIZE, 2 * support, 2 * size if stalled else 0)
        last_criterion = ck.criterion
        ws = _working_set(problem, penalty, W, ck.G, size)
        # Solve the restricted problem a decade below the full problem's criterion.
        inner_tol = None if tol is None else max(tol, 0.1 * ck.criterion)
        sub_start = epochs
        new, inner = _solve_restricted(
            problem, penalty, ck, ws, SolverState(W, sigma, b, steps, epochs), rule,
            max_epochs=max_epochs - (epochs - state.n_epochs), tol=inner_tol,
            variance_reduction=variance_reduction, rng=rng,
            stability_floor=stability_floor)  # fmt: skip
        diagnostics.extend_steps(inner)
        log.add(inner.trace_array())
        W = new.W
        if newton:
            W = newton_on_support(problem, penalty, W)[0]
        sigma, b, steps, epochs = new.sigma, new.batch_size, new.n_steps, new.n_epochs
        if verbose:
            print(f"[SR2 working set] {ws.size} features, criterion {ck.criterion:.3e}, "
                  f"{new.n_epochs - sub_start} epochs")  # fmt: skip
    if not light:
        diagnostics.converged = converged
    return SolverState(W, sigma, b, steps, epochs)


def _solve_restricted(problem, penalty, ck, ws, state, rule, **options):
    """SR2 on the problem restricted to the features ``ws`` from ``state`` (W zero off
    the set); returns (the new state, its W over all the features, the inner diagnostics).
    The checkpoint ``ck`` at W, restricted to the set's rows, is the restricted problem's
    at W (its first checkpoint, and first SVRG reference). The restricted problem (a copy
    of the set's columns, when small) is freed on return, before the next full-problem
    checkpoint, so that the two do not add up in the fit's peak memory."""
    sub = problem.restricted(ws)  # keeps the full problem's L and criterion scale
    rows = np.r_[ws, np.arange(problem.p, problem.n_rows)]
    start = replace(ck, W=state.W[rows], G=ck.G[rows], record=None)
    inner = ConvergenceDiagnostics()
    new = solve(sub, penalty, replace(state, W=state.W[rows]), rule, diagnostics=inner,
                start=start, light=True, **options)  # fmt: skip
    W = state.W.copy()
    W[rows] = new.W
    return replace(new, W=W), inner
