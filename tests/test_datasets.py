"""Loaders of sr2learn.datasets, on tiny files generated here (never the network)."""

import gzip

import numpy as np
import pytest

from sr2learn.datasets import get_data_home, load_adult, load_fashion_mnist, load_mnist5k

ADULT_TRAIN = """39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Female, 0, 0, 40, ?, <=50K

"""  # noqa: E501
ADULT_TEST = """|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, >50K.
"""  # noqa: E501


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "adult.data").write_text(ADULT_TRAIN)
    (tmp_path / "adult" / "adult.test").write_text(ADULT_TEST)
    (tmp_path / "mnist-5k").mkdir()
    rows = np.array([[0] * 783 + [255, 0], [0] * 783 + [51, 1], [0] * 784 + [2]])
    with gzip.open(tmp_path / "mnist-5k" / "mnist_5k.csv.gz", "wt") as f:
        np.savetxt(f, rows, fmt="%d", delimiter=",")
    (tmp_path / "fashion-mnist").mkdir()
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.uint8)
    for prefix in ("train", "t10k"):
        with gzip.open(tmp_path / "fashion-mnist" / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28)))
            f.write(images.tobytes())
        with gzip.open(tmp_path / "fashion-mnist" / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + labels.tobytes())
    return tmp_path


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


def test_missing_files_name_the_file_and_the_fetch_script(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"adult\.data.*get-data\.sh"):
        load_adult(tmp_path)
    monkeypatch.setenv("SR2LEARN_DATA", str(tmp_path / "elsewhere"))
    assert get_data_home() == tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        load_mnist5k()
    with pytest.raises(ValueError, match="subset"):
        load_fashion_mnist(tmp_path, "validation")
