"""The compiled epoch: its scalar formulas agree with the datafits and penalties, it takes
the same steps as the NumPy path, and its lazy (batch-proportional) steps equal the eager
ones while visiting far fewer coordinates."""

import numpy as np
import pytest
import scipy.sparse as sp

from sr2learn import SR2Classifier, SR2Regressor
from sr2learn._kernel import (
    _bregman,
    _loss_derivative,
    _prox,
    _value,
    kernel_codes,
    sr2_epoch,
)
from sr2learn._rule import SR2Rule
from sr2learn._sr2 import LinearProblem, SolverState, solve
from sr2learn.datafits import Logistic, Multinomial, Quadratic
from sr2learn.diagnostics import ConvergenceDiagnostics
from sr2learn.linear_model import auto_batch_size
from sr2learn.penalties import L0, L1, L0Ball, Lp

VALUES = np.r_[-np.logspace(-4, 2, 40), 0.0, np.logspace(-4, 2, 40)]


@pytest.mark.parametrize("penalty", [L1(0.3), L0(0.3), L1(0.0), L0(0.0)])
@pytest.mark.parametrize("step", [0.01, 1.0, 7.0])
def test_scalar_prox_and_value_match_the_penalty(penalty, step):
    code = 0 if isinstance(penalty, L1) else 1
    expected = penalty.prox(VALUES, step)
    got = np.array([_prox(code, penalty.alpha, v, step) for v in VALUES])
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
    values = np.array([_value(code, penalty.alpha, v) for v in expected])
    assert values.sum() == pytest.approx(penalty.value(expected), rel=1e-13)


@pytest.mark.parametrize("datafit", [Quadratic(), Logistic()])
def test_scalar_loss_derivative_bregman_match_the_datafit(datafit):
    rng = np.random.default_rng(0)
    code = 0 if isinstance(datafit, Quadratic) else 1
    Z = rng.standard_normal((200, 1)) * 10
    Y = (rng.random((200, 1)) < 0.5).astype(float)
    dZ = rng.standard_normal((200, 1)) * np.logspace(-9, 1, 200)[:, None]
    D = datafit.derivative(Z, Y)
    softplus = np.logaddexp(0.0, Z[:, 0])
    cases = zip(Z[:, 0], dZ[:, 0], Y[:, 0], D[:, 0], softplus, strict=True)
    pairs = list(zip(Z[:, 0], Y[:, 0], strict=True))
    computed = np.array([_loss_derivative(code, z, y)[:2] for z, y in pairs])
    np.testing.assert_allclose(computed[:, 0], datafit.loss(Z, Y), rtol=1e-13)
    np.testing.assert_allclose(computed[:, 1], D[:, 0], rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose([_bregman(code, z, d, y, dl, sz) for z, d, y, dl, sz in cases],
                               datafit.bregman(Z, dZ, Y, D), rtol=1e-12, atol=1e-300)  # fmt: skip


def small_problem(kind, sparse, seed=0, n=240, p=150):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * (rng.random((n, p)) < 0.08)
    w = np.zeros(p)
    w[:6] = 2.0 * rng.standard_normal(6)
    z = X @ w + 0.2 * rng.standard_normal(n)
    if kind == "squared":
        datafit, Y = Quadratic(), z[:, None]
    else:
        datafit, Y = Logistic(), (z > 0).astype(float)[:, None]
    X = sp.csr_matrix(X) if sparse else X
    return LinearProblem(X, Y, np.ones(n) + rng.random(n), datafit, 0.7)


def run(problem, penalty, vr, **kw):
    state = SolverState(np.zeros((problem.n_rows, 1)), 1.0, 12)
    diagnostics = ConvergenceDiagnostics()
    out = solve(problem, penalty, state, SR2Rule(sigma_min=1e-2), max_epochs=4, tol=None,
                variance_reduction=vr, rng=np.random.default_rng(3), diagnostics=diagnostics,
                **kw)  # fmt: skip
    return out.W, diagnostics.history


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("kind", ["squared", "logistic"])
@pytest.mark.parametrize("penalty", [L1(0.02), L0(0.002)])
@pytest.mark.parametrize("vr", ["svrg", None])
def test_compiled_steps_equal_numpy_steps(sparse, kind, penalty, vr):
    problem = small_problem(kind, sparse)
    W_np, h_np = run(problem, penalty, vr, compiled=False)
    for lazy in (True, False):
        W_c, h_c = run(problem, penalty, vr, compiled=True, lazy=lazy)
        np.testing.assert_array_equal(h_c["accepted"], h_np["accepted"])
        np.testing.assert_allclose(h_c["sigma"], h_np["sigma"], rtol=1e-10)
        np.testing.assert_allclose(h_c["xi"], h_np["xi"], rtol=1e-7, atol=1e-14)
        np.testing.assert_allclose(h_c["batch_objective"], h_np["batch_objective"], rtol=1e-10)
        np.testing.assert_array_equal(h_c["nnz"], h_np["nnz"])
        np.testing.assert_allclose(W_c, W_np, rtol=1e-9, atol=1e-12)
    assert h_np["accepted"].mean() > 0.5 and np.count_nonzero(W_np[:-1]) > 0


def epoch(problem, penalty, w, mu, refD, lazy, order, edges, sigma=5.0):
    X = problem.X
    trace = [np.empty(order.size) for _ in range(7)]
    w = w.copy()
    rule = SR2Rule(sigma_min=1e-3)
    out = sr2_epoch(False, X.data, X.indices, X.indptr, problem.p, problem.Y[:, 0],
                    problem.sw, problem.c, 1, 0, penalty.alpha, w, penalty.value(w[:-1]),
                    sigma, edges, order, refD, mu, True, lazy, rule.eta1, rule.eta2,
                    rule.gamma1, rule.gamma3, rule.sigma_min, rule.sigma_max, 2.2e-16,
                    *trace)  # fmt: skip
    return w, out, trace


def test_lazy_steps_visit_only_the_batch_and_the_active_coordinates():
    # A wide CSR problem (2,000 features, 5 stored per row) near a sparse point: the lazy
    # steps must equal the eager ones and visit a small fraction of the coordinates.
    rng = np.random.default_rng(1)
    n, p = 400, 2000
    X = sp.random(n, p, density=5 / p, random_state=2, format="csr")
    y = (rng.random(n) < 0.5).astype(float)
    problem = LinearProblem(X, y[:, None], np.ones(n), Logistic(), 1.0)
    penalty = L1(0.02)
    w = np.zeros(p + 1)
    w[:5] = [0.5, -0.3, 0.2, 0.0, 1.0]
    # The SVRG reference at w: per-sample derivatives and the full gradient.
    z = X @ w[:-1] + w[-1]
    refD = 1.0 / (1.0 + np.exp(-z)) - y
    mu = np.r_[X.T @ refD, refD.sum()] / n
    mu[:40] += 0.05  # a few coordinates whose constant gradient pushes them off zero
    edges = np.arange(0, n + 1, 16, dtype=np.int64)
    order = rng.permutation(edges.size - 1).astype(np.int64)
    w_lazy, out_lazy, tr_lazy = epoch(problem, penalty, w, mu, refD, True, order, edges)
    w_eager, out_eager, tr_eager = epoch(problem, penalty, w, mu, refD, False, order, edges)
    np.testing.assert_allclose(w_lazy, w_eager, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(tr_lazy[2], tr_eager[2])
    np.testing.assert_allclose(tr_lazy[4], tr_eager[4], rtol=1e-9)
    assert tr_lazy[2].mean() > 0.5  # the steps were mostly accepted: w moved
    assert np.count_nonzero(w_lazy[:-1]) > 4
    n_steps = order.size
    assert out_eager[3] == n_steps * p
    # touched (<= 16 rows x 5 entries) + active (4 nonzeros + 40 pushed + new nonzeros)
    assert out_lazy[3] < n_steps * 250


def test_which_fits_use_the_compiled_epoch():
    problem = small_problem("logistic", True)
    assert kernel_codes(problem, L1(0.1), "svrg") == (1, 0)
    assert kernel_codes(problem, L0(0.1), None) == (1, 1)
    assert kernel_codes(problem, Lp(0.1), "svrg") is None
    assert kernel_codes(problem, L0Ball(3), "svrg") is None
    assert kernel_codes(problem, L1(0.1), "growing_batch") is None
    multi = LinearProblem(problem.X, np.eye(3)[np.arange(240) % 3], problem.sw, Multinomial(), 1.0)
    assert kernel_codes(multi, L1(0.1), "svrg") is None


def test_auto_batch_size():
    assert auto_batch_size(30_000, 14, sparse=True, compiled=True) == 32
    assert auto_batch_size(30_000, 2, sparse=True, compiled=True) == 128
    assert auto_batch_size(30_000, 0.5, sparse=True, compiled=True) == 256
    assert auto_batch_size(200, 14, sparse=True, compiled=True) == 13  # n / 16
    assert auto_batch_size(100_000, 100, compiled=False) == 1297
    assert SR2Regressor().set_params(batch_size="auto") is not None


@pytest.mark.parametrize("penalty", ["l1/2", "l2/3"])
def test_penalties_without_a_compiled_prox_still_fit(penalty, breast_cancer):
    X, y = breast_cancer
    est = SR2Classifier(penalty=penalty, alpha=0.01, random_state=0).fit(X, y)
    assert est.score(X, y) > 0.95 and np.count_nonzero(est.coef_) < X.shape[1]
