import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from bigmodel_utils import recommend as rs


def test_top_k_order_ties_and_exclusion():
    s = np.array([[0.1, 0.9, 0.5, 0.9]])
    assert rs.top_k(s, 3).tolist() == [[1, 3, 2]]  # tie 0.9/0.9: lower index first
    assert rs.top_k(s, 2, exclude=np.array([[0, 1, 0, 0]])).tolist() == [[3, 2]]
    with pytest.raises(ValueError, match="between 1 and"):
        rs.top_k(s, 5)
    with pytest.raises(ValueError, match="2-D"):
        rs.top_k(s[0], 1)
    with pytest.raises(ValueError, match="must match"):
        rs.top_k(s, 1, exclude=np.zeros((2, 4)))


def test_recall_and_ndcg_hand_computed():
    # user 0: ranking 3,1,2,0; relevant {1, 0}; user 1: ranking 0,1,2,3; relevant {2}
    s = np.array([[0.1, 0.8, 0.5, 0.9], [0.9, 0.8, 0.7, 0.1]])
    t = np.array([[1, 1, 0, 0], [0, 0, 1, 0]])
    # k=2: user 0 top {3,1} -> 1 of 2 relevant; user 1 top {0,1} -> 0 of 1
    assert rs.recall_at_k(s, t, 2) == pytest.approx((0.5 + 0.0) / 2)
    # k=3: user 1 hits at rank 3
    assert rs.recall_at_k(s, t, 3, per_user=True).tolist() == [0.5, 1.0]
    # NDCG@3 user 0: hit at rank 2 -> (1/log2 3) / (1 + 1/log2 3); user 1: hit at rank 3 -> (1/2) / 1
    expected0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert rs.ndcg_at_k(s, t, 3, per_user=True) == pytest.approx([expected0, 0.5])
    # excluding item 3 (a training item) for user 0 moves item 1 to rank 1 and item 2 to rank 2
    ex = np.array([[0, 0, 0, 1], [0, 0, 0, 0]])
    assert rs.ndcg_at_k(s, t, 2, ex, per_user=True)[0] == pytest.approx(1 / (1 + 1 / np.log2(3)))


def test_users_without_test_items_are_skipped_and_bad_input_rejected():
    s = np.array([[0.2, 0.1], [0.3, 0.4]])
    t = np.array([[1, 0], [0, 0]])
    assert rs.recall_at_k(s, t, 1, per_user=True).tolist() == [1.0]
    with pytest.raises(ValueError, match="no user"):
        rs.ndcg_at_k(s, np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="only 0 and 1"):
        rs.recall_at_k(s, np.array([[2, 0], [0, 1]]), 1)
    with pytest.raises(ValueError, match="must match"):
        rs.recall_at_k(s, np.ones((2, 3)), 1)


@pytest.mark.parametrize("k", [1, 3, 5, 20])
def test_ndcg_matches_scikit_learn(k):
    rng = np.random.default_rng(0)
    s = rng.random((50, 20))
    t = (rng.random((50, 20)) < 0.15).astype(int)
    t[t.sum(axis=1) == 0, 0] = 1
    ours = rs.ndcg_at_k(s, t, k, per_user=True)
    theirs = [ndcg_score(t[u:u + 1], s[u:u + 1], k=k) for u in range(len(s))]
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_generator_is_reproducible_and_has_known_structure():
    d = rs.make_implicit_data(200, 100, 4, mean_items_per_user=10, seed=3)
    d2 = rs.make_implicit_data(200, 100, 4, mean_items_per_user=10, seed=3)
    assert np.array_equal(d.interactions, d2.interactions)
    assert d.shape == (200, 100) and set(np.unique(d.interactions)) == {0.0, 1.0}
    assert (d.interactions.sum(axis=1) >= 5).all()
    assert np.allclose(d.true_scores, d.user_factors @ d.item_factors.T + np.log(d.item_popularity))
    # popular items are consumed more often
    pop_order = np.argsort(-d.item_popularity)
    counts = d.interactions.sum(axis=0)
    assert counts[pop_order[:10]].mean() > counts[pop_order[-10:]].mean()
    with pytest.raises(ValueError, match="min_items"):
        rs.make_implicit_data(20, 10, 2, mean_items_per_user=30)
    with pytest.raises(ValueError, match="n_factors"):
        rs.make_implicit_data(20, 10, 0)


def test_splits_partition_the_data():
    x = rs.make_implicit_data(100, 60, 3, mean_items_per_user=8, seed=1).interactions
    tr, te = rs.split_per_user(x, 0.25, seed=0)
    assert np.array_equal(tr + te, x) and (tr * te).sum() == 0
    assert (te.sum(axis=1) >= 1).all() and (tr.sum(axis=1) >= 1).all()
    tr1, te1 = rs.leave_one_out(x, seed=0)
    assert np.array_equal(tr1 + te1, x) and (te1.sum(axis=1) == 1).all()
    with pytest.raises(ValueError, match="test_fraction"):
        rs.split_per_user(x, 1.5)
    with pytest.raises(ValueError, match="fewer than 2"):
        rs.leave_one_out(np.array([[1, 0], [1, 1]]))


def test_popularity_and_als_beat_chance_and_als_loss_decreases():
    d = rs.make_implicit_data(300, 120, 4, mean_items_per_user=15, seed=0)
    tr, te = rs.split_per_user(d.interactions, 0.2, seed=0)
    pop = rs.popularity_scores(tr)
    assert np.allclose(pop[0], tr.sum(axis=0)) and np.allclose(pop[0], pop[-1])
    losses = []
    model = rs.ImplicitALS(n_factors=4, reg=5.0, alpha=5.0, iterations=4)
    model.fit(tr, callback=lambda it, m: losses.append(m.loss(tr)))
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))
    chance = rs.recall_at_k(np.random.default_rng(0).random(tr.shape), te, 10, tr)
    assert rs.recall_at_k(model.scores(), te, 10, tr) > rs.recall_at_k(pop, te, 10, tr) > chance
    with pytest.raises(RuntimeError, match="fit"):
        rs.ImplicitALS().scores()
    with pytest.raises(ValueError, match="n_factors"):
        rs.ImplicitALS(n_factors=0)


def test_split_stream_is_independent_of_default_rng_with_the_same_seed():
    x = rs.make_implicit_data(300, 200, 4, mean_items_per_user=20, seed=0).interactions
    tr, te = rs.split_per_user(x, 0.2, seed=0)
    chance = rs.recall_at_k(np.random.default_rng(0).random(x.shape), te, 20, tr)
    assert 0.03 < chance < 0.2  # about 20 / 180 candidates; 0 if the streams coincided


def test_precomputed_ranking_gives_the_same_metrics():
    rng = np.random.default_rng(1)
    s, t = rng.random((30, 25)), (rng.random((30, 25)) < 0.2).astype(int)
    ex = ((rng.random((30, 25)) < 0.1) & (t == 0)).astype(int)
    t[t.sum(axis=1) == 0, 0] = 1
    ranking = rs.top_k(s, 10, ex)
    for k in (1, 5, 10):
        assert rs.recall_at_k(None, t, k, ranking=ranking) == rs.recall_at_k(s, t, k, ex)
        assert rs.ndcg_at_k(None, t, k, ranking=ranking) == rs.ndcg_at_k(s, t, k, ex)
    with pytest.raises(ValueError, match="ranking must be"):
        rs.recall_at_k(None, t, 11, ranking=ranking)
