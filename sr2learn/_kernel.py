"""A compiled SR2 epoch for single-output linear models (numba).

One call runs every minibatch step of an epoch: the same step, ratio and sigma update as
the NumPy path of :func:`sr2learn._sr2.solve` (whose per-step Python cost, ~0.2 ms,
dominated fits on sparse data), with work proportional to the batch.

Per-step cost proportional to the batch ("just-in-time" work). Under SVRG the estimator is
g = X_B^T (D_B - D~_B) / m + mu, so a coordinate j that no row of the batch touches has
g_j = mu_j, constant over the epoch. For such a coordinate with w_j = 0 the step is
prox(-mu_j / sigma, 1 / sigma) - 0, which is exactly 0 whenever zero is a fixed point of
that prox ("idle": |mu_j| <= alpha for l1, mu_j^2 <= 2 alpha sigma for l0). Idle,
untouched coordinates therefore owe nothing, neither to w nor to ||s||^2, g's, R(w+s) or
the model decrease: each step only visits the coordinates its rows touch plus the
"active" ones (nonzero, or not idle), and R(w) is kept up to date incrementally. This is
exact, not an approximation; for l0 being idle depends on sigma (monotonically: a larger
sigma keeps more zeros), so the active set is built for sigma >= ``sigma_low`` and rebuilt
(one O(n_features) pass) if sigma falls below it. Without variance reduction mu = 0 and
the active set is the support. Active coordinates are updated at every step (not in
closed form when next touched), so a step costs O(entries of its rows + active set).
The l1/2 and l2/3 penalties (whose thresholding formulas are not restated here), the
k-sparse ball (not separable) and the multinomial loss use the NumPy path.

The scalar loss, derivative, Bregman term, prox and penalty value below are the
elementwise forms of :mod:`sr2learn.datafits` and :mod:`sr2learn.penalties`
(tests/test_kernel.py checks that they agree); the acceptance rule is compiled from
:mod:`sr2learn._rule` itself.
"""

import math

import numpy as np
from numba import njit

from ._rule import model_decrease, sr2_ratio, sr2_update

__all__ = ["LOSS_CODES", "PENALTY_CODES", "kernel_codes", "sr2_epoch"]

LOSS_CODES = {"Quadratic": 0, "Logistic": 1}
PENALTY_CODES = {"L1": 0, "L0": 1}
# The active set stays valid while sigma >= SIGMA_LOW_FACTOR * (sigma when it was built).
SIGMA_LOW_FACTOR = 0.1
_TAYLOR_BELOW = 1e-2  # as in datafits: below this |dz| the Bregman term uses its series

_ratio = njit(cache=True, error_model="numpy")(sr2_ratio)
_update = njit(cache=True, error_model="numpy")(sr2_update)
_model_decrease = njit(cache=True, error_model="numpy")(model_decrease)


@njit(cache=True, error_model="numpy")
def _softplus(z):
    if z > 0.0:
        return z + math.log1p(math.exp(-z))
    return math.log1p(math.exp(z))


@njit(cache=True, error_model="numpy")
def _loss_derivative(kind, z, y):
    """(l(z, y), l'(z, y), softplus(z)) with one exp and one log1p for the log-loss
    (the transcendental functions are most of the cost of a sparse step)."""
    if kind == 0:
        return 0.5 * (z - y) * (z - y), z - y, 0.0
    e = math.exp(-abs(z))
    tail = math.log1p(e)  # softplus(-|z|)
    sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
    margin = (2.0 * y - 1.0) * z
    return max(-margin, 0.0) + tail, sig - y, max(z, 0.0) + tail


@njit(cache=True, error_model="numpy")
def _bregman(kind, z, d, y, dl, softplus_z):
    """l(z + d) - l(z) - l'(z) d without cancellation (see datafits)."""
    if kind == 0:
        return 0.5 * d * d
    p = dl + y  # sigmoid(z)
    if abs(d) < _TAYLOR_BELOW:
        q = p * (1.0 - p)
        return d * d * (q / 2 + d * (q * (1 - 2 * p) / 6 + d * q * (1 - 6 * q) / 24))
    return _softplus(z + d) - softplus_z - p * d


@njit(cache=True, error_model="numpy")
def _prox(kind, alpha, v, step):
    if kind == 0:
        a = abs(v) - step * alpha
        if a <= 0.0:
            return 0.0
        return a if v > 0.0 else -a
    if abs(v) > math.sqrt(2.0 * step * alpha):
        return v
    return 0.0


@njit(cache=True, error_model="numpy")
def _value(kind, alpha, w):
    if kind == 0:
        return alpha * abs(w)
    return alpha if w != 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def _build_active(w, mu, p, pen, alpha, sigma_low, lazy, active, act):
    """The coordinates each step must visit besides the touched ones; returns their count."""
    count = 0
    for j in range(p):
        keep = (not lazy) or w[j] != 0.0
        if not keep:
            keep = _prox(pen, alpha, -mu[j] / sigma_low, 1.0 / sigma_low) != 0.0
        active[j] = keep
        if keep:
            act[count] = j
            count += 1
    return count


@njit(cache=True, error_model="numpy")
def sr2_epoch(dense, data, indices, indptr, p, y, sw, c, loss, pen, alpha,
              w, R_w, sigma, edges, order, refD, mu, svrg, lazy,
              eta1, eta2, gamma1, gamma3, sigma_min, sigma_max, eps,
              tr_sigma, tr_rho, tr_acc, tr_stepsq, tr_xi, tr_obj, tr_nnz):  # fmt: skip
    """Run the steps of one epoch on the batches ``edges[order[k]]:edges[order[k] + 1]``
    (contiguous rows of the pre-shuffled data: reading rows in memory order was measured
    1.5-2x faster than through a permutation).

    ``w`` (length p, plus one for the intercept in scaled units when ``c > 0``) is updated
    in place; the trace arrays receive one entry per step. Dense X is passed as its
    C-ordered ravel in ``data`` (``indices``/``indptr`` unused). Returns
    (R(w), sigma, number of sigma clamps, number of coordinates visited by the steps).
    """
    has_int = w.shape[0] > p
    n_batches = order.shape[0]
    max_m = 0
    for k in range(n_batches):
        max_m = max(max_m, edges[k + 1] - edges[k])
    z = np.empty(max_m)
    dls = np.empty(max_m)
    spz = np.empty(max_m)
    g = np.zeros(p)
    s_full = np.zeros(p)
    u_trial = np.empty(p)
    touched = np.empty(p, dtype=np.int64)
    mark = np.full(p, -1, dtype=np.int64)
    active = np.zeros(p, dtype=np.bool_)
    act = np.empty(p, dtype=np.int64)
    sigma_low = SIGMA_LOW_FACTOR * sigma
    n_act = _build_active(w, mu, p, pen, alpha, sigma_low, lazy, active, act)
    nnz = 0
    for j in range(p):
        nnz += int(w[j] != 0.0)
    clamps = 0
    visits = 0
    for step in range(n_batches):
        a = edges[order[step]]
        b = edges[order[step] + 1]
        m = b - a
        n_touch = 0
        f_batch = 0.0
        sum_e = 0.0
        for r in range(m):
            i = a + r
            start = i * p if dense else indptr[i]
            stop = start + p if dense else indptr[i + 1]
            zi = c * w[p] if has_int else 0.0
            for kk in range(start, stop):
                j = kk - start if dense else indices[kk]
                zi += data[kk] * w[j]
            li, dl, spz[r] = _loss_derivative(loss, zi, y[i])
            z[r] = zi
            dls[r] = dl
            f_batch += sw[i] * li
            e = sw[i] * dl
            if svrg:
                e -= refD[i]
            e /= m
            sum_e += e
            for kk in range(start, stop):
                j = kk - start if dense else indices[kk]
                if mark[j] != step:
                    mark[j] = step
                    g[j] = mu[j]
                    touched[n_touch] = j
                    n_touch += 1
                g[j] += e * data[kk]
        f_batch /= m
        for t in range(n_act):
            j = act[t]
            if mark[j] != step:
                mark[j] = step
                g[j] = mu[j]
                touched[n_touch] = j
                n_touch += 1
        # The trial step on the visited coordinates (all others have s_j = 0 exactly).
        visits += n_touch
        inv = 1.0 / sigma
        s_sq = 0.0
        g_dot_s = 0.0
        r_drop = 0.0  # R(w) - R(w + s)
        for t in range(n_touch):
            j = touched[t]
            u = _prox(pen, alpha, w[j] - g[j] * inv, inv)
            s = u - w[j]
            u_trial[t] = u
            s_full[j] = s
            s_sq += s * s
            g_dot_s += g[j] * s
            r_drop += _value(pen, alpha, w[j]) - _value(pen, alpha, u)
        s_int = 0.0
        if has_int:
            g_int = c * sum_e
            if svrg:
                g_int += mu[p]
            s_int = -g_int * inv
            s_sq += s_int * s_int
            g_dot_s += g_int * s_int
        xi = _model_decrease(r_drop, 0.0, g_dot_s, s_sq, sigma)
        bregman = 0.0
        for r in range(m):
            i = a + r
            start = i * p if dense else indptr[i]
            stop = start + p if dense else indptr[i + 1]
            zs = c * s_int
            for kk in range(start, stop):
                j = kk - start if dense else indices[kk]
                zs += data[kk] * s_full[j]
            bregman += sw[i] * _bregman(loss, z[r], zs, y[i], dls[r], spz[r])
        actual = xi - bregman / m
        objective = f_batch + R_w
        rho = _ratio(actual, xi, objective, eps)
        accepted, new_sigma, clamped = _update(
            rho, sigma, eta1, eta2, gamma1, gamma3, sigma_min, sigma_max
        )
        if accepted:
            for t in range(n_touch):
                j = touched[t]
                u = u_trial[t]
                nnz += int(u != 0.0) - int(w[j] != 0.0)
                w[j] = u
                if u != 0.0 and not active[j]:
                    active[j] = True
                    act[n_act] = j
                    n_act += 1
            if has_int:
                w[p] += s_int
            R_w -= r_drop
        for t in range(n_touch):
            s_full[touched[t]] = 0.0
        tr_sigma[step] = sigma
        tr_rho[step] = rho
        tr_acc[step] = 1.0 if accepted else 0.0
        tr_stepsq[step] = s_sq
        tr_xi[step] = xi
        tr_obj[step] = objective
        tr_nnz[step] = nnz
        clamps += int(clamped)
        sigma = new_sigma
        if lazy and sigma < sigma_low:
            sigma_low = SIGMA_LOW_FACTOR * sigma
            n_act = _build_active(w, mu, p, pen, alpha, sigma_low, lazy, active, act)
    return R_w, sigma, clamps, visits


def kernel_codes(problem, penalty, variance_reduction):
    """(loss code, penalty code) when the compiled epoch applies, else None."""
    loss = LOSS_CODES.get(type(problem.datafit).__name__)
    pen = PENALTY_CODES.get(type(penalty).__name__)
    if loss is None or pen is None or problem.K != 1 or variance_reduction == "growing_batch":
        return None
    return loss, pen
