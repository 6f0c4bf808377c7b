"""Polish of a fit with a nonconvex penalty that asks for it (``Lp``): coordinate-wise
rounds (several outputs), or the entry search (one output).

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

Entry search, where Newton's method on the support applies (:mod:`sr2learn._support_newton`:
one output). Coordinate descent's fixed points are themselves many, and which one a fit
reaches depends on its path. Measured (benchmarks/study_lp.py, text-like 2000 x 8000,
5000 x 20000 and 10000 x 30000, seeds 0-2, l1/2 and l2/3): after the rounds above, 6 of
18 fits ended more than 0.1% above skglm's objective (up to +2.2%); at those points a
zero feature whose one-coordinate step used the datafit's curvature at w, sum_i s_i
l''(z_i) x_ij^2 / n, rather than its bound L_j, lowered F (on text data many rows are
predicted with confidence, and a rare feature's curvature there is a small fraction of
L_j). So instead of the rounds: from the fit, the zero features' entries under that local
quadratic model (the curvature held above ``CURVATURE_FLOOR`` L_j, under which the model
proposed absurd values on features seen in one or two confident rows) are ranked by the
model's decrease of F, and its best ``EXACT_CANDIDATES`` by the exact decrease of F when
each enters alone at the model's value (the model ranks rare features too high: on
2000 x 8000 seed 3, l1/2, the search stopped 7% above skglm's objective while single
entries with an exact gain remained); the best ``ENTER`` enter, Newton's method on the
support follows (it may also take coefficients out), and the move is kept if F fell,
else the best one alone is tried. The search stops where neither lowers F; the fit's own
solver then meets ``tol`` from there.

Chosen on seeds 0-2: ENTER (without the exact ranking, 1: 2 of 18 over skglm + 0.1%, 3: 1
of 18, against 6 with the rounds), EXACT_CANDIDATES (3 / 10 / 30 / 100: 1 / 0 / 0 / 0 of
18, median CPU time 0.74 / 0.89 / 0.92 / 0.96 times skglm's; with 10, 10000 x 30000 seed
6 l1/2 stopped 1.8% above skglm's objective, with 100 13% below: its model ranked 10 bad
candidates first); CURVATURE_FLOOR on 2000 x 8000 seed 0, l1/2 (0.03 / 0.1 / 0.3 / 1:
+21% / -0.5% / +1.9% / +2.2% against skglm's objective). Seeds 9-11, held out: 0 of 18
over skglm + 0.1% (9 of 18 with the rounds and without Newton's method, the worst
+1.7%), the median 1.4% below skglm's objective, with 1-7 more nonzeros than skglm's
fits (as many to 4 fewer before); the study's 36 dense problems (seeds 0-5): 3 over (5
before), the worst +2.4% against +5.3%.
"""

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from ._certificate import _curvature_weights
from ._checkpoint import checkpoint
from ._engine import column_moments
from ._problem import LinearProblem
from ._sr2 import SolverState
from ._support_newton import newton_on_support, smooth_on_support
from ._working_set import solve_working_set
from .diagnostics import ConvergenceDiagnostics

__all__ = ["coordinate_metric", "entry_search", "polish"]

# The polish's sigma may range this far either side of the coordinate curvature.
SIGMA_RANGE = 1e6
# A round stops a decade above the fit's tol: it only moves the support, and the fit's
# own solver then meets tol (a round to tol itself took 4 times the epochs for the same
# objective on the text-like l1/2 problem; at 1e-2 a round often took no step at all).
ROUND_TOL_FACTOR = 10.0
# The entry search: how many features enter together first (then the best one alone), the
# local curvature's floor as a fraction of its bound L_j, and at most how many moves.
ENTER = 3
CURVATURE_FLOOR = 0.1
MAX_MOVES = 200
# The model's best this many candidates are ranked by F's exact decrease.
EXACT_CANDIDATES = 100


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
    """Polish ``state`` (a fit of ``problem``): the entry search where Newton's method on
    the support applies, else the coordinate-wise rounds; returns the new state.

    ``resolve(state)`` runs the fit's own solver from ``state`` (it records its checkpoints
    and ``converged`` in ``diagnostics``); the rounds' steps are appended to
    ``diagnostics``' trace. ``max_epochs``: the epochs left of the fit's budget.
    """
    if problem.columns is not None:
        return state
    if smooth_on_support(problem, penalty):
        return entry_search(problem, penalty, state, resolve)
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


def entry_search(problem, penalty, state, resolve):
    """The entry search (see the module's notes) from ``state``; returns the state that
    ``resolve`` (the fit's own solver) reaches from its last move, or ``state`` when no
    move lowered F."""
    W, moved = state.W, False
    bound = problem.datafit.curvature * coordinate_metric(problem)[0]
    for _ in range(MAX_MOVES):
        ck = checkpoint(problem, penalty, W)
        W = ck.W
        h = np.maximum(local_curvature(problem, ck), CURVATURE_FLOOR * bound)
        order, values = _ranked_entries(problem, penalty, ck, h)
        if order.size == 0:
            # Coordinate descent's entries (steps 1/L_j): L_j bounds the curvature, so
            # each lowers F; the search ends at one of its fixed points.
            order, values = _ranked_entries(problem, penalty, ck, bound)
        better = _first_better_entry(problem, penalty, W, ck.objective, order, values)
        if better is None:
            break
        W, moved = better, True
    return resolve(replace(state, W=W)) if moved else state


def _ranked_entries(problem, penalty, ck, h):
    """The zero coefficients whose entry at the one-coordinate step of curvature ``h``
    lowers F, the best first (the model's best EXACT_CANDIDATES by F's exact decrease),
    and the values they would enter at."""
    gains, values = entry_gains(problem, penalty, ck, h)
    order = np.argsort(-gains)[:EXACT_CANDIDATES]
    order = order[gains[order] > 0]
    if order.size:
        exact = exact_gains(problem, penalty, ck.W, order, values[order])
        keep = np.argsort(-exact)
        order = order[keep][exact[keep] > 0]
    return order, values


def _first_better_entry(problem, penalty, W, objective, order, values):
    """W with the first ENTER features of ``order`` entered at ``values``, then Newton's
    method on the support, if F fell, else the same with the first one alone; or None."""
    for count in dict.fromkeys((ENTER, 1)):
        if order.size == 0:
            return None
        trial = W.copy()
        trial[order[:count], 0] = values[order[:count]]
        trial, F = newton_on_support(problem, penalty, trial)
        if F is None:
            F = checkpoint(problem, penalty, trial).objective
        if F < objective - 1e-12 * abs(objective):
            return trial
    return None


def local_curvature(problem, ck):
    """h_j = sum_i s_i l''(z_i) x_ij^2 / n, the datafit's curvature along each coefficient
    at the checkpoint ``ck`` (one output)."""
    p = problem.p
    weighted = LinearProblem(problem.X, problem.Y, _curvature_weights(problem, ck.D),
                             problem.datafit, problem.fit_intercept, (np.ones(p), 1.0))  # fmt: skip
    h, mass = np.zeros(p), np.zeros(p)
    column_moments(weighted.data, h, mass)
    return h / problem.n


def entry_gains(problem, penalty, ck, h):
    """Per coefficient, the decrease of the quadratic model g_j u + h_j u^2 / 2 + R(u) of F
    at the checkpoint ``ck`` if it entered from zero (-inf where it is not zero or would
    not enter), and the value u it would enter at: the one-coordinate proximal step of
    length 1/h_j. One output."""
    p = problem.p
    g = ck.G[:p, 0]
    values = penalty.prox(-g / h, 1.0 / h)
    model = g * values + 0.5 * h * values**2 + penalty.entry_values(values)
    entering = (ck.W[:p, 0] == 0) & (values != 0)
    return np.where(entering, -model, -np.inf), values


def exact_gains(problem, penalty, W, columns, values):
    """Per coefficient of ``columns`` (zero in W), the decrease of F if it alone took its
    value of ``values``, the others as in W (the intercept too): one prediction pass and
    the loss on the columns' stored entries (one output)."""
    Z = problem.predict(W)[:, 0]
    sub = problem.restricted(columns)  # a copy of the columns, when small
    XS = sub.X if sub.columns is None else problem.X[:, columns]
    XS = sp.csc_matrix(XS if sp.issparse(XS) else np.asarray(XS))
    rows, counts = XS.indices, np.diff(XS.indptr)
    z = Z[rows, None]
    y = problem.Y[rows]
    moved = z + np.repeat(values, counts)[:, None] * XS.data[:, None]
    change = problem.sw[rows] * (problem.datafit.loss(moved, y) - problem.datafit.loss(z, y))
    per_column = np.zeros(columns.size)
    np.add.at(per_column, np.repeat(np.arange(columns.size), counts), change)
    return -(per_column / problem.n + penalty.entry_values(values))
