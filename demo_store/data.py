"""Deterministic synthetic loan applications shaped like the source documents' data.

The target is drawn from a logistic model of a few meaningful features, with the intercept
calibrated so that about 8% of applicants default, as in the documents.

As in Home Credit's application table, part of the columns are categorical: they come as
pandas `category` columns (a fixed category list each, in CATEGORICAL_COLUMNS), with the real
table's value frequencies and missing shares, and a few of them shift the risk a little.
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

# Home Credit's application-table categoricals, {category: frequency among the present
# values} as in the real table (its rarest values left out). The category lists are fixed
# here, in this order, so every sample, and the model trained on it, carries the same ones.
_CATEGORIES: dict[str, dict[str, float]] = {
    "NAME_CONTRACT_TYPE": {"Cash loans": 0.905, "Revolving loans": 0.095},
    "CODE_GENDER": {"F": 0.658, "M": 0.342},
    "NAME_TYPE_SUITE": {
        "Unaccompanied": 0.811,
        "Family": 0.131,
        "Spouse, partner": 0.037,
        "Children": 0.0106,
        "Other_B": 0.0058,
        "Other_A": 0.0028,
        "Group of people": 0.0009,
    },
    # The real shares; Pensioner is assigned from age instead (see _categorical_features).
    "NAME_INCOME_TYPE": {
        "Working": 0.5163,
        "Commercial associate": 0.2329,
        "Pensioner": 0.1800,
        "State servant": 0.0706,
        "Unemployed": 0.00008,
        "Student": 0.00006,
        "Businessman": 0.00004,
        "Maternity leave": 0.00002,
    },
    "NAME_EDUCATION_TYPE": {
        "Secondary / secondary special": 0.710,
        "Higher education": 0.2435,
        "Incomplete higher": 0.0334,
        "Lower secondary": 0.0124,
        "Academic degree": 0.0007,
    },
    "NAME_FAMILY_STATUS": {
        "Married": 0.639,
        "Single / not married": 0.148,
        "Civil marriage": 0.097,
        "Separated": 0.064,
        "Widow": 0.052,
    },
    "NAME_HOUSING_TYPE": {
        "House / apartment": 0.887,
        "With parents": 0.048,
        "Municipal apartment": 0.036,
        "Rented apartment": 0.016,
        "Office apartment": 0.0085,
        "Co-op apartment": 0.0037,
    },
    # Shares among applicants with a known occupation (31% have none, pensioners nearly all).
    "OCCUPATION_TYPE": {
        "Laborers": 0.261,
        "Sales staff": 0.152,
        "Core staff": 0.130,
        "Managers": 0.101,
        "Drivers": 0.088,
        "High skill tech staff": 0.054,
        "Accountants": 0.046,
        "Medicine staff": 0.040,
        "Security staff": 0.032,
        "Cooking staff": 0.028,
        "Cleaning staff": 0.022,
        "Private service staff": 0.0125,
        "Low-skill Laborers": 0.0099,
        "Waiters/barmen staff": 0.0064,
        "Secretaries": 0.0062,
        "Realty agents": 0.0036,
        "HR staff": 0.0027,
        "IT staff": 0.0025,
    },
    "WEEKDAY_APPR_PROCESS_START": {
        "MONDAY": 0.165,
        "TUESDAY": 0.175,
        "WEDNESDAY": 0.169,
        "THURSDAY": 0.165,
        "FRIDAY": 0.164,
        "SATURDAY": 0.110,
        "SUNDAY": 0.053,
    },
    # Shares among employed applicants; "XNA" (the real table's own code) for the others.
    "ORGANIZATION_TYPE": {
        "Business Entity Type 3": 0.270,
        "Self-employed": 0.153,
        "Other": 0.066,
        "Medicine": 0.044,
        "Business Entity Type 2": 0.042,
        "Government": 0.041,
        "School": 0.035,
        "Trade: type 7": 0.031,
        "Kindergarten": 0.027,
        "Construction": 0.027,
        "Business Entity Type 1": 0.024,
        "Transport: type 4": 0.021,
        "Trade: type 3": 0.014,
        "Industry: type 9": 0.013,
        "Industry: type 3": 0.013,
        "Security": 0.013,
        "Housing": 0.012,
        "Industry: type 11": 0.011,
        "Military": 0.010,
        "Bank": 0.010,
        "Agriculture": 0.010,
        "Police": 0.009,
        "Transport: type 2": 0.009,
        "Postal": 0.009,
        "Security Ministries": 0.008,
        "Trade: type 2": 0.008,
        "Restaurant": 0.007,
        "Services": 0.006,
        "University": 0.005,
        "Industry: type 7": 0.005,
        "Transport: type 3": 0.005,
        "Electricity": 0.004,
        "Hotel": 0.004,
        "Telecom": 0.002,
        "Emergency": 0.002,
        "Insurance": 0.002,
        "Mobile": 0.001,
        "Realtor": 0.0016,
        "Advertising": 0.0017,
        "Legal Services": 0.0012,
        "Culture": 0.0015,
        "Religion": 0.0003,
        "XNA": 0.0,
    },
    # The building-information block: missing together for about half the applicants.
    "FONDKAPREMONT_MODE": {
        "reg oper account": 0.760,
        "reg oper spec account": 0.124,
        "not specified": 0.059,
        "org spec account": 0.057,
    },
    "HOUSETYPE_MODE": {
        "block of flats": 0.982,
        "specific housing": 0.010,
        "terraced house": 0.008,
    },
    "WALLSMATERIAL_MODE": {
        "Panel": 0.437,
        "Stone, brick": 0.429,
        "Block": 0.061,
        "Wooden": 0.035,
        "Mixed": 0.015,
        "Monolithic": 0.012,
        "Others": 0.011,
    },
    "EMERGENCYSTATE_MODE": {"No": 0.9856, "Yes": 0.0144},
}
CATEGORICAL_COLUMNS = tuple(_CATEGORIES)

# Missing shares in the real table; the building-information columns are missing together.
_MISSING_SHARE = {
    "NAME_TYPE_SUITE": 0.0042,
    "EMERGENCYSTATE_MODE": 0.474,
    "HOUSETYPE_MODE": 0.502,
    "WALLSMATERIAL_MODE": 0.508,
    "FONDKAPREMONT_MODE": 0.684,
}

# Log-odds shifts by category (about the real table's default rates by category).
_RISK_SHIFT = {
    "NAME_INCOME_TYPE": {
        "Working": 0.15,
        "Commercial associate": -0.05,
        "Pensioner": -0.3,
        "State servant": -0.3,
        "Unemployed": 1.5,
        "Maternity leave": 1.5,
    },
    "NAME_EDUCATION_TYPE": {
        "Higher education": -0.45,
        "Incomplete higher": -0.05,
        "Lower secondary": 0.25,
        "Academic degree": -1.2,
    },
    "CODE_GENDER": {"M": 0.3},
    "NAME_CONTRACT_TYPE": {"Revolving loans": -0.35},
    "OCCUPATION_TYPE": {
        "Low-skill Laborers": 0.7,
        "Drivers": 0.25,
        "Laborers": 0.2,
        "Security staff": 0.2,
        "Accountants": -0.4,
        "Managers": -0.2,
        "Core staff": -0.2,
        "High skill tech staff": -0.2,
    },
}


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


def _draw(rng: np.random.Generator, name: str, n_rows: int) -> np.ndarray:
    frequencies = _CATEGORIES[name]
    share = np.array(list(frequencies.values()))
    return rng.choice(np.array(list(frequencies), dtype=object), p=share / share.sum(), size=n_rows)


def _categorical_features(
    rng: np.random.Generator, days_birth: np.ndarray
) -> dict[str, pd.Categorical]:
    """Draw the categoricals; NaN where missing. Pensioners are the old applicants, and have
    no occupation and "XNA" as organisation, as in the real table."""
    n_rows = days_birth.shape[0]
    values = {name: _draw(rng, name, n_rows) for name in _CATEGORIES if name != "NAME_INCOME_TYPE"}
    working = _CATEGORIES["NAME_INCOME_TYPE"] | {"Pensioner": 0.0}
    share = np.array(list(working.values()))
    income = rng.choice(np.array(list(working), dtype=object), p=share / share.sum(), size=n_rows)
    # 18% pensioners: most applicants from 58 on, a few (early retirement) before.
    retired = rng.random(n_rows) < np.where(-days_birth >= 58 * 365, 0.7, 0.024)
    income[retired] = "Pensioner"
    values["NAME_INCOME_TYPE"] = income
    not_employed = np.isin(income, ["Pensioner", "Unemployed"])
    values["ORGANIZATION_TYPE"][not_employed] = "XNA"
    occupation_missing = rng.random(n_rows) < np.where(not_employed, 0.99, 0.167)
    values["OCCUPATION_TYPE"][occupation_missing] = np.nan
    # One draw for the building block, so its columns are missing together (nested).
    building = rng.random(n_rows)
    suite = rng.random(n_rows)
    for name, share_missing in _MISSING_SHARE.items():
        draw = suite if name == "NAME_TYPE_SUITE" else building
        values[name][draw < share_missing] = np.nan
    return {
        name: pd.Categorical(values[name], categories=list(_CATEGORIES[name]))
        for name in _CATEGORIES
    }


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
        + sum(_category_shift(frame[name], shifts) for name, shifts in _RISK_SHIFT.items())
    )


def _category_shift(column: pd.Series, shifts: dict[str, float]) -> np.ndarray:
    """The log-odds shift of each row's category; 0 for unlisted categories and missing."""
    lookup = np.array([shifts.get(c, 0.0) for c in column.cat.categories] + [0.0])
    return lookup[column.cat.codes.to_numpy()]  # code -1 (missing) takes the trailing 0


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

    The named columns are 24 numeric ones and the CATEGORICAL_COLUMNS (`category` dtype, NaN
    where missing). `n_features` above that pads with aggregated bureau-style numeric columns
    (weakly informative), to reach the source documents' 189 features.
    """
    rng = np.random.default_rng(seed)
    frame = _base_features(rng, n_rows)
    frame = frame.assign(**_categorical_features(rng, frame.DAYS_BIRTH.to_numpy()))
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
