"""A tighter duality gap: the dual point of a Newton step on the support.

The checkpoint's dual point is the residual at w rescaled into the dual feasible set
(``penalty.dual_scale``). Its gap is first order in the distance to the solution while
F(w) - F* is second order: the rescaling pulls every active constraint |x_j . theta| = alpha
inwards, which costs alpha ||w*||_1 times the scaling's deficit. A fit that stops on it at
tol = 1e-4 has solved to a suboptimality near 1e-9 (MNIST, text-like data).

The residual of a point whose gradient on the support is already -alpha sign(w) needs almost
no rescaling. So: one Newton step on the smooth restriction of F to the support of w (the
coefficients that are not zero, with their signs, and the intercept), solved by conjugate
gradients on a copy of the support's columns; at that point w_N the exact intercept and
one full gradient give the dual point theta(w_N). Its dual value is a lower bound on F*
like any other feasible point's, so F(w) - D(theta(w_N)) is a valid gap for the returned w,
and it is second order when the support is right.

:class:`NewtonCertificate` decides when one is worth its cost (a copy of the support's
columns, a few passes over them, one pass over X) and backs off after a failed try.
"""

import functools
import math

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotrs

from ._engine import loss_pass, support_gram_into
from ._problem import LinearProblem, data_nbytes, loss_derivatives, row_slices

__all__ = ["NewtonCertificate", "NewtonMemo", "SupportSignature", "newton_dual_point",
           "support_signature"]

# The copy of the support's columns (float64) may take this fraction of X's bytes, or
# this many bytes, whichever is larger; a larger support gets no certificate.
_COPY_FRACTION = 0.1
_COPY_BYTES = 2**20
# One output's Newton step comes from its explicit Hessian while that costs at most this
# many passes' worth of X (see _gram_affordable); otherwise from conjugate gradients on a
# copy of the support's columns.
_GRAM_PASSES = 20.0
# Several outputs on dense data: the restricted Hessian is formed whole (K^2 weighted Gram
# matrices of the support's copied columns) up to this many rows x outputs, else (and on
# sparse data) conjugate gradients.
_EXPLICIT_UP_TO = 256
# Conjugate gradients (down to NewtonCertificate.rtol): at most this many iterations and
# this many passes' worth of X (each iteration reads the copy twice), but at least
# _CG_MIN_ITER (a small problem's passes cost less than the fixed costs of a try).
_CG_MAX_ITER = 50
_CG_MIN_ITER = 20
_CG_PASSES = 10.0
# On another support than the last (successful) try's, the square law's constant varies
# by about a decade either way (3-class CV folds: certified / plain^2 from 0.03 to 17):
# such a try is due when the law predicts at most _SLACK * tol.
_SLACK = 10.0


class NewtonCertificate:
    """When a solve tries :func:`newton_dual_point`.

    Only while the plain criterion misses ``tol`` (positive) and is below ``within`` (where
    the support has settled enough for a Newton step to certify). Then, the certificate's
    gap being second order where the plain one is first order, so that it scales as the
    square of the plain one:

    - on the support of the last try, only when that square law predicts success (a CV
      path's short solves had spent a quarter of their time on tries that it skips; a
      path shares one certificate between its alphas);
    - on another support, every time when the problem knows its Hessian
      (:attr:`SupportSignature.hessian_known`: a try is cheap); otherwise only when the
      proximal-gradient step keeps it (:attr:`SupportSignature.identified`); after a
      miss (with ``backoff``) only when the square law from the miss predicts success:
      each miss lowers the plain criterion
      needed for the next try, so that misses are few, and none waits for a count of
      checkpoints (a path's second epoch at each alpha, whose support has just settled,
      had waited for a third: 3-class 1,200 x 20 folds, 133 epochs and 88 tries along the
      paths, now about 102 and 55); after a success, when the law from it predicts at
      most ``_SLACK`` * tol (a path's first epoch at a new alpha ends too far from the
      optimum to certify, whatever its support).

    A Newton step that conjugate gradients could not solve within their budget (a Hessian
    too ill-conditioned, e.g. many classes on many dense columns) ends the tries.
    """

    def __init__(self, within=0.1, backoff=True):
        self.within, self.backoff = within, backoff
        self._useless = False
        self._last = None  # (plain criterion, certified criterion, support) of the last try

    def due(self, criterion, tol, support=None):
        """Whether to try at this checkpoint; ``support``: W's :class:`SupportSignature`
        (or any other signature, taken as identified)."""
        if self._useless or not tol or not tol < criterion <= self.within:
            return False
        known = getattr(support, "hessian_known", False)
        if self._last is None:
            return known or getattr(support, "identified", True)
        plain, certified, last_support = self._last
        predicted = certified * (criterion / plain) ** 2
        if support == last_support:
            return predicted <= tol
        if known:
            return True
        if not getattr(support, "identified", True):
            return False
        if certified <= tol:  # after a success, the law with a decade of slack
            return predicted <= _SLACK * tol
        return predicted <= tol or not self.backoff

    @staticmethod
    def rtol(criterion, tol):
        """The conjugate gradients' relative residual: the certificate's gap keeps about
        that fraction of the plain one, which should end a decade below tol."""
        return min(1e-3, 0.1 * tol / criterion)

    def tried(self, solved, success, plain=None, certified=None, support=None):
        """Record a try: whether the Newton step was solved and met tol, the plain and
        certified criteria, and the support's signature."""
        if not solved:
            self._useless = True
            return
        self._last = (plain, certified, support)


class NewtonMemo:
    """The last Newton dual point of a fit with working sets, shared by the full problem
    and its restricted problems (``LinearProblem.newton_memo``).

    A restricted problem's Newton step from W is the full problem's from the same W: the
    same support, the same rows, the same gradient on the support. So the full checkpoint
    that follows an inner solve stopped by a certificate (at the same W) reuses that step's
    per-sample derivatives s_i l'(z_i) at w_N, and only computes their dual scale on all
    the features (one gradient pass instead of the support's Hessian, a prediction pass
    and the exact intercept). The gap stays valid whatever w_N is: any w_N gives a
    feasible dual point once scaled (text-like 20,000 x 50,000, alpha 1e-4: two Newton
    steps of about 4 ms saved a fit)."""

    def __init__(self):
        self._key = None
        self._derivatives = None

    @staticmethod
    def _key_of(problem, W, columns):
        """The support (as the full problem's coefficients) and W's values on it: the
        intercept is left out (the full checkpoint re-solves it, moving it by rounding;
        the Newton step re-optimises it anyway)."""
        full = columns if problem.in_full is None else problem.in_full[columns]
        return full.tobytes(), np.ascontiguousarray(W[columns]).tobytes()

    def recall(self, problem, W, columns):
        """s_i l'(z_i) at the Newton point of the same support and values, or None."""
        if self._key is not None and self._key == self._key_of(problem, W, columns):
            return self._derivatives
        return None

    def keep(self, problem, W, columns, E):
        self._key, self._derivatives = self._key_of(problem, W, columns), E


class SupportSignature:
    """The support of a checkpoint's W, for :meth:`NewtonCertificate.due`: a cheap
    fingerprint of its nonzero pattern (two signatures are equal when the patterns are),
    and whether the proximal-gradient step at W keeps it (``identified``, computed on
    demand).

    The proximal-gradient step T(w) = prox(w - t G, t), t = 1/L in the metric, has the
    solutions as its fixed points, and on l1 it finds the optimal support in finitely
    many iterations: a coordinate of the support that it sets to zero (or whose sign it
    flips) is most likely spurious, and a Newton step on a support holding one certifies
    little. Along a path these are the first epoch's at each new alpha, which lets in
    coordinates that the second one drops (3-class 1,200 x 20 folds: 35 of the 46 failed
    tries were on supports that T changes). A coordinate that T adds to the support does
    not count: the dual point's scaling answers for it, and a working set's full-problem
    checkpoints, whose tries reuse the inner solve's Newton point, have such coordinates
    by design."""

    def __init__(self, problem, penalty, W, G):
        self._problem, self._penalty, self._W, self._G = problem, penalty, W, G
        nonzero = np.flatnonzero(W[: problem.p])
        self._key = nonzero.size, hash(nonzero.tobytes())

    def __eq__(self, other):
        return isinstance(other, SupportSignature) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    @property
    def hessian_known(self):
        """Whether the problem knows its Hessian (least squares on compressed rows, from
        their moments): a try is then a small solve and a pass, cheaper than the epoch it
        may save, and every new support is tried (a 2,000 x 100 regression's CV: 199
        epochs along the paths with the gates below, 159 without)."""
        return getattr(self._problem, "support_hessian", None) is not None

    @functools.cached_property
    def identified(self):
        """Whether the proximal-gradient step at W (step 1/L in the metric) has the
        support and signs of W."""
        problem, p = self._problem, self._problem.p
        L = problem.lipschitz()
        rows, outputs = np.nonzero(self._W[:p])  # the support's entries only
        t = problem.inv_metric[rows] / (L if L > 0 else 1.0)
        w = self._W[rows, outputs]
        stepped = self._penalty.prox(w - self._G[rows, outputs] * t, t)
        return bool(np.array_equal(np.sign(stepped), np.sign(w)))


def support_signature(problem, penalty, W, G):
    """The :class:`SupportSignature` of a checkpoint at W with gradient G."""
    return SupportSignature(problem, penalty, W, G)


def newton_dual_point(problem, penalty, W, G, E, rtol=1e-3):
    """The dual point theta(w_N), w_N a Newton step from W on W's support.

    Returns (dual, solved): ``dual`` is (s_i l'(z_i) at w_N, its dual scale kappa), or
    None when there is no support, when it is too large (several outputs: to copy), or
    when conjugate gradients did not solve the Newton step (``solved`` False) to a tenth of
    its residual. One output's step comes from the Hessian a problem knows
    (``support_hessian``: least squares on compressed rows, from their moments), else
    from its explicit Hessian when that is cheap
    (:func:`_gram_affordable`: the support's entries per row are few), else, as several
    outputs', from conjugate gradients on a copy of the support's columns.
    ``G`` and ``E`` are the checkpoint's gradient and per-sample derivatives s_i l'(z_i)
    at W (whose intercept is exact). ``rtol``: the conjugate gradients' relative residual
    (the certificate's gap keeps about that fraction of the plain one)."""
    p = problem.p
    entries = W[:p] != 0
    columns = np.flatnonzero(entries.any(axis=1))
    if columns.size == 0:
        return None, True
    memo = problem.newton_memo
    known = None if memo is None else memo.recall(problem, W, columns)
    if known is not None:
        return (known, penalty.dual_scale(problem.gradient(known)[:p])), True
    mask = np.concatenate([entries[columns],
                           np.ones((int(problem.fit_intercept), problem.K), bool)])
    rows = np.concatenate([columns, np.arange(p, problem.n_rows)])
    rhs = -np.where(mask, G[rows], 0.0)
    rhs[: columns.size] -= np.where(mask[: columns.size], penalty.support_gradient(W[columns]), 0.0)
    if problem.datafit.shift_invariant:
        # A row with all K classes in the support moves along a null direction of the
        # Hessian (the same shift for every class): the Newton system is consistent only
        # once the right-hand side's component along it is removed.
        full = mask.all(axis=1)
        rhs[full] -= rhs[full].mean(axis=1, keepdims=True)
    # Least squares on compressed rows knows its Hessian: the moments of its Gram.
    known_hessian = getattr(problem, "support_hessian", None)
    if problem.K == 1 and (known_hessian is not None or _gram_affordable(problem, columns)):
        W_newton = np.array(W, dtype=np.float64)
        if known_hessian is not None:
            W_newton[rows] += _solve_spd(known_hessian(rows), rhs)
        else:
            W_newton[rows] += _gram_newton_step(problem, columns,
                                                _curvature_weights(problem, E), rhs)  # fmt: skip
        Z = problem.predict(W_newton)
    else:
        XS, XS_share = _support_copy(problem, columns)
        if XS is None:
            return None, True
        support = _SupportOperator(problem, XS, loss_derivatives(E, problem.sw), mask)
        if mask.size <= _EXPLICIT_UP_TO and not sp.issparse(XS):
            step = support.explicit_step(rhs)
        else:
            max_iter = min(_CG_MAX_ITER, max(_CG_MIN_ITER, int(_CG_PASSES / (2.0 * XS_share))))
            step, residual = _conjugate_gradients(support.hessian_product, rhs,
                                                  support.hessian_diagonal(), max_iter,
                                                  rtol)  # fmt: skip
            if not residual <= 0.1:
                return None, False
        Z = support.predict(W[rows] + step)
    if problem.fit_intercept:
        Z += problem.datafit.intercept_shift(Z, problem.Y, problem.sw)
    loss_pass(problem.datafit.kernel(), Z, problem.Y, problem.sw, Z)  # Z becomes E at w_N
    if problem.fit_intercept and not _intercept_feasible(Z):
        return None, True  # a step so long that the intercept has no exact minimiser
    if memo is not None:
        memo.keep(problem, W, columns, Z)
    return (Z, penalty.dual_scale(problem.gradient(Z)[:p])), True


def _intercept_feasible(E):
    """Whether sum_i s_i l'(z_i) = 0 for every output (to rounding): the dual constraint of
    the unpenalised intercept, which its exact minimiser meets unless there is none (an
    output whose predictions are all saturated)."""
    # Column sums by einsum: .sum(axis=0) over a few columns is several times slower.
    size = sum(np.einsum("ij->j", np.abs(E[rows])) for rows in row_slices(E.shape[0]))
    return bool(np.all(np.abs(np.einsum("ij->j", E)) <= 1e-9 * size))


def _of_x(problem, columns):
    return columns if problem.columns is None else problem.columns[columns]


def _gram_affordable(problem, columns):
    """Whether the support's explicit Hessian (one output) costs at most _GRAM_PASSES
    passes over X: sum_i nnz_i^2 flops for the support's entries nnz_i of row i (estimated
    from their mean), a pass to gather them, and (q + 1)^3 / 3 for Cholesky."""
    X, q = problem.X, columns.size
    entries = X.nnz if sp.issparse(X) else X.size
    support = problem.stored_entries(_of_x(problem, columns))
    flops = (support + problem.n) ** 2 / max(1, problem.n) + (q + 1) ** 3 / 3
    return flops <= _GRAM_PASSES * entries


def _curvature_weights(problem, E):
    """s_i l''(z_i) for one output, from E = s_i l'(z_i), over slices of rows (whole-array
    temporaries had raised a one-hot fit's peak by a fifth of X)."""
    n, sw = problem.n, problem.sw
    weights = np.empty(n)
    one = np.ones((1, 1))
    for rows in row_slices(n):
        deriv = loss_derivatives(E[rows], sw[rows])
        weights[rows] = sw[rows] * problem.datafit.hessian_product(deriv, problem.Y[rows],
                                                                   one)[:, 0]  # fmt: skip
    return weights


def _gram_newton_step(problem, columns, weights, rhs):
    """The Newton step of one output on the support ``columns`` (and the intercept), from
    the explicit Hessian (:func:`support_hessian`), solved by Cholesky (with a ridge of
    1e-12 of its diagonal, for a singular one)."""
    return _solve_spd(support_hessian(problem, columns, weights), rhs)


def support_hessian(problem, columns, weights):
    """The explicit Hessian X~_S^T diag(s_i l''(z_i)) X~_S / n of one output on the
    columns ``columns`` and the intercept (``weights``: s_i l''(z_i); compiled, X read in
    place)."""
    of_x = _of_x(problem, columns)
    weighted = LinearProblem(problem.X, problem.Y, weights, problem.datafit,
                             problem.fit_intercept, (np.ones(of_x.size), 1.0), of_x)  # fmt: skip
    H = np.zeros((weighted.n_rows, weighted.n_rows))
    support_gram_into(weighted.data, H)
    return H / problem.n


def _solve_spd(H, rhs):
    """H^-1 rhs for a symmetric positive semi-definite H, by Cholesky with a ridge of
    1e-12 of its diagonal (a singular H: duplicate columns, or the multinomial's shifts,
    along which the right-hand side has no component), else least squares."""
    diagonal = H.reshape(-1)[:: H.shape[0] + 1]  # a view
    diagonal += 1e-12 * max(float(diagonal.max()), 1e-300)
    # LAPACK's Cholesky directly: H and rhs are finite (formed from validated data), and
    # scipy's checks and wrappers cost several times the factorisation of a CV fold's
    # Hessian (a few dozen unknowns).
    factor, info = dpotrf(H, lower=False, clean=False, overwrite_a=False)
    if info == 0:
        solution, info = dpotrs(factor, rhs, lower=False)
        if info == 0:
            return solution
    return np.linalg.lstsq(H, rhs, rcond=None)[0]


def _support_copy(problem, columns):
    """The columns ``columns`` of X as float64 (CSR or dense), or None when too large,
    and their share of X's entries."""
    X = problem.X
    of_x = _of_x(problem, columns)
    entries = problem.stored_entries(of_x)
    if sp.issparse(X):
        size, share = entries * 12, entries / max(1, X.nnz)  # float64 and int32 index
    else:
        size, share = entries * 8, of_x.size / max(1, X.shape[1])
    if size > max(_COPY_FRACTION * data_nbytes(X), _COPY_BYTES):
        return None, share
    XS = X[:, of_x]
    return (XS.astype(np.float64) if XS.dtype != np.float64 else XS), share


class _SupportOperator:
    """Products with X~_S (the support's columns and the intercept's column of ones) and
    with the Hessian of f restricted to the support's entries."""

    def __init__(self, problem, XS, deriv, mask):
        self.problem, self.XS, self.deriv, self.mask = problem, XS, deriv, mask
        self.q = XS.shape[1]

    def predict(self, V):
        Z = np.asarray(self.XS @ V[: self.q], dtype=np.float64)
        if self.problem.fit_intercept:
            Z += V[self.q]
        return Z

    def transpose(self, T):
        out = np.empty((self.mask.shape[0], T.shape[1]))
        out[: self.q] = np.asarray(self.XS.T @ T)
        if self.problem.fit_intercept:
            out[self.q] = T.sum(axis=0)
        return out / self.problem.n

    def explicit_step(self, rhs):
        """The Newton step from the restricted Hessian formed whole: for each pair of
        outputs k <= l, X~_k^T diag(s_i H_i[k, l]) X~_l / n on the columns X~_k of the
        support's entries of output k (and the intercept's ones), the per-sample blocks
        H_i from ``hessian_product`` on unit vectors; the blocks l < k by symmetry.
        Solved like one output's. (The K^2 products on all the support's columns, with
        the entries off the mask dropped afterwards, cost 1.5 to 2 times as much on a
        3-class CV fold.)"""
        pr, K = self.problem, self.problem.K
        XS = self.XS  # dense (a sparse copy takes conjugate gradients)
        if pr.fit_intercept:
            XS = np.hstack([XS, np.ones((pr.n, 1))])
        # Entry (row j, output k) of the mask is unknown number offset[k] + rank of j.
        columns = [np.flatnonzero(self.mask[:, k]) for k in range(K)]
        offset = np.cumsum([0] + [c.size for c in columns])
        parts = [XS[:, c] for c in columns]
        H = np.empty((offset[-1], offset[-1]))
        for ell, column in self._hessian_columns():
            for k in range(ell + 1):
                block = parts[k].T @ (column[:, k, None] * parts[ell])
                H[offset[k] : offset[k + 1], offset[ell] : offset[ell + 1]] = block
                H[offset[ell] : offset[ell + 1], offset[k] : offset[k + 1]] = block.T
        H /= pr.n
        solution = _solve_spd(H, np.concatenate([rhs[c, k] for k, c in enumerate(columns)]))
        step = np.zeros_like(rhs)
        for k, c in enumerate(columns):
            step[c, k] = solution[offset[k] : offset[k + 1]]
        return step

    def _hessian_columns(self):
        """(l, s_i H_i e_l) for each output l: the per-sample Hessians' columns, from
        ``hessian_product`` on the unit vectors (one formula per datafit)."""
        unit = np.zeros_like(self.deriv)
        for ell in range(self.problem.K):
            unit[:, ell] = 1.0
            column = self.problem.datafit.hessian_product(self.deriv, self.problem.Y, unit)
            # Weighted (a new array) before unit is reset: the squared loss's product is
            # unit itself, which the reset had zeroed (a zero Hessian, a NaN step).
            column = column * self.problem.sw[:, None]
            unit[:, ell] = 0.0
            yield ell, column

    def hessian_diagonal(self):
        """The diagonal of the restricted Hessian (ones off the mask): Jacobi's
        preconditioner."""
        pr = self.problem
        per_sample = np.empty_like(self.deriv)
        for k, column in self._hessian_columns():
            per_sample[:, k] = column[:, k]
        squares = self.XS.multiply(self.XS) if sp.issparse(self.XS) else np.square(self.XS)
        diag = np.empty_like(self.mask, dtype=np.float64)
        diag[: self.q] = np.asarray(squares.T @ per_sample)
        if pr.fit_intercept:
            diag[self.q] = per_sample.sum(axis=0)
        diag /= pr.n
        return np.where(self.mask & (diag > 0), diag, 1.0)

    def hessian_product(self, V):
        pr = self.problem
        U = pr.datafit.hessian_product(self.deriv, pr.Y, self.predict(V))
        U *= pr.sw[:, None]
        return np.where(self.mask, self.transpose(U), 0.0)


def _conjugate_gradients(matvec, rhs, diagonal, max_iter, rtol):
    """Approximate solution of matvec(x) = rhs (symmetric positive semi-definite), by
    conjugate gradients preconditioned with ``diagonal``, and its relative residual."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = r / diagonal
    d = z.copy()
    rz = float(np.vdot(r, z))
    start = float(np.vdot(r, r))
    stop = rtol**2 * start
    for _ in range(max_iter):
        if float(np.vdot(r, r)) <= stop:
            break
        Hd = matvec(d)
        curv = float(np.vdot(d, Hd))
        if not curv > 0:
            break
        a = rz / curv
        x += a * d
        r -= a * Hd
        z = r / diagonal
        rz_new = float(np.vdot(r, z))
        d = z + (rz_new / rz) * d
        rz = rz_new
    return x, (math.sqrt(float(np.vdot(r, r)) / start) if start > 0 else 0.0)
