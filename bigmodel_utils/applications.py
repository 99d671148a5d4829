"""Helpers for the application chapters (images, health, ...).

Why a module: the application chapters report the same kinds of numbers
(per-class accuracy of an image classifier, the sensitivity and specificity of
a diagnostic test, calibration), and each number the prose states must be
computed by named, tested code rather than ad-hoc cell arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _binary_inputs(labels, scores):
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or y.shape != s.shape or y.size == 0:
        raise ValueError(f"labels and scores must be non-empty 1-D arrays of one length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y.astype(np.int64), s


@dataclass(frozen=True)
class BinaryReport:
    """Counts and rates of a yes/no test at one threshold (positive = the condition is present)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        """True-positive rate: share of the truly positive cases the test flags (recall)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        """True-negative rate: share of the truly negative cases the test clears."""
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / (self.tp + self.fp + self.tn + self.fn)

    @property
    def ppv(self) -> float:
        """Positive predictive value: share of flagged cases that are truly positive."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")


def binary_report(labels, scores, threshold: float = 0.5) -> BinaryReport:
    """Confusion counts of ``score >= threshold`` against 0/1 ``labels``."""
    y, s = _binary_inputs(labels, scores)
    pred = s >= threshold
    return BinaryReport(tp=int((pred & (y == 1)).sum()), fp=int((pred & (y == 0)).sum()),
                        tn=int((~pred & (y == 0)).sum()), fn=int((~pred & (y == 1)).sum()))


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random
    negative (ties count one half), computed from ranks (Mann–Whitney U)."""
    from scipy.stats import rankdata

    y, s = _binary_inputs(labels, scores)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative example")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_table(labels, probabilities, n_bins: int = 10):
    """Reliability table: for equal-width probability bins, the number of cases, the mean
    predicted probability and the observed share of positives (empty bins are dropped)."""
    import pandas as pd

    y, p = _binary_inputs(labels, probabilities)
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must lie in [0, 1]")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    rows = [dict(bin=f"{b / n_bins:.1f}-{(b + 1) / n_bins:.1f}", n=int((idx == b).sum()),
                 mean_predicted=float(p[idx == b].mean()), observed=float(y[idx == b].mean()))
            for b in range(n_bins) if (idx == b).any()]
    return pd.DataFrame(rows)


def expected_calibration_error(labels, probabilities, n_bins: int = 10) -> float:
    """Case-weighted mean of |observed − predicted| over the bins of :func:`calibration_table`."""
    t = calibration_table(labels, probabilities, n_bins)
    return float((t["n"] * (t["observed"] - t["mean_predicted"]).abs()).sum() / t["n"].sum())


def per_class_accuracy_table(confusion, class_names):
    """Per-class accuracy (recall) and the class each one is most often mistaken for."""
    import pandas as pd

    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion must be square with one row per class name, got {cm.shape} "
                         f"and {len(class_names)} names")
    off = cm.astype(float).copy()
    np.fill_diagonal(off, -1)
    totals = cm.sum(axis=1)
    return pd.DataFrame({
        "class": list(class_names),
        "accuracy": np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan),
        "most confused with": [class_names[j] for j in off.argmax(axis=1)],
        "count": off.max(axis=1).astype(int),
    })
