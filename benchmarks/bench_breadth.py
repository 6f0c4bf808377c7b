"""Breadth: SR2 against the best peer for the same objective, on seven kinds of problem.

Every objective is computed here from ``coef_`` and ``intercept_``, by one function per
problem type: the mean loss plus the penalty, which is what sr2learn's estimators minimise.

- squared loss: 1/(2n) ||y - Xw - b||^2 + alpha ||w||_1. This is the objective of
  sklearn's and skglm's ``Lasso(alpha)``.
- binary log-loss: mean log(1 + exp(-(2y - 1)(x.w + b))) + alpha sum_j |w_j|^q, with q in
  {1, 1/2, 2/3}. sklearn: ``LogisticRegression(l1_ratio=1, C=1/(n alpha))``. skglm: the
  ``Logistic`` datafit (labels recoded to {-1, 1}, mean over samples, intercept fitted) with
  ``L1``, ``L0_5`` or ``L2_3(alpha)``, which are alpha sum |w_j|^q as in sr2learn.
- multinomial: mean softmax cross-entropy + alpha sum |W|, summed over every class's
  coefficients, with unpenalised intercepts. sklearn: ``LogisticRegression(l1_ratio=1,
  C=1/(n alpha), solver="saga")``, which is natively multinomial.

Relative suboptimality is (F - F*) / F*, where F* is the lowest objective found by any run of
any solver. That includes long, tight reference runs (tol 1e-10 or tighter, up to 5 x --cap
seconds each; SR2 and saga run warm-started in chunks, so the budget ends them without
losing the iterate), which are cached on disk (--cache, one folder per size setting). Each
solver run happens in a forked process that is killed at --cap seconds (60 by default, 10
with --quick) and reported as "cap". A run that takes under a second is timed as the best
of three. Compiled code (numba: the SR2 kernel, skglm) is loaded before timing. "n.r." means
the target was not reached within the budgets tried.

Sections (select with --only):

mnist    Multinomial l1 logistic regression on MNIST-5k (5000 x 784, pixels in [0, 1],
         10 classes), alpha 1e-3 and 1e-4. The time and suboptimality of the default
         ``SR2Classifier(penalty="l1", alpha)`` fit, against saga's time to 1e-3. Saga is
         run from zero each time, with max_iter doubled and tol 0.
lp       l1/2 and l2/3 binary logistic regression, alpha = alpha_max / 10 (the alpha_max
         that sr2learn computes for that penalty), on a sparse text-like 5000 x 20000
         problem and a dense 200 x 5000 one with 10 informative features. SR2 at its
         defaults against skglm's ``GeneralizedLinearEstimator(Logistic(), L0_5 / L2_3,
         AndersonCD(ws_strategy="fixpoint"))``. skglm's default "subdiff" strategy counts
         every zero coordinate of an lp penalty as optimal. Both fit an intercept. The
         problems are nonconvex, so each solver finds a local minimum. Reported: objective
         ratio - 1, time ratio, nonzeros.
l0ball   Support recovery with ``SR2Regressor(penalty=L0Ball(k))`` against
         ``abess.LinearRegression(support_size=k)``, on the problem of bench_l0_support.py
         (n 500, p 1000, k 10, SNR 10, 5 seeds). Reported: F1 of the support and time.
float32  SR2Classifier (defaults) on float32 and float64 copies of Adult, a dense
         20,000 x 100 problem and MNIST-5k (multinomial). Reported: the time ratio,
         max |coef32 - coef64|, the objective gap and whether each fit converged.
cv       SR2ClassifierCV and SR2RegressorCV against LogisticRegressionCV(saga, l1_ratios
         [1]) and LassoCV, on the same alpha grid and the same fold splitter. Data: Adult
         (with its test file held out), a 3-class synthetic 2000 x 20 problem and a
         synthetic 2000 x 100 regression. Reported: times, chosen alpha, and the held-out
         score (accuracy or R^2) of each refitted model.
lasso    Lasso on a correlated 10,000 x 500 design (bench_lasso.py) at alpha_max / 10 and
         alpha_max / 100. Time to 1e-6 suboptimality for SR2Regressor, sklearn's
         coordinate descent Lasso and skglm's Lasso, each from a sweep over tol.
text     Binary l1 logistic regression on text-like 20,000 x 50,000 data
         (bench_sparse_highdim.py), alpha 1e-3 and 1e-4. The time and suboptimality of
         SR2Classifier's default fit, against skglm's SparseLogisticRegression time to
         1e-3, from a sweep over tol.

--quick runs every section on small sizes, to check in minutes that the script runs end to
end. Without --quick the output is also saved to docs/benchmark_results/breadth.txt.

Data: ``get-data.sh DIR`` and ``SR2LEARN_DATA=DIR`` (Adult, MNIST-5k).

Usage: python benchmarks/bench_breadth.py [--only mnist,lp,l0ball,float32,cv,lasso,text]
       [--quick] [--cap 60] [--cache DIR] [--blas-threads 1]
"""

import argparse
import functools
import inspect
import multiprocessing as mp
import os
import platform
import sys
import time
import traceback
import warnings

import numpy as np
from _common import data_home, dense_logistic, sparse_text_like, timed_fit
from bench_l0_support import f1
from bench_l0_support import problem as l0_problem
from bench_lasso import correlated_regression
from scipy.special import log_expit, logsumexp
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, make_classification, make_regression
from sklearn.linear_model import Lasso, LassoCV, LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

import sr2learn
from sr2learn import (
    L0Ball,
    SR2Classifier,
    SR2ClassifierCV,
    SR2Regressor,
    SR2RegressorCV,
    alpha_max,
)
from sr2learn.datasets import load_adult, load_mnist5k

SECTIONS = ("mnist", "lp", "l0ball", "float32", "cv", "lasso", "text")
RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmark_results"
)
DOUBLING = [2**i for i in range(13)]  # 1 to 4096 epochs
TOLS = [10.0**-i for i in range(2, 11)]  # 1e-2 to 1e-10
LINES = []  # everything printed, for the saved copy
SUMMARY = []  # (section, problem, SR2, peer, ratio) rows of the final table

warnings.filterwarnings("ignore", message=".*is faster on contiguous arrays.*")  # numba


def emit(text=""):
    print(text, flush=True)
    LINES.append(text)


# -- objectives: mean loss + penalty, computed from coef_ and intercept_ ----------------------
def lasso_objective(X, y, coef, intercept, alpha):
    r = y - X @ np.ravel(coef) - float(np.ravel(intercept)[0])
    return 0.5 * np.mean(r**2) + alpha * np.abs(coef).sum()


def logistic_objective(X, y, coef, intercept, alpha, q=1.0):
    """y in {0, 1}; the penalty is alpha sum |w_j|^q."""
    z = X @ np.ravel(coef).astype(np.float64) + float(np.ravel(intercept)[0])
    return -np.mean(log_expit((2.0 * y - 1.0) * z)) + alpha * np.sum(np.abs(coef) ** q)


def multinomial_objective(X, codes, coef, intercept, alpha):
    """codes: labels 0..K-1 (the rows of coef, as in ``classes_``)."""
    W = np.asarray(coef, dtype=np.float64)
    Z = np.asarray(X @ W.T) + np.asarray(intercept, dtype=np.float64)
    loss = logsumexp(Z, axis=1) - Z[np.arange(Z.shape[0]), codes]
    return np.mean(loss) + alpha * np.abs(W).sum()


# -- running: fits in a forked child, capped in time -------------------------------------------
def _child(fn, send):
    try:
        send.send(("ok", fn()))
    except BaseException:  # noqa: BLE001 - report any failure to the parent
        send.send(("error", traceback.format_exc()))
    finally:
        send.close()


def capped(fn, cap):
    """``fn()`` (a picklable result) run in a forked process, or None when it takes more than
    ``cap`` seconds (the process is then killed)."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, send))
    proc.start()
    send.close()
    try:
        if not recv.poll(cap):
            return None
        try:
            status, value = recv.recv()
        except EOFError:
            status, value = "error", f"the fit process died (exit code {proc.exitcode})"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
    if status == "error":
        raise RuntimeError(value)
    return value


def fit_run(make, X, y, extra=None, repeat_below=1.0):
    """A function that fits ``make()`` and returns its time (the best of three when under
    ``repeat_below`` seconds), coef_, intercept_, n_iter_, converged (SR2 only) and
    ``extra(est)``."""

    def run():
        est = make()
        seconds = timed_fit(est, X, y)
        if seconds < repeat_below:
            for _ in range(2):
                again = make()
                t = timed_fit(again, X, y)
                if t < seconds:
                    seconds, est = t, again
        n_iter = getattr(est, "n_iter_", None)
        diag = getattr(est, "diagnostics_", None)
        out = {
            "time": seconds,
            "coef": np.array(est.coef_, dtype=np.float64),
            "intercept": np.atleast_1d(np.array(est.intercept_, dtype=np.float64)),
            "n_iter": None if n_iter is None else int(np.max(n_iter)),
            "converged": None if diag is None else bool(diag.converged),
        }
        out["nnz"] = int(np.count_nonzero(out["coef"]))
        if extra is not None:
            out.update(extra(est))
        return out

    return run


def warm_up(make, X, y):
    """Fit once on a few rows, in this process, so that compiled code (numba's on-disk cache
    or a first compilation) is loaded before the timed runs, which inherit it."""
    rows = min(200, X.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            make().fit(X[:rows], y[:rows])
        except ValueError:  # e.g. a single class in the first rows
            pass


def warm_up_path(make, X, y):
    """Fit ``make()`` at max_iter=1 on all of X: compiled code that only a fit of this size
    reaches (a CV fold that compresses its rows or solves on its moments; 200 rows do
    not) is loaded before the timed runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make().set_params(max_iter=1).fit(X, y)


def sweep(settings, make, X, y, objective, cap, reached=None):
    """Fit ``make(s)`` for each setting in turn; stop after the first run that is capped or,
    when ``reached`` is given, after the first whose objective satisfies it."""
    rows = []
    for s in settings:
        res = capped(fit_run(functools.partial(make, s), X, y), cap)
        if res is None:
            rows.append({"setting": s, "time": None})
            break
        res["setting"] = s
        res["objective"] = objective(res["coef"], res["intercept"])
        rows.append(res)
        if reached is not None and reached(res["objective"]):
            break
    return rows


def rel(objective, best):
    return (objective - best) / abs(best)


def first_reaching(rows, best, level):
    """The first row whose suboptimality is at most ``level``; else "cap" when the last run
    was capped, else None (not reached)."""
    for r in rows:
        if r["time"] is not None and rel(r["objective"], best) <= level:
            return r
    return "cap" if rows and rows[-1]["time"] is None else None


def default_fit_cells(sr2, best):
    """Table cells of a default SR2 fit: time, epochs, suboptimality, converged, nnz."""
    if sr2 is None:
        return ["cap"] * 5
    sub = max(rel(sr2["objective"], best), 0)
    return [f"{sr2['time']:.3g}", str(sr2["n_iter"]), f"{sub:.1e}", str(sr2["converged"]),
            str(sr2["nnz"])]  # fmt: skip


def fmt_t(x):
    if x is None:
        return "cap"
    return "n.r." if isinstance(x, float) and np.isnan(x) else f"{x:.3g}"


def fmt_s(x):
    """A time with its unit ("cap" and "n.r." without)."""
    text = fmt_t(x)
    return text if text in ("cap", "n.r.") else text + " s"


def row_time(r):
    if r == "cap":
        return None
    return float("nan") if r is None else r["time"]


def ratio(a, b):
    if a is None or b is None or np.isnan(a) or np.isnan(b) or b <= 0:
        return "-"
    return f"{a / b:.3g}"


def best_objective(*groups):
    values = []
    for g in groups:
        for r in g if isinstance(g, list) else [g]:
            if isinstance(r, dict) and r.get("objective") is not None:
                values.append(r["objective"])
            elif isinstance(r, float):
                values.append(r)
    return min(values)


def reference(cache, key, objective, candidates):
    """The lowest objective among the reference runs ``candidates`` (name -> function
    returning a result with coef and intercept, or None), computed once and cached in
    ``cache/key.npz``. The objective is recomputed from the cached coefficients."""
    path = os.path.join(cache, key + ".npz")
    if os.path.exists(path):
        data = np.load(path)
        value = objective(data["coef"], data["intercept"])
        emit(f"  reference {key}: {value:.10g} ({data['solver']}, cached in {path})")
        return value
    best = None
    for name, fn in candidates.items():
        start = time.perf_counter()
        res = fn()
        if res is None:
            emit(f"  reference {key}: {name} capped")
            continue
        value = objective(res["coef"], res["intercept"])
        emit(f"  reference {key}: {name} {value:.10g} ({time.perf_counter() - start:.1f} s)")
        if best is None or value < best[0]:
            best = (value, name, res)
    if best is None:
        return float("inf")
    os.makedirs(cache, exist_ok=True)
    np.savez(path, coef=best[2]["coef"], intercept=best[2]["intercept"], solver=best[1])
    return best[0]


def ref_budget(args):
    """Seconds allowed to each reference run."""
    return args.cap / 2 if args.quick else 5 * args.cap


def chunked_ref(make, X, y, budget, done):
    """A reference run that survives the budget: ``make()`` (warm_start=True, a few epochs
    per fit) refitted, each fit continuing from the last, until ``done(est)`` or the budget is
    spent; the last iterate."""

    def run():
        est = make()
        start = time.perf_counter()
        while True:
            timed_fit(est, X, y)
            if done(est) or time.perf_counter() - start > budget:
                break
        return {"coef": np.array(est.coef_), "intercept": np.atleast_1d(est.intercept_)}

    return run


def saga_ref(X, y, alpha, budget):
    """saga with tol 1e-10 in chunks of 20 epochs, until it stops on tol."""
    make = functools.partial(
        LogisticRegression,
        l1_ratio=1.0,
        C=1.0 / (X.shape[0] * alpha),
        solver="saga",
        tol=1e-10,
        max_iter=20,
        warm_start=True,
    )
    return chunked_ref(make, X, y, budget, lambda est: int(np.max(est.n_iter_)) < 20)


def sr2_ref(cls, X, y, alpha, budget):
    """SR2 with tol 1e-10 in chunks of 50 epochs, until it converges."""
    make = functools.partial(
        cls, alpha=alpha, tol=1e-10, max_iter=50, warm_start=True, random_state=0
    )
    return chunked_ref(make, X, y, budget, lambda est: est.diagnostics_.converged)


def capped_ref(make, X, y, budget):
    """A reference run: ``make()`` fitted once, killed at ``budget`` seconds."""
    return lambda: capped(fit_run(make, X, y, repeat_below=0.0), budget)


def with_supported(cls, **kwargs):
    """``cls(**kwargs)`` without the keywords this scikit-learn version does not know."""
    known = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in known})


# -- 1. multinomial l1 logistic on MNIST-5k -----------------------------------------------------
def section_mnist(args):
    emit("\n## 1. Multinomial l1 logistic regression, MNIST-5k: default SR2 vs saga to 1e-3\n")
    try:
        X, y = load_mnist5k(data_home())
    except FileNotFoundError as exc:
        emit(f"(skipped: {exc})")
        return
    if args.quick:
        X, y = X[:500], y[:500]
    n = X.shape[0]
    codes = np.unique(y, return_inverse=True)[1]
    warm_up(lambda: SR2Classifier(max_iter=1, random_state=0), X, y)
    table = [
        "| alpha | SR2 time (s) | SR2 epochs | SR2 rel. subopt. | converged | SR2 nnz | "
        "saga time to 1e-3 (s) | saga epochs | saga nnz | time ratio SR2/saga |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for alpha in (1e-3, 1e-4):
        obj = functools.partial(multinomial_objective, X, codes, alpha=alpha)
        budget = ref_budget(args)
        ref = reference(
            args.cache,
            f"mnist_{n}x{X.shape[1]}_{alpha:g}",
            obj,
            {
                "saga tol 1e-10": saga_ref(X, y, alpha, budget),
                "SR2 tol 1e-10": sr2_ref(SR2Classifier, X, y, alpha, budget),
            },
        )
        sr2 = capped(
            fit_run(lambda a=alpha: SR2Classifier(penalty="l1", alpha=a, random_state=0), X, y),
            args.cap,
        )
        if sr2 is not None:
            sr2["objective"] = obj(sr2["coef"], sr2["intercept"])
            ref = min(ref, sr2["objective"])

        def make_saga(k, a=alpha):
            return LogisticRegression(
                l1_ratio=1.0, C=1.0 / (n * a), solver="saga", max_iter=k, tol=0.0
            )

        rows = sweep(
            DOUBLING, make_saga, X, y, obj, args.cap, reached=lambda o, r=ref: rel(o, r) <= 1e-3
        )
        best = best_objective(rows, sr2 or [], ref)
        hit = first_reaching(rows, best, 1e-3)
        t_saga = row_time(hit)
        t_sr2 = None if sr2 is None else sr2["time"]
        sr2_cells = default_fit_cells(sr2, best)
        saga_cells = [fmt_t(t_saga)] + (
            [str(hit["n_iter"]), str(hit["nnz"])] if isinstance(hit, dict) else ["-", "-"]
        )
        table.append(
            f"| {alpha:g} | " + " | ".join(sr2_cells + saga_cells) + f" | {ratio(t_sr2, t_saga)} |"
        )
        SUMMARY.append(
            (
                "mnist",
                f"MNIST-5k {n}x784 multinomial l1, alpha {alpha:g}",
                "cap"
                if sr2 is None
                else f"default fit {sr2['time']:.3g} s, "
                f"subopt {max(rel(sr2['objective'], best), 0):.1e}",
                f"saga to 1e-3: {fmt_s(t_saga)}",
                ratio(t_sr2, t_saga),
            )
        )
    for line in table:
        emit(line)
    emit("\nrel. subopt. 0: that fit found the lowest objective of all runs itself.")


# -- 2. l1/2 and l2/3 logistic against skglm ------------------------------------------------------
def p_gg_n(n=200, p=5000, k=10, seed=0):
    """Dense p >> n binary problem with k informative features."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[rng.choice(p, k, replace=False)] = rng.choice([-2.0, 2.0], k)
    y = (X @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    return X, y


def section_lp(args):
    emit("\n## 2. l1/2 and l2/3 logistic regression: SR2 vs skglm (AndersonCD, fixpoint)\n")
    from skglm import GeneralizedLinearEstimator
    from skglm.datafits import Logistic
    from skglm.penalties import L0_5, L2_3
    from skglm.solvers import AndersonCD

    if args.quick:
        sets = {
            "text-like 1000 x 3000": sparse_text_like(n=1000, p=3000, seed=0),
            "dense 100 x 1000": p_gg_n(n=100, p=1000),
        }
    else:
        sets = {
            "text-like 5000 x 20000": sparse_text_like(n=5000, p=20_000, seed=0),
            "dense 200 x 5000": p_gg_n(),
        }
    penalties = {"l1/2": (L0_5, 0.5), "l2/3": (L2_3, 2.0 / 3.0)}

    def make_skglm(cls, alpha):
        return GeneralizedLinearEstimator(
            Logistic(), cls(alpha), AndersonCD(ws_strategy="fixpoint")
        )

    table = [
        "| data | penalty | alpha | SR2 objective | skglm objective | obj. SR2/skglm - 1 | "
        "SR2 time (s) | skglm time (s) | time ratio SR2/skglm | SR2 nnz | skglm nnz | "
        "SR2 converged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for data_name, (X, y) in sets.items():
        for pen, (cls, q) in penalties.items():
            warm_up(lambda c=cls: make_skglm(c, 1e-2), X, y)
            warm_up(lambda pn=pen: SR2Classifier(penalty=pn, max_iter=1, random_state=0), X, y)
            alpha = alpha_max(SR2Classifier(penalty=pen), X, y) / 10
            obj = functools.partial(logistic_objective, X, y, alpha=alpha, q=q)
            out = {}
            for name, make in (
                ("SR2", lambda pn=pen, a=alpha: SR2Classifier(penalty=pn, alpha=a, random_state=0)),
                ("skglm", lambda c=cls, a=alpha: make_skglm(c, a)),
            ):
                res = capped(fit_run(make, X, y), args.cap)
                if res is not None:
                    res["objective"] = obj(res["coef"], res["intercept"])
                out[name] = res
            s, g = out["SR2"], out["skglm"]
            o_ratio = (
                "-" if s is None or g is None else f"{s['objective'] / g['objective'] - 1:+.2e}"
            )
            t_ratio = ratio(s and s["time"], g and g["time"])

            def cell(r, key, f="{:.6g}"):
                return "cap" if r is None else f.format(r[key])

            table.append(
                f"| {data_name} | {pen} | {alpha:.3g} | {cell(s, 'objective')} | "
                f"{cell(g, 'objective')} | {o_ratio} | {cell(s, 'time', '{:.3g}')} | "
                f"{cell(g, 'time', '{:.3g}')} | {t_ratio} | {cell(s, 'nnz', '{}')} | "
                f"{cell(g, 'nnz', '{}')} | {cell(s, 'converged', '{}')} |"
            )
            SUMMARY.append(
                (
                    "lp",
                    f"{data_name} {pen} logistic, alpha {alpha:.3g}",
                    f"obj ratio - 1 {o_ratio}, nnz {cell(s, 'nnz', '{}')}",
                    f"skglm {cell(g, 'time', '{:.3g}')} s, nnz {cell(g, 'nnz', '{}')}",
                    t_ratio,
                )
            )
    for line in table:
        emit(line)


# -- 3. L0Ball(k) support recovery against abess ----------------------------------------------
def section_l0ball(args):
    emit("\n## 3. k-sparse regression: SR2 L0Ball(k) vs abess (support_size=k)\n")
    from abess import LinearRegression as Abess

    n, p, k, snr = (250, 500, 10, 10.0) if args.quick else (500, 1000, 10, 10.0)
    seeds = 2 if args.quick else 5
    table = [
        "| seed | SR2 F1 | SR2 time (s) | abess F1 | abess time (s) | time ratio SR2/abess |",
        "|---|---|---|---|---|---|",
    ]
    f1s = {"SR2": [], "abess": []}
    times = {"SR2": [], "abess": []}
    for seed in range(seeds):
        X, y, true = l0_problem(seed, n=n, p=p, k=k, snr=snr)
        warm_up(lambda: SR2Regressor(penalty=L0Ball(k), max_iter=1, random_state=0), X, y)
        cells = []
        for name, make in (
            ("SR2", lambda: SR2Regressor(penalty=L0Ball(k), random_state=0)),
            ("abess", lambda: Abess(support_size=k)),
        ):
            res = capped(fit_run(make, X, y), args.cap)
            if res is None:
                cells += ["cap", "cap"]
                times[name].append(float("nan"))
                f1s[name].append(float("nan"))
                continue
            f1s[name].append(f1(res["coef"] != 0, true))
            times[name].append(res["time"])
            cells += [f"{f1s[name][-1]:.3f}", f"{res['time']:.3g}"]
        table.append(
            f"| {seed} | "
            + " | ".join(cells)
            + f" | {ratio(times['SR2'][-1], times['abess'][-1])} |"
        )
    mean = {k_: (np.mean(f1s[k_]), np.mean(times[k_])) for k_ in f1s}
    table.append(
        f"| mean | {mean['SR2'][0]:.3f} | {mean['SR2'][1]:.3g} | {mean['abess'][0]:.3f} | "
        f"{mean['abess'][1]:.3g} | {ratio(mean['SR2'][1], mean['abess'][1])} |"
    )
    for line in table:
        emit(line)
    SUMMARY.append(
        (
            "l0ball",
            f"n {n}, p {p}, k {k}, SNR {snr:g}, {seeds} seeds",
            f"F1 {mean['SR2'][0]:.3f}, {mean['SR2'][1]:.3g} s",
            f"abess F1 {mean['abess'][0]:.3f}, {mean['abess'][1]:.3g} s",
            ratio(mean["SR2"][1], mean["abess"][1]),
        )
    )


# -- 4. float32 against float64 ------------------------------------------------------------------
def section_float32(args):
    emit("\n## 4. SR2Classifier (defaults): float32 vs float64\n")
    sets = {}
    try:
        X, y, _ = load_adult(data_home(), "train")
        if args.quick:
            X, y = X[:5000], y[:5000]
        sets[f"Adult {X.shape[0]} x {X.shape[1]} (sparse, binary)"] = (X, y)
    except FileNotFoundError as exc:
        emit(f"(Adult skipped: {exc})")
    n, p = (5000, 50) if args.quick else (20_000, 100)
    sets[f"dense {n} x {p} (binary)"] = dense_logistic(n=n, p=p)
    try:
        X, y = load_mnist5k(data_home())
        if args.quick:
            X, y = X[:500], y[:500]
        sets[f"MNIST-5k {X.shape[0]} x 784 (multinomial)"] = (X, y)
    except FileNotFoundError as exc:
        emit(f"(MNIST-5k skipped: {exc})")
    table = [
        "| data | time f64 (s) | time f32 (s) | ratio f32/f64 | epochs f64 / f32 | "
        "max abs(coef32 - coef64) | max abs(coef64) | obj. f32/f64 - 1 | converged f64 / f32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    alpha = SR2Classifier().alpha
    for name, (X, y) in sets.items():
        codes = np.unique(y, return_inverse=True)[1]
        if codes.max() > 1:
            obj = functools.partial(multinomial_objective, X, codes, alpha=alpha)
        else:
            obj = functools.partial(logistic_objective, X, codes, alpha=alpha)
        out = {}
        for dtype in (np.float64, np.float32):
            Xd = X.astype(dtype)
            warm_up(lambda: SR2Classifier(max_iter=1, random_state=0), Xd, y)
            out[dtype] = capped(fit_run(lambda: SR2Classifier(random_state=0), Xd, y), args.cap)
        r64, r32 = out[np.float64], out[np.float32]
        if r64 is None or r32 is None:
            t64 = None if r64 is None else r64["time"]
            t32 = None if r32 is None else r32["time"]
            table.append(f"| {name} | {fmt_t(t64)} | {fmt_t(t32)} | - | - | - | - | - | - |")
            SUMMARY.append(("float32", name, f"f32 {fmt_s(t32)}", f"f64 {fmt_s(t64)}", "-"))
            continue
        diff = np.max(np.abs(r32["coef"] - r64["coef"]))
        gap = obj(r32["coef"], r32["intercept"]) / obj(r64["coef"], r64["intercept"]) - 1
        table.append(
            f"| {name} | {r64['time']:.3g} | {r32['time']:.3g} | "
            f"{ratio(r32['time'], r64['time'])} | {r64['n_iter']} / {r32['n_iter']} | "
            f"{diff:.2e} | {np.max(np.abs(r64['coef'])):.3g} | {gap:+.1e} | "
            f"{r64['converged']} / {r32['converged']} |"
        )
        SUMMARY.append(
            (
                "float32",
                name,
                f"f32 {r32['time']:.3g} s (converged {r32['converged']}), max coef diff {diff:.1e}",
                f"f64 {r64['time']:.3g} s (converged {r64['converged']})",
                ratio(r32["time"], r64["time"]),
            )
        )
    for line in table:
        emit(line)
    emit("\n(ratio column in the summary: float32 time / float64 time)")


# -- 5. cross-validation against LogisticRegressionCV / LassoCV ---------------------------------
def section_cv(args):
    emit(
        "\n## 5. Cross-validated alpha: SR2ClassifierCV / SR2RegressorCV vs "
        "LogisticRegressionCV(saga, l1) / LassoCV\n"
    )
    n_alphas, n_folds = (5, 3) if args.quick else (10, 5)
    problems = {}
    if args.quick:
        Xb, yb = load_breast_cancer(return_X_y=True)
        Xb = StandardScaler().fit_transform(Xb)
        problems["breast_cancer (binary)"] = (
            "clf",
            *train_test_split(Xb, yb, test_size=0.25, random_state=0, stratify=yb),
            1e-2,
        )
    else:
        try:
            Xa, ya, _ = load_adult(data_home(), "train")
            Xt, yt, _ = load_adult(data_home(), "test")
            problems["Adult (binary, test file held out)"] = ("clf", Xa, Xt, ya, yt, 1e-2)
        except FileNotFoundError as exc:
            emit(f"(Adult skipped: {exc})")
    n3 = 600 if args.quick else 2000
    X3, y3 = make_classification(
        n_samples=n3, n_features=20, n_informative=10, n_redundant=0, n_classes=3, random_state=0
    )
    problems[f"synthetic 3-class {n3} x 20"] = (
        "clf",
        *train_test_split(X3, y3, test_size=0.25, random_state=0, stratify=y3),
        1e-2,
    )
    nr, pr = (500, 50) if args.quick else (2000, 100)
    Xr, yr = make_regression(
        n_samples=nr, n_features=pr, n_informative=10, noise=10.0, random_state=0
    )
    problems[f"synthetic regression {nr} x {pr}"] = (
        "reg",
        *train_test_split(Xr, yr, test_size=0.25, random_state=0),
        1e-3,
    )

    table = [
        "| data | SR2 CV time (s) | peer CV time (s) | time ratio SR2/peer | SR2 alpha | "
        "peer alpha | SR2 test score | peer test score | score diff (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (kind, Xtr, Xte, ytr, yte, eps) in problems.items():
        n_tr = Xtr.shape[0]
        if kind == "clf":
            base = SR2Classifier(random_state=0)
            folds = StratifiedKFold(n_folds, shuffle=True, random_state=0)
        else:
            base = SR2Regressor(random_state=0)
            folds = KFold(n_folds, shuffle=True, random_state=0)
        grid = alpha_max(base, Xtr, ytr) * np.geomspace(1.0, eps, n_alphas)
        warm_up(lambda b=base: clone(b).set_params(max_iter=1), Xtr, ytr)
        if kind == "clf":

            def make_sr2(g=grid, f=folds):
                return SR2ClassifierCV(alphas=g, cv=f, random_state=0)

            def make_peer(g=grid, f=folds, m=n_tr):
                return with_supported(
                    LogisticRegressionCV,
                    Cs=list(1.0 / (m * g)),
                    l1_ratios=[1.0],
                    solver="saga",
                    cv=f,
                    scoring="accuracy",
                    max_iter=1000,
                    random_state=0,
                    use_legacy_attributes=False,
                )

            def peer_alpha(est, m=n_tr):
                return 1.0 / (m * float(np.ravel(est.C_)[0]))
        else:

            def make_sr2(g=grid, f=folds):
                return SR2RegressorCV(
                    alphas=g, cv=f, scoring="neg_mean_squared_error", random_state=0
                )

            def make_peer(g=grid, f=folds):
                return LassoCV(alphas=g, cv=f)

            def peer_alpha(est):
                return float(est.alpha_)

        warm_up_path(make_sr2, Xtr, ytr)
        res = {}
        for who, make, get_alpha in (
            ("SR2", make_sr2, lambda e: float(e.alpha_)),
            ("peer", make_peer, peer_alpha),
        ):

            def extra(est, g=get_alpha, Xte=Xte, yte=yte):
                return {"alpha": g(est), "score": float(est.score(Xte, yte))}

            res[who] = capped(fit_run(make, Xtr, ytr, extra=extra, repeat_below=0.0), args.cap)
        s, q = res["SR2"], res["peer"]
        t_s = None if s is None else s["time"]
        t_q = None if q is None else q["time"]
        diff = (
            "-"
            if s is None or q is None
            else f"{100 * (s['score'] - q['score']) / abs(q['score']):+.2f}"
        )

        def c(r, key, f):
            return "cap" if r is None else f.format(r[key])

        table.append(
            f"| {name} | {fmt_t(t_s)} | {fmt_t(t_q)} | {ratio(t_s, t_q)} | "
            f"{c(s, 'alpha', '{:.3g}')} | {c(q, 'alpha', '{:.3g}')} | {c(s, 'score', '{:.4f}')} | "
            f"{c(q, 'score', '{:.4f}')} | {diff} |"
        )
        peer = "LassoCV" if kind == "reg" else "LogisticRegressionCV"
        SUMMARY.append(
            (
                "cv",
                name,
                f"{fmt_s(t_s)}, test {c(s, 'score', '{:.4f}')}",
                f"{peer} {fmt_s(t_q)}, test {c(q, 'score', '{:.4f}')} (diff {diff} %)",
                ratio(t_s, t_q),
            )
        )
    for line in table:
        emit(line)
    emit(
        f"\n{n_alphas} alphas from alpha_max (sr2learn.alpha_max on the training split) down "
        f"to eps * alpha_max, {n_folds} shuffled folds (one splitter object shared). Scores: "
        "accuracy (classifiers), R^2 (regression); SR2RegressorCV chooses by MSE, as LassoCV "
        "does. LogisticRegressionCV gets Cs = 1/(n_train alpha): its C multiplies the summed "
        "loss, so on a fold of m rows it fits alpha n_train / m (the refit on all n_train rows "
        "fits alpha exactly)."
    )


# -- 6. Lasso, correlated dense design ---------------------------------------------------------
def section_lasso(args):
    emit("\n## 6. Lasso, correlated design: time to 1e-6 (tol sweeps)\n")
    from skglm import Lasso as SkglmLasso

    n, p = (2000, 200) if args.quick else (10_000, 500)
    X, y = correlated_regression(n=n, p=p)
    alpha_top = np.max(np.abs(X.T @ (y - y.mean()))) / n
    warm_up(lambda: SR2Regressor(max_iter=1, random_state=0), X, y)
    warm_up(lambda: SkglmLasso(alpha=alpha_top / 10), X, y)
    solvers = {
        "SR2Regressor": lambda t, a: SR2Regressor(alpha=a, tol=t, max_iter=100_000, random_state=0),
        "Lasso (cd)": lambda t, a: Lasso(alpha=a, tol=t, max_iter=100_000),
        "skglm Lasso": lambda t, a: SkglmLasso(alpha=a, tol=t, max_iter=1000, max_epochs=100_000),
    }
    table = [
        "| alpha | solver | time to 1e-6 (s) | tol that reached it | best rel. subopt. | nnz |",
        "|---|---|---|---|---|---|",
    ]
    for div in (10, 100):
        alpha = alpha_top / div
        obj = functools.partial(lasso_objective, X, y, alpha=alpha)
        ref = reference(
            args.cache,
            f"lasso_{n}x{p}_{div}",
            obj,
            {
                "Lasso tol 1e-14": capped_ref(
                    lambda a=alpha: Lasso(alpha=a, tol=1e-14, max_iter=10**6),
                    X,
                    y,
                    ref_budget(args),
                ),
                "skglm tol 1e-12": capped_ref(
                    lambda a=alpha: SkglmLasso(alpha=a, tol=1e-12, max_iter=1000, max_epochs=10**6),
                    X,
                    y,
                    ref_budget(args),
                ),
            },
        )
        rows = {
            name: sweep(
                TOLS,
                functools.partial(make, a=alpha),
                X,
                y,
                obj,
                args.cap,
                reached=lambda o, r=ref: rel(o, r) <= 1e-6,
            )
            for name, make in solvers.items()
        }
        best = best_objective(ref, *rows.values())
        times = {}
        for name, rs in rows.items():
            hit = first_reaching(rs, best, 1e-6)
            times[name] = row_time(hit)
            done = [r for r in rs if r["time"] is not None]
            sub = min((rel(r["objective"], best) for r in done), default=float("nan"))
            table.append(
                f"| {alpha:.3g} | {name} | {fmt_t(times[name])} | "
                f"{hit['setting'] if isinstance(hit, dict) else '-'} | {max(sub, 0):.1e} | "
                f"{done[-1]['nnz'] if done else '-'} |"
            )
        for peer in ("Lasso (cd)", "skglm Lasso"):
            SUMMARY.append(
                (
                    "lasso",
                    f"correlated {n}x{p}, alpha_max/{div}, to 1e-6",
                    fmt_s(times["SR2Regressor"]),
                    f"{peer} {fmt_s(times[peer])}",
                    ratio(times["SR2Regressor"], times[peer]),
                )
            )
    for line in table:
        emit(line)


# -- 7. binary l1 logistic on text-like data ------------------------------------------------------
def section_text(args):
    emit(
        "\n## 7. Binary l1 logistic regression, text-like sparse data: default SR2 vs skglm "
        "to 1e-3\n"
    )
    from skglm import SparseLogisticRegression

    n, p = (2000, 5000) if args.quick else (20_000, 50_000)
    X, y = sparse_text_like(n=n, p=p)
    warm_up(lambda: SR2Classifier(max_iter=1, random_state=0), X, y)
    warm_up(lambda: SparseLogisticRegression(alpha=1e-3), X, y)
    table = [
        "| alpha | SR2 time (s) | SR2 epochs | SR2 rel. subopt. | converged | SR2 nnz | "
        "skglm time to 1e-3 (s) | skglm tol | skglm nnz | time ratio SR2/skglm |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for alpha in (1e-3, 1e-4):
        obj = functools.partial(logistic_objective, X, y, alpha=alpha)
        ref = reference(
            args.cache,
            f"text_{n}x{p}_{alpha:g}",
            obj,
            {
                "skglm tol 1e-10": capped_ref(
                    lambda a=alpha: SparseLogisticRegression(
                        alpha=a, tol=1e-10, max_iter=1000, max_epochs=100_000
                    ),
                    X,
                    y,
                    ref_budget(args),
                ),
                "SR2 tol 1e-10": sr2_ref(SR2Classifier, X, y, alpha, ref_budget(args)),
            },
        )
        sr2 = capped(
            fit_run(lambda a=alpha: SR2Classifier(alpha=a, random_state=0), X, y), args.cap
        )
        if sr2 is not None:
            sr2["objective"] = obj(sr2["coef"], sr2["intercept"])
            ref = min(ref, sr2["objective"])

        def make_skglm(t, a=alpha):
            return SparseLogisticRegression(alpha=a, tol=t, max_iter=1000, max_epochs=100_000)

        rows = sweep(
            TOLS, make_skglm, X, y, obj, args.cap, reached=lambda o, r=ref: rel(o, r) <= 1e-3
        )
        best = best_objective(rows, sr2 or [], ref)
        hit = first_reaching(rows, best, 1e-3)
        t_sk = row_time(hit)
        t_sr2 = None if sr2 is None else sr2["time"]
        sub = None if sr2 is None else max(rel(sr2["objective"], best), 0)
        sr2_cells = default_fit_cells(sr2, best)
        sk_cells = [fmt_t(t_sk)] + (
            [f"{hit['setting']:g}", str(hit["nnz"])] if isinstance(hit, dict) else ["-", "-"]
        )
        table.append(
            f"| {alpha:g} | " + " | ".join(sr2_cells + sk_cells) + f" | {ratio(t_sr2, t_sk)} |"
        )
        SUMMARY.append(
            (
                "text",
                f"text-like {n}x{p} l1 logistic, alpha {alpha:g}",
                "cap" if sr2 is None else f"default fit {sr2['time']:.3g} s, subopt {sub:.1e}",
                f"skglm to 1e-3: {fmt_s(t_sk)}",
                ratio(t_sr2, t_sk),
            )
        )
    for line in table:
        emit(line)
    emit("\nrel. subopt. 0: that fit found the lowest objective of all runs itself.")


def versions():
    out = [f"sr2learn {sr2learn.__version__}", f"numpy {np.__version__}"]
    for mod in ("sklearn", "skglm", "abess", "numba"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except (ImportError, AttributeError):
            out.append(f"{mod} -")
    return ", ".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated sections: " + ",".join(SECTIONS)
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a check that it runs")
    parser.add_argument(
        "--cap", type=float, default=None, help="seconds per solver run (60; --quick: 10)"
    )
    parser.add_argument(
        "--cache", default="bench_breadth_cache", help="folder of the cached reference optima"
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads for every solver (1: threaded BLAS stalls on a shared machine)",
    )
    args = parser.parse_args()
    # Every solver, SR2 and the peers, runs with the same BLAS threads (forked runs inherit
    # the limit); on 2 shared cores a threaded product can wait milliseconds for a core.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.blas_threads, user_api="blas")
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown sections {unknown}; choose from {','.join(SECTIONS)}")
    args.cache = os.path.join(args.cache, "quick" if args.quick else "full")
    if args.cap is None:
        args.cap = 10.0 if args.quick else 60.0

    emit("# Breadth benchmark: SR2 vs the best peer for each objective")
    emit(
        f"\n{versions()}; Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{args.blas_threads} BLAS thread(s); cap {args.cap:g} s per run"
        f"{'; --quick sizes' if args.quick else ''}; "
        f"sections {','.join(chosen)}"
    )
    sections = {
        "mnist": section_mnist,
        "lp": section_lp,
        "l0ball": section_l0ball,
        "float32": section_float32,
        "cv": section_cv,
        "lasso": section_lasso,
        "text": section_text,
    }
    start = time.perf_counter()
    for name in SECTIONS:
        if name in chosen:
            sections[name](args)
    emit("\n## Summary (time ratio: SR2 / peer, below 1 means SR2 is faster; float32: f32/f64)\n")
    emit("| section | problem | SR2 | peer | time ratio |")
    emit("|---|---|---|---|---|")
    for row in SUMMARY:
        emit("| " + " | ".join(row) + " |")
    emit(
        f"\ncap: the run took over {args.cap:g} s and was stopped; n.r.: not reached within the "
        f"budgets tried. Total {time.perf_counter() - start:.0f} s."
    )
    if not args.quick:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "breadth.txt"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
