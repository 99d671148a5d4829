import numpy as np
import pandas as pd
import pytest

from bigmodel_utils import forecast as fc


def test_co2_series_is_the_published_record():
    s = fc.load_co2_monthly()
    assert len(s) == 526 and str(s.index[0].date()) == "1958-03-01" and str(s.index[-1].date()) == "2001-12-01"
    assert not s.isna().any() and s.attrs["n_interpolated"] < 10
    assert 310 < s.iloc[0] < 320 and 365 < s.iloc[-1] < 375  # ppmv, rising


def test_split_and_mae():
    s = pd.Series(np.arange(10.0))
    tr, te = fc.train_test_split_series(s, 3)
    assert tr.tolist() == list(range(7)) and te.tolist() == [7, 8, 9]
    assert fc.mean_absolute_error([1, 2, 3], [2, 2, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_test"):
        fc.train_test_split_series(s, 10)
    with pytest.raises(ValueError, match="one shape"):
        fc.mean_absolute_error([1, 2], [1])


def test_seasonal_naive_repeats_last_season():
    y = np.array([1, 2, 3, 10, 20, 30], float)
    assert fc.seasonal_naive(y, 5, period=3).tolist() == [10, 20, 30, 10, 20]
    with pytest.raises(ValueError, match="full period"):
        fc.seasonal_naive(y[:2], 3, period=3)
    with pytest.raises(ValueError, match="horizon"):
        fc.seasonal_naive(y, 0, period=3)


def test_trend_season_recovers_an_exact_model():
    t = np.arange(120)
    season = np.tile(np.array([0, 1, 3, 2, -1, -2, 0, 1, 2, 0, -1, -5], float), 10)
    y = 300 + 0.1 * t + 1e-4 * t**2 + season
    tr, te = y[:96], y[96:]
    assert fc.trend_season_forecast(tr, 24) == pytest.approx(te, abs=1e-8)
    assert fc.trend_season_design(5, 0, 12, 2).shape == (5, 14)
    with pytest.raises(ValueError, match="two periods"):
        fc.trend_season_forecast(tr[:20], 3)
