"""Regularisers R(w) with their value, proximal operator and subdifferential distance.

Each formula is written once, against the array-API namespace of its input
(:func:`array_api_compat.array_namespace`), so the NumPy solver and the torch
optimizer run exactly the same code on ``numpy.ndarray`` and ``torch.Tensor``.

Conventions (shared by every penalty):

- ``value(w)`` is R(w), a Python float (``inf`` outside the domain of an indicator), and
  ``value_array(w)`` the same as a 0-d array of the input's namespace (no host sync on a
  GPU);
- ``prox(v, step)`` returns argmin_u 1/2 ||u - v||^2 + step * R(u), elementwise; ``step``
  is a number or, for the separable penalties, an array of per-coordinate steps
  (diagonally preconditioned methods);
- ``subdiff_distance(w, grad)`` returns, elementwise, dist(-grad_j, ∂R_j(w)), the
  distance from ``-grad`` to the Fréchet subdifferential of R at ``w``; the norm of
  this array is dist(0, ∂(f + R)(w)) when ``grad`` is the gradient of f at ``w``;
- ``dual_scale(grad)``, for the convex penalties only: the largest kappa <= 1 such that
  ``-kappa * grad`` lies in the subdifferential of R at 0 (the scaling that makes a dual
  point feasible, for the duality gap); None for the nonconvex ones (no gap);
- ``support_gradient(w)``, for the penalties with a ``dual_scale`` and for ``Lp``: the
  gradient of R where ``w`` is not zero (the Newton step of the gap certificate, and
  :mod:`sr2learn._support_newton`); ``support_curvature(w)``, for ``Lp`` only: its
  second derivative there (R smooth on each orthant of its support: see
  :mod:`sr2learn._support_newton`).

Beside the array forms each class carries its compiled form, ``Kernel``: a NamedTuple of
the penalty's parameters whose static methods are the same formulas per entry, compiled by
numba for the SR2 epoch engine (:mod:`sr2learn._engine`). A separable penalty gives the
scalar ``prox(kernel, v, t)`` and ``value(kernel, w)``; a non-separable one gives
``prox_entries(kernel, v, t, out, count)`` and ``value_entries(kernel, w, count)`` over
the first ``count`` entries. Each class also says what the engine may do with it:
``separable`` (the prox acts entry by entry) and ``lazy_exact`` (a zero entry whose
gradient does not change stays zero for every sigma above the one it was checked at, so
the engine may skip it exactly), and ``polish``: a fit ends with a search for a lower
local minimum (see :mod:`sr2learn._polish`) and, on dense data with more features than
samples, starts with a continuation in alpha (see :mod:`sr2learn._continuation`).
tests/test_penalties.py checks that both forms agree.
"""

import math
import numbers
from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace
from numba import njit
from numba.extending import register_jitable

from ._compiled import JIT, name_kernel, prox_entries, value_entries

__all__ = ["Penalty", "L1", "L0", "Lp", "L0Ball", "check_penalty", "PENALTY_NAMES"]


class Penalty:
    """Base class of the regularisers. Subclasses define the methods below and ``Kernel``."""

    separable = True
    lazy_exact = True
    # A fit ends with a coordinate-wise polish (sr2learn._polish) and on dense p > n data
    # starts with a continuation (sr2learn._continuation): for a nonconvex penalty whose
    # fixed points at SR2's step are weaker than coordinate descent's.
    polish = False
    Kernel = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name_kernel(cls)

    def kernel(self):
        """The compiled form's parameters (an instance of ``type(self).Kernel``)."""
        return self.Kernel(**self._params())

    def dual_scale(self, grad):
        return None

    def value(self, w):
        return float(self.value_array(w))

    def value_array(self, w):
        raise NotImplementedError

    def prox(self, v, step):
        raise NotImplementedError

    def subdiff_distance(self, w, grad):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def _params(self):
        return {"alpha": self.alpha}

    def __eq__(self, other):
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self):
        return hash((type(self).__name__, tuple(self._params().items())))


def _check_alpha(alpha):
    if not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}.")
    return float(alpha)


class L1(Penalty):
    """``alpha * sum_j |w_j|`` (the lasso penalty); prox is soft thresholding.

    Examples
    --------
    >>> import numpy as np
    >>> from sr2learn.penalties import L1
    >>> L1(alpha=1.0).prox(np.array([-3.0, 0.5, 2.0]), step=1.0)
    array([-2.,  0.,  1.])
    """

    def __init__(self, alpha=1.0):
        self.alpha = _check_alpha(alpha)

    def value_array(self, w):
        xp = array_namespace(w)
        return self.alpha * xp.sum(xp.abs(w))

    def prox(self, v, step):
        xp = array_namespace(v)
        threshold = step * self.alpha
        # v - clip(v) is sign(v) (|v| - threshold)_+ with one rounding, in two passes.
        return v - xp.clip(v, min=-threshold, max=threshold)

    def subdiff_distance(self, w, grad):
        xp = array_namespace(w, grad)
        nonzero = xp.abs(grad + self.support_gradient(w))
        at_zero = xp.clip(xp.abs(grad) - self.alpha, min=0.0)
        return xp.where(w != 0, nonzero, at_zero)

    def support_gradient(self, w):
        """The gradient of the penalty where w is not zero (alpha sign(w))."""
        xp = array_namespace(w)
        return self.alpha * xp.sign(w)

    def dual_scale(self, grad):
        xp = array_namespace(grad)
        top = float(xp.max(xp.abs(grad))) if grad.size else 0.0
        return 1.0 if top <= self.alpha else self.alpha / top

    class Kernel(NamedTuple):
        alpha: float

        @staticmethod
        @register_jitable
        def prox(kernel, v, t):
            a = abs(v) - t * kernel.alpha
            if a <= 0.0:
                return 0.0
            return a if v > 0.0 else -a

        @staticmethod
        @register_jitable
        def value(kernel, w):
            return kernel.alpha * abs(w)


class L0(Penalty):
    """``alpha * count(w != 0)``; prox is hard thresholding at ``sqrt(2 * step * alpha)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sr2learn.penalties import L0
    >>> L0(alpha=0.5).prox(np.array([-3.0, 0.5, 2.0]), step=1.0)
    array([-3.,  0.,  2.])
    """

    def __init__(self, alpha=1.0):
        self.alpha = _check_alpha(alpha)

    def value_array(self, w):
        xp = array_namespace(w)
        return self.alpha * xp.astype(xp.count_nonzero(w), w.dtype)

    def prox(self, v, step):
        xp = array_namespace(v)
        threshold = (2.0 * step * self.alpha) ** 0.5
        return xp.where(xp.abs(v) > threshold, v, 0.0)

    def subdiff_distance(self, w, grad):
        xp = array_namespace(w, grad)
        # The Fréchet subdifferential of count(w_j != 0) is {0} off zero and R at zero.
        return xp.where(w != 0, xp.abs(grad), xp.zeros_like(grad))

    class Kernel(NamedTuple):
        alpha: float

        @staticmethod
        @register_jitable
        def prox(kernel, v, t):
            return v if abs(v) > math.sqrt(2.0 * t * kernel.alpha) else 0.0

        @staticmethod
        @register_jitable
        def value(kernel, w):
            return kernel.alpha if w != 0.0 else 0.0


class Lp(Penalty):
    """``alpha * sum_j |w_j|^p`` for ``p`` = 1/2 or 2/3 (closed-form thresholding).

    The prox uses the half-thresholding (p = 1/2) and two-thirds-thresholding
    (p = 2/3) formulas; both return the global minimiser of the 1-D problem.

    A linear model's fit with it ends with a polish (:mod:`sr2learn._polish`): one
    output's fit tries the zero features' entries under the datafit's curvature at the
    fit, each followed by Newton's method on the support (kept where F falls); several
    outputs' fit takes SR2 steps of coordinate descent's lengths 1/L_j while they would
    change the support. With working sets, each inner solve of one output ends with
    Newton's method on the support (:mod:`sr2learn._support_newton`). On dense data with more
    features than samples it starts with a continuation
    (:mod:`sr2learn._continuation`): a few larger alphas are solved first, so that the
    features enter gradually, as in coordinate descent, rather than all at once.

    Examples
    --------
    >>> import numpy as np
    >>> from sr2learn.penalties import Lp
    >>> u = Lp(alpha=1.0, p=0.5).prox(np.array([0.5, 3.0]), step=1.0)
    >>> bool(u[0] == 0.0 and 2.5 < u[1] < 3.0)
    True
    """

    polish = True

    def __init__(self, alpha=1.0, p=0.5):
        self.alpha = _check_alpha(alpha)
        if p not in (0.5, 2.0 / 3.0):
            raise ValueError(f"p must be 1/2 or 2/3, got {p!r}.")
        self.p = p

    def _params(self):
        return {"alpha": self.alpha, "p": self.p}

    def value_array(self, w):
        if _small_numpy(w):
            return _value_flat(self.kernel(), np.ascontiguousarray(w, dtype=np.float64).reshape(-1))
        if isinstance(w, np.ndarray):
            # The zeros stay in the sum, whose rounding is then the same.
            return self.alpha * np.sum(self._powers(w))
        xp = array_namespace(w)
        return self.alpha * xp.sum(xp.abs(w) ** self.p)

    def entry_values(self, w):
        """``alpha |w_j|^p`` per entry of a NumPy array (its sum is ``value(w)``)."""
        return self.alpha * self._powers(w)

    def _powers(self, w):
        # The power on the nonzero entries only (a few dozen of the 5,000 at the working
        # set's full-problem checkpoints).
        a = np.abs(w)
        nonzero = a > 0
        a[nonzero] **= self.p
        return a

    def prox(self, v, step):
        if _small_numpy(v):
            out = np.empty(v.shape)
            t = np.ascontiguousarray(np.broadcast_to(step, v.shape), dtype=np.float64)
            _prox_flat(self.kernel(), np.ascontiguousarray(v, dtype=np.float64).reshape(-1),
                       t.reshape(-1), out.reshape(-1))  # fmt: skip
            return out
        xp = array_namespace(v)
        if self.alpha == 0.0:
            return v
        lam = 2.0 * step * self.alpha  # both closed forms are stated for 1/2(u-v)^2 + lam/2 |u|^p
        a = xp.abs(v)
        keep = a > self._threshold(lam)
        if isinstance(v, np.ndarray):
            # Only the entries over the threshold: on the working set's full-problem
            # checkpoints (5,000 entries, a few dozen nonzero) the transcendentals on every
            # entry took 0.13 to 0.2 ms a call (the same values: the same ufuncs per entry).
            out = np.zeros(v.shape, dtype=np.result_type(v, lam))
            lam_kept = lam if np.ndim(lam) == 0 else np.broadcast_to(lam, v.shape)[keep]
            out[keep] = np.sign(v[keep]) * self._magnitude(np, a[keep], lam_kept)
            return out
        safe = xp.where(keep, a, xp.asarray(2.0 * self._threshold(lam) + 1.0, dtype=a.dtype))
        return xp.where(keep, xp.sign(v) * self._magnitude(xp, safe, lam), xp.zeros_like(v))

    def _threshold(self, lam):
        """Below it (``|v| <= threshold``) the prox is zero."""
        if self.p == 0.5:
            return (54.0 ** (1.0 / 3.0) / 4.0) * lam ** (2.0 / 3.0)
        return (2.0 / 3.0) * (3.0 * lam**3) ** 0.25

    def _magnitude(self, xp, a, lam):
        """The prox's magnitude for entries ``a = |v|`` over the threshold (array-API form)."""
        if self.p == 0.5:
            phi = xp.acos(xp.clip((lam / 8.0) * (a / 3.0) ** -1.5, max=1.0))
            return (2.0 / 3.0) * a * (1.0 + xp.cos(2.0 * math.pi / 3.0 - (2.0 / 3.0) * phi))
        arg = xp.clip((27.0 / 16.0) * a**2 * lam**-1.5, min=1.0)
        acosh = xp.log(arg + xp.sqrt(arg * arg - 1.0))
        cosh = (xp.exp(acosh / 3.0) + xp.exp(-acosh / 3.0)) / 2.0
        phi = (2.0 / math.sqrt(3.0)) * lam**0.25 * xp.sqrt(cosh)
        return ((phi + xp.sqrt(xp.clip(2.0 * a / phi - phi * phi, min=0.0))) / 2.0) ** 3

    def zero_alpha(self, v, step):
        """Entrywise, the smallest alpha at which ``prox(v, step)`` is zero: the
        thresholds above solved for alpha (the alpha at which a coefficient at zero with
        the proximal-gradient step ``v = -step * grad`` starts to move)."""
        xp = array_namespace(v)
        a = xp.abs(v)
        if self.p == 0.5:  # a = 54^(1/3) / 4 * lam^(2/3)
            lam = (a * (4.0 / 54.0 ** (1.0 / 3.0))) ** 1.5
        else:  # a = 2/3 * (3 lam^3)^(1/4)
            lam = ((1.5 * a) ** 4 / 3.0) ** (1.0 / 3.0)
        return lam / (2.0 * step)

    def support_gradient(self, w):
        """The gradient of R at ``w``, every entry nonzero: ``alpha p |w|^(p-1) sign(w)``."""
        xp = array_namespace(w)
        return self.alpha * self.p * xp.abs(w) ** (self.p - 1.0) * xp.sign(w)

    def support_curvature(self, w):
        """The second derivative of R at ``w``, every entry nonzero, entrywise:
        ``alpha p (p - 1) |w|^(p-2)`` (negative: R is concave on each side of zero)."""
        xp = array_namespace(w)
        return self.alpha * self.p * (self.p - 1.0) * xp.abs(w) ** (self.p - 2.0)

    def subdiff_distance(self, w, grad):
        xp = array_namespace(w, grad)
        a = xp.abs(w)
        safe = xp.where(a > 0, a, xp.ones_like(a))
        nonzero = xp.abs(grad + self.alpha * self.p * safe ** (self.p - 1.0) * xp.sign(w))
        # At zero, |w|^p has the whole real line as Fréchet subdifferential.
        return xp.where(a > 0, nonzero, xp.zeros_like(grad))

    class Kernel(NamedTuple):
        alpha: float
        p: float

        @staticmethod
        @register_jitable
        def prox(kernel, v, t):
            lam = 2.0 * t * kernel.alpha
            if lam == 0.0:
                return v
            a = abs(v)
            if kernel.p == 0.5:
                threshold = (54.0 ** (1.0 / 3.0) / 4.0) * lam ** (2.0 / 3.0)
                if not a > threshold:
                    return 0.0
                phi = math.acos(min((lam / 8.0) * (a / 3.0) ** -1.5, 1.0))
                mag = (2.0 / 3.0) * a * (1.0 + math.cos(2.0 * math.pi / 3.0 - (2.0 / 3.0) * phi))
            else:
                threshold = (2.0 / 3.0) * (3.0 * lam**3) ** 0.25
                if not a > threshold:
                    return 0.0
                arg = max((27.0 / 16.0) * a * a * lam**-1.5, 1.0)
                acosh = math.log(arg + math.sqrt(arg * arg - 1.0))
                cosh = (math.exp(acosh / 3.0) + math.exp(-acosh / 3.0)) / 2.0
                phi = (2.0 / math.sqrt(3.0)) * lam**0.25 * math.sqrt(cosh)
                mag = ((phi + math.sqrt(max(2.0 * a / phi - phi * phi, 0.0))) / 2.0) ** 3
            return mag if v > 0.0 else -mag

        @staticmethod
        @register_jitable
        def value(kernel, w):
            return kernel.alpha * abs(w) ** kernel.p


# Up to this many entries a NumPy float64 array goes through the compiled form (Kernel)
# instead of the array-API one, whose fixed costs dominate small arrays: an l2/3 prox of
# 65 entries took 15 us against 100 us (the working set's restricted problems, two per
# checkpoint; bench_breadth.py's dense 200 x 5000 fits: l1/2 0.86x, l2/3 0.78x the time, the
# same coefficients); from about 1,000 entries NumPy's vectorised transcendentals are as fast.
_COMPILED_UP_TO = 1024


def _small_numpy(x):
    return isinstance(x, np.ndarray) and x.dtype == np.float64 and x.size <= _COMPILED_UP_TO


@njit(**JIT)
def _prox_flat(kernel, v, t, out):
    prox_entries(kernel, v, t, out, v.size)


@njit(**JIT)
def _value_flat(kernel, w):
    return value_entries(kernel, w, w.size)


class L0Ball(Penalty):
    """Indicator of ``{w : count(w != 0) <= k}``: the prox keeps the ``k`` largest ``abs(v_j)``.

    Not separable: the engine takes eager steps over every coordinate with it.

    Examples
    --------
    >>> import numpy as np
    >>> from sr2learn.penalties import L0Ball
    >>> L0Ball(k=2).prox(np.array([3.0, -0.5, 2.0, 1.0]), step=1.0)
    array([3., 0., 2., 0.])
    """

    def __init__(self, k):
        if not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}.")
        self.k = int(k)

    @property
    def alpha(self):
        return 0.0

    def _params(self):
        return {"k": self.k}

    def value_array(self, w):
        xp = array_namespace(w)
        count = xp.sum(xp.astype(w != 0, w.dtype))
        return xp.where(count <= self.k, xp.zeros_like(count), xp.full_like(count, math.inf))

    def prox(self, v, step):
        xp = array_namespace(v)
        flat = xp.reshape(v, (-1,))
        if flat.shape[0] <= self.k:
            return v
        order = xp.argsort(xp.abs(flat), descending=True, stable=True)
        keep = order[: self.k]
        out = xp.zeros_like(flat)
        out[keep] = flat[keep]
        return xp.reshape(out, v.shape)

    def subdiff_distance(self, w, grad):
        xp = array_namespace(w, grad)
        # Normal cone of the union of k-sparse subspaces: off the support it is the
        # whole axis only when the support is full (count == k).
        full = int(xp.count_nonzero(w)) == self.k
        at_zero = xp.zeros_like(grad) if full else xp.abs(grad)
        return xp.where(w != 0, xp.abs(grad), at_zero)

    separable = False
    lazy_exact = False

    class Kernel(NamedTuple):
        k: int

        @staticmethod
        @register_jitable
        def prox_entries(kernel, v, t, out, count):
            if count <= kernel.k:
                out[:count] = v[:count]
                return
            # Stable, by decreasing |v|: ties go to the earlier entry, as in ``prox``.
            order = np.argsort(-np.abs(v[:count]), kind="mergesort")
            out[:count] = 0.0
            for i in range(kernel.k):
                out[order[i]] = v[order[i]]

        @staticmethod
        @register_jitable
        def value_entries(kernel, w, count):
            nonzero = 0
            for i in range(count):
                nonzero += w[i] != 0.0
            return 0.0 if nonzero <= kernel.k else math.inf


PENALTY_NAMES = ("l1", "l0", "l1/2", "l2/3")


def check_penalty(penalty, alpha):
    """Return a :class:`Penalty` from a name and ``alpha``, or the object itself.

    Parameters
    ----------
    penalty : {"l1", "l0", "l1/2", "l2/3"} or Penalty
        A name, or a penalty object (which carries its own strength; ``alpha`` is
        then not used).
    alpha : float
        The strength for a named penalty.
    """
    if isinstance(penalty, Penalty):
        return penalty
    makers = {
        "l1": lambda: L1(alpha),
        "l0": lambda: L0(alpha),
        "l1/2": lambda: Lp(alpha, p=0.5),
        "l2/3": lambda: Lp(alpha, p=2.0 / 3.0),
    }
    if penalty not in makers:
        raise ValueError(
            f"Unknown penalty {penalty!r}: use one of {', '.join(map(repr, PENALTY_NAMES))} "
            "or a sr2learn.penalties.Penalty object such as L0Ball(k)."
        )
    return makers[penalty]()
