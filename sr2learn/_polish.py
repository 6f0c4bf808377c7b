"""Coordinate-wise polish of a fit with a nonconvex penalty that asks for it (``Lp``).

Why. A fixed point of the proximal-gradient map is weaker the shorter its step: at zero,
lp's entry threshold on |g_j| grows as the step shrinks, so a feature whose gradient
would carry it over the penalty's hump at a longer step stays out. SR2's steps are
1/sigma in the solver's metric, one sigma for all coordinates (held above L / (2b) under
SVRG); coordinate descent (skglm) steps each coordinate by 1/L_j, its own curvature: 10
to 19 times longer on the rare columns where the two solutions below differ. Measured on
bench_breadth.py's text-like 5000 x 20000 l1/2 problem: SR2 stopped 6.2% above skglm's
objective, at a point that coordinate descent leaves (a feature enters), while skglm's
point is a fixed point of SR2's map.

What. While a coordinate-descent step (1/L_j on every coordinate) would change the
fitted support, a round of deterministic SR2 (the full batch: no variance, no sigma
floor) in the Jacobi metric d_j^2 = sum_i s_i x_ij^2 / n, where the step 1/sigma at
sigma = c (the datafit's curvature constant) is 1/L_j on every coordinate; the rule
accepts only steps that lower F. The round stops a decade above ``tol`` (it only chooses
the support), and the fit's own solver then meets ``tol`` from there. The polish ends
when the support is a fixed point of coordinate descent's steps (the test skglm's
"fixpoint" working sets use), when a round gains nothing, or when max_iter is spent.
"""

from dataclasses import replace

import numpy as np

from ._checkpoint import checkpoint
from ._engine import column_moments
from ._problem import LinearProblem
from ._sr2 import SolverState
from ._working_set import solve_working_set
from .diagnostics import ConvergenceDiagnostics

__all__ = ["coordinate_metric", "polish"]

# The polish's sigma may range this far either side of the coordinate curvature.
SIGMA_RANGE = 1e6
# A round stops a decade above the fit's tol: it only moves the support, and the fit's
# own solver then meets tol (a round to tol itself took 4 times the epochs for the same
# objective on the text-like l1/2 problem; at 1e-2 a round often took no step at all).
ROUND_TOL_FACTOR = 10.0


def coordinate_metric(problem):
    """The Jacobi metric (d_j^2 = sum_i s_i x_ij^2 / n per coefficient, 1 for an empty
    column; the intercept's column of ones gives 1): the metric in which every coordinate
    has the curvature of the datafit's constant."""
    sq, mass = np.zeros(problem.p), np.zeros(problem.p)
    column_moments(problem.data, sq, mass)
    metric = sq / problem.n
    metric[~(metric > 0) | ~np.isfinite(metric)] = 1.0
    return metric, 1.0


def support_moves(problem, penalty, W):
    """How many coefficients one proximal-gradient step at sigma = ``problem.lipschitz()``
    would move onto or off zero."""
    ck = checkpoint(problem, penalty, W)
    p = problem.p
    t = problem.inv_metric[:p, None] / problem.lipschitz()
    moved = penalty.prox(ck.W[:p] - ck.G[:p] * t, t)
    return int(np.count_nonzero((moved != 0) != (ck.W[:p] != 0))), ck.objective


def polish(problem, penalty, state, rule, *, resolve, max_epochs, tol, rng, diagnostics):
    """Polish ``state`` (a fit of ``problem``) coordinate-wise; returns the new state.

    ``resolve(state)`` runs the fit's own solver from ``state`` (it records its checkpoints
    and ``converged`` in ``diagnostics``); the rounds' steps are appended to
    ``diagnostics``' trace. ``max_epochs``: the epochs left of the fit's budget.
    """
    if problem.columns is not None:
        return state
    curvature = problem.datafit.curvature
    jacobi = LinearProblem(problem.X, problem.Y, problem.sw, problem.datafit,
                           problem.fit_intercept, coordinate_metric(problem))  # fmt: skip
    # Its criterion's step 1/L is then coordinate descent's step on every coordinate.
    jacobi._lipschitz = curvature
    round_rule = replace(rule, sigma_min=curvature / SIGMA_RANGE,
                         sigma_max=curvature * SIGMA_RANGE)  # fmt: skip
    budget_end = state.n_epochs + max_epochs
    moves, objective = support_moves(jacobi, penalty, state.W)
    while moves and state.n_epochs < budget_end:
        start = SolverState(state.W, curvature, problem.n, state.n_steps, state.n_epochs)
        inner = ConvergenceDiagnostics(tol=tol)
        new = solve_working_set(jacobi, penalty, start, round_rule,
                                max_epochs=budget_end - state.n_epochs, tol=ROUND_TOL_FACTOR * tol,
                                variance_reduction=None, rng=rng, diagnostics=inner)  # fmt: skip
        diagnostics.extend_steps(inner)
        state = resolve(replace(state, W=new.W, n_steps=new.n_steps, n_epochs=new.n_epochs))
        moves, now = support_moves(jacobi, penalty, state.W)
        if not now < objective:
            break
        objective = now
    return state
