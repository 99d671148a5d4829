"""Fitting and evaluating classifiers, with progress bars and a tidy history."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def progress_callback(mininterval: float = 2.0):
    """A Keras callback: a tqdm bar per epoch (stderr) and one clean summary line per epoch (stdout).

    The summary lines hold only metrics, so they are identical from run to run and
    nbval compares them strictly; the bar's timings go to stderr, which nbval
    normalises (``tests/nbval_sanitize.cfg``) and the book hides.
    """
    import sys

    import keras
    from tqdm import tqdm

    class EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.epochs = self.params.get("epochs")
            self.steps = self.params.get("steps")

        def on_epoch_begin(self, epoch, logs=None):
            self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch",
                            mininterval=mininterval, file=sys.stderr, ascii=False, leave=True)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()))
            print(f"epoch {epoch + 1}/{self.epochs}: {metrics}", flush=True)

    return EpochProgress()


def fit_classifier(model, train, val, *, epochs: int, batch_size: int, learning_rate: float = 1e-3, verbose: int = 0,
                   progress: bool = True, callbacks=()):
    """Compile ``model`` with Adam and categorical cross-entropy, fit it, return the history.

    Progress shows as a tqdm bar per epoch plus a summary line (``verbose=0``, the
    default); ``verbose=1`` gives Keras's own progress bar instead; ``progress=False``
    trains silently (extra Keras ``callbacks`` still run).
    ``train`` and ``val`` are ``(x, y_one_hot)`` pairs; the validation set (or ``None``)
    only monitors training; never pass the test set. Returns a DataFrame with one
    row per epoch (loss, accuracy, val_loss, val_accuracy).
    """
    import keras
    import pandas as pd

    (x, y), (xv, yv) = train, (val if val is not None else ((), ()))
    if len(x) != len(y) or len(xv) != len(yv):
        raise ValueError("images and labels differ in length")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = list(callbacks) + ([progress_callback()] if progress and not verbose else [])
    hist = model.fit(x, y, validation_data=(xv, yv) if val is not None else None, epochs=epochs, batch_size=batch_size,
                     verbose=verbose, callbacks=callbacks)
    df = pd.DataFrame(hist.history)
    df.insert(0, "epoch", np.arange(1, len(df) + 1))
    return df


@dataclass(frozen=True)
class ClassifierReport:
    """Everything the chapter reports about a classifier on a held-out set."""

    accuracy: float
    probabilities: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    confusion: np.ndarray

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """Recall of each class: correct / total for that true label."""
        return np.diag(self.confusion) / self.confusion.sum(axis=1)

    @property
    def errors(self) -> np.ndarray:
        """Indices of misclassified examples, the most confidently wrong first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        conf = self.probabilities[wrong, self.predictions[wrong]]
        return wrong[np.argsort(-conf, kind="stable")]


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of examples with true class i predicted as j."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def evaluate_classifier(model, x: np.ndarray, labels: np.ndarray, batch_size: int = 512) -> ClassifierReport:
    """Predict on a held-out set once and gather accuracy, confusion matrix and errors."""
    labels = np.asarray(labels).astype(np.int64)
    if len(x) != len(labels):
        raise ValueError(f"{len(x)} images but {len(labels)} labels")
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, probs.shape[1])
    return ClassifierReport(
        accuracy=float((preds == labels).mean()),
        probabilities=probs,
        predictions=preds,
        labels=labels,
        confusion=cm,
    )
