"""Model builders and a guarded prediction function.

Keras is imported lazily inside the functions, after :func:`setup_notebook` has
fixed the backend (torch) and the device.
"""
from __future__ import annotations

import numpy as np

ARTICLE_CNN_PARAMS = 93_322  # conv32-pool-conv64-pool-conv64-dense64-dense10 on 28×28×1


def build_article_cnn(input_shape: tuple[int, int, int] = (28, 28, 1), n_classes: int = 10, name: str = "article_cnn"):
    """The article's MNIST CNN (section 5.2): three 3×3 convolutions (32, 64, 64 filters)
    with 2×2 max-pooling after the first two, then dense 64 → dense ``n_classes`` softmax.
    """
    import keras
    from keras import layers

    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    return keras.Sequential(
        [
            keras.Input(shape=input_shape, name="image"),
            layers.Conv2D(32, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(64, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Conv2D(64, 3, activation="relu", name="conv3"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense"),
            layers.Dense(n_classes, activation="softmax", name="probabilities"),
        ],
        name=name,
    )


def layer_table(model):
    """One row per layer: name, type, output shape (without the batch axis), parameters."""
    import pandas as pd

    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output shape": "×".join(str(s) for s in shape),
                "parameters": int(layer.count_params()),
            }
        )
    return pd.DataFrame(rows)


class BadInputError(ValueError):
    """An input that the deployed model cannot take; the message says what it expects."""


def check_digit_images(images) -> np.ndarray:
    """Validate raw digit images and return them as an (N, 28, 28) uint8 array.

    Accepts what ``load_mnist`` returns: uint8 pixels 0..255, one image (28, 28)
    or a batch (N, 28, 28). Anything else is refused with a message saying why.
    """
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise BadInputError(
            f"expected uint8 pixels 0..255 (as load_mnist returns), got dtype {a.dtype}; "
            "convert with np.clip(x, 0, 255).astype(np.uint8) if your image is in that range"
        )
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (28, 28) or a.shape[0] == 0:
        raise BadInputError(
            f"expected one 28×28 image or a non-empty batch of shape (N, 28, 28), got shape {np.shape(images)}"
        )
    return a


def predict_digits(model, images, batch_size: int = 256):
    """Classify raw digit images with a trained model.

    Returns ``(labels, confidences)``: the predicted class of each image and the
    probability the model gives it. Inputs are checked by :func:`check_digit_images`.
    """
    from .data import prepare_images

    x = prepare_images(check_digit_images(images))
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return probs.argmax(axis=1), probs.max(axis=1)


from .locations import CACHE_DIR_ENV, cache_dir  # noqa: E402,F401 - re-exported: chapters call models.cache_dir()


def trained_article_cnn(*, epochs: int, n_train: int | None = None, seed: int = 0, use_cache: bool = True,
                        progress: bool = True):
    """The article's CNN trained with the article's recipe (Adam, batch 64) on the first
    ``n_train`` MNIST training images (all 60,000 by default).

    Several chapters need this model; it is cached under :func:`cache_dir`, keyed by
    its settings, so the book trains it once. Training is seeded, so a cached model and
    a freshly trained one are the same (bit-identical on one machine and thread
    count). Progress is one bar over the epochs on stderr, drawn the same way whether
    the model is trained or loaded, so executed notebooks do not depend on the cache.
    A damaged cache file (checked by its SHA-256 sidecar) is reported on stderr and retrained.
    """
    import sys

    import keras
    from tqdm import tqdm

    from .data import load_cached, load_mnist, one_hot, prepare_images, save_cached
    from .devices import seed_everything
    from .training import fit_classifier

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if n_train is not None and not 0 < n_train <= 60_000:
        raise ValueError(f"n_train must be between 1 and 60000, got {n_train}")
    n = n_train or 60_000
    path = cache_dir() / f"article_cnn_e{epochs}_n{n}_s{seed}.keras"
    bar = tqdm(total=epochs, desc=f"article CNN, {epochs} epoch(s) on {n:,} images", unit="epoch",
               file=sys.stderr, disable=not progress)
    model = None
    if use_cache:
        model = load_cached(path, keras.models.load_model, warn=lambda m: tqdm.write(m, file=sys.stderr))
    if model is not None:
        bar.update(epochs)
    else:
        (x, y), _ = load_mnist()
        seed_everything(seed)
        model = build_article_cnn()
        tick = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: bar.update(1))
        fit_classifier(model, (prepare_images(x[:n]), one_hot(y[:n])), None, epochs=epochs, batch_size=64,
                       progress=False, callbacks=[tick])
        if use_cache:
            save_cached(path, model.save, suffix=".keras")
    bar.close()
    return model


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read safely; the message names the file and the remedy."""


def _plain_problem(value, where: str) -> str | None:
    """Where ``value`` holds something ``torch.load(weights_only=True)`` would refuse, or None."""
    from collections import OrderedDict

    import torch

    if value is None or type(value) in (bool, int, float, str, torch.Tensor, torch.nn.Parameter):
        return None
    if type(value) in (list, tuple):
        return next((p for i, v in enumerate(value) if (p := _plain_problem(v, f"{where}[{i}]"))), None)
    if type(value) in (dict, OrderedDict):  # a state_dict is an OrderedDict
        for k, v in value.items():
            if not (k is None or type(k) in (bool, int, float, str)):
                return f"{where} has the key {k!r} ({type(k).__name__})"
            if problem := _plain_problem(v, f"{where}[{k!r}]"):
                return problem
        return None
    return f"{where} is a {type(value).__module__}.{type(value).__qualname__}"


def save_checkpoint(path, *, describe: dict | None = None, **blob):
    """Write a PyTorch checkpoint of plain data (tensors, numbers, strings, lists, dicts) to ``path``.

    The book's PyTorch models are saved as their constructor settings plus weights, never as
    pickled objects, so that :func:`load_checkpoint` can read them with ``weights_only=True``;
    anything else is refused here (ValueError naming the key) before a byte is written.
    ``describe`` (e.g. the settings) is also written beside it as readable JSON (same name,
    ``.json``). Both files are replaced atomically, so an interrupted save leaves the old ones.
    Creates the parent folder; returns the path.
    """
    import json
    from pathlib import Path

    import torch

    from .data import atomic_write

    if not blob:
        raise ValueError("save_checkpoint needs something to save")
    for key, value in blob.items():
        if problem := _plain_problem(value, key):
            raise ValueError(f"save_checkpoint cannot store {key!r}: {problem}. Only tensors, numbers, bools, None, "
                             "strings and lists, tuples and dicts of these can be loaded back safely "
                             "(weights_only=True); save the settings that rebuild an object instead of the object")
    text = None if describe is None else json.dumps(describe, indent=1)
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(blob, tmp))
    if text is not None:
        atomic_write(path.with_suffix(".json"), text)
    return path


def load_checkpoint(path, remedy: str = "save a model first") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU, refusing pickled code
    (``weights_only=True``). A missing file raises FileNotFoundError, an empty, truncated or
    code-carrying one :class:`CheckpointError`; both name the file and end with ``remedy``."""
    import pickle
    from pathlib import Path

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {remedy}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), e.g. from an interrupted save; delete it and write it "
                              f"again: {remedy}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise CheckpointError(
                f"{path} contains pickled Python objects, which load_checkpoint refuses to run (weights_only=True); "
                f"it was not written by save_checkpoint. If you trust its source, re-save it as plain tensors and "
                f"settings; otherwise delete it and write it again: {remedy}") from err
        reason = err
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, UnicodeDecodeError) as err:
        reason = err
    first = str(reason).strip().splitlines()[0][:160] if str(reason).strip() else ""
    raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint ({type(reason).__name__}"
                          f"{': ' + first if first else ''}); delete it and write it again: {remedy}") from reason
