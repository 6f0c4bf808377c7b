"""Datafits (derivatives, Lipschitz bound) and the SR2 acceptance rule."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from sr2learn._intercept import newton_passes
from sr2learn._problem import LinearProblem
from sr2learn._rule import SR2Rule
from sr2learn.datafits import Logistic, Multinomial, Quadratic


def make_targets(datafit, n, K, rng):
    if isinstance(datafit, Quadratic):
        return rng.normal(size=(n, K))
    if isinstance(datafit, Logistic):
        return rng.integers(0, 2, size=(n, 1)).astype(float)
    Y = np.zeros((n, K))
    Y[np.arange(n), rng.integers(0, K, size=n)] = 1.0
    return Y


@pytest.mark.parametrize("datafit,K", [(Quadratic(), 1), (Logistic(), 1), (Multinomial(), 4)])
def test_derivative_matches_finite_differences(datafit, K):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(5, K))
    Y = make_targets(datafit, 5, K, rng)
    h = 1e-6
    numeric = np.zeros_like(Z)
    for i in range(5):
        for k in range(K):
            E = np.zeros_like(Z)
            E[i, k] = h
            numeric[i, k] = (datafit.loss(Z + E, Y)[i] - datafit.loss(Z - E, Y)[i]) / (2 * h)
    np.testing.assert_allclose(datafit.derivative(Z, Y), numeric, rtol=1e-6, atol=1e-8)


def test_logistic_is_stable_for_large_margins():
    Z = np.array([[800.0], [-800.0]])
    Y = np.array([[0.0], [0.0]])
    losses = Logistic().loss(Z, Y)
    assert np.all(np.isfinite(losses))
    assert losses[0] == pytest.approx(800.0) and losses[1] == pytest.approx(0.0, abs=1e-300)
    assert np.all(
        np.isfinite(Multinomial().loss(np.array([[1000.0, -1000.0]]), np.array([[0.0, 1.0]])))
    )


def metric_of(X, sw):
    """d_j^2 written out independently: the weighted mean square of the nonzero entries of
    column j (1 for an empty column)."""
    X = np.asarray(X)
    present = X != 0
    mass = present.T.astype(float) @ sw
    sq = (X**2).T @ sw
    return np.where(mass > 0, sq / np.where(mass > 0, mass, 1.0), 1.0)


@pytest.mark.parametrize("datafit,K", [(Quadratic(), 1), (Logistic(), 1), (Multinomial(), 3)])
@pytest.mark.parametrize("sparse", [False, True])
def test_lipschitz_bound_holds_and_is_tight_for_squared_loss(datafit, K, sparse):
    rng = np.random.default_rng(3)
    n, p = 40, 6
    X = rng.normal(size=(n, p)) * rng.uniform(0.1, 3, size=p)
    X[rng.random((n, p)) < 0.3] = 0.0  # the metric averages the nonzero entries only
    sw = rng.uniform(0.2, 2.0, size=n)
    sw *= n / sw.sum()
    Y = make_targets(datafit, n, K, rng)
    problem = LinearProblem(sp.csr_matrix(X) if sparse else X, Y, sw, datafit, True)
    metric = metric_of(X, sw)
    np.testing.assert_allclose(problem.metric, metric, rtol=1e-12)
    # The intercept's metric is the problem's own (its definition is not this test's
    # subject); the features' is checked above.
    d = np.sqrt(np.r_[metric, 1.0 / problem.inv_metric[-1]])
    L = problem.lipschitz()
    # Independent: the Hessian of the squared loss in the metric's coordinates
    # (w~ = D^(1/2) w) is D^(-1/2) X~^T S X~ D^(-1/2) / n exactly.
    Xt = np.hstack([X, np.ones((n, 1))]) / d
    top = np.linalg.eigvalsh(Xt.T @ (sw[:, None] * Xt) / n)[-1]
    assert L == pytest.approx(datafit.curvature * top, rel=1e-8)

    # The gradient of f is L-Lipschitz in the metric along random directions:
    # ||D^(-1/2) (grad f(w1) - grad f(w2))|| <= L ||D^(1/2) (w1 - w2)||.
    def grad(W):
        Z = X @ W[:p] + W[p]
        return np.hstack([X, np.ones((n, 1))]).T @ (datafit.derivative(Z, Y) * sw[:, None]) / n

    for _ in range(20):
        W1, W2 = rng.normal(size=(p + 1, K)), rng.normal(size=(p + 1, K))
        lhs = np.linalg.norm((grad(W1) - grad(W2)) / d[:, None])
        assert lhs <= L * np.linalg.norm((W1 - W2) * d[:, None]) * (1 + 1e-10)
    if isinstance(datafit, Quadratic):
        # Tight: along the top eigenvector the ratio is L.
        _, vecs = np.linalg.eigh(Xt.T @ (sw[:, None] * Xt) / n)
        dW = (vecs[:, -1] / d)[:, None]
        W1 = rng.normal(size=(p + 1, K))
        lhs = np.linalg.norm((grad(W1 + dW) - grad(W1)) / d[:, None])
        assert lhs == pytest.approx(L * np.linalg.norm(dW * d[:, None]), rel=1e-8)


@pytest.mark.parametrize("shape", [(300, 100), (100, 300)])
@pytest.mark.parametrize("weights", ["equal", "unequal"])
def test_lipschitz_bound_of_a_mid_sized_gram(shape, weights):
    # Gram matrices past _EIGVALSH_UP_TO get Lanczos on the Gram, rounded up to a bound;
    # equal weights take the tall Gram's shortcut (X^T X times the weight).
    rng = np.random.default_rng(6)
    n, p = shape
    X = rng.normal(size=(n, p)) * rng.uniform(0.1, 10.0, size=p)
    X[:, 1:] += 0.7 * X[:, :-1]  # correlated columns: a clustered top of the spectrum
    sw = np.full(n, 2.5) if weights == "equal" else rng.uniform(0.2, 3.0, size=n)
    problem = LinearProblem(X, rng.normal(size=(n, 1)), sw, Quadratic(), True)
    Xt = np.hstack([X, np.ones((n, 1))]) * np.sqrt(problem.inv_metric) * np.sqrt(sw)[:, None]
    top = np.linalg.eigvalsh(Xt.T @ Xt / n)[-1]
    assert problem.lipschitz() >= top
    assert problem.lipschitz() == pytest.approx(top, rel=1e-6)


def large_sparse(signs, seed=4):
    """A 2000 x 1800 CSR matrix with 1% stored entries and columns of unequal sizes,
    nonnegative or of random signs."""
    rng = np.random.default_rng(seed)
    X = sp.random(2000, 1800, density=0.01, random_state=seed, format="csr")
    if signs:
        X.data *= rng.choice([-1.0, 1.0], size=X.nnz)
    return (X @ sp.diags(rng.uniform(0.1, 10.0, size=X.shape[1]))).tocsr()


def top_eig_in_metric(X, sw, fit_intercept):
    """The top eigenvalue of D^(-1/2) X~^T S X~ D^(-1/2) / n, dense and by SVD."""
    dense = X.toarray()
    n = dense.shape[0]
    metric = metric_of(dense, sw)
    A = dense / np.sqrt(metric)
    if fit_intercept:  # the intercept's metric: 1 / (largest weighted fraction of nonzeros)
        densest = ((dense != 0).T.astype(float) @ sw).max() / sw.sum()
        A = np.hstack([A, np.full((n, 1), np.sqrt(densest))])
    return np.linalg.svd(A * np.sqrt(sw)[:, None], compute_uv=False)[0] ** 2 / n


def test_lipschitz_bound_large_side_uses_lanczos():
    X = large_sparse(signs=True)
    n = X.shape[0]
    problem = LinearProblem(X, np.zeros((n, 1)), np.ones(n), Quadratic(), False)
    top = top_eig_in_metric(X, np.ones(n), False)
    assert problem.lipschitz() >= top
    assert problem.lipschitz() == pytest.approx(top, rel=1e-6)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", ["equal", "unequal"])
def test_lipschitz_bound_of_nonnegative_data_is_certified(fit_intercept, weights):
    """Nonnegative X (text, one-hot) gets the Collatz-Wielandt bound: above the top
    eigenvalue, and within _CERTIFIED_TOL of it, in few products; an empty
    column and rows of weight zero do not stop it."""
    from sr2learn import _problem

    X = large_sparse(signs=False).tolil()
    X[:, 7] = 0.0  # an empty column: a zero row of the Gram matrix
    X = X.tocsr()
    X.eliminate_zeros()
    n = X.shape[0]
    rng = np.random.default_rng(1)
    sw = np.ones(n) if weights == "equal" else rng.uniform(0.0, 3.0, size=n) * (rng.random(n) > 0.1)
    problem = LinearProblem(X, np.zeros((n, 1)), sw, Quadratic(), fit_intercept)
    top = top_eig_in_metric(X, sw, fit_intercept)
    L, products = count_products(problem)
    assert top <= L <= top * (1 + _problem._CERTIFIED_TOL)
    assert products < _problem._COLLATZ_WIELANDT_PRODUCTS


def count_products(problem):
    """problem.lipschitz() and the number of products with X it took."""
    from sr2learn import _problem

    products = []
    real = _problem.gram_matvec_into
    _problem.gram_matvec_into = lambda *a: (products.append(1), real(*a))[1]
    try:
        return problem.lipschitz(), len(products)
    finally:
        _problem.gram_matvec_into = real


def test_lipschitz_bound_of_a_reducible_gram_is_certified():
    """Two blocks of columns that share no row (no intercept): the Gram matrix is
    reducible, the Collatz-Wielandt lower bound stays at the smaller block's eigenvalue;
    the Rayleigh quotient certifies the bound."""
    from sr2learn import _problem

    X = large_sparse(signs=False)
    X = sp.block_diag([X[:1500, :900], X[1500:, 900:]], format="csr")  # top eigs ~3x apart
    n = X.shape[0]
    problem = LinearProblem(X, np.zeros((n, 1)), np.ones(n), Quadratic(), False)
    top = top_eig_in_metric(X, np.ones(n), False)
    L, products = count_products(problem)
    assert top <= L <= top * (1 + _problem._CERTIFIED_TOL)
    assert products < _problem._COLLATZ_WIELANDT_PRODUCTS


def test_lipschitz_bound_falls_back_to_lanczos_when_not_certified(monkeypatch):
    """Power iteration allowed a single product cannot certify the bound (its upper bound
    is then Gershgorin's, far above): Lanczos gives it."""
    from sr2learn import _problem

    monkeypatch.setattr(_problem, "_COLLATZ_WIELANDT_PRODUCTS", 1)
    X = large_sparse(signs=False)
    n = X.shape[0]
    problem = LinearProblem(X, np.zeros((n, 1)), np.ones(n), Quadratic(), False)
    top = top_eig_in_metric(X, np.ones(n), False)
    L, products = count_products(problem)
    assert products > 1
    assert L >= top
    assert L == pytest.approx(top, rel=1e-6)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_curvature_estimate_on_stored_columns_equals_the_dense_one(fit_intercept):
    """A CSR minibatch's power iteration runs on the columns its rows store; the dense
    problem's runs on all of them from the same start: the same estimate, and that of a
    working set's problem on X's columns read in place is its copy's."""
    X = large_sparse(signs=True)[:, :600].tocsr()
    n = X.shape[0]
    rng = np.random.default_rng(3)
    sw = rng.uniform(0.5, 2.0, size=n)
    idx = np.sort(rng.choice(n, size=40, replace=False))
    sparse = LinearProblem(X, np.zeros((n, 1)), sw, Logistic(), fit_intercept)
    dense = LinearProblem(X.toarray(), np.zeros((n, 1)), sw, Logistic(), fit_intercept)
    estimate = sparse.curvature_estimate(idx)
    assert estimate > 0
    assert estimate == pytest.approx(dense.curvature_estimate(idx), rel=1e-10)
    columns = np.arange(0, 600, 3)
    in_place = LinearProblem(X, np.zeros((n, 1)), sw, Logistic(), fit_intercept,
                             (sparse.metric[columns], sparse.intercept_metric), columns)
    copy = LinearProblem(X[:, columns], np.zeros((n, 1)), sw, Logistic(), fit_intercept,
                         (sparse.metric[columns], sparse.intercept_metric))
    assert in_place.curvature_estimate(idx) == pytest.approx(copy.curvature_estimate(idx),
                                                             rel=1e-10)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(("n", "p"), [(40, 300), (40, 39), (60, 12)],
                         ids=["wide", "square", "tall"])  # fmt: skip
def test_full_batch_curvature_estimate_on_the_gram_equals_the_one_on_x(n, p, fit_intercept,
                                                                      monkeypatch):
    """On every row, before L is known, the power iterations run on the Gram matrix that
    L is computed from (A A^T for a wide problem, A^T A for a tall one), with at most one
    product with X: the estimate of the iterations on X, and L the same as computed
    alone."""
    from sr2learn import _problem

    products = []
    real = _problem._affine
    monkeypatch.setattr(_problem, "_affine", lambda *a: (products.append(1), real(*a))[1])
    rng = np.random.default_rng(p)
    X = rng.standard_normal((n, p)) * rng.uniform(0.1, 10.0, size=p)
    sw = rng.uniform(0.5, 2.0, size=n)
    sw *= n / sw.sum()
    Y = (rng.random((n, 1)) < 0.5).astype(float)
    on_gram = LinearProblem(X, Y, sw, Logistic(), fit_intercept)
    on_x = LinearProblem(X, Y, sw, Logistic(), fit_intercept)
    on_x._lipschitz = math.inf  # known: the iterations read X
    every_row = np.arange(n)
    for n_power in (1, 2, 15):
        on_gram._lipschitz = None
        products.clear()
        estimate = on_gram.curvature_estimate(every_row, n_power=n_power, seed=4)
        assert len(products) <= 1
        assert estimate == pytest.approx(on_x.curvature_estimate(every_row, n_power=n_power,
                                                                 seed=4), rel=1e-12)
    alone = LinearProblem(X, Y, sw, Logistic(), fit_intercept).lipschitz()
    assert on_gram.lipschitz() == pytest.approx(alone, rel=1e-14)
    assert 0 < estimate <= on_gram.lipschitz()


RULE = SR2Rule(sigma_min=1e-3, sigma_max=1e3)


@pytest.mark.parametrize(
    "rho,sigma,expected",
    [
        (0.995, 10.0, (True, 8.0, False)),  # very successful: sigma * gamma3
        (0.5, 10.0, (True, 10.0, False)),  # successful: unchanged
        (1e-4, 10.0, (False, 55.6, False)),  # rejected: sigma * gamma1
        (-3.0, 10.0, (False, 55.6, False)),
        (math.nan, 10.0, (False, 55.6, False)),  # non-finite ratio: rejected
        (0.995, 1.1e-3, (True, 1e-3, True)),  # clamped below
        (-1.0, 900.0, (False, 1e3, True)),  # clamped above
    ],
)
def test_rule_update(rho, sigma, expected):
    accepted, new_sigma, clamped = RULE.update(rho, sigma)
    assert (accepted, clamped) == (expected[0], expected[2])
    assert new_sigma == pytest.approx(expected[1])


def test_ratio_rejects_nonpositive_model_decrease_and_nonfinite_values():
    eps = np.finfo(float).eps
    assert math.isnan(SR2Rule.ratio(1.0, 0.0, 1.0, eps))
    assert SR2Rule.ratio(0.0, 0.0, 1.0, eps) == 1.0  # a null step is not a rejection
    assert math.isnan(SR2Rule.ratio(1.0, -1e-3, 1.0, eps))
    assert math.isnan(SR2Rule.ratio(math.inf, 1.0, 1.0, eps))
    assert math.isnan(SR2Rule.ratio(-math.inf, 1.0, 1.0, eps))
    assert math.isnan(SR2Rule.ratio(math.nan, 1.0, 1.0, eps))
    assert SR2Rule.ratio(0.5, 1.0, 1.0, eps) == pytest.approx(0.5)
    # At rounding level the guard pulls rho to 1 instead of amplifying noise.
    assert SR2Rule.ratio(-1e-18, 1e-18, 1.0, eps) == pytest.approx(1.0, abs=1e-2)


def test_rule_rejects_bad_settings():
    with pytest.raises(ValueError, match="eta1"):
        SR2Rule(eta1=0.5, eta2=0.4)
    with pytest.raises(ValueError, match="gamma1"):
        SR2Rule(gamma1=1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        SR2Rule(sigma_min=2.0, sigma_max=1.0)


@pytest.mark.parametrize("datafit,K", [(Quadratic(), 1), (Logistic(), 1), (Multinomial(), 4)])
@pytest.mark.parametrize("scale", [1.0, 1e-1, 1e-3, 1e-6])
def test_bregman_term_matches_extended_precision(datafit, K, scale):
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(50, K)) * 3
    Y = make_targets(datafit, 50, K, rng)
    dZ = rng.normal(size=(50, K)) * scale
    got = datafit.bregman(Z, dZ, Y, datafit.derivative(Z, Y))
    # Reference in long double (eps 1e-19) from the plain definition: its own cancellation
    # error is about 1e-19 * |l(z)|, hence the absolute tolerance.
    Zl, dZl, Yl = (a.astype(np.longdouble) for a in (Z, dZ, Y))
    if isinstance(datafit, Quadratic):
        ref = 0.5 * np.sum(dZl**2, axis=1)
    elif isinstance(datafit, Logistic):
        sp_ = lambda z: np.log1p(np.exp(z))  # noqa: E731
        p = 1 / (1 + np.exp(-Zl[:, 0]))
        ref = sp_(Zl[:, 0] + dZl[:, 0]) - sp_(Zl[:, 0]) - p * dZl[:, 0]
    else:
        lse = lambda z: np.log(np.sum(np.exp(z), axis=1))  # noqa: E731
        P = np.exp(Zl) / np.sum(np.exp(Zl), axis=1, keepdims=True)
        ref = lse(Zl + dZl) - lse(Zl) - np.sum(P * dZl, axis=1)
    assert np.all(got >= 0)
    np.testing.assert_allclose(got, ref.astype(float), rtol=1e-5, atol=1e-17)


@pytest.mark.parametrize("datafit,K", [(Quadratic(), 1), (Logistic(), 1), (Multinomial(), 4)])
def test_hessian_product_is_the_derivative_of_the_derivative(datafit, K):
    # l''(z) u, the gap certificate's Newton step, against central differences of l'.
    rng = np.random.default_rng(1)
    n, h = 50, 1e-5
    Z, U = rng.normal(size=(n, K)) * 2, rng.normal(size=(n, K))
    Y = make_targets(datafit, n, K, rng)
    got = datafit.hessian_product(datafit.derivative(Z, Y), Y, U)
    expected = (datafit.derivative(Z + h * U, Y) - datafit.derivative(Z - h * U, Y)) / (2 * h)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("datafit,K", [(Quadratic(), 1), (Logistic(), 1), (Multinomial(), 4)])
def test_conjugate_meets_fenchel_young_at_the_derivative(datafit, K):
    # l(z) + l*(u) = u . z exactly when u = l'(z): the duality gap's dual objective. Some
    # predictions are so large that a probability is 0 or 1 in float64 (0 log 0 = 0).
    rng = np.random.default_rng(0)
    n = 200
    Z = rng.normal(size=(n, K)) * 3
    Z[:10] *= 300
    Y = make_targets(datafit, n, K, rng)
    U = datafit.derivative(Z, Y)
    conj = datafit.conjugate(U, Y)
    expected = np.einsum("ij,ij->i", U, Z) - datafit.loss(Z, Y)
    assert np.all(np.isfinite(conj))
    np.testing.assert_allclose(conj, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("datafit,K", [(Quadratic(), 1), (Logistic(), 1), (Multinomial(), 3)])
@pytest.mark.parametrize("start", ["far", 1e-6, 1e-8, 1e-9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intercept_shift_zeroes_the_intercept_gradient(datafit, K, start, seed):
    # A numeric start: the predictions already sit that close to the best intercept, where
    # phi's decrease is noise; the shift must still reach a gradient at rounding level.
    rng = np.random.default_rng(seed)
    n = 500
    Z = rng.normal(size=(n, K)) * rng.uniform(0.5, 3)
    Y = make_targets(datafit, n, K, rng)
    sw = rng.exponential(size=n) * (rng.random(n) > 0.1)
    sw *= n / sw.sum()
    if start != "far":
        Z = Z + datafit.intercept_shift(Z, Y, sw) + rng.normal(size=K) * start
    delta = datafit.intercept_shift(Z, Y, sw)
    grad = sw @ datafit.derivative(Z + delta, Y)
    assert np.max(np.abs(grad)) <= 1e-11 * n
    # and it is a minimiser: no shift in any direction does better
    best = float(sw @ datafit.loss(Z + delta, Y))
    for e in np.eye(K):
        for h in (1e-4, -1e-4):
            assert float(sw @ datafit.loss(Z + delta + h * e, Y)) >= best - 1e-9 * abs(best)


@pytest.mark.parametrize("seed", [0, 1, 3, 4])
def test_intercept_shift_stops_at_rounding_level(seed):
    # On 20,000 rows phi's value is noisy well above 64 eps |phi|: Newton once took up to
    # 60 steps of 20 halvings each there (1,100 passes over the rows for one intercept).
    n = 20_000
    rng = np.random.default_rng(seed)
    Z = np.zeros((n, 1))
    Y = (rng.random((n, 1)) < 0.79465).astype(float)
    sw = np.ones(n)
    datafit = Logistic()
    delta, full, model = newton_passes(datafit.kernel(), Z, Y, sw)
    np.testing.assert_array_equal(delta, datafit.intercept_shift(Z, Y, sw))
    grad = sw @ datafit.derivative(Z + delta, Y)
    assert np.max(np.abs(grad)) <= 1e-11 * n
    assert full + model <= 20


def test_intercept_shift_near_the_minimiser_takes_few_passes():
    # Predictions with few distinct values (one-hot data) make the rounding of phi's sum
    # larger than Armijo's test can bear near the minimiser: each checkpoint of an Adult
    # fit then made 20 to 100 passes (backtracking on noise) instead of two or three.
    counts = []
    datafit, n = Logistic(), 20000
    for seed in range(20):
        rng = np.random.default_rng(seed)
        Z = np.round(rng.normal(size=(n, 1)) * 3, 1)
        Y = (rng.random((n, 1)) < 0.25).astype(float)
        sw = np.ones(n)
        Z = Z + datafit.intercept_shift(Z, Y, sw) + 1e-4
        delta, full, model = newton_passes(datafit.kernel(), Z, Y, sw)
        counts.append(full + model)
        assert abs(float(sw @ datafit.derivative(Z + delta, Y)[:, 0])) <= 1e-11 * n
    assert max(counts) <= 4, counts


@pytest.mark.parametrize("datafit,K", [(Logistic(), 1), (Multinomial(), 3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intercept_shift_near_the_minimiser_makes_one_pass_with_the_loss(datafit, K, seed):
    # A checkpoint after an epoch: the intercept is 1e-5 to 1e-2 off its optimum. One
    # pass computes the losses (an exp per sample and class); the gradients after the
    # Newton steps come from the probabilities it stored, and the result is still the
    # minimiser to rounding. (Closer, the first step is below phi's rounding: no look.)
    rng = np.random.default_rng(seed)
    n = 3000
    Z = rng.normal(size=(n, K)) * 2
    Y = make_targets(datafit, n, K, rng)
    sw = rng.exponential(size=n)
    sw *= n / sw.sum()
    for off in (1e-3, 1e-2):
        start = Z + datafit.intercept_shift(Z, Y, sw) + off * rng.normal(size=K)
        delta, full, model = newton_passes(datafit.kernel(), start, Y, sw)
        grad = sw @ datafit.derivative(start + delta, Y)
        assert np.max(np.abs(grad)) <= 1e-11 * n
        assert full == 1 and 1 <= model <= 2, (full, model)


@pytest.mark.parametrize("order", ["C", "F"])
def test_rows_of_a_full_batch_are_the_data_and_of_a_batch_a_copy(order):
    rng = np.random.default_rng(0)
    X = np.asarray(rng.normal(size=(6, 4)), order=order)
    problem = LinearProblem(X, rng.normal(size=(6, 1)), rng.uniform(1, 2, 6), Quadratic(), True)
    XB, YB, swB = problem.rows(np.arange(6))
    np.testing.assert_array_equal(XB, X)
    np.testing.assert_array_equal(swB, problem.sw)
    # Not copied where the copy would be the same C-ordered array.
    assert (XB is problem.X) == problem.X.flags.c_contiguous
    idx = np.array([0, 2, 5])
    XB, YB, swB = problem.rows(idx)
    np.testing.assert_array_equal(XB, X[idx])
    np.testing.assert_array_equal(YB, problem.Y[idx])
    assert XB is not problem.X
