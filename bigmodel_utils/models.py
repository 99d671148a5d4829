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


CACHE_DIR_ENV = "BIGMODEL_CACHE"


def cache_dir():
    """Where trained models are cached between chapters (``BIGMODEL_CACHE`` or ``_build/cache``)."""
    import os
    from pathlib import Path

    return Path(os.environ.get(CACHE_DIR_ENV, Path(__file__).resolve().parent.parent / "_build" / "cache"))


def trained_article_cnn(*, epochs: int, n_train: int | None = None, seed: int = 0, use_cache: bool = True,
                        progress: bool = True):
    """The article's CNN trained with the article's recipe (Adam, batch 64) on the first
    ``n_train`` MNIST training images (all 60,000 by default).

    Several chapters need this model; it is cached under :func:`cache_dir`, keyed by
    its settings, so the book trains it once. Training is seeded, so a cached model and
    a freshly trained one are the same (bit-identical on one machine and thread
    count). Progress is one bar over the epochs on stderr, drawn the same way whether
    the model is trained or loaded, so executed notebooks do not depend on the cache.
    """
    import sys

    import keras
    from tqdm import tqdm

    from .data import load_mnist, one_hot, prepare_images
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
    if use_cache and path.is_file():
        model = keras.models.load_model(path)
        bar.update(epochs)
    else:
        (x, y), _ = load_mnist()
        seed_everything(seed)
        model = build_article_cnn()
        tick = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: bar.update(1))
        fit_classifier(model, (prepare_images(x[:n]), one_hot(y[:n])), None, epochs=epochs, batch_size=64,
                       progress=False, callbacks=[tick])
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.keras")
            model.save(tmp)
            tmp.replace(path)
    bar.close()
    return model


def save_checkpoint(path, *, describe: dict | None = None, **blob):
    """Write a PyTorch checkpoint of plain data (tensors, numbers, strings, lists, dicts) to ``path``.

    The book's PyTorch models are saved as their constructor settings plus weights, never as
    pickled objects, so that :func:`load_checkpoint` can read them with ``weights_only=True``.
    ``describe`` (e.g. the settings) is also written beside it as readable JSON (same name,
    ``.json``). Creates the parent folder; returns the path.
    """
    import json
    from pathlib import Path

    import torch

    if not blob:
        raise ValueError("save_checkpoint needs something to save")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path)
    if describe is not None:
        path.with_suffix(".json").write_text(json.dumps(describe, indent=1))
    return path


def load_checkpoint(path, remedy: str = "save a model first") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU, refusing pickled code
    (``weights_only=True``). A missing file raises FileNotFoundError that ends with ``remedy``."""
    from pathlib import Path

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {remedy}")
    return torch.load(path, map_location="cpu", weights_only=True)
