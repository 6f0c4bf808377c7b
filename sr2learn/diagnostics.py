"""Convergence diagnostics of SR2: the per-step trace, the Theorem 4 bound and certificates.

One class serves every backend (the NumPy solver and the torch optimizer): both feed
it Python floats, one row per step and one row per checkpoint.
"""

import math

import numpy as np

__all__ = ["ConvergenceDiagnostics"]

HISTORY_KEYS = (
    "iteration",  # global step counter (1-based)
    "epoch",  # epoch the step belongs to (1-based)
    "sigma",  # the regularisation sigma used for the step
    "rho",  # actual / predicted decrease (NaN: rejected as non-finite or xi <= 0)
    "accepted",  # 1.0 if the step was taken
    "step_sq",  # ||s||^2
    "xi",  # model decrease psi(0) - psi(s)
    "batch_objective",  # F_B(w) = f_B(w) + R(w) before the step
    "nnz",  # nonzeros among the penalised coefficients after the step
)

CHECKPOINT_KEYS = (
    "iteration",  # number of steps taken before the checkpoint
    "epoch",
    "objective",  # F(w) on the whole data
    "nnz",
    "sigma",  # sigma in force at the checkpoint
    "batch_size",
    "step_sq",  # the paper's E||s||^2: mean over accepted steps since the last checkpoint
    "step_max",  # max ||s|| over the same steps (the delta of Corollary 1)
    "measure",  # sqrt(L * xi) of a full-gradient step at sigma = L
    "gap",  # duality gap F(w) - D(theta) (convex penalties; NaN otherwise)
    "criterion",  # the scale-free number compared to tol (relative gap or measure)
    "lipschitz",  # L, a Lipschitz constant of grad f (for linear models a bound from the data)
    "sigma_max",  # the largest sigma seen so far
    "variance",  # V = E||grad f(w) - g||^2 for the gradient estimator in use
    "dist",  # measured dist(0, dF(w)) with the full gradient, user coordinates
    "dist_trial",  # measured dist(0, dF(w + s)) for one step s drawn at w
    "trial_step_sq",  # ||s||^2 of that step
    "trial_grad_error_sq",  # ||grad f(w) - g||^2 of that step's gradient estimate g
    "C",  # 3 (L^2 + sigma_max^2), Theorem 4's constant
    "bound",  # C ||s||^2 + 3 ||grad f(w) - g||^2 for that same draw
    "bound_expected",  # C E||s||^2 + 3 V (the Theorem 4 right-hand side)
)
# Computed here from the others, never passed in: one formula for both backends.
_DERIVED_KEYS = ("C", "bound", "bound_expected")
# Single steps (the torch optimizer's) are gathered into an array every this many.
_PENDING_STEPS = 1024


class ConvergenceDiagnostics:
    """What SR2 did and how stationary the returned point is.

    Attributes
    ----------
    history : dict of str to ndarray
        One entry per step, keys ``iteration, epoch, sigma, rho, accepted, step_sq, xi,
        batch_objective, nnz`` (equal lengths).
    checkpoints : dict of str to ndarray
        One entry per checkpoint (by default once per epoch and always at the returned
        point), keys ``iteration, epoch, objective, nnz, sigma, batch_size, step_sq,
        step_max, measure, lipschitz, sigma_max, variance, dist, dist_trial, bound,
        bound_expected``. ``bound`` is the right-hand side of Theorem 4 for the one step
        drawn at the checkpoint, so ``dist_trial**2 <= bound`` holds for every draw;
        ``bound_expected`` uses the mean squared step since the last checkpoint and the
        variance V, as in the theorem.
    converged : bool
        True when the scale-free ``criterion`` met the tolerance.
    tol : float or None
        The tolerance the scale-free ``criterion`` was compared to.
    column_scale : ndarray or None
        For linear models, d_j of the solver's metric: the Theorem 4 quantities are in the
        coordinates d_j * w_j (``dist`` and ``objective`` are in the user's).
    n_restarts : int
        SVRG epochs undone because the objective rose over them (linear models).
    lipschitz_is_estimate : bool
        False for linear models (a bound from the data: exact up to rounding or Lanczos'
        tolerance, or for nonnegative X certified within 0.1% above the smallest), True
        for networks.
    """

    def __init__(self, *, tol=None, variance_reduction=None, lipschitz_is_estimate=False):
        self.tol = tol
        self.variance_reduction = variance_reduction
        self.lipschitz_is_estimate = lipschitz_is_estimate
        self.converged = False
        self.n_sigma_clamps = 0
        self.n_restarts = 0  # SVRG epochs undone because F(w) rose (linear models)
        self.column_scale = None  # d_j of the solver's metric (linear models)
        # The steps as float64 blocks of HISTORY_KEYS rows (72 bytes a step: a tuple of
        # Python floats took about 330, more than a sparse row of X per 32-row batch),
        # and the single steps of the torch optimizer not yet gathered into a block.
        self._blocks = []
        self._pending = []
        self._n_steps = 0
        self._checkpoints = []

    # -- recording (called by the solvers) ------------------------------------------------
    def record_step(self, iteration, epoch, sigma, rho, accepted, step_sq, xi, objective, nnz):
        # One tuple per step keeps the recording cost to a single list append.
        self._pending.append((iteration, epoch, sigma, rho, accepted, step_sq, xi, objective,
                              nnz))  # fmt: skip
        self._n_steps += 1
        if len(self._pending) >= _PENDING_STEPS:
            self._gather()

    def record_steps(self, first_iteration, epoch, sigma, rho, accepted, step_sq, xi, objective,
                     nnz):  # fmt: skip
        """Record a run of consecutive steps from per-step arrays."""
        self.record_trace(first_iteration, epoch,
                          np.column_stack([sigma, rho, accepted, step_sq, xi, objective, nnz]))

    def record_trace(self, first_iteration, epoch, trace):
        """Record the steps of one compiled epoch: ``trace`` has one row per step with
        sigma, rho, accepted, step_sq, xi, batch objective and nnz."""
        self._gather()
        block = np.empty((trace.shape[0], len(HISTORY_KEYS)))
        block[:, 0] = np.arange(first_iteration, first_iteration + trace.shape[0])
        block[:, 1] = epoch
        block[:, 2:] = trace
        self._blocks.append(block)
        self._n_steps += trace.shape[0]

    def _gather(self):
        """Move the pending single steps into a block."""
        if self._pending:
            self._blocks.append(np.asarray(self._pending, dtype=float))
            self._pending = []

    def _steps(self, columns=slice(None)):
        """The given columns (of HISTORY_KEYS) of every step so far, one row per step."""
        self._gather()
        parts = [block[:, columns] for block in self._blocks]
        return np.concatenate(parts) if parts else np.empty((0, len(HISTORY_KEYS)))[:, columns]

    def record_checkpoint(self, **values):
        """Record one checkpoint. Pass every key of ``CHECKPOINT_KEYS`` except ``C``,
        ``bound`` and ``bound_expected``, which are computed here (Theorem 4):
        C = 3 (L^2 + sigma_max^2), bound = C ||s||^2 + 3 ||grad f - g||^2 for the drawn
        step, bound_expected = C E||s||^2 + 3 V."""
        expected = set(CHECKPOINT_KEYS) - set(_DERIVED_KEYS)
        missing, extra = expected - values.keys(), values.keys() - expected
        if missing or extra:
            raise ValueError(f"checkpoint lacks {sorted(missing)}, has unknown {sorted(extra)}")
        C = 3.0 * (values["lipschitz"] ** 2 + values["sigma_max"] ** 2)
        values["C"] = C
        values["bound"] = C * values["trial_step_sq"] + 3.0 * values["trial_grad_error_sq"]
        values["bound_expected"] = C * values["step_sq"] + 3.0 * values["variance"]
        self._checkpoints.append(tuple(float(values[k]) for k in CHECKPOINT_KEYS))

    def extend_steps(self, other):
        """Append the steps of another diagnostics object (the working set's inner solves)."""
        self._gather()
        other._gather()
        self._blocks.extend(other._blocks)
        self._n_steps += other.n_steps
        self.n_sigma_clamps += other.n_sigma_clamps
        self.n_restarts += other.n_restarts

    def trace_array(self):
        """The steps as an array with the columns of a compiled epoch's trace."""
        return self._steps(slice(2, None))

    @property
    def criterion_name(self):
        """What ``criterion`` (the number compared with tol) is at the last checkpoint."""
        last = self.last_checkpoint()
        if last is not None and math.isfinite(last["gap"]):
            return "relative duality gap (F(w) - D(theta)) / F(w)"
        return "relative stationarity measure (to the intercept-only model's)"

    @property
    def n_checkpoints(self):
        return len(self._checkpoints)

    # -- reading ------------------------------------------------------------------------------
    @staticmethod
    def _columns(rows, keys):
        table = np.asarray(rows, dtype=float).reshape(len(rows), len(keys))
        return {k: table[:, j].copy() for j, k in enumerate(keys)}

    @property
    def history(self):
        return {k: self._steps(j) for j, k in enumerate(HISTORY_KEYS)}

    @property
    def checkpoints(self):
        return self._columns(self._checkpoints, CHECKPOINT_KEYS)

    @property
    def n_steps(self):
        return self._n_steps

    def last_checkpoint(self):
        """The most recent checkpoint as a dict of floats (None before the first)."""
        if not self._checkpoints:
            return None
        return dict(zip(CHECKPOINT_KEYS, self._checkpoints[-1], strict=True))

    @property
    def acceptance_rate(self):
        if not self._n_steps:
            return math.nan
        return float(np.mean(self._steps(HISTORY_KEYS.index("accepted"))))

    @property
    def certificate(self):
        """Corollary 1 at the last checkpoint, or None when it does not apply.

        With eps^2 = max(E||s||^2, V) and eps < 1, the returned point is
        (delta, sqrt(C + 3) eps)-stationary in the sense of the paper's Definition 4.2,
        with C = 3(L^2 + sigma_max^2) and delta the longest step since the previous
        checkpoint. Returns a dict with ``delta``, ``epsilon``, ``C`` and
        ``stationarity`` = sqrt(C + 3) eps.
        """
        last = self.last_checkpoint()
        if last is None or not math.isfinite(last["step_sq"]):
            return None
        eps = math.sqrt(max(last["step_sq"], last["variance"]))
        if not eps < 1.0:
            return None
        C = last["C"]
        return {
            "delta": last["step_max"],
            "epsilon": eps,
            "C": C,
            "stationarity": math.sqrt(C + 3.0) * eps,
        }

    def as_frame(self, which="checkpoints"):
        """The checkpoints (or ``which="history"``) as a pandas DataFrame."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is optional
            raise ImportError("as_frame() needs pandas; use .history / .checkpoints") from exc
        if which not in ("checkpoints", "history"):
            raise ValueError(f"which must be 'checkpoints' or 'history', got {which!r}")
        return pd.DataFrame(getattr(self, which))

    def summary(self):
        """A short text: converged or not, measure vs tol, bound vs measured, sparsity."""
        last = self.last_checkpoint()
        if last is None:
            return "SR2 diagnostics: no checkpoint recorded yet."
        status = "converged" if self.converged else "NOT converged"
        lines = [
            f"SR2 {status} after {int(last['epoch'])} epochs, {int(last['iteration'])} steps "
            f"(acceptance rate {self.acceptance_rate:.2f}).",
        ]
        if math.isfinite(last["criterion"]):
            cmp = "" if self.tol is None else (
                f" {'<=' if last['criterion'] <= self.tol else '>'} tol = {self.tol:.3e}")
            lines.append(f"  {self.criterion_name} = {last['criterion']:.3e}{cmp}")
        lines.append(f"  stationarity measure sqrt(L*xi) = {last['measure']:.3e}")
        lines.append(
            f"  measured dist(0, dF(w)) = {last['dist']:.3e} (at coef_, intercept_); objective "
            f"F(w) = {last['objective']:.6e}; nonzeros = {int(last['nnz'])}"
        )
        if self.column_scale is not None:
            scale = np.asarray(self.column_scale)
            lines.append(
                "  Theorem 4 terms below are in the solver's metric: coordinates d_j * w_j, "
                f"d_j in [{scale.min():.3e}, {scale.max():.3e}] (diagnostics_.column_scale)"
            )
        label = "estimated" if self.lipschitz_is_estimate else "bound from the data"
        lines.append(
            f"  Theorem 4 for one step s drawn at w: dist(0, dF(w+s))^2 = "
            f"{last['dist_trial'] ** 2:.3e} <= bound {last['bound']:.3e} "
            f"(L = {last['lipschitz']:.3e} {label}, sigma_max = {last['sigma_max']:.3e})"
        )
        if math.isfinite(last["bound_expected"]):
            lines.append(
                f"  expected form: 3(L^2+sigma_max^2) E||s||^2 + 3V = {last['bound_expected']:.3e} "
                f"(E||s||^2 = {last['step_sq']:.3e}, V = {last['variance']:.3e})"
            )
        cert = self.certificate
        if cert is not None:
            lines.append(
                f"  Corollary 1: the point is ({cert['delta']:.3e}, {cert['stationarity']:.3e})-"
                f"stationary (eps = {cert['epsilon']:.3e}, C = {cert['C']:.3e})."
            )
            if not self.variance_reduction:
                lines.append(
                    "  (without variance reduction V does not shrink, so this certificate stays "
                    "at the noise level of the batch gradient)"
                )
        if self.n_sigma_clamps:
            lines.append(
                f"  sigma was held at sigma_min or sigma_max {self.n_sigma_clamps} times."
            )
        if self.n_restarts:
            lines.append(
                f"  {self.n_restarts} SVRG epoch(s) raised F(w) and were undone, with a higher "
                "sigma floor."
            )
        return "\n".join(lines)

    def __repr__(self):
        last = self.last_checkpoint()
        if last is None:
            return "ConvergenceDiagnostics(empty)"
        return (
            f"ConvergenceDiagnostics(converged={self.converged}, steps={self.n_steps}, "
            f"measure={last['measure']:.3e}, dist={last['dist']:.3e})"
        )

    def plot(self, axes=None):
        """Plot sigma, rho and acceptance, the stationarity measure, and bound vs measured.

        Needs matplotlib (imported here, not at package import). Returns the figure.
        """
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
        else:
            fig = np.asarray(axes).flat[0].figure
        ax = np.asarray(axes).ravel()
        h, c = self.history, self.checkpoints

        ax[0].semilogy(h["iteration"], h["sigma"], lw=1)
        ax[0].set(title="sigma", xlabel="step")

        rho = np.clip(np.nan_to_num(h["rho"], nan=0.0), 1e-6, None)
        ax[1].semilogy(h["iteration"], rho, ".", ms=2, label="rho (clipped at 1e-6)")
        rate = np.cumsum(h["accepted"]) / np.maximum(1, np.arange(1, h["accepted"].size + 1))
        ax[1].semilogy(h["iteration"], rate, lw=1, label="acceptance rate")
        ax[1].set(title="rho and acceptance", xlabel="step")
        ax[1].legend(fontsize=8)

        ax[2].semilogy(c["iteration"], c["criterion"], "o-", ms=3, label="criterion")
        ax[2].semilogy(c["iteration"], c["dist"], "s-", ms=3, label="dist(0, dF(w))")
        if self.tol is not None:
            ax[2].axhline(self.tol, color="k", ls="--", lw=1, label="tol")
        ax[2].set(title="stationarity", xlabel="step")
        ax[2].legend(fontsize=8)

        ax[3].semilogy(c["iteration"], c["bound"], "o-", ms=3, label="Theorem 4 bound (draw)")
        ax[3].semilogy(c["iteration"], c["dist_trial"] ** 2, "s-", ms=3, label="dist(0, dF(w+s))^2")
        ax[3].semilogy(c["iteration"], c["bound_expected"], "^-", ms=3, label="expected bound")
        ax[3].set(title="Theorem 4: bound vs measured", xlabel="step")
        ax[3].legend(fontsize=8)
        return fig
