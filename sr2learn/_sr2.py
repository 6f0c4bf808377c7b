"""The SR2 solver for regularised linear models: a pure function of its inputs.

Variables are stored as ``W`` of shape ``(n_features + fit_intercept, K)`` in float64, in the
user's coordinates: the first ``n_features`` rows are the penalised coefficients, the
optional last row the intercept. Steps are taken in the diagonal metric of
:func:`sr2learn._problem.column_metric`.

:func:`solve` is a short loop of two pieces: :func:`sr2learn._checkpoint.checkpoint`
(full-data quantities: the objective, the gradient, the stopping criterion and the
diagnostics' Theorem 4 terms) and the compiled epoch of :mod:`sr2learn._engine`.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from ._certificate import NewtonCertificate
from ._checkpoint import checkpoint
from ._engine import EpochPlan, EpochState, Reference, RuleParams, sr2_epoch

__all__ = ["SolverState", "solve", "svrg_sigma_floor"]

VARIANCE_REDUCTIONS = ("svrg", "growing_batch")
# Norm test of the growing batch: grow when the in-batch variance of the mean gradient
# exceeds NORM_TEST_THETA^2 times ||sigma D s||^2, in more than half of an epoch's steps.
NORM_TEST_THETA = 0.9


@dataclass
class SolverState:
    """What a solver call carries to the next one (warm start, partial_fit)."""

    W: np.ndarray
    sigma: float
    batch_size: int
    n_steps: int = 0
    n_epochs: int = 0


def svrg_sigma_floor(problem, b):
    """L / (2 b), in the metric: rho is measured on the minibatch alone, which cannot see
    curvature the batch lacks, so steps are kept within 2 b / L (the full-gradient
    stability limit 2 / L for b = 1, relaxed as batches see more). This is not always
    enough: with very uneven rows (one row 118 times heavier than the mean, seen on a
    working set's subproblem) a batch without the heavy rows looks linear along the
    coordinates it does not touch, sigma falls below the SVRG estimator's stability limit
    and the iterates drift away. :func:`solve` then undoes the epoch (F rose over it) and
    raises the floor. A floor at that limit from the start (about L_max / b) made
    well-conditioned fits several times slower and held nonconvex penalties at zero.
    With the full batch (deterministic R2) there is no floor.
    """
    if b >= problem.n:
        return 0.0  # full batch: the ratio sees the whole objective, no floor is needed
    return problem.lipschitz() / (2.0 * max(1, b))


def with_floor(rule, floor):
    """``rule`` with sigma_min raised to ``floor`` (and sigma_max at least as high)."""
    if floor <= rule.sigma_min or not math.isfinite(floor):
        return rule
    return replace(rule, sigma_min=floor, sigma_max=max(rule.sigma_max, floor))


# -- the loop ----------------------------------------------------------------------------
@dataclass
class _Settings:
    max_epochs: int
    tol: float | None
    variance_reduction: str | None
    checkpoint_every: int = 1
    variance_estimate: str = "exact"
    lazy: bool = True
    light: bool = False
    verbose: int = 0
    certificate: NewtonCertificate | None = None  # None: no Newton gap (see checkpoint)


class _StepLog:
    """The accepted steps since the last checkpoint and the largest sigma so far."""

    def __init__(self, sigma):
        self.sigma_max = sigma
        self.accepted = []

    def add(self, trace):
        self.sigma_max = max(self.sigma_max, float(trace[:, 0].max(initial=0.0)))
        self.accepted.extend(trace[trace[:, 2] > 0, 3].tolist())

    def take(self):
        steps, self.accepted = self.accepted, []
        if not steps:
            return math.nan, math.nan
        return float(np.mean(steps)), math.sqrt(max(steps))


def _rule_params(rule):
    # The ratio's rounding guard uses float64's epsilon: the iterate, the predictions and
    # every sum are float64 whatever the dtype of X.
    eps = float(np.finfo(np.float64).eps)
    return RuleParams(rule.eta1, rule.eta2, rule.gamma1, rule.gamma3, rule.sigma_min,
                      rule.sigma_max, eps)  # fmt: skip


def _block_edges(n, b, shift):
    """0, shift, shift + b, shift + 2b, ... below n, then n: the edges of the blocks of b
    rows, the first one shorter by ``b - shift`` (0 once when shift is 0)."""
    first = int(shift > 0)
    starts = np.arange(shift, n, b, dtype=np.int64)
    edges = np.zeros(first + starts.size + 1, dtype=np.int64)
    edges[first:-1] = starts
    edges[-1] = n
    return edges


def _epoch(problem, penalty, W, R_w, sigma, b, ref, rows, rng, settings, rule):
    """One compiled epoch: random reshuffling of blocks of the rows in the order ``rows``
    (a random shift of the block edges and a random block order). Returns (W, R, sigma,
    trace, clamps, norm test failures, norm tests)."""
    n = problem.n
    shift = int(rng.integers(b)) if b < n else 0
    edges = _block_edges(n, b, shift)
    order = rng.permutation(edges.size - 1).astype(np.int64)
    theta = NORM_TEST_THETA if settings.variance_reduction == "growing_batch" else 0.0
    lazy = settings.lazy and penalty.lazy_exact
    plan = EpochPlan(rows, edges, order, lazy, theta)
    state = EpochState(W, np.array([sigma, R_w]))
    trace = np.empty((order.size, 7))
    if ref is None:
        ref = Reference(False, np.zeros((1, problem.K)), np.zeros((problem.n_rows, problem.K)))
    clamps, _, failed, tested = sr2_epoch(problem.data, problem.datafit.kernel(),
                                          penalty.kernel(), _rule_params(rule),
                                          state, ref, plan, trace)  # fmt: skip
    return W, float(state.scalars[1]), float(state.scalars[0]), trace, clamps, failed, tested


def solve(problem, penalty, state, rule, *, max_epochs, tol, variance_reduction, rng,
          diagnostics, checkpoint_every=1, variance_estimate="exact", verbose=0, lazy=True,
          start=None, light=False, stability_floor=True, min_epochs=0,
          return_checkpoint=False, certificate=None):  # fmt: skip
    """Run SR2 for at most ``max_epochs`` epochs from ``state``; returns a new state.

    Stops at a checkpoint whose scale-free criterion (see :func:`checkpoint`) is at most
    ``tol`` (``tol=None``: never); a start that already meets it takes no step. Checkpoints
    are recorded in ``diagnostics`` every ``checkpoint_every`` epochs and at the returned
    point. ``start`` (a :class:`~sr2learn._checkpoint.Checkpoint` of this problem at
    ``state.W``, e.g. the working set's full-problem one restricted to the set) replaces
    the first checkpoint: its criterion is not checked, at least one epoch is run, and
    under SVRG it is the first reference; ``light=True`` records
    no checkpoint (the working set's inner solves, whose full-problem checkpoints are the
    ones reported); ``stability_floor`` raises sigma_min to :func:`svrg_sigma_floor`
    under SVRG; at least ``min_epochs`` epochs are run (a fresh fit runs one: for a
    nonconvex penalty w = 0 is often stationary at the criterion's step 1/L, yet SR2's own
    first steps, longer, leave it). ``return_checkpoint=True`` returns (state, the last
    checkpoint, at the returned W: a regularisation path starts its next solve there).
    ``certificate``: the :class:`~sr2learn._certificate.NewtonCertificate` deciding when
    the checkpoints try the Newton gap (None: a new one; a path shares one).
    ``state`` and ``diagnostics``' past records are not modified; the new checkpoints and
    steps are appended to ``diagnostics``.
    """
    s = _Settings(max_epochs, tol, variance_reduction, checkpoint_every, variance_estimate,
                  lazy, light, verbose, certificate or NewtonCertificate())  # fmt: skip
    # The batches are blocks of one random order of the rows, drawn through this
    # permutation: X is never reordered (a shuffled copy would double the fit's memory).
    rows = rng.permutation(problem.n).astype(np.int64, copy=False) if max_epochs > 0 else None
    W = np.array(state.W, dtype=np.float64)
    if not math.isfinite(penalty.value(W[: problem.p])):
        # A start outside an indicator's domain (e.g. L0Ball): project it first.
        W[: problem.p] = penalty.prox(W[: problem.p], 1.0)
    sigma, b = state.sigma, state.batch_size
    svrg = variance_reduction == "svrg"
    if svrg and stability_floor and max_epochs > 0:
        rule = with_floor(rule, svrg_sigma_floor(problem, b))
        sigma = max(sigma, rule.sigma_min)
    n_steps, n_epochs = state.n_steps, state.n_epochs
    diag_rng = np.random.default_rng(rng.integers(2**32))
    ref = None
    # The last checkpoint the iterates passed (the SVRG safeguard's anchor).
    prev = start
    if start is not None and svrg:
        ref = Reference(True, np.ascontiguousarray(start.D), start.G)
    log = _StepLog(sigma)
    converged = False
    epochs = 0
    while True:
        due = _checkpoint_due(epochs, s, diagnostics) and not (epochs == 0 and start is not None)
        if due or (svrg and epochs > 0):
            full = due and not light
            ck = _checkpoint(problem, penalty, W, sigma, b, ref, s, diag_rng, full)
            if svrg and prev is not None and _went_up(ck.objective, prev.objective):
                # An unstable SVRG epoch (steps too long for the estimator's drift, which
                # the batch ratio cannot see): back to where it started, longer sigma floor.
                W, ck = prev.W.copy(), prev
                rule = with_floor(rule, _RESTART_FACTOR * rule.sigma_min)
                sigma = rule.sigma_min
                diagnostics.n_restarts += 1
                if full:
                    ck = _checkpoint(problem, penalty, W, sigma, b, ref, s, diag_rng, True)
            prev = ck
            W = ck.W
            converged = tol is not None and ck.criterion <= tol and epochs >= min_epochs
            if converged and not full and not light:  # the returned point is always recorded
                ck, full = _checkpoint(problem, penalty, W, sigma, b, ref, s, diag_rng, True), True
            if full:
                _record(diagnostics, ck, sigma, b, log, n_steps, n_epochs, s.verbose)
            if svrg:
                ref = Reference(True, ck.D, ck.G)
        if converged or epochs >= max_epochs:
            break
        if svrg and ref is None:
            ck = prev = _checkpoint(problem, penalty, W, sigma, b, ref, s, diag_rng, False)
            W, ref = ck.W, Reference(True, ck.D, ck.G)
        R_w = penalty.value(W[: problem.p])
        W, R_w, sigma, trace, clamps, failed, tested = _epoch(
            problem, penalty, W.copy(), R_w, sigma, b, ref, rows, rng, s, rule)  # fmt: skip
        log.add(trace)
        diagnostics.n_sigma_clamps += clamps
        diagnostics.record_trace(n_steps + 1, n_epochs + 1, trace)
        n_steps += trace.shape[0]
        n_epochs += 1
        epochs += 1
        if tested and failed > tested / 2 and b < problem.n:
            b = min(problem.n, 2 * b)
    if not light:
        diagnostics.converged = bool(converged)
    new = SolverState(W, sigma, b, n_steps, n_epochs)
    return (new, prev) if return_checkpoint else new  # the loop ends on a checkpoint at W


def _checkpoint_due(epochs, s, diagnostics):
    """At the end, every ``checkpoint_every`` epochs, and at the start when the criterion
    must be checked or nothing has been recorded yet (``partial_fit`` calls after the
    first skip it)."""
    if epochs == s.max_epochs:
        return True
    if epochs == 0:
        return s.tol is not None or (not s.light and diagnostics.n_checkpoints == 0)
    return epochs % s.checkpoint_every == 0


# An SVRG epoch that raised F(w) is undone and the sigma floor multiplied by this.
_RESTART_FACTOR = 4.0


def _went_up(new, old):
    """F rose over an epoch by more than 1e-6 relative (or became non-finite): a rise
    well above the noise of a converging SVRG epoch, which near the optimum is far
    smaller, and well below the percent-level rises of an unstable one."""
    return not new <= old + 1e-6 * abs(old)


def _checkpoint(problem, penalty, W, sigma, b, ref, s, rng, full):
    """A checkpoint at W, with the diagnostics' Theorem 4 terms when ``full``."""
    diagnostic = None
    if full:
        diagnostic = dict(sigma=sigma, batch_size=b, ref=ref, rng=rng,
                          variance_estimate=s.variance_estimate)  # fmt: skip
    return checkpoint(problem, penalty, W, diagnostic=diagnostic, tol=s.tol,
                      certificate=s.certificate)  # fmt: skip


def _record(diagnostics, ck, sigma, b, log, n_steps, n_epochs, verbose):
    step_sq, step_max = log.take()
    diagnostics.record_checkpoint(iteration=n_steps, epoch=n_epochs, sigma=sigma,
                                  batch_size=b, step_sq=step_sq, step_max=step_max,
                                  sigma_max=max(log.sigma_max, sigma), **ck.record)  # fmt: skip
    if verbose:
        print(f"[SR2] epoch {n_epochs:4d}  F = {ck.objective:.8e}  criterion = "
              f"{ck.criterion:.3e}  sigma = {sigma:.3e}  nnz = {ck.record['nnz']}")  # fmt: skip

