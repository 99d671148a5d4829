"""Recommendation from implicit feedback: a synthetic data generator, two recommenders, two metrics.

Why a module: the recommendation chapter compares a matrix-factorisation recommender with a
popularity baseline. No real interaction data set is available offline in this book's
environment, so the data are *synthetic*, drawn from a documented model whose ground truth
(each user's true preference for each item) is known. The ranking metrics (recall@k, NDCG@k)
are implemented here once and unit-tested against hand-computed cases and scikit-learn.

Conventions: interaction matrices are dense ``(n_users, n_items)`` arrays of 0/1 (small
enough here); ``scores`` are real-valued ``(n_users, n_items)`` arrays where higher means
"recommend first". Items a user already has in training are never recommended again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class SyntheticInteractions:
    """Implicit-feedback data drawn from a known model (see :func:`make_implicit_data`).

    ``interactions`` is the observed 0/1 matrix; ``true_scores`` the logits each user's choices were
    drawn from (the ground truth: the best possible ranking); ``user_factors``/``item_factors`` and
    ``item_popularity`` are the hidden parts of those logits.
    """

    interactions: np.ndarray
    true_scores: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_popularity: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.interactions.shape

    @property
    def density(self) -> float:
        return float(self.interactions.mean())


def make_implicit_data(n_users: int = 2_000, n_items: int = 1_000, n_factors: int = 8, *,
                       mean_items_per_user: float = 30.0, popularity_weight: float = 1.0,
                       taste_scale: float = 2.0, zipf_exponent: float = 1.0, min_items: int = 5,
                       seed: int = 0) -> SyntheticInteractions:
    """Draw a synthetic user × item implicit-feedback matrix with known ground truth.

    Model (all parts documented so that the chapter can say what is being recovered):

    * each user ``u`` has a taste vector ``p_u`` and each item ``i`` a vector ``q_i`` (``n_factors``
      dimensions, independent standard normal entries, scaled so that ``p_u · q_i`` has standard
      deviation ``taste_scale``);
    * each item has a popularity ``pop_i ∝ rank^(-zipf_exponent)`` (a Zipf law, a random permutation of
      ranks over items), entering the logit as ``popularity_weight · log(pop_i)``;
    * true logit ``s_ui = p_u · q_i + popularity_weight · log(pop_i)``;
    * user ``u`` consumes ``n_u`` items (log-normal around ``mean_items_per_user``, at least
      ``min_items``), drawn *without replacement* with probabilities ∝ ``exp(s_ui)`` (the Gumbel top-k
      trick: the ``n_u`` largest of ``s_ui + Gumbel noise``). Only *which* items were consumed is kept:
      implicit feedback, no ratings, no negatives.
    """
    if n_users < 2 or n_items < 2 or n_factors < 1:
        raise ValueError(f"need n_users >= 2, n_items >= 2, n_factors >= 1; got {n_users}, {n_items}, {n_factors}")
    if not (min_items >= 2 and mean_items_per_user >= min_items and mean_items_per_user <= n_items / 2):
        raise ValueError("need 2 <= min_items <= mean_items_per_user <= n_items / 2; "
                         f"got min_items={min_items}, mean_items_per_user={mean_items_per_user}, n_items={n_items}")
    rng = np.random.default_rng(seed)
    scale = np.sqrt(taste_scale / np.sqrt(n_factors))
    p = rng.standard_normal((n_users, n_factors)) * scale
    q = rng.standard_normal((n_items, n_factors)) * scale
    ranks = rng.permutation(n_items) + 1
    pop = ranks.astype(float) ** (-zipf_exponent)
    pop /= pop.sum()
    logits = p @ q.T + popularity_weight * np.log(pop)[None, :]
    counts = rng.lognormal(np.log(mean_items_per_user) - 0.125, 0.5, n_users)
    counts = np.clip(np.round(counts), min_items, n_items // 2).astype(int)
    noisy = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-noisy, axis=1, kind="stable")
    x = np.zeros((n_users, n_items), dtype=np.float32)
    take = np.arange(n_items)[None, :] < counts[:, None]
    rows = np.broadcast_to(np.arange(n_users)[:, None], order.shape)
    x[rows[take], order[take]] = 1.0
    return SyntheticInteractions(x, logits, p, q, pop)


def _check_binary(name: str, m) -> np.ndarray:
    a = np.asarray(m)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_users, n_items) array, got shape {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1 (implicit feedback); binarise it with (x > 0)")
    return a.astype(np.float32)


def _split_rng(seed: int, stream: int) -> np.random.Generator:
    """A random stream of its own for a split, so that ``np.random.default_rng(seed).random(...)`` used
    elsewhere (for a random-scores baseline, say) is not the very stream that chose the held-out items."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5B117, stream)))


def split_per_user(interactions, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a random ``test_fraction`` of each user's items (at least one; at least one kept).

    Returns ``(train, test)``, two 0/1 matrices of the input's shape that add up to it. With
    ``test_fraction=0`` use :func:`leave_one_out` instead.
    """
    x = _check_binary("interactions", interactions)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    counts = x.sum(axis=1).astype(int)
    if (counts < 2).any():
        raise ValueError(f"{int((counts < 2).sum())} users have fewer than 2 items; drop them before splitting")
    rng = _split_rng(seed, 1)
    n_test = np.clip(np.round(counts * test_fraction), 1, counts - 1).astype(int)
    # random order of each user's items: random keys, non-items pushed to the end
    keys = np.where(x > 0, rng.random(x.shape), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    test = ((rank < n_test[:, None]) & (x > 0)).astype(np.float32)
    return x - test, test


def leave_one_out(interactions, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out exactly one random item per user (the leave-one-out protocol)."""
    x = _check_binary("interactions", interactions)
    counts = x.sum(axis=1)
    if (counts < 2).any():
        raise ValueError(f"{int((counts < 2).sum())} users have fewer than 2 items; drop them before splitting")
    rng = _split_rng(seed, 2)
    keys = np.where(x > 0, rng.random(x.shape), np.inf)
    pick = np.argmin(keys, axis=1)
    test = np.zeros_like(x)
    test[np.arange(len(x)), pick] = 1.0
    return x - test, test


# ----------------------------------------------------------------------------- metrics
def top_k(scores, k: int, exclude=None) -> np.ndarray:
    """Indices of each user's ``k`` highest-scoring items, best first, skipping ``exclude`` (0/1) items.

    Ties are broken by the lower item index (a stable sort), so the result is deterministic.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n_users, n_items) array, got shape {s.shape}")
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must be between 1 and the number of items ({s.shape[1]}), got {k}")
    if exclude is not None:
        e = _check_binary("exclude", exclude)
        if e.shape != s.shape:
            raise ValueError(f"exclude has shape {e.shape}, scores {s.shape}; they must match")
        s = np.where(e > 0, -np.inf, s)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def _ranking_inputs(scores, test, k, exclude, ranking=None):
    t = _check_binary("test", test)
    if ranking is not None:
        top = np.asarray(ranking)
        if top.ndim != 2 or top.shape[0] != t.shape[0] or not 1 <= k <= top.shape[1]:
            raise ValueError(f"ranking must be an (n_users, >= k) array of item indices from top_k; "
                             f"got shape {top.shape} for k={k} and {t.shape[0]} users")
        top = top[:, :k]
    else:
        s = np.asarray(scores, dtype=float)
        if s.shape != t.shape:
            raise ValueError(f"scores has shape {s.shape} and test {t.shape}; they must match")
        top = top_k(s, k, exclude)
    hits = np.take_along_axis(t, top, axis=1)
    return t, top, hits


def recall_at_k(scores, test, k: int, exclude=None, *, per_user: bool = False, ranking=None):
    """Recall@k: share of each user's held-out items found in their top ``k``, averaged over users.

    ``recall_u = |top_k(u) ∩ test(u)| / |test(u)|``; users with no held-out item are skipped.
    With one held-out item per user (leave-one-out) this is the hit rate. To evaluate several ``k``
    without re-sorting, pass ``ranking=top_k(scores, k_max, exclude)`` (``scores`` is then ignored).
    """
    t, _, hits = _ranking_inputs(scores, test, k, exclude, ranking)
    n = t.sum(axis=1)
    keep = n > 0
    if not keep.any():
        raise ValueError("no user has a held-out item; nothing to evaluate")
    r = hits.sum(axis=1)[keep] / n[keep]
    return r if per_user else float(r.mean())


def ndcg_at_k(scores, test, k: int, exclude=None, *, per_user: bool = False, ranking=None):
    """NDCG@k with binary relevance, averaged over users that have a held-out item.

    ``DCG_u = Σ_{r=1..k} rel(r) / log2(r + 1)`` over the top-``k`` list; the ideal DCG puts all
    ``min(k, |test(u)|)`` relevant items first; NDCG = DCG / ideal DCG, between 0 and 1.
    """
    t, _, hits = _ranking_inputs(scores, test, k, exclude, ranking)
    n = t.sum(axis=1)
    keep = n > 0
    if not keep.any():
        raise ValueError("no user has a held-out item; nothing to evaluate")
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discount
    ideal = np.cumsum(discount)[np.minimum(n, k).astype(int) - 1]
    r = dcg[keep] / ideal[keep]
    return r if per_user else float(r.mean())


# ----------------------------------------------------------------------------- recommenders
def popularity_scores(train) -> np.ndarray:
    """Baseline: every user gets the same scores, the items' training interaction counts."""
    x = _check_binary("train", train)
    return np.broadcast_to(x.sum(axis=0), x.shape).copy()


@dataclass
class ImplicitALS:
    """Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren & Volinsky 2008).

    Preference ``p_ui = 1`` if user ``u`` consumed item ``i``, else 0, with confidence
    ``c_ui = 1 + alpha · p_ui``. Minimises ``Σ c_ui (p_ui − x_u · y_i)² + reg (‖X‖² + ‖Y‖²)`` by solving
    for all user vectors with the item vectors fixed, then the other way round; each half-step is an
    exact, batched linear solve (dense matrices: meant for the small data of this book).
    """

    n_factors: int = 16
    reg: float = 1.0
    alpha: float = 10.0
    iterations: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.n_factors < 1 or self.iterations < 1 or self.reg < 0 or self.alpha < 0:
            raise ValueError("need n_factors >= 1, iterations >= 1, reg >= 0 and alpha >= 0")

    def _solve(self, p: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        k = self.n_factors
        gram = fixed.T @ fixed + self.reg * np.eye(k)
        outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(len(fixed), k * k)
        a = gram[None] + self.alpha * (p @ outer).reshape(len(p), k, k)
        b = (1.0 + self.alpha) * (p @ fixed)
        return np.linalg.solve(a, b[:, :, None])[:, :, 0]

    def fit(self, train, *, callback=None) -> "ImplicitALS":
        """Fit on a 0/1 matrix; ``callback(iteration, model)`` is called after each full sweep."""
        p = _check_binary("train", train).astype(np.float64)
        rng = np.random.default_rng(self.seed)
        self.item_factors_ = rng.standard_normal((p.shape[1], self.n_factors)) * 0.01
        for it in range(1, self.iterations + 1):
            self.user_factors_ = self._solve(p, self.item_factors_)
            self.item_factors_ = self._solve(p.T, self.user_factors_)
            if callback is not None:
                callback(it, self)
        return self

    def loss(self, train) -> float:
        """The weighted squared loss plus regularisation (what ALS decreases at every half-step)."""
        p = _check_binary("train", train).astype(np.float64)
        err = p - self.scores()
        return float(((1.0 + self.alpha * p) * err**2).sum()
                     + self.reg * ((self.user_factors_**2).sum() + (self.item_factors_**2).sum()))

    def scores(self) -> np.ndarray:
        """Predicted preference of every user for every item."""
        if not hasattr(self, "user_factors_"):
            raise RuntimeError("call fit(train) before scores()")
        return self.user_factors_ @ self.item_factors_.T
