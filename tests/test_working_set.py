"""The working-set outer loop: same optimum and support as the plain solver, full-problem
diagnostics, nonconvex penalties."""

import numpy as np
import pytest
import scipy.sparse as sp

from sr2learn import SR2Classifier, SR2Regressor
from sr2learn._problem import LinearProblem
from sr2learn._working_set import _violation, use_working_set
from sr2learn.datafits import Quadratic
from sr2learn.penalties import L1, L0Ball, check_penalty


def sparse_problem(kind, sparse, seed=0, n=300, p=400):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * (rng.random((n, p)) < (0.05 if sparse else 1.0))
    w = np.zeros(p)
    w[rng.choice(p, 8, replace=False)] = rng.standard_normal(8) * 3
    z = X @ w + 0.3 * rng.standard_normal(n)
    y = z if kind == "squared" else (z > 0).astype(int)
    return (sp.csr_matrix(X) if sparse else X), y


def objective(est, X, y):
    z = np.asarray(X @ np.ravel(est.coef_)) + np.ravel(est.intercept_)[0]
    if isinstance(est, SR2Regressor):
        loss = 0.5 * np.mean((y - z) ** 2)
    else:
        loss = np.mean(np.logaddexp(0.0, -(2.0 * y - 1.0) * z))
    return loss + check_penalty(est.penalty, est.alpha).value(np.ravel(est.coef_))


@pytest.mark.parametrize("kind", ["squared", "logistic"])
@pytest.mark.parametrize("sparse", [False, True])
def test_working_set_reaches_the_plain_optimum_and_support(kind, sparse):
    X, y = sparse_problem(kind, sparse)
    Est, alpha = (SR2Regressor, 0.05) if kind == "squared" else (SR2Classifier, 0.01)
    plain = Est(alpha=alpha, working_set=False, tol=1e-11, random_state=0).fit(X, y)
    ws = Est(alpha=alpha, working_set=True, tol=1e-11, random_state=0).fit(X, y)
    f_plain, f_ws = objective(plain, X, y), objective(ws, X, y)
    assert abs(f_ws - f_plain) / f_plain < 1e-6
    np.testing.assert_array_equal(ws.coef_ != 0, plain.coef_ != 0)
    d = ws.diagnostics_
    assert d.converged
    # The checkpoints are of the full problem: the last one is at the returned point and
    # its criterion (the relative duality gap) met tol; the trace holds the inner steps.
    assert d.tol == ws.tol and d.checkpoints["criterion"][-1] <= d.tol
    assert d.n_steps == int(d.checkpoints["iteration"][-1]) > 0
    assert np.all(d.checkpoints["dist_trial"] ** 2 <= d.checkpoints["bound"] * (1 + 1e-9))


@pytest.mark.parametrize("penalty", ["l0", "l1/2"])
def test_nonconvex_penalties_work_with_working_sets(penalty):
    X, y = sparse_problem("squared", sparse=True, seed=1)
    est = SR2Regressor(penalty=penalty, alpha=0.05, working_set=True, random_state=0).fit(X, y)
    assert est.diagnostics_.converged
    assert 0 < np.count_nonzero(est.coef_) < 40
    plain = SR2Regressor(penalty=penalty, alpha=0.05, working_set=False, random_state=0)
    plain.fit(X, y)
    assert objective(est, X, y) <= objective(plain, X, y) * 1.05


def test_auto_rule():
    assert use_working_set("auto", 5000, L1(1.0))
    assert not use_working_set("auto", 500, L1(1.0))
    assert not use_working_set("auto", 5000, L0Ball(3))
    assert use_working_set(True, 10, L1(1.0)) and not use_working_set(False, 10**6, L1(1.0))


def test_violation_sees_zero_coordinates_a_nonconvex_step_would_leave():
    # At w = 0 the Fréchet subdifferential of l0 is the whole line, so subdiff_distance
    # is 0 everywhere; the proximal-gradient step at sigma = L (in the metric, t_j =
    # 1 / (L d_j^2)) still leaves zero where |grad_j| / d_j > sqrt(2 alpha L), and the
    # ranking must see it. Violations are in the metric's units: |grad_j| / d_j.
    H = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=float)
    w = np.zeros((4, 1))
    G = np.array([[0.01], [-3.0], [0.4], [0.0]])
    penalty = check_penalty("l0", 0.1)
    assert np.all(penalty.subdiff_distance(w, G) == 0)
    for c in ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 0.5, 1.0]):
        # Columns of H scaled by c: d_j = c_j and, in the metric, L = top eig(H^T H / 4) = 1.
        c = np.asarray(c)
        problem = LinearProblem(H * c, np.zeros((4, 1)), np.ones(4), Quadratic(), False)
        np.testing.assert_allclose(problem.metric, c**2)
        assert problem.lipschitz() == pytest.approx(1.0)
        v = _violation(problem, penalty, w, G)
        leaves = np.abs(G[:, 0]) / c > np.sqrt(2 * 0.1 * 1.0)
        # the metric decides for coordinate 2: 0.4 / 1 < sqrt(0.2) < 0.4 / 0.5
        assert leaves.tolist() == [False, True, bool(c[2] == 0.5), False]
        np.testing.assert_allclose(v, np.where(leaves, np.abs(G[:, 0]) / c, 0.0), rtol=1e-12)
        # For l1 it is the subdifferential distance: max(|grad| - alpha, 0) / d_j at zero.
        v1 = _violation(problem, L1(0.1), w, G)
        np.testing.assert_allclose(v1, np.maximum(np.abs(G[:, 0]) - 0.1, 0.0) / c, rtol=1e-12)


def test_inner_solves_reuse_the_outer_checkpoint(count_calls):
    """Each inner solve starts from the outer (full-problem) checkpoint restricted to the
    set: its only checkpoints are those after its epochs (one pass pair each), none at
    the start, which would repeat the outer one's passes; the fit is unchanged."""
    import sr2learn._sr2 as sr2

    X, y = sparse_problem("logistic", True)
    calls = count_calls(sr2, "checkpoint")
    epochs = count_calls(sr2, "_epoch")
    est = SR2Classifier(alpha=0.01, working_set=True, tol=1e-8, random_state=0).fit(X, y)
    outer = est.diagnostics_.n_checkpoints
    inner = [problem.p for problem, *_ in calls if problem.p < X.shape[1]]
    inner_epochs = [problem.p for problem, *_ in epochs if problem.p < X.shape[1]]
    assert outer >= 3 and est.diagnostics_.converged
    assert len(epochs) == est.n_iter_ and len(inner_epochs) >= 3
    # one restricted checkpoint per inner epoch (the SVRG reference), none more (epochs
    # on the full problem, once the set has grown to it, have their own checkpoints)
    assert len(inner) == len(inner_epochs)


def test_working_set_takes_the_first_features_of_the_violation_order():
    """The set is the first ``size`` features ordered by violation (the support first),
    then by gradient size, then by index: the same as a full lexsort, without it."""
    from types import SimpleNamespace

    from sr2learn._working_set import _working_set

    rng = np.random.default_rng(0)
    for _ in range(100):
        p, K = int(rng.integers(5, 200)), int(rng.integers(1, 3))
        W = np.zeros((p + 1, K))
        support = rng.random(p) < 0.1
        W[:p][support] = rng.standard_normal((support.sum(), K))
        G = rng.standard_normal((p + 1, K)) * (rng.random((p + 1, 1)) < 0.5)
        G[:p][rng.random(p) < 0.2] = 0.0
        G[:p][rng.random(p) < 0.1] = 1.0  # ties of gradient size
        problem = SimpleNamespace(p=p, inv_metric=rng.uniform(0.5, 2, size=p + 1),
                                  lipschitz=lambda: 1.0)  # fmt: skip
        penalty = L1(float(rng.choice([0.0, 0.5, 3.0])))
        size = int(rng.integers(1, p + 5))
        violation = _violation(problem, penalty, W, G)
        violation[support] = np.inf
        grad = np.linalg.norm(G[:p] * np.sqrt(problem.inv_metric[:p, None]), axis=1)
        expected = np.sort(np.lexsort((-grad, -violation))[: min(p, size)])
        np.testing.assert_array_equal(_working_set(problem, penalty, W, G, size), expected)


def test_restricted_problem_is_freed_before_the_next_full_checkpoint(monkeypatch):
    """A working set's problem (with its copy of the set's columns, when small) lives only
    during its inner solve: the full-problem checkpoints, where the fit's memory peaks,
    never hold it as well."""
    import weakref

    import sr2learn._working_set as ws_module

    X, y = sparse_problem("logistic", True)
    made, alive_at_checkpoints = [], []
    restricted, checkpoint = LinearProblem.restricted, ws_module._checkpoint

    def recording_restricted(self, columns):
        sub = restricted(self, columns)
        made.append(weakref.ref(sub))
        return sub

    def recording_checkpoint(problem, *args):
        alive_at_checkpoints.append(sum(ref() is not None for ref in made))
        return checkpoint(problem, *args)

    monkeypatch.setattr(LinearProblem, "restricted", recording_restricted)
    monkeypatch.setattr(ws_module, "_checkpoint", recording_checkpoint)
    SR2Classifier(alpha=0.01, working_set=True, tol=1e-8, random_state=0).fit(X, y)
    assert len(made) >= 2 and len(alive_at_checkpoints) == len(made) + 1
    assert alive_at_checkpoints == [0] * len(alive_at_checkpoints)


@pytest.mark.parametrize("sparse", [False, True])
def test_light_solve_takes_the_same_steps_and_records_no_checkpoint(sparse):
    """``light=True`` (a continuation's stages) skips the full checkpoints' Theorem 4
    terms: the same iterates, the inner steps still counted, no checkpoint recorded and
    no convergence flag set on the diagnostics it is given."""
    from sr2learn._rule import SR2Rule
    from sr2learn._sr2 import SolverState
    from sr2learn._working_set import solve_working_set
    from sr2learn.datafits import Logistic
    from sr2learn.diagnostics import ConvergenceDiagnostics

    X, y = sparse_problem("logistic", sparse, p=2500)
    Y = y[:, None].astype(float)
    results = {}
    for light in (False, True):
        problem = LinearProblem(X, Y, np.ones(X.shape[0]), Logistic(), True)
        state = SolverState(np.zeros((problem.n_rows, 1)), problem.lipschitz(), 16)
        diagnostics = ConvergenceDiagnostics()
        new = solve_working_set(problem, L1(0.02), state, SR2Rule(), max_epochs=50,
                                tol=1e-6, variance_reduction="svrg",
                                rng=np.random.default_rng(0), diagnostics=diagnostics,
                                light=light)  # fmt: skip
        results[light] = new, diagnostics
    (heavy, heavy_diag), (light, light_diag) = results[False], results[True]
    np.testing.assert_array_equal(light.W, heavy.W)
    assert light.n_steps == heavy.n_steps > 0
    assert light_diag.n_steps == heavy_diag.n_steps
    assert heavy_diag.n_checkpoints >= 2 and heavy_diag.converged
    assert light_diag.n_checkpoints == 0 and not light_diag.converged
