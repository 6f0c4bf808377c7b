"""The model ``partial_fit`` returns over a stream of blocks: an average of the SR2 iterates,
or the last iterate, whichever did better on the blocks that came next.

One ``partial_fit`` call runs one SVRG epoch on its block, which takes the iterate most of
the way to the minimiser of that block alone. Over a stream of blocks (the blocks of a dask
array, fed by ``dask_ml.wrappers.Incremental``) the last iterate therefore wanders among the
blocks' minimisers and ends next to the last block's: measured with blocks of 1,500 to
3,000 rows, it stayed 0.3% to 10% above the whole data's optimal objective however many
passes were made ("noise-limited"). The mean of the iterates averages that noise out, but
fills in their zeros and keeps the early iterates. So the averaged models are one
proximal-gradient step from the mean iterate along the mean of the blocks' gradients at the
iterates (block b, of n_b rows, weighted by n_b times the rows seen when it arrives, so
that the early iterates fade: polynomial-decay averaging, Shamir and Zhang 2013):

    w_out = prox_{t R}(mean_b w_b - t * mean_b grad f_b(w_b)).

The minimiser w* of the whole data is the fixed point w* = prox_{t R}(w* - t grad f(w*))
for any steps t > 0, and mean_b grad f_b(w_b) is grad f at the mean iterate to first order:
w_out is sparse and, when t is close to the inverse Hessian, next to w*. No diagonal t is
right for every data set, hence two candidates:

- "average": the coordinate steps t_j = 1 / L_j of coordinate descent, L_j = (curvature of
  the loss) * (mean square of column j over the rows seen). Best when the columns are
  nearly uncorrelated (sparse data): a CSR problem with 2,000 features (blocks of 2,000
  rows) kept about 60 nonzeros (the optimum: 63) and came within 0.05% of its objective,
  where the damped steps below, or the global step 1/L of the solver's metric, kept about
  1,000 at 1.4% to 1.6%. With correlated columns they overshoot along the common
  directions (equicorrelation 0.5: 3.6% above the optimum after 3 passes, and growing).
- "damped average": the same steps divided by the top eigenvalue of the first block's
  Gram matrix with unit-norm columns (1 for orthogonal columns, 1 + (p - 1) rho for
  equicorrelated ones): stable (equicorrelation 0.5: 0.07%), too short on sparse data.

and the last iterate itself is the third, best when the epochs, not the noise, limit the
fit (ill-conditioned data: equicorrelation 0.9, where every average lags behind it). Which
one to return is decided on held-out data: each call first evaluates the three candidates
of the previous calls on its block, which none of them has seen, and keeps their running
mean objectives (weighted as above); the model is the candidate with the lowest. The first
call, with nothing held out yet, returns its iterate.
"""

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ._problem import LinearProblem

__all__ = ["StreamAverage"]

CANDIDATES = ("average", "damped average", "last")


@dataclass(frozen=True)
class StreamAverage:
    """Running means over the ``partial_fit`` calls, each call a new object (``add``).

    Attributes
    ----------
    W : ndarray of shape (n_features + fit_intercept, K)
        Weighted mean of the iterates at the end of the calls.
    G : ndarray of the same shape
        Weighted mean of each block's full gradient at the iterate of its call.
    column_sq : ndarray of shape (n_features + fit_intercept,)
        Mean square of each column (and of the intercept's column of ones) over the rows
        seen, sample-weighted.
    damping : float
        Top eigenvalue of the first block's Gram matrix with unit-norm columns (at least 1).
    last : ndarray or None
        The iterate of the last call.
    heldout : dict of str to float
        Per candidate, the weighted mean objective on the blocks it had not seen.
    total_weight, heldout_weight : float
    n_seen : int
        Rows seen.
    """

    W: np.ndarray
    G: np.ndarray
    column_sq: np.ndarray
    damping: float
    last: np.ndarray | None = None
    heldout: dict = field(default_factory=dict)
    total_weight: float = 0.0
    heldout_weight: float = 0.0
    n_seen: int = 0

    @classmethod
    def start(cls, problem):
        """An empty average; its damping is measured on the first block, ``problem``."""
        zero = np.zeros((problem.n_rows, problem.K))
        return cls(zero, zero, np.zeros(problem.n_rows), _damping(problem))

    def add(self, problem, penalty, W):
        """The average with one more block (``problem``) and the iterate ``W`` of its call,
        after scoring the previous candidates on that block."""
        n_seen = self.n_seen + problem.n
        weight = float(problem.n) * n_seen
        heldout, heldout_weight = self.heldout, self.heldout_weight
        if self.last is not None:
            heldout_weight += weight
            scores = {name: _objective(problem, penalty, self._candidate(name, problem, penalty))
                      for name in CANDIDATES}  # fmt: skip
            heldout = {name: _running_mean(heldout.get(name), score, weight / heldout_weight)
                       for name, score in scores.items()}  # fmt: skip
        total = self.total_weight + weight
        share = weight / total
        G = _full_gradient(problem, W)
        return StreamAverage(
            W=_running_mean(self.W, W, share),
            G=_running_mean(self.G, G, share),
            column_sq=_running_mean(self.column_sq, _column_sq(problem), problem.n / n_seen),
            damping=self.damping,
            last=W,
            heldout=heldout,
            total_weight=total,
            heldout_weight=heldout_weight,
            n_seen=n_seen,
        )

    def model(self, problem, penalty):
        """The candidate with the lowest held-out objective (the last iterate when there is
        none yet), as W: coefficients, then the intercept."""
        if not self.heldout:
            return self.last
        return self._candidate(min(self.heldout, key=self.heldout.get), problem, penalty)

    def _candidate(self, name, problem, penalty):
        if name == "last":
            return self.last
        L = problem.datafit.curvature * self.column_sq
        if name == "damped average":
            L = L * self.damping
        # A column no row has touched has mean iterate and gradient 0: any step keeps it 0.
        t = (1.0 / np.where(L > 0, L, 1.0))[:, None]
        out = self.W - t * self.G
        out[: problem.p] = penalty.prox(out[: problem.p], t[: problem.p])
        return out


def _running_mean(mean, value, share):
    """The mean with ``value`` added at weight ``share`` of the new total (None: none yet)."""
    return value if mean is None else mean + share * (value - mean)


def _objective(problem, penalty, W):
    """F(W) on the block: one pass for the predictions."""
    Z = problem.predict(W)
    loss = float(problem.sw @ problem.datafit.loss(Z, problem.Y)) / problem.n
    return loss + penalty.value(W[: problem.p])


def _full_gradient(problem, W):
    """grad f(W) on the block: one pass for the predictions, one for the gradient."""
    Z = problem.predict(W)
    E = problem.datafit.derivative(Z, problem.Y) * problem.sw[:, None]
    return problem.gradient(E)


def _column_sq(problem):
    """Sample-weighted mean square of each column of X~ (the intercept's column of ones
    last) over the block's rows."""
    X, sw = problem.X, problem.sw
    if sp.issparse(X):
        rows = np.repeat(sw, np.diff(X.indptr))
        sq = np.bincount(X.indices, weights=np.square(X.data, dtype=np.float64) * rows,
                         minlength=problem.p)  # fmt: skip
    else:
        sq = np.einsum("ij,ij,i->j", X, X, sw, dtype=np.float64)
    if problem.fit_intercept:
        sq = np.r_[sq, sw.sum()]
    return sq / problem.n


def _damping(problem):
    """Top eigenvalue of the block's Gram matrix X~^T S X~ / n with its columns scaled to
    unit mean square: L of the block in the metric of the column mean squares, over the
    loss's curvature (the exact bound of :meth:`LinearProblem.lipschitz`)."""
    sq = _column_sq(problem)
    sq = np.where(sq > 0, sq, 1.0)  # an empty column: any scale
    metric = (sq[: problem.p], sq[problem.p] if problem.fit_intercept else 1.0)
    scaled = LinearProblem(problem.X, problem.Y, problem.sw, problem.datafit,
                           problem.fit_intercept, metric)  # fmt: skip
    return max(1.0, scaled.lipschitz() / problem.datafit.curvature)
