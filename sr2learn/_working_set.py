"""Working-set outer loop around the SR2 solver, for problems with many features.

Start from the features with the largest optimality violation (``penalty.subdiff_distance``
of the full gradient), run SR2 on the problem restricted to them, then check optimality on
all features with one full gradient and grow the set, doubling it as skglm and celer do,
until the full problem's stationarity measure meets ``tol``. The diagnostics stay about the
full problem: each outer iteration records a full-problem checkpoint, and the steps of the
inner solves are appended to the same trace.
"""

import math

import numpy as np

from ._sr2 import LinearProblem, SolverState, solve
from .diagnostics import CHECKPOINT_KEYS, ConvergenceDiagnostics

__all__ = ["solve_working_set", "use_working_set"]

# Below this many features a working set cannot save much: the full problem is solved.
MIN_FEATURES = 2000
INITIAL_SIZE = 64


def use_working_set(option, n_features, penalty):
    """Resolve ``working_set="auto"``: on for at least MIN_FEATURES features and a
    separable penalty (the k-sparse ball couples all coordinates)."""
    if option == "auto":
        return n_features >= MIN_FEATURES and penalty.__class__.__name__ != "L0Ball"
    return bool(option)


def _violation(penalty, W, G, lipschitz):
    """Per feature, how far from optimal it is: the larger of dist(-grad_j, dR_j(w_j))
    and the size of its proximal-gradient step at sigma = L. The second matters for the
    nonconvex penalties, whose subdifferential at zero is the whole line (a zero
    coordinate never "violates"), yet a step can leave zero."""
    p = W.shape[0]
    dist = penalty.subdiff_distance(W, G)
    if lipschitz > 0 and math.isfinite(lipschitz):
        move = lipschitz * np.abs(penalty.prox(W - G / lipschitz, 1.0 / lipschitz) - W)
        dist = np.maximum(dist, move)
    return np.linalg.norm(np.atleast_2d(dist).reshape(p, -1), axis=1)


def _full_checkpoint(problem, penalty, state, rule, rng, variance_reduction, tol, tol_scale,
                     variance_estimate):  # fmt: skip
    """A full-problem checkpoint at ``state.W`` (no step is taken): the checkpoint, the
    tolerance scale and the full gradient at W."""
    probe = ConvergenceDiagnostics()
    out = solve(problem, penalty, SolverState(state.W, state.sigma, state.batch_size), rule,
                max_epochs=0, tol=tol, variance_reduction=variance_reduction, rng=rng,
                diagnostics=probe, variance_estimate=variance_estimate,
                tol_scale=tol_scale)  # fmt: skip
    return probe.last_checkpoint(), probe.tol_scale, out.grad, out.derivatives


def solve_working_set(
    problem,
    penalty,
    state,
    rule,
    *,
    max_epochs,
    tol,
    variance_reduction,
    rng,
    diagnostics,
    variance_estimate="exact",
    verbose=0,
):
    """Solve with a growing working set; returns the new full-problem state.

    ``max_epochs`` bounds the epochs of the inner solves together; ``tol`` is compared
    with the full problem's stationarity measure, scaled as in :func:`solve`.
    """
    p = problem.p
    W = state.W.copy()
    sigma, b = state.sigma, state.batch_size
    epochs = state.n_epochs
    steps = state.n_steps
    size = INITIAL_SIZE
    tol_scale = None
    converged = False
    accepted = []  # squared lengths of the accepted steps since the last checkpoint
    while True:
        full_state = SolverState(W, sigma, b, steps, epochs)
        last, tol_scale, G, D = _full_checkpoint(problem, penalty, full_state, rule, rng,
                                           variance_reduction, tol, tol_scale,
                                           variance_estimate)  # fmt: skip
        if accepted:
            last["step_sq"] = float(np.mean(accepted))
            last["step_max"] = math.sqrt(max(accepted))
            C = 3.0 * (last["lipschitz"] ** 2 + last["sigma_max"] ** 2)
            last["bound_expected"] = C * last["step_sq"] + 3.0 * last["variance"]
        last.update(iteration=steps, epoch=epochs)
        diagnostics.record_checkpoint(**{k: last[k] for k in CHECKPOINT_KEYS})
        diagnostics.tol_scale = tol_scale
        diagnostics.tol = None if tol is None else tol * tol_scale
        if tol is not None and last["measure"] <= tol * tol_scale:
            converged = True
            break
        used = epochs - state.n_epochs
        if used >= max_epochs:
            break
        violation = _violation(penalty, W[:p], G[:p], last["lipschitz"])
        support = np.flatnonzero(np.any(W[:p] != 0, axis=1))
        size = max(size, 2 * support.size)
        violation[support] = np.inf  # the support always stays in the set
        # Largest violation first; among equal ones (zero, mostly), largest gradient.
        grad_size = np.linalg.norm(G[:p].reshape(p, -1), axis=1)
        ws = np.sort(np.lexsort((-grad_size, -violation))[: min(p, size)])
        X_ws = problem.X[:, ws]
        sub = LinearProblem(X_ws, problem.Y, problem.sw, problem.datafit, problem.c)
        # A column subset has a smaller spectral norm: the full problem's L bounds the
        # restricted one's, without another eigenvalue computation per outer iteration.
        sub._lipschitz = problem.lipschitz()
        rows = np.r_[ws, np.arange(p, problem.n_rows)]
        sub_state = SolverState(W[rows], sigma, b, steps, epochs)
        inner = ConvergenceDiagnostics()
        # Solve the restricted problem a decade below the current full-problem measure.
        inner_tol = None if tol is None else max(tol * tol_scale, 0.1 * last["measure"])
        # W is zero off the set, so the full checkpoint's derivatives and the gradient's
        # rows on the set are the restricted problem's SVRG reference.
        reference = None if D is None else (D, G[rows])
        new = solve(sub, penalty, sub_state, rule, max_epochs=max_epochs - used,
                    tol=inner_tol, tol_scale=1.0, variance_reduction=variance_reduction,
                    rng=rng, diagnostics=inner, variance_estimate=variance_estimate,
                    verbose=verbose, reference=reference, light=True)  # fmt: skip
        diagnostics._steps.extend(inner._steps)
        accepted = [row[5] for row in inner._steps if row[4]]
        diagnostics.n_sigma_clamps += inner.n_sigma_clamps
        W[rows] = new.W
        sigma, b, steps, epochs = new.sigma, new.batch_size, new.n_steps, new.n_epochs
        if verbose:
            print(f"[SR2 working set] {ws.size} features, full measure {last['measure']:.3e}")
        size *= 2
    diagnostics.converged = converged
    return SolverState(W=W, sigma=sigma, batch_size=b, n_steps=steps, n_epochs=epochs)
