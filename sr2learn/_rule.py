"""The SR2 acceptance rule (DESIGN §1, steps 5-6), written once for both backends.

The formulas are plain functions of scalars: the NumPy solver and the torch optimizer each
reduce one step to the scalars (actual decrease, model decrease, batch objective) and call
them. They are written without branching on values, through :func:`where` and
:func:`isfinite`, so the same lines run on

- Python and NumPy floats (the torch optimizer's checks, the checkpoints);
- 0-dim torch tensors, on any device: the torch optimizer decides a step without reading
  a value back to the host (no synchronisation with the GPU);
- numba: the compiled linear-model kernel (:mod:`sr2learn._engine`) compiles these very
  functions instead of restating them (``where`` and ``isfinite`` have numba overloads).
"""

import math
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace
from numba.extending import overload

__all__ = ["SR2Rule", "sr2_ratio", "sr2_update", "model_decrease", "where", "isfinite"]


def where(condition, if_true, if_false):
    """``if_true if condition else if_false``; elementwise (``torch.where``) for a tensor
    condition, so that a decision on the device is never read back by the host."""
    if isinstance(condition, (bool, np.bool_)):
        return if_true if condition else if_false
    return array_namespace(condition).where(condition, if_true, if_false)


def isfinite(x):
    """``math.isfinite`` for a number, elementwise for an array or tensor."""
    if isinstance(x, (int, float, np.number)):
        return math.isfinite(x)
    return array_namespace(x).isfinite(x)


@overload(where)
def _where_compiled(condition, if_true, if_false):
    def impl(condition, if_true, if_false):
        return if_true if condition else if_false

    return impl


@overload(isfinite)
def _isfinite_compiled(x):
    def impl(x):
        return math.isfinite(x)

    return impl


def sr2_ratio(actual, predicted, scale, eps):
    """rho = actual / predicted decrease, guarded against rounding as in R2.

    ``actual`` is F_B(w) - F_B(w + s) (on the variance-reduction surrogate when one
    is used), ``predicted`` is xi = psi(0) - psi(s), ``eps`` the machine epsilon, and
    ``scale`` the size of the numbers whose rounding enters ``actual`` and ``predicted``:
    |F_B(w)| when the decrease is a difference of two objective values (the torch side),
    |R(w) - R(w + s)| + |g's| when it is xi minus a Bregman term computed without
    cancellation (the linear models: there a guard at |F_B| would call every step below
    eps |F_B| a success, and the iterates wander at that level). The
    guard 10 * eps * scale is added to both. Returns NaN (a rejection) when xi <= 0 or
    either decrease is not finite, except for a null step (xi = 0 and no actual change:
    the prox kept w), which gets 1: rejecting it would only grow sigma and make the next
    step smaller still (an l0 fit climbed to sigma_max on a run of null steps).
    """
    guard = 10.0 * eps * abs(scale)
    valid = isfinite(actual) & isfinite(predicted) & (predicted > 0.0)
    # The denominator of an invalid ratio is replaced so that no branch ever divides by 0.
    rho = where(valid, (actual + guard) / where(valid, predicted + guard, 1.0), math.nan)
    return where((predicted == 0.0) & (actual == 0.0), 1.0, rho)


def model_decrease(r_w, r_trial, g_dot_s, s_sq, sigma):
    """xi = R(w) - R(w+s) - g's, floored at sigma/2 ||s||^2.

    s minimises g's + sigma/2 ||s||^2 + R(w+s), so comparing with s = 0 gives
    xi >= sigma/2 ||s||^2 in exact arithmetic; a smaller computed value is rounding in
    R(w) - R(w+s), which would otherwise reject tiny, correct steps near the optimum.
    """
    decrease = r_w - r_trial - g_dot_s
    floor = 0.5 * sigma * s_sq
    return where(floor > decrease, floor, decrease)  # max(decrease, floor)


def sr2_update(rho, sigma, eta1, eta2, gamma1, gamma3, sigma_min, sigma_max):
    """``(accepted, new_sigma, clamped)`` for the ratio ``rho`` (NaN: a rejection)."""
    accepted = rho >= eta1  # False for NaN
    target = where(rho >= eta2, gamma3 * sigma, where(accepted, sigma, gamma1 * sigma))
    low = where(target > sigma_min, target, sigma_min)  # max(sigma_min, target)
    new_sigma = where(low < sigma_max, low, sigma_max)  # min(sigma_max, ...)
    return accepted, new_sigma, new_sigma != target


@dataclass(frozen=True)
class SR2Rule:
    """Acceptance test and sigma update of SR2.

    Defaults are the paper's Table 1. The paper's gamma2 (2.95 < gamma1) would make the
    rejection interval [gamma1 sigma, gamma2 sigma] empty, so rejection multiplies sigma
    by gamma1 alone.
    """

    eta1: float = 7.5e-4
    eta2: float = 0.99
    gamma1: float = 5.56
    gamma3: float = 0.8
    sigma_min: float = 1e-12
    sigma_max: float = 1e12

    def __post_init__(self):
        if not 0.0 < self.eta1 <= self.eta2 < 1.0:
            raise ValueError(f"Need 0 < eta1 <= eta2 < 1, got eta1={self.eta1}, eta2={self.eta2}.")
        if not self.gamma1 > 1.0:
            raise ValueError(f"Need gamma1 > 1, got {self.gamma1}.")
        if not 0.0 < self.gamma3 <= 1.0:
            raise ValueError(f"Need 0 < gamma3 <= 1, got {self.gamma3}.")
        if not 0.0 < self.sigma_min <= self.sigma_max < math.inf:
            raise ValueError(
                f"Need 0 < sigma_min <= sigma_max < inf, got {self.sigma_min}, {self.sigma_max}."
            )

    @staticmethod
    def ratio(actual, predicted, scale, eps):
        """rho (see :func:`sr2_ratio`)."""
        return sr2_ratio(actual, predicted, scale, eps)

    @staticmethod
    def model_decrease(r_w, r_trial, g_dot_s, s_sq, sigma):
        """xi (see :func:`model_decrease`)."""
        return model_decrease(r_w, r_trial, g_dot_s, s_sq, sigma)

    def update(self, rho, sigma):
        """Return ``(accepted, new_sigma, clamped)`` for the ratio ``rho``.

        A NaN ``rho`` is a rejection. ``clamped`` is True when the new sigma was cut to
        ``[sigma_min, sigma_max]``.
        """
        accepted, new_sigma, clamped = sr2_update(
            rho, sigma, self.eta1, self.eta2, self.gamma1, self.gamma3,
            self.sigma_min, self.sigma_max,
        )  # fmt: skip
        return bool(accepted), new_sigma, bool(clamped)
