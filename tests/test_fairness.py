"""Unit tests of bigmodel_utils.fairness against hand-computed values."""
import numpy as np
import pytest

from bigmodel_utils import fairness as fa

# group 0: y_true 1 1 0 0, y_pred 1 1 1 0 ; group 1: y_true 1 1 0 0, y_pred 1 0 0 0
G = np.array([0, 0, 0, 0, 1, 1, 1, 1])
Y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
P = np.array([1, 1, 1, 0, 1, 0, 0, 0])


def test_rates_hand_computed():
    assert fa.selection_rates(P, G) == {0: 0.75, 1: 0.25}
    assert fa.true_positive_rates(Y, P, G) == {0: 1.0, 1: 0.5}
    assert fa.accuracy_by_group(Y, P, G) == {0: 0.75, 1: 0.75}
    assert fa.demographic_parity_difference(P, G) == 0.5
    assert fa.equal_opportunity_difference(Y, P, G) == 0.5


def test_group_report_hand_computed():
    r = fa.group_report(Y, P, G)
    assert list(r.index) == [0, 1]
    assert r.loc[0, "fpr"] == 0.5 and r.loc[1, "fpr"] == 0.0
    assert r.loc[1, "tpr"] == 0.5 and r.loc[0, "n"] == 4 and r.loc[1, "base_rate"] == 0.5


def test_string_groups_and_three_groups():
    g = np.array(["a", "a", "b", "b", "c", "c"])
    p = np.array([1, 1, 1, 0, 0, 0])
    assert fa.demographic_parity_difference(p, g) == 1.0


@pytest.mark.parametrize("args, match", [
    ((Y, P[:3], G), "one length"),
    ((Y, P * 2, G), "only 0 and 1"),
    ((np.array([]), np.array([]), np.array([])), "non-empty"),
])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        fa.equal_opportunity_difference(*args)


def test_single_group_has_no_disparity():
    with pytest.raises(ValueError, match="two groups"):
        fa.demographic_parity_difference([1, 0], [0, 0])


def test_reweighing_hand_computed_and_makes_label_independent_of_group():
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    w = fa.reweighing_weights(y, g)
    # P(g=0)=.5, P(y=1)=.5, P(g=0,y=1)=1/8 -> weight 2; P(g=0,y=0)=3/8 -> 2/3
    assert w[0] == pytest.approx(2.0) and w[1] == pytest.approx(2 / 3)
    for k in (0, 1):
        m = g == k
        assert np.sum(w[m] * y[m]) / np.sum(w[m]) == pytest.approx(0.5)


def test_thresholds_reach_the_target_tpr():
    s = np.array([0.9, 0.8, 0.7, 0.1, 0.6, 0.5, 0.4, 0.3])
    y = np.array([1, 1, 1, 0, 1, 1, 1, 1])
    g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    th = fa.thresholds_for_tpr(s, y, g, 0.5)
    assert th == {0: 0.8, 1: 0.5}
    pred = fa.apply_thresholds(s, g, th)
    assert list(pred) == [1, 1, 0, 0, 1, 1, 0, 0]
    assert fa.true_positive_rates(y, pred, g)[1] == 0.5
    with pytest.raises(ValueError, match="target_tpr"):
        fa.thresholds_for_tpr(s, y, g, 0.0)
    with pytest.raises(ValueError, match="no threshold"):
        fa.apply_thresholds(s, np.full(8, 2), th)


def test_generator_ground_truth():
    d = fa.make_hiring_data(20_000, label_bias=0.5, seed=1)
    assert len(d) == 20_000 and d.x.shape == (20_000, 3)
    q0, q1 = d.y_true[d.group == 0].mean(), d.y_true[d.group == 1].mean()
    assert abs(q0 - q1) < 0.02  # equal merit
    h1 = d.y_hist[d.group == 1].mean()
    assert h1 == pytest.approx(q1 * 0.5, abs=0.02)  # half of group 1's qualified rejected
    assert np.all(d.y_hist[d.group == 0] == d.y_true[d.group == 0])
    assert np.all(d.y_hist <= d.y_true)
    assert d.subset(slice(0, 10)).x.shape == (10, 3)
    with pytest.raises(ValueError, match="label_bias"):
        fa.make_hiring_data(100, label_bias=1.0)


def test_fit_logistic_learns_the_signal():
    d = fa.make_hiring_data(4_000, seed=2)
    m = fa.fit_logistic(d.x, d.y_true)
    assert np.mean(m.predict(d.x) == d.y_true) > 0.75
