"""ConvergenceDiagnostics: the Theorem 4 bound, measured distances, stopping, certificates."""

import itertools
import warnings

import matplotlib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from sr2learn import ConvergenceDiagnostics, SR2Classifier, SR2Regressor


def fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def l1_distance(coef, grad, alpha):
    """dist(-grad, alpha * ∂|.|(coef)) per coordinate, written out here independently."""
    return np.where(
        coef != 0, np.abs(grad + alpha * np.sign(coef)), np.maximum(np.abs(grad) - alpha, 0.0)
    )


def half_distance(coef, grad, alpha):
    safe = np.where(coef != 0, np.abs(coef), 1.0)
    return np.where(coef != 0, np.abs(grad + alpha * 0.5 * safe**-0.5 * np.sign(coef)), 0.0)


def l0_distance(coef, grad, alpha):
    return np.where(coef != 0, np.abs(grad), 0.0)


DISTANCES = {"l1": l1_distance, "l1/2": half_distance, "l0": l0_distance}


@pytest.mark.parametrize("penalty", ["l1", "l0", "l1/2"])
@pytest.mark.parametrize("kind", ["squared", "logistic"])
@pytest.mark.parametrize("batch_size", [8, 64, "auto"])
@pytest.mark.parametrize("variance_reduction", ["svrg", None])
def test_theorem4_bound_holds_at_every_checkpoint(
    diabetes, breast_cancer, penalty, kind, batch_size, variance_reduction
):
    if kind == "squared":
        (X, y), est = diabetes, SR2Regressor(penalty=penalty, alpha=0.5)
    else:
        (X, y), est = breast_cancer, SR2Classifier(penalty=penalty, alpha=1e-2)
    est.set_params(
        batch_size=batch_size, variance_reduction=variance_reduction, max_iter=25, random_state=1
    )
    fit_quietly(est, X, y)
    c = est.diagnostics_.checkpoints
    assert len(c["iteration"]) >= 2
    assert np.all(np.isfinite(c["bound"])) and np.all(np.isfinite(c["dist_trial"]))
    assert np.all(c["dist_trial"] ** 2 <= c["bound"] * (1 + 1e-9) + 1e-24)


@pytest.mark.parametrize(
    "penalty,alpha,make",
    [
        ("l1", 0.5, "regressor"),
        ("l1/2", 0.5, "regressor"),
        ("l0", 1e-2, "classifier"),
        ("l1", 1e-2, "classifier"),
    ],
)
@pytest.mark.parametrize("units", ["standardised", "mixed"])
def test_reported_distance_matches_an_independent_computation(
    diabetes, breast_cancer, penalty, alpha, make, units
):
    if make == "regressor":
        X, y = diabetes
        est = fit_quietly(
            SR2Regressor(penalty=penalty, alpha=alpha, max_iter=7, random_state=0), X, y
        )
        coef, intercept = est.coef_, est.intercept_
        dloss = X @ coef + intercept - y  # d/dz of (z - y)^2 / 2
    else:
        X, y = breast_cancer
        est = fit_quietly(
            SR2Classifier(penalty=penalty, alpha=alpha, max_iter=7, random_state=0), X, y
        )
        coef, intercept = est.coef_.ravel(), est.intercept_[0]
        dloss = 1.0 / (1.0 + np.exp(-(X @ coef + intercept))) - y
    n = X.shape[0]
    if units == "mixed":  # columns 1e-2 to 1e2 apart: the solver's metric is far from 1
        X = X * np.logspace(-2, 2, X.shape[1])
        Est = type(est)
        est = fit_quietly(Est(penalty=penalty, alpha=alpha, max_iter=7, random_state=0), X, y)
        coef, intercept = np.ravel(est.coef_), np.ravel(est.intercept_)[0]
        z = X @ coef + intercept
        dloss = z - y if make == "regressor" else 1.0 / (1.0 + np.exp(-z)) - y
    grad_coef = X.T @ dloss / n
    # dist is in the user's coordinates: the intercept is a plain variable, d f / d b is
    # mean(dloss), and no metric or scaling enters.
    grad_intercept = dloss.mean()
    expected = np.sqrt(np.sum(DISTANCES[penalty](coef, grad_coef, alpha) ** 2) + grad_intercept**2)
    last = est.diagnostics_.last_checkpoint()
    assert last["dist"] == pytest.approx(expected, rel=1e-7)
    # The last checkpoint is taken at the returned coefficients.
    if make == "regressor":
        power = 1.0 if penalty == "l1" else 0.5
        objective = 0.5 * np.mean(dloss**2) + alpha * np.sum(np.abs(coef) ** power)
        assert last["objective"] == pytest.approx(objective, rel=1e-10)


def test_measure_falls_by_100x_on_a_convex_l1_problem(breast_cancer):
    X, y = breast_cancer
    est = SR2Classifier(penalty="l1", alpha=1e-2, random_state=0).fit(X, y)
    measure = est.diagnostics_.checkpoints["measure"]
    assert measure[-1] <= measure[0] / 100.0
    assert est.diagnostics_.converged
    assert est.diagnostics_.checkpoints["criterion"][-1] <= est.diagnostics_.tol
    # dist(0, dF(w)) also falls: the measure tracks true stationarity.
    dist = est.diagnostics_.checkpoints["dist"]
    assert dist[-1] <= dist[0] / 100.0


def test_stopping_respects_tol(diabetes):
    X, y = diabetes
    loose = SR2Regressor(alpha=0.5, tol=1e-3, random_state=0).fit(X, y)
    tight = SR2Regressor(alpha=0.5, tol=1e-8, random_state=0).fit(X, y)
    assert loose.n_iter_ < tight.n_iter_
    for est in (loose, tight):
        d = est.diagnostics_
        c = d.checkpoints
        # tol is the estimator's, unscaled; for l1 the criterion is the relative duality gap.
        assert d.tol == est.tol
        assert "duality gap" in d.criterion_name
        np.testing.assert_allclose(c["criterion"], c["gap"] / c["objective"], rtol=1e-12)
        assert d.converged and c["criterion"][-1] <= d.tol
        # It stopped at the first checkpoint that met tol.
        assert np.all(c["criterion"][:-1] > d.tol)


def test_exact_variance_matches_enumeration_of_all_batches():
    rng = np.random.default_rng(0)
    n, p, b = 9, 4, 3
    X = rng.normal(size=(n, p))
    y = rng.normal(size=n)
    est = fit_quietly(
        SR2Regressor(alpha=0.05, batch_size=b, variance_reduction=None, max_iter=5, random_state=0),
        X,
        y,
    )
    Xt = np.hstack([X, np.ones((n, 1))])
    r = X @ est.coef_ + est.intercept_ - y
    per_sample = Xt * r[:, None]
    full = per_sample.mean(axis=0)
    # V is measured in the metric's dual norm: sum_j g_j^2 / d_j^2, with d_j^2 the mean
    # square of column j (no zero entries here) and the intercept's metric 1 (dense data).
    inv_metric = np.r_[1.0 / np.mean(X**2, axis=0), 1.0]
    batches = list(itertools.combinations(range(n), b))
    V = np.mean(
        [np.sum((per_sample[list(B)].mean(axis=0) - full) ** 2 * inv_metric) for B in batches]
    )
    assert est.diagnostics_.last_checkpoint()["variance"] == pytest.approx(V, rel=1e-9)


def test_certificate_is_reached_with_variance_reduction(breast_cancer):
    X, y = breast_cancer
    est = SR2Classifier(penalty="l1", alpha=3e-2, tol=1e-11, random_state=0).fit(X, y)
    cert = est.diagnostics_.certificate
    assert cert is not None
    assert cert["epsilon"] < 1e-4 and cert["stationarity"] < 1e-3
    last = est.diagnostics_.last_checkpoint()
    assert cert["epsilon"] ** 2 == pytest.approx(max(last["step_sq"], last["variance"]), rel=1e-12)
    text = est.diagnostics_.summary()
    assert "Corollary 1" in text and "-stationary" in text
    # Under SVRG the variance of the gradient estimator vanishes near the solution ...
    assert last["variance"] < 1e-10
    # ... but not for the plain batch gradient, which keeps its noise.
    plain = fit_quietly(
        SR2Classifier(
            penalty="l1", alpha=3e-2, variance_reduction=None, max_iter=30, random_state=0
        ),
        X,
        y,
    )
    assert plain.diagnostics_.last_checkpoint()["variance"] > 1e3 * last["variance"]


def test_growing_batch_grows_and_shrinks_variance(diabetes):
    X, y = diabetes
    est = fit_quietly(
        SR2Regressor(
            alpha=0.5, variance_reduction="growing_batch", batch_size=4, max_iter=40, random_state=0
        ),
        X,
        y,
    )
    c = est.diagnostics_.checkpoints
    assert c["batch_size"][-1] > c["batch_size"][0]
    assert c["variance"][-1] < c["variance"][1]


def test_history_and_checkpoints_shapes_and_summary(diabetes):
    X, y = diabetes
    est = SR2Regressor(alpha=0.5, random_state=0).fit(X, y)
    d = est.diagnostics_
    assert isinstance(d, ConvergenceDiagnostics)
    h, c = d.history, d.checkpoints
    assert {"sigma", "rho", "accepted", "step_sq", "xi", "batch_objective", "nnz"} <= h.keys()
    assert len({len(v) for v in h.values()}) == 1 and len(h["sigma"]) == d.n_steps
    keys = {
        "iteration",
        "step_sq",
        "measure",
        "lipschitz",
        "sigma_max",
        "variance",
        "dist",
        "dist_trial",
        "bound",
        "bound_expected",
    }
    assert keys <= c.keys()
    assert len({len(v) for v in c.values()}) == 1
    assert len(c["iteration"]) == est.n_iter_ + 1  # the start point, then once per epoch
    assert np.all(np.diff(c["sigma_max"]) >= 0)
    assert np.all(h["xi"] > 0)  # the model decrease of every computed step
    frame = d.as_frame()
    assert list(frame.columns) == list(c.keys()) and len(frame) == len(c["iteration"])
    text = d.summary()
    assert "converged" in text and "tol" in text and "Theorem 4" in text
    assert f"{c['measure'][-1]:.3e}" in text


def test_plot_runs_under_agg(breast_cancer):
    assert matplotlib.get_backend().lower() == "agg"
    X, y = breast_cancer
    est = SR2Classifier(penalty="l0", alpha=1e-2, random_state=0).fit(X, y)
    fig = est.diagnostics_.plot()
    assert len(fig.axes) == 4
    assert all(ax.has_data() for ax in fig.axes)
    import matplotlib.pyplot as plt

    plt.close(fig)


def count_data_passes(monkeypatch):
    """Record every pass over the full X: ("predict", K) or ("gradient", columns of E)."""
    from sr2learn._problem import LinearProblem

    calls = []
    predict, gradient = LinearProblem.predict, LinearProblem.gradient
    gradient_pair = LinearProblem.gradient_pair

    def counting_predict(self, W):
        calls.append(("predict", W.shape[1]))
        return predict(self, W)

    def counting_gradient(self, E):
        calls.append(("gradient", E.shape[1]))
        return gradient(self, E)

    def counting_gradient_pair(self, E, F):
        calls.append(("gradient", E.shape[1] + F.shape[1]))
        return gradient_pair(self, E, F)

    monkeypatch.setattr(LinearProblem, "predict", counting_predict)
    monkeypatch.setattr(LinearProblem, "gradient", counting_gradient)
    monkeypatch.setattr(LinearProblem, "gradient_pair", counting_gradient_pair)
    return calls


@pytest.mark.parametrize("every", [1, 100])
def test_checkpoint_costs_at_most_one_extra_data_pass(diabetes, monkeypatch, every):
    """Count passes over the full X: SVRG needs one predict and one gradient pass per epoch
    anyway (its reference); a full diagnostics checkpoint adds one predict pass for the
    trial point w + s, whose gradient shares the gradient pass (``gradient_pair``)."""
    X, y = diabetes
    calls = count_data_passes(monkeypatch)
    est = SR2Regressor(alpha=0.5, random_state=0, max_iter=5, tol=0.0, checkpoint_every=every)
    fit_quietly(est, X, y)
    d = est.diagnostics_
    assert est.n_iter_ == 5 and d.n_restarts == 0
    n_full = d.n_checkpoints  # every=1: the start and each epoch; every=100: start and end
    assert n_full == (est.n_iter_ + 1 if every == 1 else 2)
    n_light = est.n_iter_ + 1 - n_full  # the other epochs end with an SVRG reference only
    predicts = [k for what, k in calls if what == "predict"]
    gradients = [k for what, k in calls if what == "gradient"]
    assert len(predicts) == 2 * n_full + n_light
    assert len(gradients) == n_full + n_light
    assert sorted(gradients) == [1] * n_light + [2] * n_full  # w and w + s share a pass


def test_checkpoint_every_and_the_in_batch_variance_option(diabetes):
    X, y = diabetes
    est = fit_quietly(
        SR2Regressor(alpha=0.5, max_iter=10, tol=0.0, checkpoint_every=3, random_state=0), X, y
    )
    epochs = est.diagnostics_.checkpoints["epoch"]
    np.testing.assert_array_equal(epochs, [0, 3, 6, 9, 10])  # start, every 3rd, the end
    batch = fit_quietly(
        SR2Regressor(alpha=0.5, max_iter=5, variance_estimate="batch", variance_reduction=None,
                     random_state=0),
        X,
        y,
    )  # fmt: skip
    assert np.all(batch.diagnostics_.checkpoints["variance"] > 0)


@pytest.mark.parametrize("due", ["often", "at the end only"])
def test_a_fit_converging_between_checkpoints_records_its_returned_point(diabetes, due):
    X, y = diabetes
    # Under SVRG every epoch checks tol, whatever checkpoint_every: the same epochs.
    epochs = SR2Regressor(alpha=0.5, random_state=0).fit(X, y).n_iter_
    every = next(k for k in range(2, epochs) if epochs % k) if due == "often" else 1000
    est = SR2Regressor(alpha=0.5, checkpoint_every=every, random_state=0).fit(X, y)
    last = est.diagnostics_.last_checkpoint()
    assert est.diagnostics_.converged and last["epoch"] == est.n_iter_
    assert last["criterion"] <= est.tol
    assert est.n_iter_ % every != 0  # the case: convergence at an epoch that is not due


@pytest.mark.parametrize("svrg", [False, True])
def test_in_batch_variance_estimate_is_unbiased(svrg):
    from sr2learn._checkpoint import _exact_variance, _in_batch_variance, draw_step
    from sr2learn._engine import Reference
    from sr2learn._problem import LinearProblem
    from sr2learn.datafits import Logistic
    from sr2learn.penalties import L1

    rng = np.random.default_rng(0)
    n, p, b = 60, 5, 6
    X = rng.normal(size=(n, p)) * np.array([0.1, 1.0, 3.0, 10.0, 0.5])  # a metric != 1
    Y = rng.integers(0, 2, size=(n, 1)).astype(float)
    sw = rng.uniform(0.5, 1.5, size=n)
    sw *= n / sw.sum()
    problem = LinearProblem(X, Y, sw, Logistic(), True)
    W = rng.normal(size=(p + 1, 1)) * 0.3 / np.sqrt(np.r_[problem.metric, 1.0])[:, None]
    penalty = L1(0.01)
    E = Logistic().derivative(problem.predict(W), Y) * sw[:, None]
    G = problem.gradient(E)
    ref = None
    if svrg:
        # The SVRG estimator's variance, around a reference point near W.
        W_ref = W + 0.05 * rng.normal(size=W.shape) / np.sqrt(np.r_[problem.metric, 1.0])[:, None]
        D_ref = Logistic().derivative(problem.predict(W_ref), Y) * sw[:, None]
        ref = Reference(True, D_ref, problem.gradient(D_ref))
        exact = _exact_variance(problem, E - ref.D, G - ref.mu, b)
    else:
        exact = _exact_variance(problem, E, G, b)
    assert exact > 0
    R_w = penalty.value(W[:p])
    draws = [
        draw_step(problem, penalty, W, R_w, 1.0, np.sort(rng.choice(n, b, replace=False)), ref)
        for _ in range(4000)
    ]
    estimates = [_in_batch_variance(problem, draw, ref) for draw in draws]
    assert np.mean(estimates) == pytest.approx(exact, rel=0.05)
    # Both estimate E||grad f(w) - g||^2 in the metric's dual norm, sum_j (.)_j^2 / d_j^2.
    errors = [np.sum((draw.g - G) ** 2 * problem.inv_metric[:, None]) for draw in draws]
    assert np.mean(errors) == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize("svrg", [False, True])
def test_a_full_batch_trial_pass_draws_the_batch_step_on_every_row(svrg):
    """A checkpoint's trial step on every row comes from its own full gradient (no pass of
    the batch): the step, gradients and Theorem 4 terms of the batch draw on all rows."""
    from sr2learn._checkpoint import _trial_pass, draw_step
    from sr2learn._engine import Reference
    from sr2learn._problem import LinearProblem
    from sr2learn.datafits import Logistic
    from sr2learn.penalties import Lp

    rng = np.random.default_rng(1)
    n, p = 40, 8
    X = rng.normal(size=(n, p)) * np.logspace(-1, 1, p)
    Y = rng.integers(0, 2, size=(n, 1)).astype(float)
    sw = rng.uniform(0.5, 1.5, size=n)
    problem = LinearProblem(X, Y, sw * n / sw.sum(), Logistic(), True)
    W = rng.normal(size=(p + 1, 1)) * 0.3 / np.sqrt(np.r_[problem.metric, 1.0])[:, None]
    penalty = Lp(0.01, 0.5)
    W[:p] = penalty.prox(W[:p], 1.0)
    E = Logistic().derivative(problem.predict(W), Y) * problem.sw[:, None]
    ref = None
    if svrg:
        D_ref = Logistic().derivative(problem.predict(0.9 * W), Y) * problem.sw[:, None]
        ref = Reference(True, D_ref, problem.gradient(D_ref))
    R_w = penalty.value(W[:p])
    sigma = 2.0 * problem.lipschitz()
    diagnostic = dict(sigma=sigma, batch_size=n, ref=ref, rng=np.random.default_rng(0))
    draw, G, G_trial = _trial_pass(problem, penalty, W, R_w, E, diagnostic)
    batch = draw_step(problem, penalty, W, R_w, sigma, np.arange(n), ref)
    np.testing.assert_array_equal(draw.idx, np.arange(n))
    np.testing.assert_allclose(G, problem.gradient(E), rtol=1e-14, atol=1e-17)
    np.testing.assert_allclose(draw.g, batch.g, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(draw.dloss, batch.dloss, rtol=1e-14)
    for name in ("W_trial", "S"):
        np.testing.assert_allclose(getattr(draw, name), getattr(batch, name), rtol=1e-10,
                                   atol=1e-14)  # fmt: skip
    for name in ("R_trial", "xi", "step_sq"):
        assert getattr(draw, name) == pytest.approx(getattr(batch, name), rel=1e-10)
    E_trial = Logistic().derivative(problem.predict(batch.W_trial), Y) * problem.sw[:, None]
    np.testing.assert_allclose(G_trial, problem.gradient(E_trial), rtol=1e-10, atol=1e-14)
