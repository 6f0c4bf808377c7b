"""Penalties: prox against brute-force 1-D minimisation, subdiff_distance against its definition."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sr2learn.penalties import L0, L1, L0Ball, Lp, check_penalty

SEPARABLE = [L1(0.7), L0(0.7), Lp(0.7, p=0.5), Lp(0.7, p=2.0 / 3.0), L1(0.05), Lp(2.0, p=0.5)]
GRID = np.linspace(-15.0, 15.0, 300_001)  # step 1e-4, and includes 0 exactly


def scalar_penalty(pen, u):
    """R at each point of u, written from the definitions (not from the classes)."""
    if isinstance(pen, L1):
        return pen.alpha * np.abs(u)
    if isinstance(pen, L0):
        return pen.alpha * (u != 0)
    return pen.alpha * np.abs(u) ** pen.p


@pytest.mark.parametrize("pen", SEPARABLE, ids=repr)
@settings(max_examples=60, deadline=None)
@given(v=st.floats(-10, 10), step=st.floats(0.01, 5.0))
def test_prox_matches_grid_minimisation(pen, v, step):
    u = float(pen.prox(np.array([v]), step)[0])
    objective = lambda x: 0.5 * (x - v) ** 2 + step * scalar_penalty(pen, x)  # noqa: E731
    best = objective(GRID).min()
    # The prox value is at least as good as the best grid point (up to rounding) ...
    assert objective(np.array([u]))[0] <= best + 1e-9
    # ... and no grid point is better than it by more than the grid resolution allows.
    assert objective(np.array([u]))[0] >= best - 1e-6


@pytest.mark.parametrize("pen", SEPARABLE, ids=repr)
def test_prox_is_vectorised_and_keeps_shape(pen):
    rng = np.random.default_rng(0)
    V = rng.normal(size=(7, 3))
    out = pen.prox(V, 0.3)
    assert out.shape == V.shape
    expected = np.array([[pen.prox(np.array([x]), 0.3)[0] for x in row] for row in V])
    np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize("p", [0.5, 2.0 / 3.0])
@pytest.mark.parametrize("array_step", [False, True], ids=["scalar step", "array step"])
def test_lp_prox_of_a_large_array_matches_the_entrywise_prox(p, array_step):
    # Over _COMPILED_UP_TO entries the prox is NumPy's, on the entries over the threshold
    # only; each entry must be the compiled prox's of that entry alone.
    pen = Lp(0.05, p=p)
    rng = np.random.default_rng(1)
    V = rng.normal(scale=0.3, size=(3000, 2))
    step = rng.uniform(0.05, 2.0, size=(3000, 1)) if array_step else 0.4
    out = pen.prox(V, step)
    steps = np.broadcast_to(step, V.shape)
    expected = np.vectorize(lambda x, t: pen.prox(np.array([x]), t)[0])(V, steps)
    assert 0 < np.count_nonzero(out) < out.size
    np.testing.assert_array_equal(out == 0, expected == 0)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@pytest.mark.parametrize("p", [0.5, 2.0 / 3.0])
def test_lp_value_of_a_large_sparse_array_is_the_definition(p):
    # Over _COMPILED_UP_TO entries, the power is taken on the nonzero entries only.
    w = np.zeros((5000, 2))
    w.flat[np.random.default_rng(3).choice(w.size, 40, replace=False)] = np.linspace(-2, 3, 40)
    assert Lp(0.3, p=p).value(w) == 0.3 * np.sum(np.abs(w) ** p)
    assert np.count_nonzero(w) == 40  # the argument is left as it was


@pytest.mark.parametrize("p", [0.5, 2.0 / 3.0])
def test_lp_support_derivatives_match_finite_differences(p):
    """support_gradient and support_curvature off zero: central differences of the
    definition alpha |w|^p (the Newton step on the support uses them)."""
    pen = Lp(0.3, p=p)
    w = np.r_[-np.geomspace(0.05, 4.0, 7), np.geomspace(0.05, 4.0, 7)]
    h = 1e-5 * np.abs(w)
    value = lambda u: 0.3 * np.abs(u) ** p  # noqa: E731
    np.testing.assert_allclose(pen.support_gradient(w), (value(w + h) - value(w - h)) / (2 * h),
                               rtol=1e-8)  # fmt: skip
    second = (value(w + h) - 2 * value(w) + value(w - h)) / h**2
    np.testing.assert_allclose(pen.support_curvature(w), second, rtol=1e-4)
    assert np.all(pen.support_curvature(w) < 0)


def test_lp_prox_of_a_large_float32_array_stays_float32():
    V = np.random.default_rng(2).normal(size=3000).astype(np.float32)
    out = Lp(0.1, p=0.5).prox(V, 0.3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, Lp(0.1, p=0.5).prox(V.astype(np.float64), 0.3), rtol=1e-5)


def frechet_distance_by_definition(pen, w, g):
    """dist(-g, ∂R(w)) for a scalar w, from the subdifferential written out by hand."""
    a = pen.alpha
    if isinstance(pen, L1):
        return abs(g + a * math.copysign(1, w)) if w != 0 else max(abs(g) - a, 0.0)
    if isinstance(pen, L0):
        return abs(g) if w != 0 else 0.0
    p = pen.p
    return abs(g + a * p * abs(w) ** (p - 1) * math.copysign(1, w)) if w != 0 else 0.0


@pytest.mark.parametrize("pen", SEPARABLE, ids=repr)
@settings(max_examples=100, deadline=None)
@given(w=st.one_of(st.just(0.0), st.floats(-5, 5)), g=st.floats(-5, 5))
def test_subdiff_distance_matches_definition(pen, w, g):
    got = float(pen.subdiff_distance(np.array([w]), np.array([g]))[0])
    assert got == pytest.approx(frechet_distance_by_definition(pen, w, g), rel=1e-12, abs=1e-12)


def test_l1_subdiff_distance_is_zero_at_prox_gradient_fixed_points():
    # A prox-gradient fixed point w = prox(w - g) is stationary for the convex l1 case.
    pen = L1(0.3)
    w = np.array([0.0, 1.5, -2.0])
    g = np.array([0.1, -0.3, 0.3])  # |g| <= alpha off the support, g = -alpha sign(w) on it
    np.testing.assert_allclose(pen.prox(w - g, 1.0), w)
    np.testing.assert_allclose(pen.subdiff_distance(w, g), 0.0, atol=1e-15)


@pytest.mark.parametrize("pen", SEPARABLE + [L0Ball(2)], ids=repr)
def test_numpy_and_torch_share_one_formula(pen):
    rng = np.random.default_rng(1)
    v = rng.normal(scale=2, size=12)
    v[:3] = 0.0
    g = rng.normal(size=12)
    t_v, t_g = torch.from_numpy(v), torch.from_numpy(g)
    np.testing.assert_allclose(pen.prox(t_v, 0.4).numpy(), pen.prox(v, 0.4), rtol=1e-12)
    np.testing.assert_allclose(
        pen.subdiff_distance(t_v, t_g).numpy(), pen.subdiff_distance(v, g), rtol=1e-12
    )
    assert pen.value(t_v) == pytest.approx(pen.value(v), rel=1e-12)


def test_l0_ball_prox_keeps_k_largest_and_ties_are_deterministic():
    pen = L0Ball(3)
    v = np.array([0.5, -4.0, 1.0, 3.0, -1.0, 0.2])
    np.testing.assert_array_equal(pen.prox(v, 1.0), [0, -4.0, 1.0, 3.0, 0, 0])
    assert pen.value(pen.prox(v, 1.0)) == 0.0
    assert pen.value(v) == math.inf


def test_l0_ball_prox_is_the_projection():
    # Brute force over all supports of size <= k for a small vector.
    from itertools import combinations

    rng = np.random.default_rng(2)
    v = rng.normal(size=6)
    best = min(np.sum(np.delete(v, list(keep)) ** 2) for keep in combinations(range(6), 2))
    u = L0Ball(2).prox(v, 1.0)
    assert np.sum((u - v) ** 2) == pytest.approx(best)


def test_l0_ball_subdiff_distance():
    pen = L0Ball(2)
    g = np.array([1.0, -2.0, 3.0])
    # Full support (count == k): coordinates off the support are free.
    np.testing.assert_array_equal(pen.subdiff_distance(np.array([1.0, 0.0, 2.0]), g), [1, 0, 3])
    # Support not full: the normal cone is {0} off the support too.
    np.testing.assert_array_equal(pen.subdiff_distance(np.array([1.0, 0.0, 0.0]), g), [1, 2, 3])


def test_names_and_errors():
    assert check_penalty("l1", 0.5) == L1(0.5)
    assert check_penalty("l2/3", 0.5) == Lp(0.5, p=2 / 3)
    assert check_penalty(L0Ball(4), 123.0) == L0Ball(4)
    with pytest.raises(ValueError, match="Unknown penalty 'l3'"):
        check_penalty("l3", 1.0)
    with pytest.raises(ValueError, match="alpha must be"):
        L1(-1.0)
    with pytest.raises(ValueError, match="p must be"):
        Lp(1.0, p=0.3)
    with pytest.raises(ValueError, match="k must be"):
        L0Ball(0)
