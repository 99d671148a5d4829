"""A small, honest forecasting demo on real data: monthly atmospheric CO2 at Mauna Loa.

Why a module: the outlook chapter checks one of the article's "future" claims (forecasting in
energy and the environment) on real measurements that ship with statsmodels (Keeling & Whorf's
flask samples, 1958–2001), so no download is needed. The series loader, the forecasters and the
error measure live here so that they are named and unit-tested.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def load_co2_monthly() -> pd.Series:
    """Monthly mean CO2 (ppmv) at Mauna Loa, March 1958 – December 2001, from statsmodels' data set.

    The weekly samples are averaged per calendar month; the few months without any sample are filled
    by linear interpolation in time (the count is in ``series.attrs["n_interpolated"]``).
    """
    try:
        from statsmodels.datasets import co2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("statsmodels is needed for the CO2 data: pip install statsmodels==0.15.0") from err
    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()
    n_missing = int(monthly.isna().sum())
    monthly = monthly.interpolate(method="time")
    monthly.name = "co2_ppmv"
    monthly.attrs["n_interpolated"] = n_missing
    return monthly


def train_test_split_series(series, n_test: int):
    """Split a series into its first ``len - n_test`` values and its final ``n_test`` values."""
    s = pd.Series(series)
    if not 0 < n_test < len(s):
        raise ValueError(f"n_test must be between 1 and len(series) - 1 = {len(s) - 1}, got {n_test}")
    return s.iloc[:-n_test], s.iloc[-n_test:]


def mean_absolute_error(actual, predicted) -> float:
    """Mean of ``|actual − predicted|`` (same units as the data)."""
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.shape != p.shape or a.size == 0:
        raise ValueError(f"actual and predicted must be non-empty and of one shape, got {a.shape} and {p.shape}")
    return float(np.abs(a - p).mean())


def seasonal_naive(train, horizon: int, period: int = 12) -> np.ndarray:
    """Baseline: repeat the last observed season (forecast for month t = value at t − period)."""
    y = np.asarray(train, dtype=float)
    if period < 1 or len(y) < period:
        raise ValueError(f"need at least one full period ({period}) of training data, got {len(y)} values")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    last = y[-period:]
    return np.resize(last, horizon)


def trend_season_design(n: int, start: int = 0, period: int = 12, degree: int = 2) -> np.ndarray:
    """Design matrix: polynomial trend in time (years, centred at 0) plus one dummy per season."""
    if degree < 0 or period < 1:
        raise ValueError("need degree >= 0 and period >= 1")
    t = (np.arange(start, start + n) / period)
    trend = np.column_stack([t**d for d in range(1, degree + 1)]) if degree else np.empty((n, 0))
    season = np.eye(period)[np.arange(start, start + n) % period]
    return np.hstack([trend, season])


def trend_season_forecast(train, horizon: int, period: int = 12, degree: int = 2) -> np.ndarray:
    """Least-squares fit of a polynomial trend plus seasonal means, extrapolated ``horizon`` steps."""
    y = np.asarray(train, dtype=float)
    if len(y) < 2 * period:
        raise ValueError(f"need at least two periods ({2 * period}) of training data, got {len(y)}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    coef, *_ = np.linalg.lstsq(trend_season_design(len(y), 0, period, degree), y, rcond=None)
    return trend_season_design(horizon, len(y), period, degree) @ coef
