"""Group-fairness metrics, a synthetic hiring data set with known ground truth, and two mitigations.

Why a module: the fairness chapter states numbers (selection rates, true-positive-rate gaps,
per-group accuracy) before and after a mitigation. The metrics are easy to get subtly wrong
(which rate, conditioned on which label), so they are defined once here and unit-tested against
hand-computed values.

The data are **synthetic**: no real data set with a protected attribute is available offline in
this book's environment. The generator is documented so that the ground truth is known, which a
real data set never offers: both groups have the same distribution of true qualification, the
historical labels were biased against one group, and one feature is a proxy for the group.

References: demographic parity and equal opportunity as in Hardt, Price & Srebro (2016) and
Barocas, Hardt & Narayanan (2023); reweighing as in Kamiran & Calders (2012); group-specific
thresholds as the post-processing of Hardt et al. (2016).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = ("skill_test", "experience", "postcode_score")


def _arrays(y_true, y_pred, group):
    y = np.asarray(y_true)
    p = np.asarray(y_pred)
    g = np.asarray(group)
    if y.ndim != 1 or y.shape != p.shape or y.shape != g.shape or y.size == 0:
        raise ValueError(f"y_true, y_pred and group must be non-empty 1-D arrays of one length, "
                         f"got {y.shape}, {p.shape}, {g.shape}")
    for name, a in (("y_true", y), ("y_pred", p)):
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must contain only 0 and 1 (threshold scores first)")
    return y.astype(int), p.astype(int), g


def _rate(mask_num, mask_den) -> float:
    d = int(mask_den.sum())
    return float(mask_num[mask_den].mean()) if d else float("nan")


def selection_rates(y_pred, group) -> dict:
    """Share of each group that receives the positive decision, P(Ŷ=1 | G=g)."""
    _, p, g = _arrays(np.zeros(len(np.asarray(y_pred)), int), y_pred, group)
    return {k: _rate(p == 1, g == k) for k in np.unique(g).tolist()}


def true_positive_rates(y_true, y_pred, group) -> dict:
    """Per group, the share of truly positive cases that receive the positive decision, P(Ŷ=1 | Y=1, G=g)."""
    y, p, g = _arrays(y_true, y_pred, group)
    return {k: _rate(p == 1, (g == k) & (y == 1)) for k in np.unique(g).tolist()}


def accuracy_by_group(y_true, y_pred, group) -> dict:
    y, p, g = _arrays(y_true, y_pred, group)
    return {k: _rate(p == y, g == k) for k in np.unique(g).tolist()}


def _spread(rates: dict) -> float:
    v = [r for r in rates.values() if not np.isnan(r)]
    if len(v) < 2:
        raise ValueError("a disparity needs at least two groups with defined rates")
    return float(max(v) - min(v))


def demographic_parity_difference(y_pred, group) -> float:
    """Largest minus smallest group selection rate (0 = every group is selected equally often)."""
    return _spread(selection_rates(y_pred, group))


def equal_opportunity_difference(y_true, y_pred, group) -> float:
    """Largest minus smallest group true-positive rate (0 = qualified people are selected equally often
    whatever their group)."""
    return _spread(true_positive_rates(y_true, y_pred, group))


def group_report(y_true, y_pred, group):
    """Table with one row per group: size, base rate, selection rate, TPR, FPR and accuracy."""
    import pandas as pd

    y, p, g = _arrays(y_true, y_pred, group)
    rows = []
    for k in np.unique(g).tolist():
        m = g == k
        rows.append(dict(group=k, n=int(m.sum()), base_rate=float(y[m].mean()), selection_rate=_rate(p == 1, m),
                         tpr=_rate(p == 1, m & (y == 1)), fpr=_rate(p == 1, m & (y == 0)),
                         accuracy=_rate(p == y, m)))
    return pd.DataFrame(rows).set_index("group")


@dataclass(frozen=True)
class HiringData:
    """Synthetic applicants. ``y_true``: truly qualified (ground truth, never available in practice);
    ``y_hist``: the historical decision the model learns from (biased against group 1)."""

    x: np.ndarray
    group: np.ndarray
    y_true: np.ndarray
    y_hist: np.ndarray

    def __len__(self) -> int:
        return len(self.group)

    def subset(self, idx) -> "HiringData":
        return HiringData(self.x[idx], self.group[idx], self.y_true[idx], self.y_hist[idx])


def make_hiring_data(n: int = 20_000, *, label_bias: float = 0.4, proxy_strength: float = 1.5,
                     share_group1: float = 0.4, seed: int = 0) -> HiringData:
    """Generate a synthetic hiring data set with a known ground truth.

    * group G: 1 with probability ``share_group1`` (the disadvantaged group), else 0;
    * true qualification Q ~ N(0, 1) in **both** groups (no real difference in merit);
      ``y_true = 1`` when Q + N(0, 0.3²) > 0.5 (about 31 % in each group);
    * features: skill_test = Q + N(0, 0.6²), experience = 0.5·Q + N(0, 0.8²), and
      postcode_score = proxy_strength·G + N(0, 1), which carries no merit but reveals the group;
    * historical label ``y_hist``: equals ``y_true``, except that each qualified member of group 1
      was rejected with probability ``label_bias`` (biased past decisions).
    """
    if n < 10:
        raise ValueError(f"n must be at least 10, got {n}")
    if not 0 <= label_bias < 1 or not 0 < share_group1 < 1 or proxy_strength < 0:
        raise ValueError("need 0 <= label_bias < 1, 0 < share_group1 < 1 and proxy_strength >= 0")
    rng = np.random.default_rng(seed)
    g = (rng.random(n) < share_group1).astype(int)
    q = rng.normal(size=n)
    y_true = (q + rng.normal(scale=0.3, size=n) > 0.5).astype(int)
    x = np.column_stack([q + rng.normal(scale=0.6, size=n), 0.5 * q + rng.normal(scale=0.8, size=n),
                         proxy_strength * g + rng.normal(size=n)])
    flipped = (g == 1) & (y_true == 1) & (rng.random(n) < label_bias)
    y_hist = np.where(flipped, 0, y_true)
    return HiringData(x=x, group=g, y_true=y_true, y_hist=y_hist)


def reweighing_weights(y, group) -> np.ndarray:
    """Kamiran–Calders reweighing: weight P(G=g)·P(Y=y) / P(G=g, Y=y) per example, so that label and
    group are independent in the weighted training data."""
    y, _, g = _arrays(y, np.zeros(len(np.asarray(y)), int), group)
    w = np.empty(len(y), dtype=float)
    for k in np.unique(g):
        for v in (0, 1):
            m = (g == k) & (y == v)
            if m.any():
                w[m] = (g == k).mean() * (y == v).mean() / m.mean()
    return w


def fit_logistic(x, y, sample_weight=None):
    """Logistic regression (scikit-learn, standardised features); returns the fitted pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x, y, logisticregression__sample_weight=sample_weight)
    return model


def thresholds_for_tpr(scores, y_true, group, target_tpr: float) -> dict:
    """Post-processing for equal opportunity: per group, the highest score threshold whose
    true-positive rate (on the data given, e.g. a validation set) reaches ``target_tpr``."""
    s = np.asarray(scores, dtype=float)
    y, _, g = _arrays(y_true, np.zeros(len(s), int), group)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in shape: {s.shape} vs {y.shape}")
    if not 0 < target_tpr <= 1:
        raise ValueError(f"target_tpr must be in (0, 1], got {target_tpr}")
    out = {}
    for k in np.unique(g).tolist():
        pos = np.sort(s[(g == k) & (y == 1)])[::-1]
        if pos.size == 0:
            raise ValueError(f"group {k!r} has no positive example; cannot set its threshold")
        out[k] = float(pos[int(np.ceil(target_tpr * pos.size)) - 1])
    return out


def apply_thresholds(scores, group, thresholds: dict) -> np.ndarray:
    """Decision ``score >= threshold[group]`` for each example."""
    s = np.asarray(scores, dtype=float)
    g = np.asarray(group)
    missing = set(np.unique(g).tolist()) - set(thresholds)
    if missing:
        raise ValueError(f"no threshold for group(s) {sorted(missing)}; compute them with thresholds_for_tpr")
    t = np.array([thresholds[k] for k in g.tolist()], dtype=float)
    return (s >= t).astype(int)
