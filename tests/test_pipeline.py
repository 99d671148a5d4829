import numpy as np
import pytest

from bigmodel_utils import pipeline as pl


@pytest.fixture(scope="module")
def data():
    x, y = pl.load_digits_data()
    return x, y, pl.split_data(x, y, seed=0)


def test_load_digits_data_shape_and_range(data):
    x, y, _ = data
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 16 and set(np.unique(y)) == set(range(10))


def test_split_data_disjoint_and_complete(data):
    x, y, s = data
    sizes = s.sizes()
    assert sum(sizes.values()) == len(y) and min(sizes.values()) > 0
    rows = {r.tobytes() for part in (s.train, s.val, s.pool, s.test) for r in part[0]}
    assert len(rows) <= len(y)
    assert sizes["train"] == pytest.approx(0.45 * len(y), abs=2)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.5, 0.3, 0.3, 0.1), (0.5, 0.5, 0.0, 0.0)])
def test_split_data_refuses_bad_fractions(data, fractions):
    x, y, _ = data
    with pytest.raises(ValueError):
        pl.split_data(x, y, fractions=fractions)


def test_split_data_refuses_bad_shapes():
    with pytest.raises(ValueError):
        pl.split_data(np.zeros(10), np.zeros(10))


def test_preprocessor_standardises_and_refuses(data):
    _, _, s = data
    pre = pl.Preprocessor().fit(s.train[0])
    z = pre.transform(s.train[0])
    assert np.allclose(z.mean(axis=0), 0, atol=1e-9)
    assert pre.transform(s.train[0][0]).shape == (1, 64)
    for bad in (np.zeros((2, 63)), np.full((1, 64), np.nan), np.full((1, 64), 17.0), -np.ones((1, 64))):
        with pytest.raises(ValueError):
            pre.transform(bad)
    with pytest.raises(RuntimeError):
        pl.Preprocessor().transform(s.train[0])


def test_train_accuracy_and_bad_args(data):
    _, _, s = data
    pre = pl.Preprocessor().fit(s.train[0])
    m = pl.train_model(pre.transform(s.train[0]), s.train[1], hidden=32, max_iter=100)
    assert pl.accuracy(m, pre.transform(s.test[0]), s.test[1]) > 0.9
    with pytest.raises(ValueError):
        pl.train_model(s.train[0], s.train[1], hidden=0)
    with pytest.raises(ValueError):
        pl.accuracy(m, s.test[0][:0], s.test[1][:0])


def test_tune_returns_trials(data):
    _, _, s = data
    pre = pl.Preprocessor().fit(s.train[0])
    best, trials = pl.tune(pre.transform(s.train[0]), s.train[1], pre.transform(s.val[0]), s.val[1],
                           n_trials=2, max_iter=20)
    assert len(trials) == 2 and set(best) == {"hidden", "alpha", "learning_rate"}
    assert trials.val_accuracy.max() <= 1
    with pytest.raises(ValueError):
        pl.tune(s.train[0], s.train[1], s.val[0], s.val[1], n_trials=0)


def test_artifact_roundtrip_predictor_and_tamper(data, tmp_path):
    _, _, s = data
    pre = pl.Preprocessor().fit(s.train[0])
    m = pl.train_model(pre.transform(s.train[0]), s.train[1], max_iter=50)
    path = tmp_path / "model.pkl"
    digest = pl.save_artifact(m, pre, path)
    m2, pre2 = pl.load_artifact(path, digest)
    predict = pl.make_predictor(m2, pre2)
    assert (predict(s.test[0]) == m.predict(pre.transform(s.test[0]))).all()
    with pytest.raises(ValueError):
        predict(np.zeros(10))
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ValueError, match="checksum"):
        pl.load_artifact(path, digest)


def test_collect_feedback_returns_only_wrong():
    predict = lambda x: np.asarray(x)[:, 0].astype(int)  # noqa: E731
    x = np.array([[1, 0], [2, 0], [3, 0]])
    xc, yc, n = pl.collect_feedback(predict, x, [1, 5, 3])
    assert n == 1 and yc.tolist() == [5] and xc.tolist() == [[2, 0]]


def test_stage_table_and_errors():
    t = pl.stage_table([("a", 0.5, "x"), ("b", 0.91234, "y")])
    assert list(t.columns) == ["stage", "test_accuracy", "note"] and t.test_accuracy.tolist() == [0.5, 0.9123]
    with pytest.raises(ValueError):
        pl.stage_table([])
    with pytest.raises(ValueError):
        pl.stage_table([("a", 1.5, "")])
