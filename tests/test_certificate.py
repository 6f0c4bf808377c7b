"""The duality gap of a Newton step on the support (sr2learn._certificate): a valid bound
(its dual value never exceeds the optimum), second order in the distance to the solution
where the plain rescaled residual's gap is first order, and fits that stop on it still
stop within tol of the optimum."""

import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from sr2learn import SR2Classifier, SR2Regressor, _certificate
from sr2learn._certificate import (
    NewtonCertificate,
    NewtonMemo,
    newton_dual_point,
    support_signature,
)
from sr2learn._checkpoint import _dual_objective, checkpoint
from sr2learn._problem import LinearProblem
from sr2learn.datafits import Logistic, Multinomial, Quadratic
from sr2learn.penalties import L1

KINDS = ["squared", "logistic", "multinomial"]


def make_problem(kind, sparse, fit_intercept, seed):
    """A problem with uneven sample weights (normalised to mean 1) and its alpha."""
    rng = np.random.default_rng(seed)
    n, p = 120, 30
    X = rng.standard_normal((n, p)) * rng.uniform(0.1, 10.0, p)
    if sparse:
        X[rng.random((n, p)) < 0.7] = 0.0
        X = sp.csr_matrix(X)
    w = np.zeros(p)
    w[:5] = rng.standard_normal(5)
    z = np.asarray(X @ (w / np.abs(X).max(axis=0).toarray().ravel() if sparse else w /
                        np.abs(X).max(axis=0))).ravel()  # fmt: skip
    if kind == "squared":
        Y, fit, alpha = (z + 0.1 * rng.standard_normal(n))[:, None], Quadratic(), 0.02
    elif kind == "logistic":
        Y, fit, alpha = (z + 0.3 * rng.standard_normal(n) > 0).astype(float)[:, None], \
            Logistic(), 0.01  # fmt: skip
    else:
        labels = np.digitize(z + 0.3 * rng.standard_normal(n), [-0.3, 0.3])
        Y, fit, alpha = np.eye(3)[labels], Multinomial(), 0.01
    sw = rng.uniform(0.2, 2.0, n)
    problem = LinearProblem(X, Y, sw / sw.mean(), fit, fit_intercept)
    return problem, L1(alpha)


def solve_tightly(problem, penalty):
    """The optimum to a relative gap below 1e-10, by accelerated proximal gradient steps
    (FISTA; the checkpoint sets the intercept to its exact minimiser at each point) and
    the plain gap alone."""
    W = Y = np.zeros((problem.n_rows, problem.K))
    t, step = 1.0, problem.inv_metric[:, None] / problem.lipschitz()
    for k in range(1, 50_001):
        ck = checkpoint(problem, penalty, Y)
        V = ck.W - step * ck.G
        V[: problem.p] = penalty.prox(V[: problem.p], step[: problem.p])
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        W, Y, t = V, V + (t - 1.0) / t_next * (V - W), t_next
        if k % 200 == 0 and checkpoint(problem, penalty, W).criterion < 1e-12:
            break
    best = checkpoint(problem, penalty, W)
    assert best.criterion < 1e-10
    return best


def newton_gap(problem, penalty, ck):
    dual, solved = newton_dual_point(problem, penalty, ck.W, ck.G, ck.D, rtol=1e-8)
    assert solved
    return ck.objective - _dual_objective(problem, *dual)


CASES = [(kind, sparse, icpt) for kind in KINDS for sparse in (False, True)
         for icpt in (True, False)]  # fmt: skip


@pytest.mark.parametrize("kind,sparse,fit_intercept", CASES)
def test_newton_gap_is_a_valid_bound_and_second_order(kind, sparse, fit_intercept,
                                                      monkeypatch):
    # The Newton step solved to rtol 1e-8 (no budget of iterations in the way).
    monkeypatch.setattr(_certificate, "_CG_MIN_ITER", 1000)
    monkeypatch.setattr(_certificate, "_CG_MAX_ITER", 1000)
    problem, penalty = make_problem(kind, sparse, fit_intercept, seed=len(kind))
    best = solve_tightly(problem, penalty)
    support = best.W[: problem.p] != 0
    assert 2 <= support.sum() < support.size
    # A perturbation on the support that keeps its signs (SR2's iterates near the end).
    direction = np.random.default_rng(1).uniform(-1.0, 1.0, support.sum())
    plain, newton = [], []
    for eps in (1e-2, 1e-3):
        W = best.W.copy()
        W[: problem.p][support] *= 1.0 + eps * direction
        ck = checkpoint(problem, penalty, W)
        gap = newton_gap(problem, penalty, ck)
        # Weak duality: no dual value above the optimum (to rounding).
        assert gap >= ck.objective - best.objective - 1e-12 * best.objective
        plain.append(ck.gap)
        newton.append(gap)
    # A tenth of the distance: the plain gap falls about tenfold (first order), the
    # certificate's about a hundredfold (second order, like F(w) - F*).
    assert plain[1] >= 0.05 * plain[0]
    assert newton[1] <= 0.03 * newton[0]
    assert newton[0] <= 0.1 * plain[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_restricted_problems_newton_point_serves_the_full_problem(kind, monkeypatch):
    """The working set's memo: at the W where a restricted problem (sharing the memo) took
    a Newton step, the full problem takes no second one and gets the gap a step of its own
    gives (its dual scale over all the features); at another W it takes its own step."""
    monkeypatch.setattr(_certificate, "_CG_MIN_ITER", 1000)
    monkeypatch.setattr(_certificate, "_CG_MAX_ITER", 1000)
    problem, penalty = make_problem(kind, True, True, seed=len(kind))
    best = solve_tightly(problem, penalty)
    support = np.flatnonzero(np.any(best.W[: problem.p] != 0, axis=1))
    W = best.W.copy()
    W[support] *= 1.0 + 0.01 * np.random.default_rng(2).uniform(-1.0, 1.0, W[support].shape)
    ck = checkpoint(problem, penalty, W)
    fresh = newton_gap(problem, penalty, ck)
    steps = []
    for name in ("_curvature_weights", "_support_copy"):  # the two Newton steps' entries
        real = getattr(_certificate, name)
        monkeypatch.setattr(_certificate, name,
                            lambda *a, real=real: (steps.append(1), real(*a))[1])  # fmt: skip
    problem.newton_memo = NewtonMemo()
    ws = np.union1d(support, [0, 1, 2, problem.p - 1])
    sub = problem.restricted(ws)
    rows = np.r_[ws, problem.p]
    newton_dual_point(sub, penalty, ck.W[rows], ck.G[rows], ck.D, rtol=1e-8)
    assert len(steps) == 1
    reused = newton_gap(problem, penalty, ck)
    assert len(steps) == 1  # no second step
    assert reused == pytest.approx(fresh, rel=1e-6, abs=1e-13 * ck.objective)
    moved = replace(ck, W=ck.W.copy())
    moved.W[support[0]] *= 1.001
    newton_gap(problem, penalty, moved)
    assert len(steps) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_newton_dual_value_is_a_lower_bound_away_from_the_solution(kind):
    # Far from the optimum (random supports, wrong signs) the certificate may be loose but
    # never above the optimum.
    problem, penalty = make_problem(kind, False, True, seed=3)
    best = solve_tightly(problem, penalty)
    rng = np.random.default_rng(0)
    scale = np.sqrt(problem.metric)[:, None]  # coefficients of O(1) effect on z
    found = 0
    for _ in range(5):
        W = np.zeros((problem.n_rows, problem.K))
        cols = rng.choice(problem.p, 6, replace=False)
        W[cols] = rng.standard_normal((6, problem.K)) / scale[cols]
        ck = checkpoint(problem, penalty, W)
        dual, _ = newton_dual_point(problem, penalty, ck.W, ck.G, ck.D)
        if dual is None:  # the step saturated every prediction of an output: no point
            continue
        found += 1
        assert _dual_objective(problem, *dual) <= best.objective * (1 + 1e-12)
        # Dual feasible for the intercept: sum_i s_i l'(z_i) = 0 at w_N (its exact
        # intercept), not only to the precision of the Newton step.
        E = dual[0]
        assert np.all(np.abs(E.sum(axis=0)) <= 1e-9 * np.abs(E).sum(axis=0))
    assert found >= 3


@pytest.mark.parametrize("kind", ["logistic", "multinomial"])
def test_a_newton_step_that_saturates_an_output_gives_no_dual_point(kind):
    # Coefficients far too large: the Newton step from them saturates the predictions, the
    # intercept has no exact minimiser, and theta(w_N) would violate sum_i theta_i = 0.
    problem, penalty = make_problem(kind, False, True, seed=3)
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(5):
        W = np.zeros((problem.n_rows, problem.K))
        W[rng.choice(problem.p, 6, replace=False)] = rng.standard_normal((6, problem.K))
        ck = checkpoint(problem, penalty, W)
        dual, _ = newton_dual_point(problem, penalty, ck.W, ck.G, ck.D)
        if dual is not None:
            E = dual[0]
            assert np.all(np.abs(E.sum(axis=0)) <= 1e-9 * np.abs(E).sum(axis=0))
        outcomes.append(dual is None)
    assert any(outcomes)


@pytest.mark.parametrize("kind", ["logistic", "multinomial"])
def test_no_support_and_too_large_a_support_give_no_certificate(kind, monkeypatch):
    problem, penalty = make_problem(kind, False, True, seed=0)
    ck = checkpoint(problem, penalty, np.zeros((problem.n_rows, problem.K)))
    assert newton_dual_point(problem, penalty, ck.W, ck.G, ck.D) == (None, True)
    W = np.zeros((problem.n_rows, problem.K))
    W[:10] = 0.01
    ck = checkpoint(problem, penalty, W)
    assert newton_dual_point(problem, penalty, ck.W, ck.G, ck.D)[0] is not None
    # Without the explicit Hessian (several outputs; one output's when too costly):
    # conjugate gradients on a copy of the support's columns, if small enough.
    monkeypatch.setattr(_certificate, "_GRAM_PASSES", 0.0)
    monkeypatch.setattr(_certificate, "_EXPLICIT_UP_TO", 0)
    monkeypatch.setattr(_certificate, "_COPY_BYTES", 0)
    monkeypatch.setattr(_certificate, "_COPY_FRACTION", 0.2)  # 10 of 30 columns: a third
    assert newton_dual_point(problem, penalty, ck.W, ck.G, ck.D) == (None, True)
    monkeypatch.setattr(_certificate, "_COPY_FRACTION", 1.0)
    monkeypatch.setattr(_certificate, "_CG_MIN_ITER", 1)  # too few to solve: no more tries
    monkeypatch.setattr(_certificate, "_CG_MAX_ITER", 1)
    assert newton_dual_point(problem, penalty, ck.W, ck.G, ck.D) == (None, False)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_explicit_hessian_and_conjugate_gradients_give_the_same_step(kind, sparse,
                                                                     monkeypatch):
    problem, penalty = make_problem(kind, sparse, True, seed=4)
    W = np.zeros((problem.n_rows, problem.K))
    W[[1, 4, 7, 20]] = 0.05
    W[4, 0] = 0.0  # the multinomial's rows: one with a class outside the support
    ck = checkpoint(problem, penalty, W)
    monkeypatch.setattr(_certificate, "_CG_MIN_ITER", 1000)
    monkeypatch.setattr(_certificate, "_CG_MAX_ITER", 1000)
    # (sparse data with several outputs take conjugate gradients both times)
    explicit, _ = newton_dual_point(problem, penalty, ck.W, ck.G, ck.D, rtol=1e-12)
    monkeypatch.setattr(_certificate, "_GRAM_PASSES", 0.0)  # one output: not its Gram
    formed, _ = newton_dual_point(problem, penalty, ck.W, ck.G, ck.D, rtol=1e-12)
    monkeypatch.setattr(_certificate, "_EXPLICIT_UP_TO", 0)  # never the explicit Hessian
    iterative, _ = newton_dual_point(problem, penalty, ck.W, ck.G, ck.D, rtol=1e-12)
    scale = np.abs(iterative[0]).max()
    for other in (explicit, formed):
        np.testing.assert_allclose(other[0], iterative[0], rtol=1e-7, atol=1e-9 * scale)
        assert other[1] == pytest.approx(iterative[1], rel=1e-9)


def test_tries_follow_the_square_law_and_stop_when_unsolved():
    cert = NewtonCertificate(within=0.1)
    assert not cert.due(0.5, 1e-4)  # the support has not settled
    assert not cert.due(1e-5, 1e-4)  # tol met already
    assert cert.due(1e-2, 1e-4, "S1")
    # A miss on support S1 (1e-2 certified as 1e-3): on that support or another, the next
    # try once the plain criterion predicts success, the certificate's gap scaling as its
    # square (1e-3 (p / 1e-2)^2 <= 1e-4: p <= 3.2e-3); no count of checkpoints to wait.
    cert.tried(True, False, 1e-2, 1e-3, "S1")
    for support in ("S1", "S2"):
        assert not any(cert.due(4e-3, 1e-4, support) for _ in range(10))
        assert cert.due(3e-3, 1e-4, support)
    cert.tried(True, True, 3e-3, 9e-5, "S3")
    # After a success, on another support: the square law with a decade of slack
    # (9e-5 (p / 3e-3)^2 <= 1e-3: p <= 1e-2); on its own support, without.
    assert cert.due(9e-3, 1e-4, "S4")
    assert not cert.due(1.1e-2, 1e-4, "S4")
    assert not cert.due(4e-3, 1e-4, "S3")
    # A support that the proximal-gradient step changes: not tried, unless the problem
    # knows its Hessian (a cheap try), which tries every new support.
    assert not cert.due(3e-3, 1e-4, SimpleNamespace(identified=False))
    assert cert.due(3e-3, 1e-4, SimpleNamespace(identified=True))
    known = SimpleNamespace(identified=False, hessian_known=True)
    assert cert.due(3e-2, 1e-4, known)
    missed = NewtonCertificate()
    missed.tried(True, False, 1e-2, 1e-3, "S1")
    assert missed.due(1e-2, 1e-4, known) and not missed.due(1e-2, 1e-4, "S2")
    assert not missed.due(1e-2, 1e-4, "S1")  # its own support: the square law still
    cert.tried(solved=False, success=False)  # conjugate gradients failed: no more tries
    assert not any(cert.due(1e-2, 1e-4, "S5") for _ in range(10))
    eager = NewtonCertificate(backoff=False)
    eager.tried(True, False, 1e-2, 1e-3, "S1")
    assert eager.due(1e-2, 1e-4, "S2")
    assert not eager.due(1e-2, 1e-4, SimpleNamespace(identified=False))
    first = NewtonCertificate()
    assert not first.due(1e-2, 1e-4, SimpleNamespace(identified=False))


@pytest.mark.parametrize("kind", KINDS)
def test_a_spurious_coordinate_leaves_the_support_unidentified(kind):
    # At the optimum the proximal-gradient step keeps the support and its signs; a small
    # coordinate where the optimum has none (its gradient inside (-alpha, alpha)), or a
    # coordinate of the support with its sign flipped, is undone by the step. A zero
    # coordinate that the step would add does not count (the dual scaling's business).
    problem, penalty = make_problem(kind, False, True, seed=2)
    best = solve_tightly(problem, penalty)
    p = problem.p

    def identified(W):
        ck = checkpoint(problem, penalty, W)
        return support_signature(problem, penalty, ck.W, ck.G).identified

    assert identified(best.W)
    # Sizes within a tenth of the step's threshold alpha t_j (t_j = 1 / (L d_j^2)).
    small = 0.1 * penalty.alpha * problem.inv_metric[:p] / problem.lipschitz()
    inside = np.argwhere((best.W[:p] == 0) & (np.abs(best.G[:p]) < 0.5 * penalty.alpha))
    j, k = inside[0]
    spurious = best.W.copy()
    spurious[j, k] = small[j]
    assert not identified(spurious)
    flipped = best.W.copy()
    j, k = np.argwhere(best.W[:p] != 0)[0]
    flipped[j, k] = -np.sign(flipped[j, k]) * small[j]
    assert not identified(flipped)
    # Equal signatures for equal supports (the square law's "same support").
    assert support_signature(problem, penalty, spurious, best.G) == \
        support_signature(problem, penalty, spurious * 2, best.G)  # fmt: skip
    assert support_signature(problem, penalty, spurious, best.G) != \
        support_signature(problem, penalty, best.W, best.G)  # fmt: skip


def text_like(n=600, p=2500, seed=0):
    """Sparse nonnegative features of very uneven frequencies (a working-set fit)."""
    rng = np.random.default_rng(seed)
    freq = 0.3 / np.arange(1, p + 1) ** 0.7
    X = sp.csr_matrix((rng.random((n, p)) < freq) * rng.uniform(0.5, 2.0, (n, p)))
    w = np.zeros(p)
    w[rng.choice(200, 15, replace=False)] = rng.standard_normal(15) * 3
    y = (np.asarray(X @ w).ravel() + 0.5 * rng.standard_normal(n) > 0).astype(int)
    return X, y


def fit(est, X, y, use_certificate, monkeypatch):
    with monkeypatch.context() as m:
        if not use_certificate:
            m.setattr(NewtonCertificate, "due", lambda self, criterion, tol, support=None: False)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            return est.fit(X, y)


def l1_objective(est, X, y):
    Z = np.asarray(X @ est.coef_.T) + est.intercept_
    if isinstance(est, SR2Regressor):
        loss = 0.5 * np.mean((y - Z.ravel()) ** 2)
    elif Z.shape[1] == 1:
        loss = np.mean(np.logaddexp(0.0, -(2.0 * y - 1.0) * Z.ravel()))
    else:
        Z = Z - Z.max(axis=1, keepdims=True)
        loss = np.mean(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(len(y)), y])
    return loss + est.alpha * np.abs(est.coef_).sum()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["text working set", "multinomial", "regression"])
def test_fits_stop_earlier_and_still_within_tol(case, monkeypatch):
    if case == "text working set":
        X, y = text_like()
        make = lambda tol: SR2Classifier(alpha=2e-3, tol=tol, random_state=0)  # noqa: E731
    elif case == "multinomial":
        rng = np.random.default_rng(1)
        X = rng.standard_normal((400, 40))
        y = np.argmax(X[:, :3] + 0.5 * rng.standard_normal((400, 3)), axis=1)
        make = lambda tol: SR2Classifier(alpha=5e-3, tol=tol, random_state=0)  # noqa: E731
    else:
        rng = np.random.default_rng(2)
        X = rng.standard_normal((400, 60)) + 0.8 * rng.standard_normal((400, 1))
        y = X[:, :5] @ np.arange(1.0, 6.0) + rng.standard_normal(400)
        make = lambda tol: SR2Regressor(alpha=0.05, tol=tol, random_state=0)  # noqa: E731
    best = l1_objective(fit(make(1e-11), X, y, False, monkeypatch), X, y)
    for tol in (1e-3, 1e-5):
        plain = fit(make(tol), X, y, False, monkeypatch)
        certified = fit(make(tol), X, y, True, monkeypatch)
        # No slower (the working set's inner solves may stop at other points: a few %).
        assert certified.n_iter_ <= 1.1 * plain.n_iter_
        got = l1_objective(certified, X, y)
        assert got <= best * (1 + tol)
        # The reported gap bounds the excess (weak duality, at the returned point).
        assert got - best <= certified.diagnostics_.last_checkpoint()["gap"] * (1 + 1e-6)
    assert certified.n_iter_ < 0.9 * plain.n_iter_  # at tol 1e-5: far fewer epochs
