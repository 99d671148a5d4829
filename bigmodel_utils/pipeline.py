"""A small, complete model lifecycle: preprocess, train, tune, deploy, evaluate, feed back, retrain.

Why a module: the concepts chapter runs every stage of the article's lifecycle diagram once, end to
end, on real data (scikit-learn's 8x8 handwritten digits, which ship with scikit-learn and need no
network). Each stage is a named, tested function, so the chapter's table of "metric after each
stage" is computed by code that the unit tests exercise, not by ad-hoc cell arithmetic.

The model is a small multilayer perceptron (``sklearn.neural_network.MLPClassifier``): a neural
network that trains in about a second on two CPU cores, so a hyperparameter search with real trials
fits the book's time budget.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_FEATURES = 64  # 8x8 pixels
PIXEL_MAX = 16.0  # load_digits pixels are integers 0..16


@dataclass(frozen=True)
class Splits:
    """Disjoint parts of one data set, each as (features, labels).

    ``train`` fits the model, ``val`` chooses hyperparameters, ``pool`` plays the requests that
    users send to the deployed model (their corrections are the feedback), ``test`` is used only
    to report the metric after each stage.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    pool: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)[1]) for k in ("train", "val", "pool", "test")}


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scikit-learn digits as raw float pixels (0..16) of shape (n, 64), integer labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float64), d.target.astype(np.int64)


def split_data(x, y, fractions=(0.45, 0.15, 0.2, 0.2), seed: int = 0) -> Splits:
    """Stratified split into train/val/pool/test with the given fractions (summing to 1)."""
    from sklearn.model_selection import train_test_split

    x, y = np.asarray(x), np.asarray(y)
    if len(fractions) != 4 or min(fractions) <= 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be four positive numbers summing to 1, got {fractions}")
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be 2-D with one row per label, got {x.shape} and {y.shape}")
    parts, rest_x, rest_y, left = [], x, y, 1.0
    for f in fractions[:-1]:
        a_x, rest_x, a_y, rest_y = train_test_split(rest_x, rest_y, train_size=f / left, stratify=rest_y,
                                                    random_state=seed)
        parts.append((a_x, a_y))
        left -= f
    parts.append((rest_x, rest_y))
    return Splits(*parts)


class Preprocessor:
    """Scale pixels to [0, 1], then standardise each feature with statistics of the training set only.

    Refuses input of the wrong shape, non-finite values or pixels outside 0..16 (the data contract).
    """

    def __init__(self):
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    @staticmethod
    def validate(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"expected rows of {N_FEATURES} pixels, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("input contains NaN or infinite values")
        if x.min(initial=0) < 0 or x.max(initial=0) > PIXEL_MAX:
            raise ValueError(f"pixels must lie in [0, {PIXEL_MAX:g}]")
        return x

    def fit(self, x) -> "Preprocessor":
        x = self.validate(x) / PIXEL_MAX
        self.mean_ = x.mean(axis=0)
        self.std_ = x.std(axis=0)
        self.std_[self.std_ == 0] = 1.0  # constant border pixels stay 0 after centring
        return self

    def transform(self, x) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError("Preprocessor.fit must be called before transform")
        return (self.validate(x) / PIXEL_MAX - self.mean_) / self.std_


def train_model(x, y, seed: int = 0, hidden: int = 32, alpha: float = 1e-4, learning_rate: float = 1e-3,
                max_iter: int = 200):
    """Fit a one-hidden-layer MLP (Adam, early stopping off) on already preprocessed features."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    if hidden < 1 or alpha < 0 or learning_rate <= 0 or max_iter < 1:
        raise ValueError("hidden and max_iter must be >= 1, alpha >= 0, learning_rate > 0")
    model = MLPClassifier(hidden_layer_sizes=(int(hidden),), alpha=float(alpha),
                          learning_rate_init=float(learning_rate), max_iter=int(max_iter), random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def accuracy(model, x, y) -> float:
    """Share of correct predictions."""
    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("cannot compute accuracy on an empty set")
    return float((model.predict(x) == y).mean())


def tune(x_train, y_train, x_val, y_val, n_trials: int, seed: int = 0, max_iter: int = 200):
    """Optuna search (TPE sampler, seeded) over hidden size, L2 penalty and learning rate.

    Each trial trains on the training split and is scored on the validation split, never on the
    test split. Returns ``(best_params, trials)`` where ``trials`` is a DataFrame with one row per
    trial (number, parameters, validation accuracy).
    """
    import optuna
    import pandas as pd

    if n_trials < 1:
        raise ValueError("n_trials must be >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        params = dict(hidden=trial.suggest_int("hidden", 8, 128, log=True),
                      alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
                      learning_rate=trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True))
        return accuracy(train_model(x_train, y_train, seed=seed, max_iter=max_iter, **params), x_val, y_val)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    rows = [dict(trial=t.number, **t.params, val_accuracy=t.value) for t in study.trials]
    return dict(study.best_params), pd.DataFrame(rows)


def save_artifact(model, preprocessor: Preprocessor, path) -> str:
    """Pickle the model with its preprocessor; return the file's SHA-256 (record it to verify loads)."""
    path = Path(path)
    path.write_bytes(pickle.dumps({"model": model, "preprocessor": preprocessor}))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_artifact(path, sha256: str):
    """Load ``(model, preprocessor)`` only if the file's SHA-256 equals ``sha256``.

    Unpickling runs code, so an artifact whose checksum does not match what was recorded at save
    time is refused before it is unpickled.
    """
    blob = Path(path).read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != sha256:
        raise ValueError(f"checksum mismatch for {path}: expected {sha256[:12]}..., got {digest[:12]}...")
    obj = pickle.loads(blob)  # noqa: S301 - verified above
    return obj["model"], obj["preprocessor"]


def make_predictor(model, preprocessor: Preprocessor):
    """A prediction function for raw pixels (one image or a batch) that refuses malformed input."""

    def predict(pixels) -> np.ndarray:
        return model.predict(preprocessor.transform(pixels))

    return predict


def collect_feedback(predict, x, y_true):
    """Simulated users: they look at each prediction and correct the wrong ones.

    Returns ``(x_corrected, y_corrected, n_wrong)``: the requests the model got wrong with the
    labels the users supplied. Correct predictions produce no feedback.
    """
    y_true = np.asarray(y_true)
    wrong = predict(x) != y_true
    return np.asarray(x)[wrong], y_true[wrong], int(wrong.sum())


def stage_table(records) -> "pandas.DataFrame":  # noqa: F821
    """Rows of ``(stage, test_accuracy, note)`` as a DataFrame; accuracies must lie in [0, 1]."""
    import pandas as pd

    rows = [dict(stage=s, test_accuracy=round(float(a), 4), note=n) for s, a, n in records]
    if not rows:
        raise ValueError("no stages recorded")
    if any(not 0 <= r["test_accuracy"] <= 1 for r in rows):
        raise ValueError("accuracies must lie in [0, 1]")
    return pd.DataFrame(rows)
