"""The compiled engine: the compiled forms of every datafit and penalty agree with their
array forms, its steps equal the NumPy reference step for every datafit x penalty x
estimator, lazy steps equal eager ones while visiting few coordinates, and float32 data
are solved to float64 accuracy."""

import numpy as np
import pytest
import scipy.sparse as sp
from numba import njit

from sr2learn import SR2Classifier, SR2Regressor, penalties
from sr2learn._checkpoint import checkpoint, draw_step, prox_step
from sr2learn._compiled import bregman, loss_derivative, prox_entries, value_entries
from sr2learn._engine import EpochPlan, EpochState, Reference, prox_step_decrease, sr2_epoch
from sr2learn._problem import LinearProblem, data_nbytes
from sr2learn._rule import SR2Rule
from sr2learn._sr2 import _rule_params
from sr2learn.datafits import Logistic, Multinomial, Quadratic
from sr2learn.penalties import L0, L1, L0Ball, Lp

PENALTIES = [L1(0.3), L0(0.3), Lp(0.3, 0.5), Lp(0.3, 2.0 / 3.0), L0Ball(3), L1(0.0)]
DATAFITS = [(Quadratic(), 1), (Logistic(), 1), (Multinomial(), 3)]


@njit
def _prox_all(kernel, v, t):
    out = np.empty_like(v)
    prox_entries(kernel, v, t, out, v.shape[0])
    return out


@njit
def _value_all(kernel, w):
    return value_entries(kernel, w, w.shape[0])


@njit
def _loss_all(kernel, Z, Y, D):
    out = np.empty(Z.shape[0])
    for i in range(Z.shape[0]):
        out[i] = loss_derivative(kernel, Z[i], Y[i], D[i])
    return out


@njit
def _bregman_all(kernel, Z, dZ, Y, D, losses):
    out = np.empty(Z.shape[0])
    for i in range(Z.shape[0]):
        out[i] = bregman(kernel, Z[i], dZ[i], Y[i], D[i], losses[i])
    return out


@pytest.mark.parametrize("penalty", PENALTIES, ids=repr)
def test_compiled_prox_and_value_equal_the_array_forms(penalty, monkeypatch):
    # Small NumPy arrays may go through the compiled form themselves (Lp): not here.
    monkeypatch.setattr(penalties, "_COMPILED_UP_TO", 0)
    rng = np.random.default_rng(0)
    v = np.r_[-np.logspace(-4, 2, 40), 0.0, np.logspace(-4, 2, 40)]
    rng.shuffle(v)
    t = rng.choice([0.01, 1.0, 7.0], size=v.size)
    expected = penalty.prox(v, t if penalty.separable else 1.0)
    got = _prox_all(penalty.kernel(), v, t)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
    assert _value_all(penalty.kernel(), got) == pytest.approx(penalty.value(got), rel=1e-13)


@pytest.mark.parametrize(("datafit", "K"), DATAFITS, ids=lambda d: type(d).__name__)
def test_compiled_loss_derivative_bregman_equal_the_array_forms(datafit, K):
    rng = np.random.default_rng(1)
    n = 300
    Z = rng.standard_normal((n, K)) * 10
    if K == 1:
        Y = (rng.random((n, 1)) < 0.5).astype(float)
    else:
        Y = np.eye(K)[rng.integers(K, size=n)]
    dZ = rng.standard_normal((n, K)) * np.logspace(-9, 1, n)[:, None]
    D = np.empty((n, K))
    losses = _loss_all(datafit.kernel(), Z, Y, D)
    # Losses near zero: both forms are accurate to a few ulps of the logits, not relatively.
    np.testing.assert_allclose(losses, datafit.loss(Z, Y), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(D, datafit.derivative(Z, Y), rtol=1e-12, atol=1e-15)
    # Small steps (the Taylor branch) agree to rounding; large steps of a confident
    # prediction leave a tiny difference of O(1) terms, accurate to ~1e-15 absolutely.
    got = _bregman_all(datafit.kernel(), Z, dZ, Y, D, losses)
    expected = datafit.bregman(Z, dZ, Y, D)
    small = np.max(np.abs(dZ), axis=1) < 1e-2
    np.testing.assert_allclose(got[small], expected[small], rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def small_problem(datafit, K, sparse, seed=0, n=120, p=40, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * (rng.random((n, p)) < 0.3)
    X *= np.logspace(-2, 2, p)  # columns in very different units: the metric matters
    W = np.zeros((p, K))
    W[:5] = rng.standard_normal((5, K)) / np.logspace(-2, 2, p)[:5, None]
    Z = X @ W + 0.2 * rng.standard_normal((n, K))
    if isinstance(datafit, Quadratic):
        Y = Z
    elif isinstance(datafit, Logistic):
        Y = (Z > 0).astype(float)
    else:
        Y = np.eye(K)[np.argmax(Z, axis=1)]
    X = X.astype(dtype)
    X = sp.csr_matrix(X) if sparse else X
    return LinearProblem(X, Y, 0.5 + rng.random(n), datafit, True)


def reference_epoch(problem, penalty, W, sigma, rows, edges, order, ref, rule):
    """The steps of one epoch with the NumPy reference step (no compiled code): batch k
    holds the rows ``rows[edges[k]:edges[k + 1]]``."""
    trace = []
    R_w = penalty.value(W[: problem.p])
    for k in order:
        idx = rows[edges[k] : edges[k + 1]]
        d = draw_step(problem, penalty, W, R_w, sigma, idx, ref)
        XB, YB, swB = problem.rows(idx)
        ZS = problem.batch_linear(XB, d.S)
        actual = d.xi - float(swB @ problem.datafit.bregman(d.ZB, ZS, YB, d.dloss)) / len(swB)
        scale = abs(R_w - d.R_trial) + abs(float(np.vdot(d.g, d.S)))
        rho = SR2Rule.ratio(actual, d.xi, scale, np.finfo(float).eps)
        accepted, new_sigma, _ = rule.update(rho, sigma)
        trace.append((sigma, float(accepted), d.step_sq))
        if accepted:
            W, R_w = d.W_trial, d.R_trial
        sigma = new_sigma
    return W, np.array(trace)


def compiled_epoch(problem, penalty, W, sigma, rows, edges, order, ref, rule, lazy):
    state = EpochState(W.copy(), np.array([sigma, penalty.value(W[: problem.p])]))
    trace = np.empty((order.size, 7))
    plan = EpochPlan(rows, edges, order, lazy and penalty.lazy_exact, 0.0)
    _, visits, _, _ = sr2_epoch(problem.data, problem.datafit.kernel(), penalty.kernel(),
                                _rule_params(rule), state, ref, plan, trace)
    return state.W, trace, visits


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("svrg", [True, False], ids=["svrg", "plain"])
@pytest.mark.parametrize(("datafit", "K"), DATAFITS, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("penalty", PENALTIES[:5], ids=repr)
def test_compiled_steps_equal_the_numpy_reference_steps(penalty, datafit, K, svrg, sparse):
    problem = small_problem(datafit, K, sparse)
    rng = np.random.default_rng(2)
    W = np.zeros((problem.n_rows, K))
    W[:3] = 0.1 * rng.standard_normal((3, K)) / np.sqrt(problem.metric[:3, None])
    W[: problem.p] = penalty.prox(W[: problem.p], 1.0)  # feasible for L0Ball
    ck = checkpoint(problem, penalty, W)
    ref = Reference(True, ck.D, ck.G) if svrg else None
    plain = Reference(False, np.zeros((1, K)), np.zeros((problem.n_rows, K)))
    rows = rng.permutation(problem.n)  # batches of rows scattered over X
    edges = np.array([0, 13, 40, 41, 77, 120], dtype=np.int64)
    order = rng.permutation(edges.size - 1).astype(np.int64)
    rule = SR2Rule(sigma_min=1e-3)
    sigma = 0.3 * problem.lipschitz()
    W_ref, trace_ref = reference_epoch(problem, penalty, ck.W, sigma, rows, edges, order, ref,
                                       rule)  # fmt: skip
    for lazy in (False, True):
        W_c, trace, _ = compiled_epoch(problem, penalty, ck.W, sigma, rows, edges, order,
                                       ref or plain, rule, lazy)  # fmt: skip
        np.testing.assert_array_equal(trace[:, 2], trace_ref[:, 1])
        np.testing.assert_allclose(trace[:, 0], trace_ref[:, 0], rtol=1e-10)
        np.testing.assert_allclose(trace[:, 3], trace_ref[:, 2], rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(W_c, W_ref, rtol=1e-8, atol=1e-10)
    assert trace[:, 2].any()  # some step was taken


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(("datafit", "K"), DATAFITS, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("penalty", PENALTIES[:5], ids=repr)
def test_compiled_prox_step_decrease_equals_the_numpy_step(penalty, datafit, K, fit_intercept):
    """The stationarity measure's xi (compiled: the engine's trial step with the full
    gradient) is that of the NumPy reference step, at a point with a support and at zero
    (their intercepts not at the optimum)."""
    problem = small_problem(datafit, K, sparse=False)
    if not fit_intercept:
        problem = LinearProblem(problem.X, problem.Y, problem.sw, datafit, False)
    rng = np.random.default_rng(4)
    W = np.zeros((problem.n_rows, K))
    W[:6] = rng.standard_normal((6, K)) / np.sqrt(problem.metric[:6, None])
    W[: problem.p] = penalty.prox(W[: problem.p], 1.0)  # feasible for L0Ball
    decreases = []
    for start in (W, np.zeros_like(W)):
        if fit_intercept:
            start[-1] = 0.5
        E = datafit.derivative(problem.predict(start), problem.Y) * problem.sw[:, None]
        G = problem.gradient(E)
        R_w = penalty.value(start[: problem.p])
        for sigma in (0.1, 1.0, 10.0):
            sigma *= problem.lipschitz()
            expected = prox_step(problem, penalty, start, R_w, G, sigma)[2]
            got = prox_step_decrease(problem.data, penalty.kernel(), start, G, sigma)
            assert got == pytest.approx(expected, rel=1e-10, abs=1e-15)
            decreases.append(got)
    assert min(decreases) >= 0 and max(decreases) > 0  # (zero: a null step)


def test_lazy_steps_visit_few_coordinates_of_wide_sparse_data():
    rng = np.random.default_rng(3)
    n, p = 400, 4000
    X = sp.random(n, p, density=0.002, random_state=4, format="csr")
    y = (X @ np.r_[np.ones(10), np.zeros(p - 10)] + 0.01 * rng.standard_normal(n) > 0)
    problem = LinearProblem(X, y.astype(float)[:, None], np.ones(n), Logistic(), True)
    # alpha below the largest gradients: some zero coordinates are pushed off zero by mu
    # alone, also at steps whose rows do not touch them (the active set must hold them).
    grad = checkpoint(problem, L1(1.0), np.zeros((p + 1, 1))).G[:p]
    penalty = L1(0.7 * float(np.max(np.abs(grad))))
    ck = checkpoint(problem, penalty, np.zeros((p + 1, 1)))
    ref = Reference(True, ck.D, ck.G)
    rows = rng.permutation(n)
    edges = np.arange(0, n + 1, 20, dtype=np.int64)
    order = rng.permutation(edges.size - 1).astype(np.int64)
    rule, sigma = SR2Rule(sigma_min=1e-3), problem.lipschitz()
    W_eager, _, visits_eager = compiled_epoch(problem, penalty, ck.W, sigma, rows, edges, order,
                                              ref, rule, lazy=False)  # fmt: skip
    W_lazy, _, visits_lazy = compiled_epoch(problem, penalty, ck.W, sigma, rows, edges, order,
                                            ref, rule, lazy=True)  # fmt: skip
    assert np.count_nonzero(W_eager[:p]) > 0
    np.testing.assert_allclose(W_lazy, W_eager, rtol=1e-12, atol=1e-15)
    assert visits_eager == p * (edges.size - 1)
    assert visits_lazy < visits_eager / 20


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [12, 13, 14, 15])
def test_dense_passes_four_rows_at_a_time_equal_numpy(n, dtype, K):
    """The full passes over dense rows (four rows at a time, then the rest; one output as
    several) give X W, X^T E / n and the pair of gradients, with the intercept, for every
    remainder of n by four."""
    rng = np.random.default_rng(n)
    X = (rng.standard_normal((n, 9)) * (rng.random((n, 9)) < 0.6)).astype(dtype)
    datafit = Multinomial() if K > 1 else Logistic()
    Y = np.eye(K + 1)[rng.integers(K + 1, size=n), :K]
    problem = LinearProblem(X, Y, np.ones(n), datafit, True)
    X64 = X.astype(np.float64)
    W = rng.standard_normal((10, K))
    np.testing.assert_allclose(problem.predict(W), X64 @ W[:9] + W[9], rtol=1e-12, atol=1e-12)
    E = rng.standard_normal((n, 2 * K - 1))  # up to the trial pass's 2K columns
    G = problem.gradient(E)
    np.testing.assert_allclose(G, np.vstack([X64.T @ E, E.sum(axis=0)]) / n, rtol=1e-12,
                               atol=1e-12)  # fmt: skip
    F = rng.standard_normal((n, K))  # a checkpoint's gradient and its trial point's
    for got, R in zip(problem.gradient_pair(E[:, :K], F), (E[:, :K], F), strict=True):
        np.testing.assert_allclose(got, np.vstack([X64.T @ R, R.sum(axis=0)]) / n,
                                   rtol=1e-12, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("kind", ["binary", "multinomial", "regression"])
def test_float32_data_are_solved_to_the_accuracy_of_float64(kind):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 20)) * np.logspace(-1, 1, 20)
    z = X[:, :3] @ np.array([1.0, -2.0, 0.5])
    if kind == "regression":
        y, Est = z + 0.1 * rng.standard_normal(300), SR2Regressor
    elif kind == "binary":
        y, Est = (z + 0.5 * rng.standard_normal(300) > 0).astype(int), SR2Classifier
    else:
        y, Est = np.digitize(z, np.quantile(z, [1 / 3, 2 / 3])), SR2Classifier
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)  # the same problem, exactly representable in float64
    sw = 0.5 + rng.random(300)  # weights not representable in float32
    fit32 = Est(alpha=1e-2, tol=1e-8, random_state=0).fit(X32, y, sample_weight=sw)
    fit64 = Est(alpha=1e-2, tol=1e-8, random_state=0).fit(X64, y, sample_weight=sw)
    d32, d64 = fit32.diagnostics_, fit64.diagnostics_
    assert d32.converged and d64.converged
    assert fit32.coef_.dtype == np.float32
    # float32 data reach the float64 tolerance in about as many epochs...
    assert fit32.n_iter_ <= 1.5 * fit64.n_iter_ + 2
    # ...and both end within tol of the same optimum.
    f32, f64 = d32.checkpoints["objective"][-1], d64.checkpoints["objective"][-1]
    assert abs(f32 - f64) <= 2e-8 * f64
    np.testing.assert_allclose(fit32.coef_, fit64.coef_, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("columns", [None, [2, 3, 7, 30, 59]], ids=["all", "subset"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize(("datafit", "K"), DATAFITS[1:], ids=lambda d: type(d).__name__)
def test_a_gradient_pair_is_two_gradients(datafit, K, sparse, columns):
    """The checkpoint's one-pass pair of gradients (w and its trial point) equals two
    gradient passes, intercept row included, on all columns and on a working set's."""
    full = small_problem(datafit, K, sparse, n=150, p=60)
    problem = full
    if columns is not None:
        columns = np.asarray(columns)
        problem = LinearProblem(full.X, full.Y, full.sw, datafit, True,
                                (full.metric[columns], full.intercept_metric), columns)  # fmt: skip
    rng = np.random.default_rng(5)
    E, F = rng.standard_normal((2, full.n, K))
    G, H = problem.gradient_pair(E, F)
    np.testing.assert_allclose(G, problem.gradient(E), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H, problem.gradient(F), rtol=1e-12, atol=1e-14)
    assert G.shape == (problem.n_rows, K) and not np.allclose(G, H)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize(("datafit", "K"), DATAFITS[1:], ids=lambda d: type(d).__name__)
def test_columns_read_in_place_equal_a_copy_of_them(datafit, K, sparse):
    """A working set's problem reading X through its columns (no copy) computes what the
    problem on a copy of those columns computes: passes, row norms and an epoch."""
    full = small_problem(datafit, K, sparse, n=150, p=60)
    columns = np.array([2, 3, 7, 30, 31, 59])
    full._lipschitz = full.lipschitz()
    view = LinearProblem(full.X, full.Y, full.sw, datafit, True,
                         (full.metric[columns], full.intercept_metric), columns)  # fmt: skip
    copy = LinearProblem(full.X[:, columns], full.Y, full.sw, datafit, True,
                         (full.metric[columns], full.intercept_metric))  # fmt: skip
    assert view.columns is not None and copy.columns is None
    rng = np.random.default_rng(4)
    W = rng.standard_normal((columns.size + 1, K)) / np.sqrt(view.inv_metric)[:, None]
    np.testing.assert_allclose(view.predict(W), copy.predict(W), rtol=1e-12, atol=1e-12)
    E = rng.standard_normal((full.n, K))
    np.testing.assert_allclose(view.gradient(E), copy.gradient(E), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(view.row_norms_sq, copy.row_norms_sq, rtol=1e-12)
    penalty = L1(0.01)
    ck = checkpoint(copy, penalty, np.zeros((columns.size + 1, K)))
    ref = Reference(True, ck.D, ck.G)
    rows = rng.permutation(full.n)
    edges = np.arange(0, full.n + 1, 10, dtype=np.int64)
    order = rng.permutation(edges.size - 1).astype(np.int64)
    rule, sigma = SR2Rule(sigma_min=1e-3), 0.3 * full.lipschitz()
    W_view, trace_view, _ = compiled_epoch(view, penalty, ck.W, sigma, rows, edges, order, ref,
                                           rule, lazy=True)  # fmt: skip
    W_copy, trace_copy, _ = compiled_epoch(copy, penalty, ck.W, sigma, rows, edges, order, ref,
                                           rule, lazy=True)  # fmt: skip
    assert trace_copy[:, 2].any()
    np.testing.assert_allclose(trace_view, trace_copy, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(W_view, W_copy, rtol=1e-10, atol=1e-14)


def test_working_set_reads_large_column_sets_in_place():
    """``restricted`` copies the columns only while the copy is small."""
    problem = small_problem(Logistic(), 1, sparse=True, n=150, p=60)
    assert problem.restricted(np.arange(3)).columns is None  # 5% of X: copied
    wide = problem.restricted(np.arange(40))
    np.testing.assert_array_equal(wide.columns, np.arange(40))
    assert wide.X is problem.X


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_column_copy_equals_scipy(dtype, index_dtype):
    """The working set's compiled copy of CSR columns equals scipy's X[:, columns], for
    columns in any order, rows without an entry in them, and both index widths."""
    from sr2learn._problem import _copy_columns

    X = sp.random(50, 30, density=0.2, random_state=3, format="csr", dtype=dtype)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    for columns in (np.array([1, 4, 5, 20, 29]), np.array([17, 2, 9]), np.array([], int)):
        copy = _copy_columns(X, columns)
        assert copy.dtype == dtype and copy.shape == (50, columns.size)
        np.testing.assert_array_equal(copy.toarray(), X[:, columns].toarray())


def test_working_set_copies_columns_within_the_coefficients_arrays():
    """Where coefficients outnumber samples, a copy of up to RESTRICTED_COPY_ARRAYS arrays
    of the coefficients' size is made even above RESTRICTED_COPY_FRACTION of X (the full
    checkpoints allocate more than that anyway); a larger one is not."""
    from sr2learn import _problem

    n, p = 40, 3000
    X = sp.random(n, p, density=0.01, random_state=0, format="csr")
    problem = LinearProblem(X, np.zeros((n, 1)), np.ones(n), Logistic(), True)
    stored = np.flatnonzero(np.diff(X.tocsc().indptr))
    half = stored[: stored.size // 2]  # half of X's entries, at most (p + 1) * 8 * 2 bytes
    assert problem._restricted_bytes(half) > _problem.RESTRICTED_COPY_FRACTION * data_nbytes(X)
    assert problem._restricted_bytes(half) <= 8 * (p + 1) * _problem.RESTRICTED_COPY_ARRAYS
    copied = problem.restricted(half)
    assert copied.columns is None and copied.X is not problem.X
    tall = LinearProblem(sp.vstack([X] * 600, format="csr"), np.zeros((600 * n, 1)),
                         np.ones(600 * n), Logistic(), True)  # fmt: skip
    assert tall._restricted_bytes(half) > 8 * (p + 1) * _problem.RESTRICTED_COPY_ARRAYS
    assert tall.restricted(half).X is tall.X


@pytest.mark.parametrize("layout", ["dense64", "dense32", "csr"])
@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_full_passes_equal_numpy(layout, K, fit_intercept):
    """predict and gradient (BLAS for several columns of dense float64, compiled otherwise,
    no pass at all for zero coefficients) equal X W + b and X~^T E / n."""
    rng = np.random.default_rng(5)
    n, p = 70, 40
    X = rng.standard_normal((n, p))
    X[rng.random((n, p)) < 0.5] = 0.0
    data = {"dense64": X, "dense32": X.astype(np.float32), "csr": sp.csr_matrix(X)}[layout]
    Xd = np.asarray(data.toarray() if sp.issparse(data) else data, dtype=np.float64)
    problem = LinearProblem(data, np.zeros((n, K)), np.ones(n), Quadratic(), fit_intercept)
    rows = p + fit_intercept
    for W in (rng.standard_normal((rows, K)), np.r_[np.zeros((p, K)), np.ones((rows - p, K))]):
        expected = Xd @ W[:p] + (W[p] if fit_intercept else 0.0)
        np.testing.assert_allclose(problem.predict(W), expected, rtol=1e-12, atol=1e-12)
    E = rng.standard_normal((n, K))
    expected = np.vstack([Xd.T @ E] + ([E.sum(axis=0)] if fit_intercept else [])) / n
    np.testing.assert_allclose(problem.gradient(E), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["dense64", "dense32", "csr"])
def test_gradient_pair_equals_two_gradients_in_contiguous_arrays(layout):
    # The pair's first gradient becomes the SVRG reference of the epoch engine: a strided
    # one (a slice of BLAS's [E, F] product) made numba compile a second engine.
    rng = np.random.default_rng(6)
    n, p, K = 70, 40, 3
    X = rng.standard_normal((n, p))
    data = {"dense64": X, "dense32": X.astype(np.float32), "csr": sp.csr_matrix(X)}[layout]
    problem = LinearProblem(data, np.zeros((n, K)), np.ones(n), Quadratic(), True)
    E, F = rng.standard_normal((n, K)), rng.standard_normal((n, K))
    G, H = problem.gradient_pair(E, F)
    assert G.flags.c_contiguous and H.flags.c_contiguous
    np.testing.assert_allclose(G, problem.gradient(E), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H, problem.gradient(F), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["dense64", "dense32", "csr"])
@pytest.mark.parametrize("columns", [None, np.array([1, 4, 5, 20, 39])])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gram_matvec_equals_numpy(layout, columns, fit_intercept):
    """The one-pass product of Lanczos equals X~^T S X~ v, on all columns or a subset."""
    from sr2learn._engine import gram_matvec_into

    rng = np.random.default_rng(7)
    n, p = 60, 40
    X = rng.standard_normal((n, p))
    X[rng.random((n, p)) < 0.5] = 0.0
    data = {"dense64": X, "dense32": X.astype(np.float32), "csr": sp.csr_matrix(X)}[layout]
    sw = rng.uniform(0.2, 3.0, size=n)
    metric = None if columns is None else (np.ones(columns.size), 1.0)
    problem = LinearProblem(data, np.zeros((n, 1)), sw, Quadratic(), fit_intercept,
                            metric, columns)  # fmt: skip
    Xd = np.asarray(X if layout == "dense64" else data.toarray() if layout == "csr" else data,
                    dtype=np.float64)  # fmt: skip
    Xt = Xd if columns is None else Xd[:, columns]
    if fit_intercept:
        Xt = np.hstack([Xt, np.ones((n, 1))])
    v = rng.standard_normal((problem.n_rows, 1))
    out = np.empty_like(v)
    gram_matvec_into(problem.data, v, out)
    np.testing.assert_allclose(out, Xt.T @ (sw[:, None] * (Xt @ v)), rtol=1e-10, atol=1e-10)


def test_block_edges_cover_every_row_once_in_blocks_of_the_batch_size():
    """An epoch's blocks: from 0 to n, the first ending at the shift (none when it is 0),
    the next ones b rows long, the last one what is left."""
    from sr2learn._sr2 import _block_edges

    for n in (1, 2, 7, 40):
        for b in range(1, n + 2):
            for shift in range(b) if b < n else [0]:
                edges = _block_edges(n, b, shift)
                assert edges[0] == 0 and edges[-1] == n
                sizes = np.diff(edges)
                assert np.all(sizes > 0)
                inner = sizes[1:-1] if shift else sizes[:-1]
                assert np.all(inner == b)
                assert sizes[0] == (shift if shift else min(b, n))
