"""Peak memory of a fit above the data it is given: SR2 against saga and skglm.

Each input is written to disk once; every fit then runs in a fresh Python process that
loads X and y, fits once on the first rows (so that compiled code, numba's or sklearn's,
is loaded before the measure), and measures one fit on the whole data:

- the peak resident memory (RSS) above the RSS with the data loaded: the process's high
  water mark is reset (``/proc/self/clear_refs``) just before the fit and read just after,
  so it sees every allocation (NumPy's, numba's, scipy's, the peers' compiled code);
- the peak of ``tracemalloc`` during the fit (NumPy's allocations only).

(BLAS's per-thread buffers, allocated once per process, are allocated before the measure
by one large matrix product.)

Both are printed as a ratio to the size of X (``nbytes``, for CSR data + indices +
indptr): a peak of 1.2x X is an extra 0.2x. The data are

dense64   dense float64, C order
dense32   dense float32, C order
onehot    CSR float64 with int32 indices, one-hot rows like Adult (14 of 120 columns)
text      CSR float64 with int32 indices, text-like (50 of 20,000 columns, power-law
          frequencies), where SR2's working set is on (2000 features or more)

and the fits

SR2Classifier / SR2Regressor   defaults (l1, alpha 1e-3, SVRG, tol 1e-4)
saga       LogisticRegression(solver="saga", l1_ratio=1, C=1 / (n alpha), max_iter=3)
skglm      SparseLogisticRegression(alpha) / Lasso(alpha), max_iter=3 (outer iterations)

with alpha = 1e-3 (the peers stop early on purpose: their peak is reached in their first
pass). Binary targets come from a sparse linear model; regression targets are the same
scores plus noise.

Without --quick (X of about 240 MB each) the table is saved to
docs/benchmark_results/memory.txt.

Usage: python benchmarks/bench_memory.py [--quick] [--only dense64,dense32,onehot,text]
       [--solvers SR2Classifier,SR2Regressor,...] [--workdir DIR]
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
import scipy.sparse as sp

RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmark_results"
)
DATA = ("dense64", "dense32", "onehot", "text")
ALPHA = 1e-3
# Rows of each input: X is about 240 MB (full) or 12 MB (--quick).
ROWS = {"dense64": 150_000, "dense32": 300_000, "onehot": 1_400_000, "text": 400_000}
QUICK_DIVISOR = 20
WARM_UP_ROWS = 2000
LINES = []


def emit(text=""):
    print(text, flush=True)
    LINES.append(text)


# -- data --------------------------------------------------------------------------------------
def make_data(kind, n, seed=0):
    """X, binary labels and regression targets of one input."""
    rng = np.random.default_rng(seed)
    if kind in ("dense64", "dense32"):
        X = rng.standard_normal((n, 200), dtype=np.float32 if kind == "dense32" else np.float64)
    elif kind == "onehot":
        X = _one_hot(rng, n, sizes=(9, 16, 7, 15, 6, 5, 2, 41, 5, 3, 3, 3, 3, 2))
    else:
        X = _text_like(rng, n, p=20_000, per_row=50)
    w = np.zeros(X.shape[1])
    support = rng.choice(X.shape[1], size=max(5, X.shape[1] // 20), replace=False)
    w[support] = rng.standard_normal(support.size) * (3.0 if sp.issparse(X) else 1.0)
    score = np.asarray(X @ w, dtype=np.float64).ravel()
    score -= np.median(score)
    noise = rng.standard_normal(n)
    return X, (score + 0.5 * noise > 0).astype(np.int64), score + 0.1 * noise


def _one_hot(rng, n, sizes):
    """One category per group of columns in each row (Adult's 14 features, a9a-like)."""
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    draws = [o + rng.integers(s, size=n) for o, s in zip(offsets, sizes, strict=True)]
    cols = np.stack(draws, axis=1)
    indptr = np.arange(0, n * len(sizes) + 1, len(sizes), dtype=np.int32)
    data = np.ones(n * len(sizes))
    return sp.csr_matrix((data, cols.ravel().astype(np.int32), indptr), shape=(n, sum(sizes)))


def _text_like(rng, n, p, per_row):
    """Power-law column frequencies, positive values, rows of unit norm."""
    freq = 1.0 / np.arange(1, p + 1) ** 1.1
    cols = np.searchsorted(np.cumsum(freq / freq.sum()), rng.random(n * per_row))
    cols = np.minimum(cols, p - 1).astype(np.int32)
    X = sp.csr_matrix((rng.random(n * per_row), cols, np.arange(0, n * per_row + 1, per_row)),
                      shape=(n, p))  # fmt: skip
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X.data /= np.repeat(np.maximum(norms, 1e-12), np.diff(X.indptr))
    return X


def nbytes(X):
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def save(X, y, t, path):
    if sp.issparse(X):
        np.savez(path, data=X.data, indices=X.indices, indptr=X.indptr, shape=X.shape, y=y, t=t)
    else:
        np.savez(path, X=X, y=y, t=t)


def load(path):
    with np.load(path) as f:
        if "X" in f:
            X = f["X"]
        else:
            X = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        return X, f["y"], f["t"]


# -- the fits ----------------------------------------------------------------------------------
SOLVERS = ("SR2Classifier", "SR2Regressor", "saga", "skglm logistic", "skglm Lasso")


def make_estimator(name, n):
    if name == "SR2Classifier":
        from sr2learn import SR2Classifier

        return SR2Classifier(alpha=ALPHA, random_state=0), "y"
    if name == "SR2Regressor":
        from sr2learn import SR2Regressor

        return SR2Regressor(alpha=ALPHA, random_state=0), "t"
    if name == "saga":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(solver="saga", l1_ratio=1, C=1 / (n * ALPHA), max_iter=3,
                                  tol=0, random_state=0), "y"  # fmt: skip
    if name == "skglm logistic":
        from skglm import SparseLogisticRegression

        return SparseLogisticRegression(alpha=ALPHA, max_iter=3), "y"
    from skglm import Lasso

    return Lasso(alpha=ALPHA, max_iter=3), "t"


def _status(field):
    """A field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1)) * 1024


def _warm_up_in_place(est, X, target):
    """A second warm-up whose working sets read X in place: the first one's few rows make
    every working set small enough to copy, and the measured fit may not (numba would then
    load the other compiled version of the passes during the measure)."""
    import sr2learn._problem as problem

    saved = problem.RESTRICTED_COPY_FRACTION, problem.RESTRICTED_COPY_ARRAYS
    problem.RESTRICTED_COPY_FRACTION = problem.RESTRICTED_COPY_ARRAYS = 0
    try:
        est.fit(X[:WARM_UP_ROWS], target[:WARM_UP_ROWS])
    finally:
        problem.RESTRICTED_COPY_FRACTION, problem.RESTRICTED_COPY_ARRAYS = saved


def child(path, name):
    """Measure one fit (run in a fresh process); prints one JSON line."""
    import gc

    X, y, t = load(path)
    est, target = make_estimator(name, X.shape[0])
    target = y if target == "y" else t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_estimator(name, WARM_UP_ROWS)[0].fit(X[:WARM_UP_ROWS], target[:WARM_UP_ROWS])
        if name.startswith("SR2"):
            _warm_up_in_place(make_estimator(name, WARM_UP_ROWS)[0], X, target)
    square = np.ones((1500, 1500))
    square @ square  # BLAS allocates its threads' buffers once per process: not the fit's
    del square
    gc.collect()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high water mark VmHWM to the current RSS
    tracemalloc.start()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, target)
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _status("VmHWM")
    print(json.dumps({"x_bytes": nbytes(X), "rss_extra": peak - before, "traced": traced,
                      "seconds": seconds, "epochs": int(np.max(getattr(est, "n_iter_", 0)))}))


def measure(path, name):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path, name],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the table ---------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(DATA))
    parser.add_argument("--solvers", default=",".join(SOLVERS),
                        help="a comma-separated subset of: " + ", ".join(SOLVERS))
    parser.add_argument("--workdir", default=None, help="where the data files are written")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    import skglm
    import sklearn

    import sr2learn

    kinds = [k for k in args.only.split(",") if k]
    emit("# Peak memory of a fit above X: SR2 vs saga and skglm")
    emit()
    emit(f"sr2learn {sr2learn.__version__}, numpy {np.__version__}, sklearn "
         f"{sklearn.__version__}, skglm {skglm.__version__}; Python "
         f"{platform.python_version()}, {os.cpu_count()} CPUs"
         f"{'; --quick' if args.quick else ''}")  # fmt: skip
    emit()
    emit("peak / X = 1 + (peak RSS during the fit - RSS before it) / X.nbytes, each fit in a "
         "fresh process; traced: tracemalloc's peak (NumPy allocations) / X.nbytes. The fit "
         "times only say what was run (saga and skglm stop after 3 iterations; the machine "
         "may be shared): this is not a timing benchmark.")
    emit()
    emit("| data | X (MB) | solver | peak RSS / X | traced / X | fit time (s) | epochs |")
    emit("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for kind in kinds:
            n = ROWS[kind] // (QUICK_DIVISOR if args.quick else 1)
            X, y, t = make_data(kind, n)
            path = os.path.join(tmp, f"{kind}.npz")
            save(X, y, t, path)
            shape = f"{kind} {X.shape[0]} x {X.shape[1]}"
            size = nbytes(X) / 2**20
            del X, y, t
            for name in [s for s in SOLVERS if s in args.solvers.split(",")]:
                res = measure(path, name)
                if "error" in res:
                    emit(f"| {shape} | {size:.0f} | {name} | error: {res['error']} | | | |")
                    continue
                emit(f"| {shape} | {size:.0f} | {name} | "
                     f"{1 + res['rss_extra'] / res['x_bytes']:.2f} | "
                     f"{res['traced'] / res['x_bytes']:.2f} | {res['seconds']:.3g} | "
                     f"{res['epochs']} |")  # fmt: skip
            os.remove(path)
    if not args.quick:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "memory.txt"), "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
