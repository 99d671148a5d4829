import numpy as np
import pytest

from bigmodel_utils import applications as app


def test_binary_report_counts_and_rates():
    r = app.binary_report([1, 1, 0, 0, 1], [0.9, 0.2, 0.6, 0.1, 0.5], threshold=0.5)
    assert (r.tp, r.fp, r.tn, r.fn) == (2, 1, 1, 1)
    assert r.sensitivity == pytest.approx(2 / 3) and r.specificity == pytest.approx(0.5)
    assert r.accuracy == pytest.approx(0.6) and r.ppv == pytest.approx(2 / 3)


def test_binary_report_empty_class_gives_nan():
    r = app.binary_report([0, 0], [0.1, 0.2])
    assert np.isnan(r.sensitivity) and np.isnan(r.ppv) and r.specificity == 1.0


@pytest.mark.parametrize("labels, scores", [([0, 2], [0.1, 0.2]), ([0, 1], [0.1]), ([], []),
                                            ([0, 1], [0.1, np.nan])])
def test_binary_inputs_refused(labels, scores):
    with pytest.raises(ValueError):
        app.binary_report(labels, scores)


def test_roc_auc_matches_sklearn_and_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # many ties
    assert app.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert app.roc_auc([0, 1], [0.0, 1.0]) == 1.0 and app.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="positive and one negative"):
        app.roc_auc([1, 1], [0.2, 0.3])


def test_calibration_table_and_ece():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.95, 1.0])
    t = app.calibration_table(y, p, n_bins=10)
    assert t["n"].tolist() == [1, 1, 2] and t["observed"].tolist() == [0.0, 0.0, 1.0]
    assert app.expected_calibration_error(y, p) == pytest.approx((0.05 + 0.15 + 0.05 + 0.0) / 4)
    with pytest.raises(ValueError):
        app.calibration_table(y, p, n_bins=0)
    with pytest.raises(ValueError):
        app.calibration_table(y, p + 0.5)


def test_per_class_accuracy_table():
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 5, 5]])
    t = app.per_class_accuracy_table(cm, ["a", "b", "c"])
    assert t["accuracy"].tolist() == [0.8, 0.9, 0.5]
    assert t["most confused with"].tolist() == ["b", "a", "b"] and t["count"].tolist() == [2, 1, 5]
    with pytest.raises(ValueError):
        app.per_class_accuracy_table(cm, ["a", "b"])
