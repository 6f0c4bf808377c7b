"""Continuation start of an lp fit on dense data with more features than samples.

Why. For a nonconvex penalty the fit's result depends on its path. On dense p >> n data
a first proximal-gradient step from zero lets every feature of the working set whose
gradient is over lp's threshold in at once (64 of them on bench_breadth.py's 200 x 5000
problem: 200 rows can nearly be fitted by them), and the fit then prunes them down to a
local minimum that is less sparse and higher than coordinate descent's, whose one-at-a-
time updates and growing working set (skglm) let a feature enter only when the ones
already in do not explain its gradient. Measured (benchmarks/study_lp.py, alpha =
alpha_max / 10, l1/2 and l2/3, dense 200 x 5000, 100 x 2000 and 400 x 3000, seeds 0-2
where the stages were chosen, seeds 3-5 held out): SR2 from zero ended more than 0.1%
above skglm's objective on 9 of 18 and 12 of 18 problems (up to +14%, median +2.2% on
the held-out seeds); from the continuation on 0 of 18 and 5 of 18 (up to +2.5%, median
-0.9%), with fewer nonzeros. More stages (6, 8), fewer (2, 3), looser stages (100 tol)
or longer steps in the stages (sigma reset to the coordinate curvature) were all worse:
for a nonconvex penalty the gradual entry of the features is what finds the lower
minimum. With SR2's default eta2 = 0.99 the stages took about two thirds of the fit's
epochs (2.2 times skglm's time, median); they run with eta2 = 0.95 (see STAGE_ETA2):
1.13 times, seeds 0-5 over +0.1%: 5 of 36, the median 3.3% below skglm's objective.

What. The fit first solves, from zero, a short geometric sequence of larger alphas, from
where the first coefficient leaves zero down to the fit's alpha, each one a decade above
``tol`` (it only chooses the support) and warm-started from the previous one, with the
fit's own solver; the fit at its alpha starts from there. Sparse data are left out: on
the text-like problems the continuation did not help and moved the benchmark's l1/2 fit
6% higher; measured again with the polish's entry search and the working set's Newton
steps (study_lp.py, three text-like shapes, seeds 0-2): 0 of 18 fits over skglm + 0.1%
with or without it, the median objective the same (-0.8%), in a median 2.1 times
skglm's CPU time against 0.9.

Without a working set (p < 2,000), dense 100 x 500 and 200 x 1000, seeds 0-2:
2 of 12 fits over skglm + 0.1% against 7 of 12 (worst +0.4% against +8.4%), in a median
11 times skglm's time against 25 times (with eta2 = 0.99 in the stages it had doubled
the time and 2 of 12 fits ran out of max_iter).
"""

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from ._checkpoint import checkpoint
from .diagnostics import ConvergenceDiagnostics

__all__ = ["continuation", "use_continuation"]

# The alphas before the fit's: STAGES of a geometric sequence starting FIRST_FRACTION of
# the way below where the first coefficient leaves zero (measured on seeds 0-2: 2 or 3 stages,
# or a stage tol of 100 tol, left 1 to 4 of the 18 problems above skglm + 0.1%; 6 and 8
# stages, on seeds 0-5, 10 and 12 of 36 against 5 of 36 with 4).
STAGES = 4
FIRST_FRACTION = 1.0 / 1.5
STAGE_TOL_FACTOR = 10.0
# The stages' eta2 (the fit's own is kept where lower). SR2 lowers sigma only after a step
# with rho >= eta2; at the default 0.99 sigma settles near 50 times the curvature along
# the steps (rho stayed at 0.97-0.99 for hundreds of full-batch steps on the dense
# problems, 1 to 12 features in), and the stages took two thirds of the fit's epochs.
# Seeds 0-5 of the study, eta2 0.5 / 0.9 / 0.95 / 0.99: fit time 0.97 / 1.02 / 1.13 /
# 2.2 times skglm's (median); 5 / 4 / 5 / 5 of 36 problems above skglm + 0.1%; median
# objective 2.1 / 2.2 / 3.3 / 1.9% below skglm's. Which local minimum a fit reaches
# swings with such choices (bench_breadth.py's dense l1/2: -2.2%, +2.8%, -2.3%, -3.5%).
STAGE_ETA2 = 0.95


def use_continuation(problem, penalty):
    """Whether a fresh fit of ``problem`` starts with the continuation."""
    return (penalty.polish and problem.columns is None and not sp.issparse(problem.X)
            and problem.p > problem.n)  # fmt: skip


def entry_alpha(problem, penalty, W):
    """The alpha above which no zero coefficient of ``W`` moves under the criterion's
    proximal-gradient step (1/L in the metric)."""
    p = problem.p
    G = checkpoint(problem, penalty, W).G[:p]
    t = problem.inv_metric[:p, None] / problem.lipschitz()
    alphas = penalty.zero_alpha(-G * t, np.broadcast_to(t, G.shape))
    return float(np.max(np.where(W[:p] == 0, alphas, 0.0), initial=0.0))


def continuation(problem, penalty, state, rule, *, resolve, tol):
    """Solve the continuation's alphas from ``state``; returns the state the fit at
    ``penalty``'s alpha starts from and the stages' diagnostics (their steps).

    ``resolve(state, penalty, tol, diagnostics, rule, light=True)`` runs the fit's solver
    without the diagnostics' Theorem 4 terms; the stages use ``rule`` with eta2 (and eta1)
    at most STAGE_ETA2.
    """
    stages = []
    first = FIRST_FRACTION * entry_alpha(problem, penalty, state.W)
    if not first > penalty.alpha:
        return state, stages
    params = penalty._params()
    stage_rule = replace(rule, eta1=min(rule.eta1, STAGE_ETA2), eta2=min(rule.eta2, STAGE_ETA2))
    for alpha in np.geomspace(first, penalty.alpha, STAGES + 1)[:-1]:
        stage_tol = None if tol is None else STAGE_TOL_FACTOR * tol
        inner = ConvergenceDiagnostics(tol=stage_tol)
        # Light: a stage's checkpoints are of another alpha; only its steps are kept.
        state = resolve(state, type(penalty)(**dict(params, alpha=float(alpha))), stage_tol,
                        inner, stage_rule, light=True)  # fmt: skip
        stages.append(inner)
    return state, stages
