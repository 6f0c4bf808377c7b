"""The lasso on its moments: full-gradient SR2 steps and Newton steps on the support of
G = X~^T S X~ / n, compiled, for SR2RegressorCV's folds (their warm-started paths) and
SR2Regressor's fits on tall dense data.

Why. For least squares everything a solver needs is a function of the (centred, weighted)
moments G, b = X~^T S y~ / n and c = y~^T S y~ / n (X~, y~ centred by the weighted means
when there is an intercept, which is then eliminated exactly): the gradient G w - b, the
objective, the residual's norm and the lasso's duality gap. Once a fold's Gram is known
(``sr2learn._gram.FoldGrams``), an alpha costs a few O(p k) updates (k the coordinates a
step changes), not passes over rows: SR2RegressorCV's folds on a 2,000 x 100 regression
spent about 3 ms per (alpha, fold) on the compressed rows (SVRG epochs, checkpoints in
Python), where LassoCV's coordinate descent on the Gram takes about 0.5 ms.

What. :func:`lasso_on_moments` runs, from a warm start, SR2's deterministic (full-batch)
steps: s minimises g's + sigma/2 ||s||_D^2 + R(w + s) in the estimator's diagonal metric D
(``column_metric``), with the actual decrease F(w) - F(w + s) = xi - s'Gs / 2 exact from
the moments, and the ratio, the model decrease and the sigma update compiled from
:mod:`sr2learn._rule` itself. When an accepted step leaves the support and its signs as
they were, it tries one Newton step on the support (the minimiser of the quadratic on that
orthant face, a Cholesky factor of G[S, S]), cut at the first coefficient that would
change sign, so that it always decreases F (and set to zero: the next step is Newton's on
the smaller support). G w is kept up to date through the columns of
G that a step changes. It stops when the relative duality gap (F(w) - D(theta)) / F(w),
at the dual point theta = kappa r scaled into the dual's domain (``L1.dual_scale``), is at
most ``tol``: SR2Regressor's criterion for "l1", computed from the same moments as its
checkpoint would compute it from the rows (tests/test_gram_solver.py compares the two).
"""

import math

import numpy as np
from numba import njit

from ._compiled import JIT, prox_entries, value_entries
from ._rule import model_decrease, sr2_ratio, sr2_update
from ._sr2 import _rule_params

__all__ = ["FoldMoments", "MomentPath", "lasso_on_moments"]

_ratio = njit(**JIT)(sr2_ratio)
_update = njit(**JIT)(sr2_update)
_model_decrease = njit(**JIT)(model_decrease)


class FoldMoments:
    """The moments of the squared loss of one fit (a fold's training rows), per sample.

    Parameters
    ----------
    mean : ndarray of shape (p + 1,)
        The weighted means of [X, y] (zero without intercept).
    centred : ndarray of shape (p + 1, p + 1)
        sum_i s_i (z_i - mean)(z_i - mean)^T for z_i = [x_i, y_i], the weights of mean 1
        (``sr2learn._gram.FoldGrams.of_rows``).
    n_samples : int
        The number of rows the sums run over.
    """

    def __init__(self, mean, centred, n_samples):
        p = mean.size - 1
        self.mean = mean
        self.G = np.ascontiguousarray(centred[:p, :p]) / n_samples
        self.b = centred[:p, p] / n_samples
        self.c = float(centred[p, p]) / n_samples

    def intercept(self, w):
        """The exact intercept for the coefficients ``w``: mean(y) - mean(X) w."""
        return float(self.mean[-1] - self.mean[:-1] @ w)


@njit(**JIT)
def _relative_gap(G_w, b, c, w, alpha, r_w):
    """(gap / F, F) of the lasso at w from the moments: F = f + R with
    f = |r|^2 / 2, |r|^2 = c - 2 b'w + w'Gw, and the dual point kappa r with
    kappa = min(1, alpha / |X~'r / n|_inf) (``L1.dual_scale`` of the gradient
    G w - b), whose dual objective is kappa r'y - kappa^2 |r|^2 / 2 with r'y = c - b'w."""
    top = 0.0
    b_w = 0.0
    w_G_w = 0.0
    for j in range(w.size):
        top = max(top, abs(G_w[j] - b[j]))
        b_w += b[j] * w[j]
        w_G_w += w[j] * G_w[j]
    kappa = 1.0 if top <= alpha else alpha / top
    r_sq = max(c - 2.0 * b_w + w_G_w, 0.0)
    objective = 0.5 * r_sq + r_w
    dual = kappa * (c - b_w) - 0.5 * kappa * kappa * r_sq
    gap = max(objective - dual, 0.0)
    return (gap / objective if objective > 0.0 else 0.0), objective


@njit(**JIT)
def _add_columns(G, s, changed, count, out):
    """out += G[:, changed] s[changed] (the changed coordinates' columns only)."""
    for q in range(count):
        j = changed[q]
        sj = s[j]
        for i in range(out.size):
            out[i] += G[i, j] * sj


@njit(**JIT)
def _cholesky(H):
    """A Cholesky factor of H, or of H + 1e-13 diag(H) where H is singular (e.g. equal
    columns: a step along it still decreases F, by at least the quadratic's part); None
    where neither is positive definite."""
    try:
        return np.linalg.cholesky(H)
    except Exception:  # noqa: BLE001 (numba raises LinAlgError as a plain Exception)
        pass
    damped = H.copy()
    for a in range(H.shape[0]):
        damped[a, a] += 1e-13 * H[a, a] + 1e-300
    try:
        return np.linalg.cholesky(damped)
    except Exception:  # noqa: BLE001
        return None


@njit(**JIT)
def _cholesky_solve(H, rhs):
    """H^-1 rhs by a Cholesky factor of H (see :func:`_cholesky`); None without one."""
    factor = _cholesky(H)
    if factor is None:
        return None
    k = rhs.size
    d = np.empty(k)
    for a in range(k):  # forward substitution, then back
        total = rhs[a]
        for c in range(a):
            total -= factor[a, c] * d[c]
        d[a] = total / factor[a, a]
    for a in range(k - 1, -1, -1):
        total = d[a]
        for c in range(a + 1, k):
            total -= factor[c, a] * d[c]
        d[a] = total / factor[a, a]
    return d


@njit(**JIT)
def _newton_on_support(G, G_w, b, w, alpha, step, changed):
    """One Newton step on the support S of w: d solves G[S, S] d = -(G w - b + alpha
    sign(w))[S], the minimiser of F on the orthant face of w; the step is cut at the first
    coefficient that reaches zero (which is then set to zero exactly), so that F
    decreases along it. Writes the step into ``step`` and its coordinates into
    ``changed``; returns (their number, whether the step was cut). 0 coordinates: none
    to move, or G[S, S] is not positive definite."""
    k = 0
    for j in range(w.size):
        if w[j] != 0.0:
            changed[k] = j
            k += 1
    if k == 0:
        return 0, False
    H = np.empty((k, k))
    rhs = np.empty(k)
    for a in range(k):
        ja = changed[a]
        sign = 1.0 if w[ja] > 0.0 else -1.0
        rhs[a] = -(G_w[ja] - b[ja] + alpha * sign)
        for c in range(k):
            H[a, c] = G[ja, changed[c]]
    d = _cholesky_solve(H, rhs)
    if d is None:
        return 0, False
    tau = 1.0
    first = -1
    for a in range(k):
        ja = changed[a]
        if w[ja] * (w[ja] + d[a]) <= 0.0:
            reach = -w[ja] / d[a]
            if reach <= tau:
                tau, first = reach, a
    if not math.isfinite(tau):
        return 0, False
    for a in range(k):
        step[changed[a]] = tau * d[a]
    if first >= 0:
        step[changed[first]] = -w[changed[first]]
    return k, first >= 0


@njit(**JIT)
def _signs_kept(w, trial, changed, count):
    """Whether the coordinates ``changed`` keep their signs (zero included) from w to trial."""
    for q in range(count):
        j = changed[q]
        if np.sign(w[j]) != np.sign(trial[j]):
            return False
    return True


@njit(**JIT)
def _record(trace, row, sigma, rho, accepted, step_sq, xi, objective, w):
    """One row of ``trace`` (the engine's columns, ``sr2learn._engine.TRACE_COLUMNS``),
    when it has rows."""
    if row < trace.shape[0]:
        trace[row, 0], trace[row, 1], trace[row, 2] = sigma, rho, accepted
        trace[row, 3], trace[row, 4], trace[row, 5] = step_sq, xi, objective
        trace[row, 6] = np.count_nonzero(w)


@njit(**JIT)
def _metric_sq(s, changed, count, inv_metric):
    """||s||_D^2 over the coordinates ``changed``."""
    total = 0.0
    for q in range(count):
        total += s[changed[q]] ** 2 / inv_metric[changed[q]]
    return total


@njit(**JIT)
def _trial_step(G, G_w, b, w, inv_metric, kernel, sigma, trial, t, s, G_s, changed):
    """The SR2 step at sigma from the whole gradient g = G w - b, in the metric: ``trial``
    = prox(w - g t, t) with t = D^-1 / sigma, ``s`` = trial - w, its coordinates in
    ``changed`` and ``G_s`` = G s. Returns (their number, g's, s'Gs, R(trial))."""
    p = w.size
    for j in range(p):
        t[j] = inv_metric[j] / sigma
        trial[j] = w[j] - (G_w[j] - b[j]) * t[j]
    prox_entries(kernel, trial, t, trial, p)
    count = 0
    g_s = 0.0
    for j in range(p):
        s[j] = trial[j] - w[j]
        if s[j] != 0.0:
            changed[count] = j
            count += 1
            g_s += (G_w[j] - b[j]) * s[j]
    G_s[:] = 0.0
    _add_columns(G, s, changed, count, G_s)
    s_G_s = 0.0
    for q in range(count):
        s_G_s += s[changed[q]] * G_s[changed[q]]
    return count, g_s, s_G_s, value_entries(kernel, trial, p)


@njit(**JIT)
def lasso_on_moments(G, b, c, inv_metric, kernel, rule, tol, max_steps, w, G_w, sigma, trace):
    """Solve the lasso on the moments (G, b, c) from ``w`` (``G_w`` = G w), in place,
    until its relative duality gap is at most ``tol`` or ``max_steps`` steps (SR2 steps
    and Newton tries, each from the whole gradient) were made. ``kernel``: the L1
    penalty's compiled form; ``rule``: ``sr2learn._engine.RuleParams``; ``sigma``: a
    one-entry array, SR2's sigma, updated in place; ``trace``: one row per step (the
    engine's columns: sigma, rho, accepted, ||s||_D^2, xi, F before the step, nnz after)
    where it has the rows (none: nothing recorded). A Newton step is recorded with
    sigma = 0 (no regularisation) and rho = 1: its model, the quadratic on the orthant
    face, is F there, and xi is F's decrease.

    Returns (criterion, steps, newton_tries).
    """
    p = w.size
    alpha = kernel.alpha
    trial = np.empty(p)
    t = np.empty(p)
    s = np.zeros(p)
    G_s = np.empty(p)
    changed = np.empty(p, dtype=np.int64)
    r_w = value_entries(kernel, w, p)
    criterion, objective = _relative_gap(G_w, b, c, w, alpha, r_w)
    steps = 0
    newton_tries = 0
    # Newton is tried on a support (set and signs) that an accepted SR2 step kept, once
    # until the support changes again, and at once again on the smaller support after a
    # step cut at a sign change (an SR2 step first could re-enter the coefficient just
    # zeroed, and the next Newton step cut it again: ill-conditioned G, e.g. offset
    # columns without intercept, then ran out of steps).
    kept_support = False
    untried = True
    while criterion > tol and steps < max_steps:
        steps += 1
        if kept_support and untried:
            newton_tries += 1
            count, cut = _newton_on_support(G, G_w, b, w, alpha, s, changed)
            untried, kept_support = cut, cut
            if count > 0:
                for q in range(count):
                    w[changed[q]] += s[changed[q]]
                _add_columns(G, s, changed, count, G_w)
                r_w = value_entries(kernel, w, p)
                before = objective
                criterion, objective = _relative_gap(G_w, b, c, w, alpha, r_w)
                _record(trace, steps - 1, 0.0, 1.0, 1.0,
                        _metric_sq(s, changed, count, inv_metric), before - objective, before,
                        w)  # fmt: skip
                continue
        # One SR2 step from the whole gradient, in the metric.
        sig = sigma[0]
        count, g_s, s_G_s, r_trial = _trial_step(G, G_w, b, w, inv_metric, kernel, sig,
                                                 trial, t, s, G_s, changed)  # fmt: skip
        s_sq = _metric_sq(s, changed, count, inv_metric)
        # F(w) - F(w + s) = R(w) - R(w + s) - g's - s'Gs / 2: exact, without the
        # difference of two objective values.
        xi = _model_decrease(r_w, r_trial, g_s, s_sq, sig)
        actual = r_w - r_trial - g_s - 0.5 * s_G_s
        rho = _ratio(actual, xi, abs(r_w - r_trial) + abs(g_s), rule.eps)
        accepted, sigma[0], _ = _update(rho, sig, rule.eta1, rule.eta2, rule.gamma1,
                                        rule.gamma3, rule.sigma_min, rule.sigma_max)  # fmt: skip
        before = objective
        if accepted and count > 0:
            kept = _signs_kept(w, trial, changed, count)
            kept_support, untried = kept, untried or not kept
            for q in range(count):
                w[changed[q]] = trial[changed[q]]
            G_w += G_s
            r_w = r_trial
            criterion, objective = _relative_gap(G_w, b, c, w, alpha, r_w)
        _record(trace, steps - 1, sig, rho, 1.0 if accepted else 0.0, s_sq, xi, before, w)
        if not accepted and sigma[0] <= sig:
            break  # sigma cannot grow (sigma_max): the same step would be rejected again
    return criterion, steps, newton_tries


_NO_TRACE = np.empty((0, 7))


class MomentPath:
    """A warm-started lasso path on one fit's moments: :meth:`solve` at each alpha in
    turn starts from the previous solution and sigma.

    Parameters
    ----------
    moments : FoldMoments
    metric : ndarray of shape (p,)
        d_j^2, the step's diagonal metric (``sr2learn._problem.column_metric`` of the
        fit's rows: the estimator's, so that sigma means the same on both routes).
    make_rule : callable
        ``make_rule(sigma0)`` -> SR2Rule (the estimator's ``_make_rule``).
    """

    def __init__(self, moments, metric, make_rule):
        self.moments = moments
        p = moments.b.size
        self.inv_metric = 1.0 / metric
        self.w = np.zeros(p)
        self.G_w = np.zeros(p)
        # The largest curvature of one coordinate in the metric: a lower bound on L, from
        # which SR2 grows sigma in a few rejected steps where the columns correlate.
        top = float(np.max(np.diag(moments.G) * self.inv_metric, initial=0.0))
        sigma0 = top if math.isfinite(top) and top > 0 else 1.0
        self.rule = _rule_params(make_rule(sigma0))
        # Within the user's sigma_min and sigma_max from the first step.
        self.sigma = np.array([min(max(sigma0, self.rule.sigma_min), self.rule.sigma_max)])

    def start_at(self, coef, sigma):
        """Start the next solve at the coefficients ``coef`` with ``sigma``."""
        self.w[:] = coef
        self.G_w[:] = self.moments.G @ self.w
        self.sigma[0] = sigma

    def solve(self, penalty, tol, max_steps, trace=None):
        """Solve at ``penalty`` (an L1) from the last solution; returns (criterion,
        steps, newton_tries). ``trace``: an array of ``max_steps`` rows (or more) into
        which the steps are recorded (see :func:`lasso_on_moments`)."""
        m = self.moments
        trace = _NO_TRACE if trace is None else trace
        return lasso_on_moments(m.G, m.b, m.c, self.inv_metric, penalty.kernel(), self.rule,
                                float(tol), int(max_steps), self.w, self.G_w, self.sigma,
                                trace)  # fmt: skip

    def coef(self):
        """(coefficients, intercept) of the last solution (a copy)."""
        return self.w.copy(), self.moments.intercept(self.w)
