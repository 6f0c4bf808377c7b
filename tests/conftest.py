import matplotlib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

matplotlib.use("Agg")


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(owner, name)`` replaces ``owner.name`` for the test by a wrapper that
    appends each call's positional arguments to the list it returns, then calls the
    original (a count of passes, checkpoints or epochs)."""

    def install(owner, name):
        calls = []
        original = getattr(owner, name)

        def recording(*args, **kwargs):
            calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, recording)
        return calls

    return install


@pytest.fixture(scope="session")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="session")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="session")
def sparse_regression():
    """n=500, p=1000, 10 true nonzeros, SNR 10 (signal std / noise std)."""
    rng = np.random.default_rng(0)
    n, p, k = 500, 1000, 10
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    support = rng.choice(p, size=k, replace=False)
    w[support] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(1.0, 2.0, size=k)
    signal = X @ w
    y = signal + rng.standard_normal(n) * signal.std() / 10.0
    return X, y, w


def _make_text_like(seed, n=1000, p=3000, nnz_per_row=50):
    """Power-law column frequencies, row-normalised positive entries, sparse truth."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, p + 1) ** 1.1
    cols = rng.choice(p, size=n * nnz_per_row, p=freq / freq.sum())
    X = sp.csr_matrix((rng.random(n * nnz_per_row), (np.repeat(np.arange(n), nnz_per_row), cols)),
                      shape=(n, p))  # fmt: skip
    X.sum_duplicates()
    X = sp.csr_matrix(sp.diags(1.0 / np.sqrt(X.multiply(X).sum(axis=1).A1)) @ X)
    w = np.zeros(p)
    w[rng.choice(200, size=40, replace=False)] = 5.0 * rng.standard_normal(40)
    y = (X @ w + 0.1 * rng.standard_normal(n) > 0).astype(int)
    return X, y


@pytest.fixture(scope="session")
def text_like():
    """``text_like(seed, n=1000, p=3000, nnz_per_row=50)`` -> (X, y): a binary text-like
    problem (see ``_make_text_like``)."""
    return _make_text_like
