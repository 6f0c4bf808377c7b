"""Full-data quantities at a point: the checkpoint of the SR2 solver.

:func:`checkpoint` makes one pass for the predictions, sets the intercept to its exact
minimiser, makes one pass for the gradient, and computes the scale-free stopping criterion
(relative duality gap or relative stationarity) and, for the diagnostics, the Theorem 4 terms
of one step drawn at the point (:func:`draw_step`, the plain NumPy SR2 step, which the tests
also use as the reference of the compiled engine).

Its memory is a few arrays of n x K floats: the per-sample derivatives overwrite the
predictions (one compiled pass of the datafit's loss), and the formulas applied sample by
sample in NumPy (the dual, the variance) run over slices of rows, so that their
temporaries stay small.
"""

import math
from dataclasses import dataclass

import numpy as np

from ._certificate import newton_dual_point, support_signature
from ._engine import loss_pass, prox_step_decrease
from ._problem import loss_derivatives, row_slices
from ._rule import SR2Rule

__all__ = ["Checkpoint", "checkpoint", "draw_step", "prox_step"]


# -- one NumPy step: the checkpoint's draw, and the tests' reference for the engine --------
@dataclass
class Draw:
    """One SR2 step drawn at W on a minibatch (not yet accepted or rejected)."""

    idx: object
    ZB: np.ndarray | None  # the batch's predictions (None: a full batch's, not kept)
    dloss: np.ndarray  # l'(z_i)
    g: np.ndarray
    S: np.ndarray
    W_trial: np.ndarray
    R_trial: float
    xi: float
    step_sq: float  # ||s||_D^2


def _metric_sq(problem, A):
    """sum_j d_j^2 ||A_j||^2 (the metric's norm)."""
    return float(np.sum(np.square(A) / problem.inv_metric[:, None]))


def _dual_sq(problem, A):
    """sum_j ||A_j||^2 / d_j^2 (the metric's dual norm, for gradients)."""
    return float(np.sum(np.square(A) * problem.inv_metric[:, None]))


def prox_step(problem, penalty, W, R_w, g, sigma):
    """The SR2 step for gradient g in the metric: (w + s, R(w + s), xi, ||s||_D^2)."""
    t = problem.inv_metric[:, None] / sigma
    W_trial = W - g * t
    W_trial[: problem.p] = penalty.prox(W_trial[: problem.p], t[: problem.p])
    S = W_trial - W
    step_sq = _metric_sq(problem, S)
    R_trial = penalty.value(W_trial[: problem.p])
    xi = SR2Rule.model_decrease(R_w, R_trial, float(np.vdot(g, S)), step_sq, sigma)
    return W_trial, R_trial, xi, step_sq


def draw_step(problem, penalty, W, R_w, sigma, idx, ref):
    """The step drawn at W on the rows ``idx`` with the gradient estimator of ``ref``
    (a :class:`~sr2learn._engine.Reference`, or None for the plain minibatch gradient)."""
    XB, YB, swB = problem.rows(idx)
    m = swB.shape[0]
    ZB = problem.batch_linear(XB, W)
    dloss = problem.datafit.derivative(ZB, YB)
    E = dloss * swB[:, None] / m
    if ref is not None and ref.svrg:
        E = E - ref.D[idx] / m
    g = problem.batch_transpose(XB, E)
    if ref is not None and ref.svrg:
        g = g + ref.mu
    W_trial, R_trial, xi, step_sq = prox_step(problem, penalty, W, R_w, g, sigma)
    return Draw(idx, ZB, dloss, g, W_trial - W, W_trial, R_trial, xi, step_sq)


# -- checkpoints ---------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """Full-data quantities at W (after the exact intercept update)."""

    W: np.ndarray
    objective: float
    G: np.ndarray  # grad f at W, user coordinates
    D: np.ndarray  # s_i l'(z_i) per sample, in the problem's row order
    measure: float  # sqrt(L xi) of the full-gradient step at sigma = L, in the metric
    # (NaN for a convex penalty without the diagnostics' terms: its criterion is the gap)
    gap: float  # duality gap (NaN for the nonconvex penalties)
    criterion: float  # the scale-free number compared with tol
    record: dict | None = None  # the diagnostics' row (full checkpoints only)


def _stationarity_measure(problem, penalty, W, G):
    """R2's sqrt(sigma xi) for the full-gradient step at sigma = L in the metric: the
    norm of the proximal-gradient mapping with step 1/L, zero exactly at stationarity
    (xi compiled: the engine's step with the full gradient)."""
    L = problem.lipschitz()
    L = L if L > 0 else 1.0
    return math.sqrt(L * prox_step_decrease(problem.data, penalty.kernel(), W, G, L))


def _null_scale(problem, penalty):
    """The nonconvex criterion's scale: the size of the gradient of the intercept-only
    model (w = 0) in the metric's dual norm, a number fixed by the problem, not by the
    start of the fit (its stationarity measure would not do: w = 0 is often a stationary
    point of a nonconvex penalty, with a measure of zero)."""
    if problem.null_scale is None:
        W0 = np.zeros((problem.n_rows, problem.K))
        Z = np.zeros((problem.n, problem.K))
        if problem.fit_intercept:
            W0[-1] = problem.datafit.intercept_shift(Z, problem.Y, problem.sw)
            Z += W0[-1]
        E = problem.datafit.derivative(Z, problem.Y) * problem.sw[:, None]
        G = problem.gradient(E)
        problem.null_scale = math.sqrt(_dual_sq(problem, G))
    return problem.null_scale


def _subdiff_dist_sq(problem, penalty, W, G):
    """Per row of W, the squared distance from 0 to the subdifferential of F (user
    coordinates); the intercept's is its gradient."""
    d = np.square(penalty.subdiff_distance(W[: problem.p], G[: problem.p]))
    out = np.empty(problem.n_rows)
    out[: problem.p] = d.sum(axis=1)
    if problem.fit_intercept:
        out[problem.p] = float(np.sum(np.square(G[problem.p])))
    return out


def _exact_variance(problem, E, mean_grad, batch_size, E_ref=None):
    """E||grad f(w) - g||^2 (metric's dual norm) of the batch mean of per-sample gradients
    x~_i e_i^T drawn without replacement: (n - b) / (b (n - 1)) times their variance.
    With ``E_ref`` (SVRG), e_i is the difference of the rows of E and E_ref."""
    n = problem.n
    if n <= 1 or batch_size >= n:
        return 0.0
    norms = problem.row_norms_sq
    second = 0.0
    for rows in row_slices(n):
        e = E[rows] if E_ref is None else E[rows] - E_ref[rows]
        second += float(np.dot(norms[rows], np.einsum("ij,ij->i", e, e)))
    pop = max(0.0, second / n - _dual_sq(problem, mean_grad))
    return (n - batch_size) / (batch_size * (n - 1)) * pop


def _dual_objective(problem, E, kappa):
    """-(1/n) sum_i s_i l*(-theta_i) at the dual point theta_i = -kappa l'(z_i), with
    l'(z_i) = e_i / s_i recovered from E (a sample of weight zero adds nothing)."""
    total = 0.0
    for rows in row_slices(problem.n):
        U = loss_derivatives(E[rows], problem.sw[rows])
        U *= kappa
        # A product and a sum, not BLAS's dot: OpenBLAS threads a dot of more than 10,000
        # entries, and on busy cores waiting for its second thread cost milliseconds a
        # checkpoint (Adult CV: 7 ms a call against 0.15 ms).
        total += float(np.sum(problem.sw[rows] * problem.datafit.conjugate(U, problem.Y[rows])))
    return -total / problem.n


def _in_batch_variance(problem, draw, ref):
    """Unbiased in-batch estimate of E||grad f(w) - g||^2 from the draw's own rows."""
    idx = draw.idx
    swB = problem.sw[idx]
    m = swB.shape[0]
    if m <= 1 or m >= problem.n:
        return 0.0
    E = draw.dloss * swB[:, None]
    mean = draw.g
    if ref is not None and ref.svrg:
        E, mean = E - ref.D[idx], mean - ref.mu
    norms = problem.row_norms_sq[idx]
    total = float(np.dot(norms, np.einsum("ij,ij->i", E, E))) - m * _dual_sq(problem, mean)
    return (1.0 - m / problem.n) / (m * (m - 1)) * max(total, 0.0)


def checkpoint(problem, penalty, W, *, diagnostic=None, tol=None, certificate=None):
    """Full-data quantities at W: one pass for the predictions, the exact intercept, one
    pass for the gradient. The criterion is the relative duality gap gap / F(w) for a
    convex penalty (``penalty.dual_scale``), else the stationarity measure relative to the
    intercept-only model's gradient (:func:`_null_scale`, cached on the problem and carried
    by its restricted problems).

    A convex penalty's gap is the smaller of the residual's and of the dual point of a
    Newton step on the support (:mod:`sr2learn._certificate`), when ``certificate`` (a
    :class:`~sr2learn._certificate.NewtonCertificate`) says that one is due at ``tol``.

    ``diagnostic`` (a dict with ``sigma``, ``batch_size``, ``ref``, ``rng``,
    ``variance_estimate``) adds the diagnostics' Theorem 4 terms for one step drawn at W
    (one more pass for the prediction at w + s; the trial gradient shares the pass).
    """
    datafit, Y, sw, n, p = problem.datafit, problem.Y, problem.sw, problem.n, problem.p
    W = np.array(W, dtype=np.float64)
    Z = problem.predict(W)
    if problem.fit_intercept:
        shift = datafit.intercept_shift(Z, Y, sw)
        W[p] += shift
        Z += shift
    R_w = penalty.value(W[:p])
    E = Z  # s_i l'(z_i) overwrite the predictions
    f = loss_pass(datafit.kernel(), Z, Y, sw, E) / n
    del Z
    draw = None
    if diagnostic is None:
        G = problem.gradient(E)
    else:
        draw, G, G_trial = _trial_pass(problem, penalty, W, R_w, E, diagnostic)
    objective = f + R_w
    kappa = penalty.dual_scale(G[:p])
    # The stationarity measure (a prox step and a penalty value) is the nonconvex
    # criterion; a convex penalty's checkpoint needs it only for the diagnostics' record.
    measure = math.nan
    if kappa is None or diagnostic is not None:
        measure = _stationarity_measure(problem, penalty, W, G)
    gap = math.nan
    if kappa is not None:
        gap = max(objective - _dual_objective(problem, E, kappa), 0.0)
        criterion = gap / objective if objective > 0 else 0.0
        support = None if certificate is None else support_signature(problem, penalty, W, G)
        if certificate is not None and certificate.due(criterion, tol, support):
            plain = criterion
            newton, solved = newton_dual_point(problem, penalty, W, G, E,
                                               certificate.rtol(criterion, tol))  # fmt: skip
            if newton is not None:
                gap = min(gap, max(objective - _dual_objective(problem, *newton), 0.0))
                criterion = gap / objective if objective > 0 else 0.0
            certificate.tried(solved, criterion <= tol, plain, criterion, support)
    else:
        scale = _null_scale(problem, penalty)
        criterion = measure / scale if scale > 0 else (0.0 if measure == 0 else math.inf)
    ck = Checkpoint(W, objective, G, E, measure, gap, criterion)
    if draw is not None:
        ck.record = _theorem4_terms(problem, penalty, ck, draw, G_trial, diagnostic)
    return ck


def _trial_pass(problem, penalty, W, R_w, E, diagnostic):
    """A step drawn at W, and the full gradients at W and at w + s in one pass. A batch
    of every row draws the full-gradient step (SVRG's correction cancels): it is taken
    from the checkpoint's own gradient, without the batch's two passes over X."""
    n, b = problem.n, diagnostic["batch_size"]
    idx = np.sort(diagnostic["rng"].choice(n, size=min(b, n), replace=False))
    if idx.size == n:
        G = problem.gradient(E)
        draw = _full_batch_draw(problem, penalty, W, R_w, diagnostic["sigma"], E, G)
        return draw, G, problem.gradient(_trial_derivatives(problem, draw))
    draw = draw_step(problem, penalty, W, R_w, diagnostic["sigma"], idx, diagnostic["ref"])
    G, G_trial = problem.gradient_pair(E, _trial_derivatives(problem, draw))
    return draw, G, G_trial


def _trial_derivatives(problem, draw):
    """s_i l'(z_i) per sample at the draw's trial point w + s (one pass over X)."""
    E_trial = problem.predict(draw.W_trial)
    loss_pass(problem.datafit.kernel(), E_trial, problem.Y, problem.sw, E_trial)  # in place
    return E_trial


def _full_batch_draw(problem, penalty, W, R_w, sigma, E, G):
    """The step drawn on every row, from the full gradient G at W (``E``: s_i l'(z_i));
    its batch predictions are not kept (None)."""
    W_trial, R_trial, xi, step_sq = prox_step(problem, penalty, W, R_w, G, sigma)
    return Draw(np.arange(problem.n), None, loss_derivatives(E, problem.sw), G, W_trial - W,
                W_trial, R_trial, xi, step_sq)  # fmt: skip


def _theorem4_terms(problem, penalty, ck, draw, G_trial, diagnostic):
    """The diagnostics' row: dist in user coordinates; the Theorem 4 terms in the metric."""
    ref, b = diagnostic["ref"], min(diagnostic["batch_size"], problem.n)
    if diagnostic["variance_estimate"] == "batch":
        V = _in_batch_variance(problem, draw, ref)
    elif ref is not None and ref.svrg:
        V = _exact_variance(problem, ck.D, ck.G - ref.mu, b, E_ref=ref.D)
    else:
        V = _exact_variance(problem, ck.D, ck.G, b)
    trial_sq = _subdiff_dist_sq(problem, penalty, draw.W_trial, G_trial)
    return dict(
        objective=ck.objective,
        nnz=int(np.count_nonzero(ck.W[: problem.p])),
        measure=ck.measure,
        gap=ck.gap,
        criterion=ck.criterion,
        lipschitz=problem.lipschitz(),
        variance=V,
        dist=math.sqrt(float(_subdiff_dist_sq(problem, penalty, ck.W, ck.G).sum())),
        dist_trial=math.sqrt(float(np.dot(trial_sq, problem.inv_metric))),
        trial_step_sq=draw.step_sq,
        trial_grad_error_sq=_dual_sq(problem, ck.G - draw.g),
    )
