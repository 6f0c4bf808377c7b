"""Loaders for the real data sets used by the examples and benchmarks.

The files are not shipped with the package. Fill a directory with
``../shared/data/get-data.sh DIR`` (in this project) and point the loaders at it with
``data_home=DIR`` or the environment variable ``SR2LEARN_DATA``.
"""

import gzip
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["get_data_home", "load_adult", "load_mnist5k", "load_fashion_mnist"]

_FETCH_HINT = (
    "Fetch it with `get-data.sh DIR` (shared/data/), then pass data_home=DIR "
    "or set SR2LEARN_DATA=DIR."
)

ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country",
)  # fmt: skip
_ADULT_CONTINUOUS = (0, 2, 4, 10, 11, 12)


def get_data_home(data_home=None):
    """The data directory: ``data_home``, else ``$SR2LEARN_DATA``, else ``~/sr2learn_data``."""
    if data_home is None:
        data_home = os.environ.get("SR2LEARN_DATA", os.path.join("~", "sr2learn_data"))
    return Path(data_home).expanduser()


def _require(path):
    if not path.exists():
        raise FileNotFoundError(f"Missing data file {path}. {_FETCH_HINT}")
    return path


def _read_adult(path):
    rows, labels = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = [p.strip() for p in line.strip().split(",")]
            if len(parts) != 15:  # blank lines and the test file's header
                continue
            rows.append(parts[:14])
            labels.append(1 if parts[14].rstrip(".") == ">50K" else 0)
    return rows, np.asarray(labels)


def load_adult(data_home=None, subset="train", n_bins=5):
    """UCI Adult as an a9a-style binary (one-hot) CSR matrix.

    Categorical columns are one-hot encoded ("?" is its own category); continuous columns
    are cut at quantiles of the training set into ``n_bins`` bins, each one-hot encoded,
    as in the LIBSVM a9a file. Categories come from the training file, so train and test
    have the same columns.

    Parameters
    ----------
    data_home : str or path, default=None
        See :func:`get_data_home`; reads ``adult/adult.data`` and ``adult/adult.test``.
    subset : {"train", "test"}
    n_bins : int, default=5

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,), 1 for income >50K
    feature_names : list of str
    """
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    root = get_data_home(data_home) / "adult"
    train_rows, train_y = _read_adult(_require(root / "adult.data"))
    if subset == "train":
        rows, y = train_rows, train_y
    else:
        rows, y = _read_adult(_require(root / "adult.test"))
    columns, names = [], []
    for j, name in enumerate(ADULT_COLUMNS):
        if j in _ADULT_CONTINUOUS:
            train_vals = np.array([float(r[j]) for r in train_rows])
            edges = np.unique(np.quantile(train_vals, np.linspace(0, 1, n_bins + 1)[1:-1]))
            codes = np.searchsorted(edges, [float(r[j]) for r in rows], side="right")
            categories = [f"{name}<bin{k}>" for k in range(edges.size + 1)]
        else:
            cats = sorted({r[j] for r in train_rows})
            index = {c: k for k, c in enumerate(cats)}
            codes = np.array([index.get(r[j], -1) for r in rows])  # unseen: all-zero block
            categories = [f"{name}={c}" for c in cats]
        columns.append((codes, len(categories)))
        names.extend(categories)
    n = len(rows)
    indptr_cols, offset = [], 0
    for codes, width in columns:
        indptr_cols.append(np.where(codes >= 0, codes + offset, -1))
        offset += width
    cols = np.stack(indptr_cols, axis=1)
    row_idx = np.repeat(np.arange(n), cols.shape[1])
    flat = cols.ravel()
    keep = flat >= 0
    X = sp.csr_matrix(
        (np.ones(keep.sum()), (row_idx[keep], flat[keep])), shape=(n, offset), dtype=np.float64
    )
    return X, y, names


def load_mnist5k(data_home=None, random_state=0):
    """5,000 MNIST digits (500 per class), shuffled (the file is sorted by label).

    Returns ``X`` of shape (5000, 784) with pixels scaled to [0, 1] and ``y`` in 0..9.
    """
    path = _require(get_data_home(data_home) / "mnist-5k" / "mnist_5k.csv.gz")
    data = np.loadtxt(path, delimiter=",", dtype=np.float64)
    order = np.random.default_rng(random_state).permutation(data.shape[0])
    data = data[order]
    return data[:, :-1] / 255.0, data[:, -1].astype(np.int64)


def _read_idx(path):
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(data_home=None, subset="train"):
    """Fashion-MNIST from its IDX files: images (n, 28, 28) as float32 in [0, 1], labels."""
    prefix = {"train": "train", "test": "t10k"}.get(subset)
    if prefix is None:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    root = get_data_home(data_home) / "fashion-mnist"
    images = _read_idx(_require(root / f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_idx(_require(root / f"{prefix}-labels-idx1-ubyte.gz"))
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)
