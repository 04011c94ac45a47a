"""The demo production run's reason-code table (`reason_codes.yaml`), written as a credit team
would for Home Credit's features: related features share a code, and protected attributes (and
what the business will not cite) are never a reason."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

# code, text, features. BUREAU_AGG_* (the full-size model's padding) join the bureau code.
CODES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "R01",
        "Amount requested too high for the income",
        ("AMT_CREDIT", "AMT_GOODS_PRICE", "CREDIT_INCOME_RATIO"),
    ),
    (
        "R02",
        "Repayments too high for the income",
        ("AMT_ANNUITY", "ANNUITY_INCOME_RATIO", "CREDIT_TERM"),
    ),
    ("R03", "External credit score too low", ("EXT_SOURCE_1", "EXT_SOURCE_2", "EXT_SOURCE_3")),
    ("R04", "Credit bureau history", ("BUREAU_DEBT_CREDIT_RATIO",)),
    ("R05", "Previous applications refused", ("PREV_REFUSAL_RATE",)),
    ("R06", "Length of employment", ("DAYS_EMPLOYED", "DAYS_EMPLOYED_PERCENT")),
    ("R07", "Income level or source", ("AMT_INCOME_TOTAL", "NAME_INCOME_TYPE")),
    ("R08", "Occupation or employer type", ("OCCUPATION_TYPE", "ORGANIZATION_TYPE")),
    ("R09", "Level of education", ("NAME_EDUCATION_TYPE",)),
    (
        "R10",
        "Time at address or with identity document too short",
        ("DAYS_REGISTRATION", "DAYS_ID_PUBLISH"),
    ),
    ("R11", "Phone number changed recently", ("DAYS_LAST_PHONE_CHANGE",)),
    ("R12", "Type of loan requested", ("NAME_CONTRACT_TYPE",)),
    ("R13", "Assets (car, property)", ("FLAG_OWN_CAR", "FLAG_OWN_REALTY", "OWN_CAR_AGE")),
    (
        "R14",
        "Housing situation",
        (
            "NAME_HOUSING_TYPE",
            "HOUSETYPE_MODE",
            "WALLSMATERIAL_MODE",
            "FONDKAPREMONT_MODE",
            "EMERGENCYSTATE_MODE",
        ),
    ),
    ("R15", "Region of residence risk rating", ("REGION_RATING_CLIENT",)),
)
BUREAU_CODE = "R04"

# Protected (sex, age, marital and family status) or not a reason the business will give.
NEVER_A_REASON = (
    "CODE_GENDER",
    "DAYS_BIRTH",
    "NAME_FAMILY_STATUS",
    "CNT_CHILDREN",
    "CNT_FAM_MEMBERS",
    "NAME_TYPE_SUITE",
    "WEEKDAY_APPR_PROCESS_START",
)


def reason_codes_yaml(features: Sequence[str]) -> str:
    """The table for a model with `features`: rows only for the features it has."""
    present = set(features)
    text = {code: words for code, words, _ in CODES}
    rows = [
        {"feature": feature, "code": code, "text": words}
        for code, words, members in CODES
        for feature in members
        if feature in present
    ]
    rows += [
        {"feature": feature, "code": BUREAU_CODE, "text": text[BUREAU_CODE]}
        for feature in features
        if feature.startswith("BUREAU_AGG_")
    ]
    table = {
        "reasons": rows,
        "never_a_reason": [feature for feature in NEVER_A_REASON if feature in present],
    }
    return yaml.safe_dump(table, sort_keys=False, width=100)
