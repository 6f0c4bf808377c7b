"""The SR2 acceptance rule (DESIGN §1, steps 5-6), written once for both backends.

Everything here works on floats: the NumPy solver and the torch optimizer each reduce
one step to the scalars (actual decrease, model decrease, batch objective) and call
:meth:`SR2Rule.ratio` and :meth:`SR2Rule.update`. The formulas are plain functions of
floats so that the compiled linear-model kernel (:mod:`sr2learn._engine`) compiles these
very functions with numba instead of restating them.
"""

import math
from dataclasses import dataclass

__all__ = ["SR2Rule", "sr2_ratio", "sr2_update", "model_decrease"]



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
    if predicted == 0.0 and actual == 0.0:
        return 1.0
    if not (math.isfinite(actual) and math.isfinite(predicted)) or predicted <= 0.0:
        return math.nan
    guard = 10.0 * eps * abs(scale)
    return (actual + guard) / (predicted + guard)


def model_decrease(r_w, r_trial, g_dot_s, s_sq, sigma):
    """xi = R(w) - R(w+s) - g's, floored at sigma/2 ||s||^2.

    s minimises g's + sigma/2 ||s||^2 + R(w+s), so comparing with s = 0 gives
    xi >= sigma/2 ||s||^2 in exact arithmetic; a smaller computed value is rounding in
    R(w) - R(w+s), which would otherwise reject tiny, correct steps near the optimum.
    """
    return max(r_w - r_trial - g_dot_s, 0.5 * sigma * s_sq)


def sr2_update(rho, sigma, eta1, eta2, gamma1, gamma3, sigma_min, sigma_max):
    """``(accepted, new_sigma, clamped)`` for the ratio ``rho`` (NaN: a rejection)."""
    accepted = rho >= eta1  # False for NaN
    if rho >= eta2:
        target = gamma3 * sigma
    elif accepted:
        target = sigma
    else:
        target = gamma1 * sigma
    new_sigma = min(sigma_max, max(sigma_min, target))
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
