"""The compiled SR2 epoch for every datafit and penalty, and the full-data passes.

One call of :func:`sr2_epoch` runs every minibatch step of an epoch: the step, the model
decrease, the ratio and the sigma update of the paper (the rule is compiled from
:mod:`sr2learn._rule` itself), the datafit and penalty formulas reached through
:mod:`sr2learn._compiled`. Its inputs are a few named structures:

- ``EngineData``: X as the caller holds it (dense, as its C-ordered ravel, float64 or
  float32; or CSR arrays, with int32 or int64 indices: numba compiles each kind once, and
  nothing is copied), the targets Y (n x K), the sample weights, whether there is an
  intercept, the diagonal metric (``inv_metric``: 1 / d_j^2 per row of W, see below), and
  which columns of X the rows of W stand for (all of them, or a working set's);
- ``RuleParams``: eta1, eta2, gamma1, gamma3, the sigma clamp, and the machine epsilon;
- ``EpochState``: the iterate W ((p + intercept) x K, float64 whatever the dtype of X, so
  float32 data are solved to float64 accuracy at float32 memory traffic) and
  ``scalars = [sigma, R(W)]``, both updated in place;
- ``Reference``: the SVRG reference (per-sample derivatives and the full gradient; empty
  without variance reduction);
- ``EpochPlan``: the batches (batch k holds the rows ``rows[edges[order[k]]:edges[order[k]
  + 1]]`` of X, ``rows`` a permutation: X itself is never reordered), whether to skip idle
  coordinates (``lazy``), and the norm test of the growing batch;
- ``trace``: one row per step (sigma, rho, accepted, ||s||_D^2, xi, F_B(w), nnz).

The step is taken in the diagonal metric D = diag(d_j^2): s minimises
g's + sigma/2 sum_j d_j^2 s_j^2 + R(w + s), i.e. s_j = prox(w_j - g_j t_j, t_j) - w_j with
t_j = 1 / (sigma d_j^2), closed form for a separable penalty. With d_j the size of column
j's entries this is SR2 on the problem in the units where every column is of size one, so
the iterates do not depend on the units of the columns (see ``column_metric`` in
:mod:`sr2learn._sr2`).

Per-step work proportional to the batch ("lazy", exact). Under SVRG the estimator is
g = X_B^T (D_B - D~_B) / m + mu, so a coordinate that no row of the batch touches has
g_j = mu_j, constant over the epoch. For such a coordinate with w_j = 0 the step is
zero whenever zero is a fixed point of its prox at that sigma ("idle"); for the penalties
that declare ``lazy_exact`` this stays true for every larger sigma, so the active set is
built for sigma >= ``sigma_low`` and rebuilt (one pass over the coordinates) if sigma falls
below it. Idle untouched coordinates owe nothing to s, ||s||^2, g's, R(w + s) or xi: a step
visits the coordinates its rows touch plus the active ones (nonzero, or not idle). A
non-separable penalty (``separable = False``) gets eager steps over every coordinate.
"""

from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._cache import drop_stale_kernels
from ._compiled import JIT, bregman, loss_derivative, prox_entries, value_entries
from ._rule import model_decrease, sr2_ratio, sr2_update

drop_stale_kernels()

__all__ = [
    "EngineData", "RuleParams", "EpochState", "Reference", "EpochPlan", "TRACE_COLUMNS",
    "sr2_epoch", "prox_step_decrease", "predict_into", "gradient_into", "gradient_pair_into",
    "loss_pass",
    "column_moments", "row_norms_into", "csr_columns",
    "AllColumns", "ColumnSubset",
]  # fmt: skip

TRACE_COLUMNS = ("sigma", "rho", "accepted", "step_sq", "xi", "batch_objective", "nnz")
# The active set stays valid while sigma >= SIGMA_LOW_FACTOR * (sigma when it was built).
SIGMA_LOW_FACTOR = 0.1
# PREFETCH: batches are rows scattered over X (drawn through a permutation, X is never
# reordered), whose loads the CPU cannot foresee. While a step reads row r of its batch, row
# r of the next batch (its entries, target, weight and SVRG derivative) is prefetched.
# Measured against contiguous batches of a shuffled copy (the engine before): a dense
# 20,000 x 100 epoch 1.04-1.09x (1.5-1.9x without the prefetch), Adult 1.06-1.15x,
# MNIST-5k 1.02-1.05x, text-like 20,000 x 50,000 0.99-1.02x.
_CACHE_LINE = 64  # bytes

_ratio = njit(**JIT)(sr2_ratio)
_update = njit(**JIT)(sr2_update)
_model_decrease = njit(**JIT)(model_decrease)


class EngineData(NamedTuple):
    dense: bool
    data: np.ndarray  # dense: X.ravel() (C order); CSR: X.data
    indices: np.ndarray  # CSR: X.indices (int32 or int64); dense: unused
    indptr: np.ndarray
    n: int
    p: int  # the coordinates solved (rows of W less the intercept)
    Y: np.ndarray  # (n, K) float64
    sw: np.ndarray  # (n,) float64, mean 1
    intercept: bool
    inv_metric: np.ndarray  # (p + intercept,) 1 / d_j^2
    coords: "AllColumns | ColumnSubset"  # the columns of X that the coordinates stand for


# Which columns of X the coordinates (rows of W) stand for. numba compiles the engine once
# for each of the two types, so that the full problem pays nothing for working sets.
class AllColumns(NamedTuple):
    """Every column of X, in order."""

    width: int  # columns of X (the length of a dense row)


class ColumnSubset(NamedTuple):
    """A working set: coordinate q is column ``columns[q]`` of X, and column j feeds
    coordinate ``slot[j]`` (-1: none). X is read in place, not copied."""

    width: int
    columns: np.ndarray  # (p,) int64
    slot: np.ndarray  # (width,) int64


class RuleParams(NamedTuple):
    eta1: float
    eta2: float
    gamma1: float
    gamma3: float
    sigma_min: float
    sigma_max: float
    eps: float


class EpochState(NamedTuple):
    W: np.ndarray  # (p + intercept, K) float64
    scalars: np.ndarray  # [sigma, R(W)]


class Reference(NamedTuple):
    svrg: bool
    D: np.ndarray  # (n, K) s_i l'(z_i) at the reference point (empty without SVRG)
    mu: np.ndarray  # (p + intercept, K) grad f at the reference point (zeros without SVRG)


class EpochPlan(NamedTuple):
    rows: np.ndarray  # (n,) int64, a permutation of the rows of X
    edges: np.ndarray
    order: np.ndarray
    lazy: bool
    norm_test_theta: float  # > 0: count the steps that fail the growing batch's norm test


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask the CPU to bring the entry at flat position ``index`` of a C-ordered array into
    its caches: a hint, which neither loads nor faults (an index past the end is harmless)."""
    if not (isinstance(array, types.Array) and array.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]),
            "llvm.prefetch.p0i8")  # fmt: skip
        # read, keep in all cache levels, data cache
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@njit(**JIT)
def _row_span(data, i):
    if data.dense:
        return i * data.coords.width, (i + 1) * data.coords.width
    return data.indptr[i], data.indptr[i + 1]


def _subset(coords):
    return isinstance(coords, types.NamedTuple) and coords.instance_class is ColumnSubset


def _coordinate(coords, column):
    """The coordinate (row of W) that a column of X feeds; -1 outside a working set."""
    raise NotImplementedError("compiled only")


def _outside(coords, j):
    """Whether coordinate ``j`` (from :func:`_coordinate`) is outside the working set:
    always False on all the columns, which compiles to no test at all."""
    raise NotImplementedError("compiled only")


@overload(_coordinate, jit_options=JIT)
def _coordinate_of(coords, column):
    if _subset(coords):
        return lambda coords, column: coords.slot[column]
    return lambda coords, column: column


@overload(_outside, inline="always", jit_options=JIT)
def _outside_of(coords, j):
    if _subset(coords):
        return lambda coords, j: j < 0
    return lambda coords, j: False


# Dense rows: contiguous loops whose float64 sums LLVM may reassociate (vectorise). One
# output: a scalar accumulator along the row; several: the outputs innermost (a row of W is
# contiguous), which measured 3-5x faster for 10 classes than one pass per output (on all
# the columns, several outputs take the faster _rows_dot_t / _rows_axpy_t instead). On a
# working set's columns, the same as a gather (the row is not copied). Each pair is
# compiled, per type of ``coords``, as the body of ``_dense_dot_on`` / ``_dense_axpy_on``
# (no wrapper call per row).
_DENSE_JIT = {**JIT, "fastmath": {"reassoc", "contract"}}


def _dense_dot(coords, x, W, z):
    """z[k] += sum_j x[j] W[j, k]."""
    K = W.shape[1]
    if K == 1:
        acc = 0.0
        for j in range(x.shape[0]):
            acc += x[j] * W[j, 0]
        z[0] += acc
        return
    for j in range(x.shape[0]):
        xj = x[j]
        for k in range(K):
            z[k] += xj * W[j, k]


def _dense_dot_at(coords, x, W, z):
    """z[k] += sum_q x[columns[q]] W[q, k]."""
    columns = coords.columns
    K = W.shape[1]
    if K == 1:
        acc = 0.0
        for q in range(columns.shape[0]):
            acc += x[columns[q]] * W[q, 0]
        z[0] += acc
        return
    for q in range(columns.shape[0]):
        xq = x[columns[q]]
        for k in range(K):
            z[k] += xq * W[q, k]


def _dense_axpy(coords, x, e, G):
    """G[j, k] += e[k] x[j]."""
    K = e.shape[0]
    if K == 1:
        e0 = e[0]
        for j in range(x.shape[0]):
            G[j, 0] += e0 * x[j]
        return
    for j in range(x.shape[0]):
        xj = x[j]
        for k in range(K):
            G[j, k] += e[k] * xj


def _dense_axpy_at(coords, x, e, G):
    """G[q, k] += e[k] x[columns[q]]."""
    columns = coords.columns
    K = e.shape[0]
    if K == 1:
        e0 = e[0]
        for q in range(columns.shape[0]):
            G[q, 0] += e0 * x[columns[q]]
        return
    for q in range(columns.shape[0]):
        xq = x[columns[q]]
        for k in range(K):
            G[q, k] += e[k] * xq


def _dense_dot_on(coords, x, W, z):
    """z += the dense row x, on the columns of the coordinates, times W."""
    raise NotImplementedError("compiled only")


def _dense_axpy_on(coords, x, e, G):
    """G += e times the dense row x, on the columns of the coordinates."""
    raise NotImplementedError("compiled only")


@overload(_dense_dot_on, jit_options=_DENSE_JIT)
def _dense_dot_on_of(coords, x, W, z):
    return _dense_dot_at if _subset(coords) else _dense_dot


@overload(_dense_axpy_on, jit_options=_DENSE_JIT)
def _dense_axpy_on_of(coords, x, e, G):
    return _dense_axpy_at if _subset(coords) else _dense_axpy


@njit(**JIT)
def _row_dot(data, i, W, z):
    """z[k] += x_i . W[:, k] over the stored entries of row i (dense or CSR)."""
    start, stop = _row_span(data, i)
    if data.dense:
        _dense_dot_on(data.coords, data.data[start:stop], W, z)
        return
    for kk in range(start, stop):
        j = _coordinate(data.coords, data.indices[kk])
        if _outside(data.coords, j):
            continue
        x = data.data[kk]
        for k in range(z.shape[0]):
            z[k] += x * W[j, k]


@njit(**JIT)
def _row_norm_sq(data, i):
    """||x~_i||^2 in the metric's dual norm (the norm test and the exact variance)."""
    start, stop = _row_span(data, i)
    sq = data.inv_metric[data.p] if data.intercept else 0.0
    for kk in range(start, stop):
        j = _coordinate(data.coords, kk - start if data.dense else data.indices[kk])
        if not _outside(data.coords, j):
            sq += data.data[kk] ** 2 * data.inv_metric[j]
    return sq


@njit(**JIT, inline="always")
def _add_row_gradient(data, i, e, g, mu, mark, step, touched, n_touch):
    """g[j] += e x_ij over row i; a column first met in this step starts from mu_j and
    joins ``touched``. Returns the new number of touched columns (dense rows: every column
    was marked at the start of the step)."""
    start, stop = _row_span(data, i)
    if data.dense:
        _dense_axpy_on(data.coords, data.data[start:stop], e, g)
        return n_touch
    one = e.shape[0] == 1
    e0 = e[0]
    for kk in range(start, stop):
        j = _coordinate(data.coords, data.indices[kk])
        if _outside(data.coords, j):
            continue
        if mark[j] != step:
            mark[j] = step
            g[j] = mu[j]
            touched[n_touch] = j
            n_touch += 1
        x = data.data[kk]
        if one:
            g[j, 0] += e0 * x
        else:
            for k in range(e.shape[0]):
                g[j, k] += e[k] * x
    return n_touch


@njit(**JIT)
def _prefetch_lines(array, start, stop):
    """Prefetch the cache lines of array[start:stop]."""
    step = max(1, _CACHE_LINE // array.itemsize)
    for kk in range(start, stop, step):
        _prefetch(array, kk)
    if stop > start:
        _prefetch(array, stop - 1)


@njit(**JIT)
def _prefetch_row(data, ref, i):
    """Prefetch what a step reads of row i: its entries, target, weight, SVRG derivative."""
    start, stop = _row_span(data, i)
    _prefetch_lines(data.data, start, stop)
    if not data.dense:
        _prefetch_lines(data.indices, start, stop)
    _prefetch(data.Y, i * data.Y.shape[1])
    _prefetch(data.sw, i)
    if ref.svrg:
        _prefetch(ref.D, i * ref.D.shape[1])


@njit(**JIT)
def _batch(plan, step):
    """The rows of step ``step``'s batch (none past the last step)."""
    if step >= plan.order.shape[0]:
        return plan.rows[:0]
    k = plan.order[step]
    return plan.rows[plan.edges[k] : plan.edges[k + 1]]


@njit(**JIT)
def _build_active(data, pen, W, mu, sigma_low, lazy, active, act, v, t, u):
    """The coordinates each step must visit besides the touched ones; returns their count."""
    p, K = data.p, W.shape[1]
    count = 0
    for j in range(p):
        keep = not lazy
        for k in range(K):
            keep = keep or W[j, k] != 0.0
        if not keep:
            step = data.inv_metric[j] / sigma_low
            for k in range(K):
                v[k] = -mu[j, k] * step
                t[k] = step
            prox_entries(pen, v, t, u, K)
            for k in range(K):
                keep = keep or u[k] != 0.0
        active[j] = keep
        if keep:
            act[count] = j
            count += 1
    return count


@njit(**JIT)
def _trial_step(data, pen, W, g, sum_e, mu, sigma, touched, n_touch, v, t, u, w_old, S,
                s_int):  # fmt: skip
    """The proximal step in the metric on the visited coordinates (written into ``u``, ``S``
    and ``s_int``); returns R(w) - R(w + s), ||s||_D^2, g's and ||g||^2 in the dual norm."""
    p, K = data.p, W.shape[1]
    for q in range(n_touch):
        j = touched[q]
        tj = data.inv_metric[j] / sigma
        for k in range(K):
            idx = q * K + k
            w_old[idx] = W[j, k]
            v[idx] = W[j, k] - g[j, k] * tj
            t[idx] = tj
    count = n_touch * K
    prox_entries(pen, v, t, u, count)
    r_drop = value_entries(pen, w_old, count) - value_entries(pen, u, count)
    s_sq = 0.0
    g_dot_s = 0.0
    g_sq = 0.0
    for q in range(n_touch):
        j = touched[q]
        for k in range(K):
            s = u[q * K + k] - W[j, k]
            S[j, k] = s
            s_sq += s * s / data.inv_metric[j]
            g_dot_s += g[j, k] * s
            g_sq += g[j, k] * g[j, k] * data.inv_metric[j]
    if data.intercept:
        for k in range(K):
            g_int = sum_e[k] + mu[p, k]
            s_int[k] = -g_int * data.inv_metric[p] / sigma
            s_sq += s_int[k] * s_int[k] / data.inv_metric[p]
            g_dot_s += g_int * s_int[k]
            g_sq += g_int * g_int * data.inv_metric[p]
    return r_drop, s_sq, g_dot_s, g_sq


@njit(**JIT)
def _fails_norm_test(data, batch, Dl, row_sq, g_sq, s_sq, sigma, theta):
    """The growing batch's norm test: the in-batch variance of the mean gradient (in the
    metric's dual norm) against theta^2 ||sigma D s||^2."""
    m = batch.shape[0]
    total = 0.0
    for r in range(m):
        i = batch[r]
        en = 0.0
        for k in range(Dl.shape[1]):
            en += (data.sw[i] * Dl[r, k]) ** 2
        total += row_sq[r] * en
    var = (1.0 - m / data.n) / (m * (m - 1.0)) * max(total - m * g_sq, 0.0)
    return var > theta**2 * sigma**2 * s_sq


@njit(**JIT)
def _accept(data, W, u, s_int, touched, n_touch, nnz, active, act, n_act):
    """w <- w + s on the visited coordinates; a coordinate that became nonzero joins the
    active set. Returns the new nnz and active count."""
    p, K = data.p, W.shape[1]
    for q in range(n_touch):
        j = touched[q]
        nonzero = False
        for k in range(K):
            new = u[q * K + k]
            nnz += int(new != 0.0) - int(W[j, k] != 0.0)
            W[j, k] = new
            nonzero = nonzero or new != 0.0
        if nonzero and not active[j]:
            active[j] = True
            act[n_act] = j
            n_act += 1
    if data.intercept:
        for k in range(K):
            W[p, k] += s_int[k]
    return nnz, n_act


# One output on CSR rows (binary and regression fits on sparse data): the full passes sum
# into a scalar and read each entry once. The general loops below kept the outputs' sums in
# memory and made a view per row: 3.2 -> 1.0 ms for X w on text-like 20,000 x 50,000
# (744,000 entries).
@njit(**JIT)
def _one_csr_output(data, K):
    return not data.dense and K == 1


@njit(**JIT, inline="always")
def _csr_row_sum(data, i, W):
    """x_i . W[:, 0] over the stored entries of CSR row i."""
    acc = 0.0
    for kk in range(data.indptr[i], data.indptr[i + 1]):
        j = _coordinate(data.coords, data.indices[kk])
        if not _outside(data.coords, j):
            acc += data.data[kk] * W[j, 0]
    return acc


@njit(**JIT, inline="always")
def _csr_row_add(data, i, e, G):
    """G[:p, 0] += e x_i over the stored entries of CSR row i."""
    for kk in range(data.indptr[i], data.indptr[i + 1]):
        j = _coordinate(data.coords, data.indices[kk])
        if not _outside(data.coords, j):
            G[j, 0] += data.data[kk] * e


@njit(**JIT)
def _intercept_of(data, W, k):
    return W[data.p, k] if data.intercept else 0.0


@njit(**JIT)
def sr2_epoch(data, fit, pen, rule, state, ref, plan, trace):
    """Run the steps of one epoch; returns (sigma clamps, coordinates visited, steps that
    failed the norm test, steps tested). ``state`` is updated in place."""
    W = state.W
    p, K = data.p, W.shape[1]
    n_batches = plan.order.shape[0]
    max_m = 0
    for k in range(n_batches):
        max_m = max(max_m, plan.edges[plan.order[k] + 1] - plan.edges[plan.order[k]])
    Z = np.empty((max_m, K))
    Dl = np.empty((max_m, K))
    losses = np.empty(max_m)
    row_sq = np.empty(max_m)
    e = np.empty(K)
    sum_e = np.empty(K)
    zs = np.empty(K)
    s_int = np.zeros(K)
    g = np.zeros((p, K))
    S = np.zeros((p, K))
    touched = np.empty(p, dtype=np.int64)
    mark = np.full(p, -1, dtype=np.int64)
    active = np.zeros(p, dtype=np.bool_)
    act = np.empty(p, dtype=np.int64)
    v = np.empty(p * K)
    t = np.empty(p * K)
    u = np.empty(p * K)
    w_old = np.empty(p * K)
    # Dense rows with several outputs: the batch's products with W, E and S four rows at a
    # time against transposed copies (see _rows_dot_t), the copy of W kept in step.
    blocked = _blocked(data, K)
    one_csr = _one_csr_output(data, K)
    width = p if blocked else 0
    WT = np.empty((K, width))
    GT = np.empty((K, width))
    EB = np.empty((max_m if blocked else 0, K))
    ZS = np.empty((max_m if blocked else 0, K))
    if blocked:
        _transpose_into(W, WT)
    sigma = state.scalars[0]
    R_w = state.scalars[1]
    norm_test = plan.norm_test_theta > 0.0
    sigma_low = SIGMA_LOW_FACTOR * sigma
    n_act = _build_active(data, pen, W, ref.mu, sigma_low, plan.lazy, active, act, v, t, u)
    nnz = 0
    for j in range(p):
        for k in range(K):
            nnz += W[j, k] != 0.0
    clamps = visits = violations = tests = 0
    for step in range(n_batches):
        batch = _batch(plan, step)
        m = batch.shape[0]
        # The next batch's rows are prefetched one per row of this one (see PREFETCH).
        upcoming = _batch(plan, step + 1)
        n_touch = 0
        f_batch = 0.0
        sum_e[:] = 0.0
        if data.dense:  # every coordinate is touched: mark them once, not per entry
            for j in range(p):
                mark[j] = step
                g[j] = ref.mu[j]
                touched[j] = j
            n_touch = p
        # Predictions, losses and derivatives of the batch; the gradient on touched rows.
        for r in range(m):
            i = batch[r]
            if r < upcoming.shape[0]:
                _prefetch_row(data, ref, upcoming[r])
            if one_csr:
                Z[r, 0] = _intercept_of(data, W, 0) + _csr_row_sum(data, i, W)
                continue
            for k in range(K):
                Z[r, k] = W[p, k] if data.intercept else 0.0
            if not blocked:
                _row_dot(data, i, W, Z[r])
        if blocked:
            _rows_dot_t(data.data, width, batch, WT, Z)
        for r in range(m):
            i = batch[r]
            if norm_test:
                row_sq[r] = _row_norm_sq(data, i)
            losses[r] = loss_derivative(fit, Z[r], data.Y[i], Dl[r])
            f_batch += data.sw[i] * losses[r]
            for k in range(K):
                e[k] = data.sw[i] * Dl[r, k]
                if ref.svrg:
                    e[k] -= ref.D[i, k]
                e[k] /= m
                sum_e[k] += e[k]
            if blocked:
                EB[r] = e
            else:
                n_touch = _add_row_gradient(data, i, e, g, ref.mu, mark, step, touched,
                                            n_touch)  # fmt: skip
        if blocked:
            GT[:] = 0.0
            _rows_axpy_t(data.data, width, batch, EB[:m], GT)
            for j in range(p):
                for k in range(K):
                    g[j, k] += GT[k, j]
        f_batch /= m
        for q in range(n_act):
            j = act[q]
            if mark[j] != step:
                mark[j] = step
                g[j] = ref.mu[j]
                touched[n_touch] = j
                n_touch += 1
        visits += n_touch
        # The trial step on the visited coordinates (all others have s_j = 0 exactly).
        r_drop, s_sq, g_dot_s, g_sq = _trial_step(data, pen, W, g, sum_e, ref.mu, sigma,
                                                  touched, n_touch, v, t, u, w_old, S,
                                                  s_int)  # fmt: skip
        xi = _model_decrease(r_drop, 0.0, g_dot_s, s_sq, sigma)
        # The decrease of the batch objective is xi minus the Bregman divergence of f_B
        # (under SVRG: of the consistent surrogate, whose gradient at w is exactly g).
        div = 0.0
        if blocked:
            for r in range(m):
                for k in range(K):
                    ZS[r, k] = s_int[k] if data.intercept else 0.0
            _transpose_into(S, GT)
            _rows_dot_t(data.data, width, batch, GT, ZS)
        for r in range(m):
            i = batch[r]
            if blocked:
                zs[:] = ZS[r]
            elif one_csr:
                zs[0] = (s_int[0] if data.intercept else 0.0) + _csr_row_sum(data, i, S)
            else:
                for k in range(K):
                    zs[k] = s_int[k] if data.intercept else 0.0
                _row_dot(data, i, S, zs)
            div += data.sw[i] * bregman(fit, Z[r], zs, data.Y[i], Dl[r], losses[r])
        objective = f_batch + R_w
        rho = _ratio(xi - div / m, xi, abs(r_drop) + abs(g_dot_s), rule.eps)
        accepted, new_sigma, clamped = _update(
            rho, sigma, rule.eta1, rule.eta2, rule.gamma1, rule.gamma3,
            rule.sigma_min, rule.sigma_max,
        )  # fmt: skip
        if norm_test and m > 1 and m < data.n:
            violations += _fails_norm_test(data, batch, Dl, row_sq, g_sq, s_sq, sigma,
                                           plan.norm_test_theta)  # fmt: skip
            tests += 1
        if accepted:
            nnz, n_act = _accept(data, W, u, s_int, touched, n_touch, nnz, active, act, n_act)
            R_w -= r_drop
            if blocked:
                _transpose_into(W, WT)
        for q in range(n_touch):
            S[touched[q]] = 0.0
        trace[step, 0] = sigma
        trace[step, 1] = rho
        trace[step, 2] = 1.0 if accepted else 0.0
        trace[step, 3] = s_sq
        trace[step, 4] = xi
        trace[step, 5] = objective
        trace[step, 6] = nnz
        clamps += int(clamped)
        sigma = new_sigma
        if plan.lazy and sigma < sigma_low:
            sigma_low = SIGMA_LOW_FACTOR * sigma
            n_act = _build_active(data, pen, W, ref.mu, sigma_low, plan.lazy, active, act,
                                  v, t, u)  # fmt: skip
    state.scalars[0] = sigma
    state.scalars[1] = R_w
    return clamps, visits, violations, tests


@njit(**JIT)
def prox_step_decrease(data, pen, W, G, sigma):
    """xi, the model decrease of the proximal step at ``sigma`` from W with the gradient G
    (its last row the intercept's, if any): :func:`sr2_epoch`'s trial step on every
    coordinate (a checkpoint's stationarity measure; its NumPy form, a dozen array
    operations around the prox, took ten times as long on a working set's 64 columns)."""
    p, K = data.p, W.shape[1]
    touched = np.arange(p)
    zeros = np.zeros((p + 1, K))
    g_int = G[p] if data.intercept else zeros[p]
    v, t, u, w_old = np.empty(p * K), np.empty(p * K), np.empty(p * K), np.empty(p * K)
    S, s_int = np.zeros((p, K)), np.zeros(K)
    r_drop, s_sq, g_dot_s, _ = _trial_step(data, pen, W, G, g_int, zeros, sigma, touched, p,
                                           v, t, u, w_old, S, s_int)  # fmt: skip
    return _model_decrease(r_drop, 0.0, g_dot_s, s_sq, sigma)


@njit(**JIT)
def _accumulate_row(data, i, e, G):
    """G[:p] += x_i e^T (row i of X; the intercept row is the caller's)."""
    start, stop = _row_span(data, i)
    if data.dense:
        _dense_axpy_on(data.coords, data.data[start:stop], e, G)
        return
    for kk in range(start, stop):
        j = _coordinate(data.coords, data.indices[kk])
        if _outside(data.coords, j):
            continue
        x = data.data[kk]
        for k in range(e.shape[0]):
            G[j, k] += x * e[k]


# Dense rows on all the columns (the full passes and the steps' batch products): one output
# at a time against a transposed copy of W, S or G (p x K, small), four rows at a time, so
# that each load of the copy serves four rows and the sums stay in registers. Measured on
# one core, 5,000 x 784, 10 outputs, against the outputs-innermost loop of _dense_dot /
# _dense_axpy: X W 11.4 -> 2.9 ms (Gaussian) and 10.7 -> 2.7 ms (MNIST); X^T E 10.2 -> 2.9
# and 9.9 -> 2.9 ms; an epoch (batches of 32, SVRG, l1) 45 -> 25 ms (Gaussian) and 45 ->
# 22 ms (MNIST-5k). One output too: the row-by-row loop (_row_dot, _accumulate_row) paid
# about 0.1 us a row in calls and views, 6 times the product on 20,000 x 100 (X w 3.7 ->
# 0.55 ms, float32 2.6 -> 0.29 ms) and 14 times on a working set's 200 x 64 copy (26 ->
# 1.9 us), as fast as BLAS on 200 x 5,000.
_ROWS_AT_ONCE = 4


def _all_columns(coords):
    """Whether the coordinates are all the columns of X (no working set)."""
    raise NotImplementedError("compiled only")


@overload(_all_columns, jit_options=JIT)
def _all_columns_of(coords):
    if _subset(coords):
        return lambda coords: False
    return lambda coords: True


@njit(**JIT)
def _blocked(data, K):
    """Whether products with K outputs take the blocked kernels below: dense rows, all
    the columns."""
    return data.dense and _all_columns(data.coords)


@njit(**_DENSE_JIT)
def _rows_dot_t(x, width, rows, AT, Z):
    """Z[r, k] += x_i . AT[k] for the dense rows i = rows[r] of the ravel ``x``."""
    m = rows.shape[0]
    for first in range(0, m - m % _ROWS_AT_ONCE, _ROWS_AT_ONCE):
        x0 = x[rows[first] * width : (rows[first] + 1) * width]
        x1 = x[rows[first + 1] * width : (rows[first + 1] + 1) * width]
        x2 = x[rows[first + 2] * width : (rows[first + 2] + 1) * width]
        x3 = x[rows[first + 3] * width : (rows[first + 3] + 1) * width]
        for k in range(AT.shape[0]):
            a = AT[k]
            z0 = z1 = z2 = z3 = 0.0
            for j in range(width):
                z0 += x0[j] * a[j]
                z1 += x1[j] * a[j]
                z2 += x2[j] * a[j]
                z3 += x3[j] * a[j]
            Z[first, k] += z0
            Z[first + 1, k] += z1
            Z[first + 2, k] += z2
            Z[first + 3, k] += z3
    for r in range(m - m % _ROWS_AT_ONCE, m):
        row = x[rows[r] * width : (rows[r] + 1) * width]
        for k in range(AT.shape[0]):
            a = AT[k]
            acc = 0.0
            for j in range(width):
                acc += row[j] * a[j]
            Z[r, k] += acc


@njit(**_DENSE_JIT)
def _rows_axpy_t(x, width, rows, E, GT):
    """GT[k] += sum_r E[r, k] x_i for the dense rows i = rows[r] of the ravel ``x``."""
    m = rows.shape[0]
    for first in range(0, m - m % _ROWS_AT_ONCE, _ROWS_AT_ONCE):
        x0 = x[rows[first] * width : (rows[first] + 1) * width]
        x1 = x[rows[first + 1] * width : (rows[first + 1] + 1) * width]
        x2 = x[rows[first + 2] * width : (rows[first + 2] + 1) * width]
        x3 = x[rows[first + 3] * width : (rows[first + 3] + 1) * width]
        for k in range(GT.shape[0]):
            g = GT[k]
            e0, e1, e2, e3 = E[first, k], E[first + 1, k], E[first + 2, k], E[first + 3, k]
            for j in range(width):
                g[j] += e0 * x0[j] + e1 * x1[j] + e2 * x2[j] + e3 * x3[j]
    for r in range(m - m % _ROWS_AT_ONCE, m):
        row = x[rows[r] * width : (rows[r] + 1) * width]
        for k in range(GT.shape[0]):
            g = GT[k]
            e = E[r, k]
            for j in range(width):
                g[j] += e * row[j]


@njit(**JIT)
def _transpose_into(A, AT):
    """AT[k, j] = A[j, k] for the first AT.shape[1] rows of A."""
    for j in range(AT.shape[1]):
        for k in range(AT.shape[0]):
            AT[k, j] = A[j, k]


@njit(**JIT)
def predict_into(data, W, Z):
    """Z = X W (+ the intercept row), accumulated in float64 whatever the dtype of X."""
    p, K = data.p, W.shape[1]
    if _one_csr_output(data, K):
        b = _intercept_of(data, W, 0)
        for i in range(data.n):
            Z[i, 0] = b + _csr_row_sum(data, i, W)
        return
    for i in range(data.n):
        for k in range(K):
            Z[i, k] = _intercept_of(data, W, k)
    if _blocked(data, K):
        WT = np.empty((K, p))
        _transpose_into(W, WT)
        _rows_dot_t(data.data, p, np.arange(data.n), WT, Z)
        return
    for i in range(data.n):
        _row_dot(data, i, W, Z[i])


@njit(**JIT)
def gradient_into(data, E, G):
    """G = X~^T E (the intercept row gets the column sums of E), in float64."""
    G[:] = 0.0
    if _one_csr_output(data, E.shape[1]):
        for i in range(data.n):
            _csr_row_add(data, i, E[i, 0], G)
    elif _blocked(data, E.shape[1]):
        GT = np.zeros((E.shape[1], data.p))
        _rows_axpy_t(data.data, data.p, np.arange(data.n), E, GT)
        G[: data.p] += GT.T
    else:
        for i in range(data.n):
            _accumulate_row(data, i, E[i], G)
    _add_intercept_row(data, E, G)


@njit(**JIT)
def gradient_pair_into(data, E, F, G, H):
    """G = X~^T E and H = X~^T F in one pass over X (a checkpoint's gradient and its
    trial point's, without an (n, 2K) array holding both residuals)."""
    if _blocked(data, E.shape[1]):
        # Two passes of _rows_axpy_t take a third of the time of this pair's per-row loop.
        gradient_into(data, E, G)
        gradient_into(data, F, H)
        return
    G[:] = 0.0
    H[:] = 0.0
    if _one_csr_output(data, E.shape[1]):
        for i in range(data.n):
            e, f = E[i, 0], F[i, 0]
            for kk in range(data.indptr[i], data.indptr[i + 1]):
                j = _coordinate(data.coords, data.indices[kk])
                if not _outside(data.coords, j):
                    x = data.data[kk]
                    G[j, 0] += x * e
                    H[j, 0] += x * f
    else:
        for i in range(data.n):
            _accumulate_row(data, i, E[i], G)
            _accumulate_row(data, i, F[i], H)
    _add_intercept_row(data, E, G)
    _add_intercept_row(data, F, H)


@njit(**JIT)
def _add_intercept_row(data, E, G):
    if data.intercept:
        for i in range(data.n):
            for k in range(E.shape[1]):
                G[data.p, k] += E[i, k]


@njit(**JIT)
def gram_matvec_into(data, v, out):
    """out = X~^T S X~ v for one column v (Lanczos for L): each row is read once for both
    products, while it is in cache (a predict and a gradient read X twice)."""
    p = data.p
    out[:] = 0.0
    b = _intercept_of(data, v, 0)
    if _one_csr_output(data, 1):
        for i in range(data.n):
            z = (b + _csr_row_sum(data, i, v)) * data.sw[i]
            _csr_row_add(data, i, z, out)
            if data.intercept:
                out[p, 0] += z
        return
    z = np.empty(1)
    for i in range(data.n):
        z[0] = b
        _row_dot(data, i, v, z)
        z[0] *= data.sw[i]
        if data.intercept:
            out[p, 0] += z[0]
        _accumulate_row(data, i, z, out)


@njit(**JIT)
def support_gram_into(data, H):
    """H += X~^T S X~ on the problem's columns (a working set: the support), one output:
    each row's entries in the set are gathered, then their outer product added (a pass
    over X and sum_i nnz_i^2 flops, no copy of the columns)."""
    p = data.p
    idx = np.empty(p + 1, dtype=np.int64)
    val = np.empty(p + 1)
    for i in range(data.n):
        s = data.sw[i]
        start, stop = _row_span(data, i)
        m = 0
        for kk in range(start, stop):
            # Written, then kept or not, without a branch: the support holds a few of a
            # row's entries, in no pattern the CPU can predict (a 36-column support of
            # text-like 20,000 x 50,000: 2.5 -> 1.9 ms).
            col = kk - start if data.dense else data.indices[kk]
            j = _coordinate(data.coords, col)
            idx[m] = j
            val[m] = data.data[kk]
            m += 0 if _outside(data.coords, j) else 1
        for a in range(m):
            sa = s * val[a]
            for b in range(m):
                H[idx[a], idx[b]] += sa * val[b]
            if data.intercept:
                H[idx[a], p] += sa
                H[p, idx[a]] += sa
        if data.intercept:
            H[p, p] += s


@njit(**JIT)
def csr_columns(indptr, indices, values, slot):
    """The CSR arrays (indptr, indices, values) of the columns j of a CSR matrix with
    ``slot[j] >= 0``, renumbered ``slot[j]``, in the order of each row's entries: a count
    and a copy, with a branch-free test per entry (64 columns of text-like 20,000 x
    50,000, a fifth of its entries: 1.85 ms, scipy's X[:, columns] 2.8 ms)."""
    n = indptr.shape[0] - 1
    new_ptr = np.zeros(n + 1, dtype=indptr.dtype)
    for i in range(n):
        count = 0
        for kk in range(indptr[i], indptr[i + 1]):
            count += 1 if slot[indices[kk]] >= 0 else 0
        new_ptr[i + 1] = new_ptr[i] + count
    total = new_ptr[n]
    # One spare entry: each entry is written before the test that keeps it or not.
    new_indices = np.empty(total + 1, dtype=indices.dtype)
    new_values = np.empty(total + 1, dtype=values.dtype)
    q = 0
    for kk in range(indptr[0], indptr[n]):
        j = slot[indices[kk]]
        new_indices[q] = j
        new_values[q] = values[kk]
        q += 1 if j >= 0 else 0
    return new_ptr, new_indices[:total], new_values[:total]


@njit(**JIT)
def loss_pass(fit, Z, Y, sw, out):
    """out[i] = s_i l'(z_i, y_i) for every sample (``out`` may be Z itself: each row of Z
    is read before its row of ``out`` is written); returns sum_i s_i l(z_i, y_i)."""
    K = Z.shape[1]
    z = np.empty(K)
    d = np.empty(K)
    total = 0.0
    for i in range(Z.shape[0]):
        for k in range(K):
            z[k] = Z[i, k]
        total += sw[i] * loss_derivative(fit, z, Y[i], d)
        for k in range(K):
            out[i, k] = sw[i] * d[k]
    return total


@njit(**JIT)
def row_norms_into(data, out):
    """out[i] = ||x~_i||^2 in the metric's dual norm, for every row."""
    for i in range(data.n):
        out[i] = _row_norm_sq(data, i)


@njit(**JIT)
def column_moments(data, sq, mass):
    """Per column of X, sq[j] += sum_i s_i x_ij^2 and mass[j] += sum_i s_i [x_ij != 0],
    in float64 (one pass, no temporary the size of X)."""
    for i in range(data.n):
        s = data.sw[i]
        start, stop = _row_span(data, i)
        for kk in range(start, stop):
            x = data.data[kk]
            if x != 0:
                j = kk - start if data.dense else data.indices[kk]
                sq[j] += s * x * x
                mass[j] += s
