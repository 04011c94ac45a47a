"""Deterministic synthetic loan applications shaped like the source documents' data.

The target is drawn from a logistic model of a few meaningful features, with the intercept
calibrated so that about 8% of applicants default, as in the documents.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_RATE = 0.08

# Columns that are integers in the data; every other column is float64 and may hold NaN.
INTEGER_COLUMNS = (
    "CNT_CHILDREN",
    "CNT_FAM_MEMBERS",
    "DAYS_BIRTH",
    "FLAG_OWN_CAR",
    "FLAG_OWN_REALTY",
    "REGION_RATING_CLIENT",
)


def _with_missing(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    values = values.astype(float)
    values[rng.random(values.shape[0]) < share] = np.nan
    return values


def _base_features(rng: np.random.Generator, n_rows: int) -> pd.DataFrame:
    income = rng.lognormal(mean=11.9, sigma=0.5, size=n_rows)
    credit = income * rng.lognormal(mean=0.9, sigma=0.5, size=n_rows)
    annuity = credit / rng.uniform(10, 40, size=n_rows)
    age_days = rng.integers(21 * 365, 69 * 365, size=n_rows)
    employed_days = np.minimum(rng.exponential(2200, size=n_rows), age_days - 18 * 365)
    children = rng.poisson(0.4, size=n_rows)
    frame = pd.DataFrame(
        {
            "AMT_INCOME_TOTAL": income.round(2),
            "AMT_CREDIT": credit.round(2),
            "AMT_ANNUITY": _with_missing(rng, annuity.round(2), 0.0005),
            "AMT_GOODS_PRICE": _with_missing(rng, credit * rng.uniform(0.8, 1.0, n_rows), 0.001),
            "DAYS_BIRTH": -age_days,
            "DAYS_EMPLOYED": _with_missing(rng, -employed_days.round(), 0.18),
            "DAYS_REGISTRATION": -rng.uniform(0, 15000, size=n_rows).round(),
            "DAYS_ID_PUBLISH": -rng.uniform(0, 7000, size=n_rows).round(),
            "DAYS_LAST_PHONE_CHANGE": -rng.uniform(0, 4000, size=n_rows).round(),
            "EXT_SOURCE_1": _with_missing(rng, rng.beta(5, 5, size=n_rows), 0.56),
            "EXT_SOURCE_2": _with_missing(rng, rng.beta(6, 4, size=n_rows), 0.002),
            "EXT_SOURCE_3": _with_missing(rng, rng.beta(5, 4, size=n_rows), 0.20),
            "OWN_CAR_AGE": _with_missing(rng, rng.gamma(2.0, 6.0, size=n_rows).round(), 0.66),
            "CNT_CHILDREN": children,
            "CNT_FAM_MEMBERS": children + 1 + rng.binomial(1, 0.6, size=n_rows),
            "FLAG_OWN_CAR": rng.binomial(1, 0.34, size=n_rows),
            "FLAG_OWN_REALTY": rng.binomial(1, 0.69, size=n_rows),
            "REGION_RATING_CLIENT": rng.choice([1, 2, 3], p=[0.1, 0.74, 0.16], size=n_rows),
            "BUREAU_DEBT_CREDIT_RATIO": _with_missing(rng, rng.gamma(1.5, 0.3, size=n_rows), 0.14),
            "PREV_REFUSAL_RATE": _with_missing(rng, rng.beta(1, 6, size=n_rows), 0.05),
        }
    )
    frame["CREDIT_INCOME_RATIO"] = frame.AMT_CREDIT / frame.AMT_INCOME_TOTAL
    frame["ANNUITY_INCOME_RATIO"] = frame.AMT_ANNUITY / frame.AMT_INCOME_TOTAL
    frame["CREDIT_TERM"] = frame.AMT_ANNUITY / frame.AMT_CREDIT
    frame["DAYS_EMPLOYED_PERCENT"] = frame.DAYS_EMPLOYED / frame.DAYS_BIRTH
    return frame


def _risk_logit(frame: pd.DataFrame) -> np.ndarray:
    external = frame[["EXT_SOURCE_1", "EXT_SOURCE_2", "EXT_SOURCE_3"]].mean(axis=1).fillna(0.5)
    return (
        -4.0 * (external.to_numpy() - 0.5)
        + 0.6 * np.log(frame.CREDIT_INCOME_RATIO.to_numpy())
        + 8.0 * frame.ANNUITY_INCOME_RATIO.fillna(0.2).to_numpy()
        + 0.00004 * frame.DAYS_BIRTH.to_numpy()
        - 1.2 * frame.DAYS_EMPLOYED_PERCENT.fillna(0.0).to_numpy()
        + 0.35 * (frame.REGION_RATING_CLIENT.to_numpy() - 2)
        + 0.8 * frame.BUREAU_DEBT_CREDIT_RATIO.fillna(0.45).to_numpy()
        + 2.0 * frame.PREV_REFUSAL_RATE.fillna(0.14).to_numpy()
    )


def _calibrated_intercept(logit: np.ndarray, rate: float) -> float:
    """Bisect the intercept so that the mean default probability equals `rate`."""
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        if (1 / (1 + np.exp(-(logit + middle)))).mean() > rate:
            high = middle
        else:
            low = middle
    return (low + high) / 2


def make_applications(
    n_rows: int, n_features: int | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series]:
    """Return (features, target) with `TARGET` 1 for a default.

    `n_features` above the 24 named columns pads with aggregated bureau-style columns
    (weakly informative), to reach the source documents' 189 features.
    """
    rng = np.random.default_rng(seed)
    frame = _base_features(rng, n_rows)
    logit = _risk_logit(frame)
    extra = (n_features or frame.shape[1]) - frame.shape[1]
    padding = {}
    for index in range(max(extra, 0)):
        column = rng.normal(size=n_rows)
        logit = logit + rng.normal(scale=0.05) * column
        padding[f"BUREAU_AGG_{index:03d}"] = _with_missing(rng, column, 0.03)
    frame = pd.concat([frame, pd.DataFrame(padding)], axis=1) if padding else frame
    logit = logit + rng.normal(scale=0.8, size=n_rows)
    probability = 1 / (1 + np.exp(-(logit + _calibrated_intercept(logit, DEFAULT_RATE))))
    target = pd.Series(rng.binomial(1, probability), name="TARGET")
    return frame, target
