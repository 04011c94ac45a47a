"""Reason codes for rejected applications: the table (parsing, checks), the computation (pure,
on tiny seeded LightGBM models trained into tmp_path and on the demo production model), and
the answers of the in-process service in the records, compact and file forms."""

from __future__ import annotations

import io
import json
from pathlib import Path

import bentoml
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from scoring.core.contract import FeatureSpec
from scoring.core.reasons import ReasonPlan, load_plan
from scoring.stored_model.layout import BOOSTER_FILE, CHECKSUMS_KEY, file_sha256
from scoring.stored_model.reason_codes import (
    REASON_CODES_FILE,
    REASON_CODES_KEY,
    ReasonTable,
    ReasonTableError,
)
from tests.service_helpers import code_matrix

# ---- the table ------------------------------------------------------------------------------

FEATURES = ("EXT_SOURCE_2", "EXT_SOURCE_3", "AMT_CREDIT", "CODE_GENDER")
GOOD_TABLE = """
reasons:
  - {feature: EXT_SOURCE_2, code: R03, text: External credit score too low}
  - {feature: EXT_SOURCE_3, code: R03, text: External credit score too low}
  - {feature: AMT_CREDIT, code: R01, text: Amount requested too high}
never_a_reason: [CODE_GENDER]
"""


def test_a_table_that_fits_the_model_parses_into_rows_and_exclusions():
    table = ReasonTable.parse(GOOD_TABLE, FEATURES)
    assert [(r.feature, r.code) for r in table.rows] == [
        ("EXT_SOURCE_2", "R03"),
        ("EXT_SOURCE_3", "R03"),
        ("AMT_CREDIT", "R01"),
    ]
    assert table.never_a_reason == {"CODE_GENDER"}
    assert table.uncoded(FEATURES) == []


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (
            "reasons:\n  - {feature: SHOE_SIZE, code: R09, text: Feet}\n",
            "names feature(s) the model does not have: SHOE_SIZE",
        ),
        ("never_a_reason: [CODE_GENDR]\n", "does not have: CODE_GENDR"),
        (
            "reasons:\n  - {feature: EXT_SOURCE_2, code: R03, text: Score too low}\n"
            "  - {feature: EXT_SOURCE_3, code: R03, text: External score too low}\n",
            "code R03 has 2 different texts",
        ),
        (
            "reasons:\n  - {feature: AMT_CREDIT, code: R01, text: High}\n"
            "  - {feature: AMT_CREDIT, code: R02, text: Higher}\n",
            "lists feature(s) more than once: AMT_CREDIT",
        ),
        (
            "reasons:\n  - {feature: CODE_GENDER, code: R01, text: Sex}\n"
            "never_a_reason: [CODE_GENDER]\n",
            "more than once: CODE_GENDER",
        ),
        ("reasons: [\n", "unreadable YAML at line 2"),
        ("reasons: []\nnever: [CODE_GENDER]\n", "never: Extra inputs are not permitted"),
        ("reasons:\n  - {feature: AMT_CREDIT, code: R01}\n", "reasons.0.text: Field required"),
        ("- just a list\n", "the top level"),
        (
            "reasons:\n  - {feature: AMT_CREDIT, code: EXT_SOURCE_2, text: High}\n",
            "code EXT_SOURCE_2 is also the name of a feature the table does not list",
        ),
    ],
    ids=[
        "unknown feature",
        "unknown excluded feature",
        "code with two texts",
        "feature listed twice",
        "feature coded and excluded",
        "unreadable yaml",
        "unknown key",
        "row without text",
        "not a mapping",
        "code named like an unlisted feature",
    ],
)
def test_a_table_that_does_not_fit_is_refused_saying_what_to_fix(text, complaint):
    with pytest.raises(ReasonTableError) as refused:
        ReasonTable.parse(text, FEATURES)
    assert complaint in str(refused.value)
    assert "\n" not in str(refused.value)


# ---- the computation, on synthetic contributions -----------------------------------------------


def plan_for(table: str | None, names=FEATURES) -> ReasonPlan:
    parsed = None if table is None else ReasonTable.parse(table, names)
    return ReasonPlan.build(parsed, names, "test")


def numeric_spec(names=FEATURES) -> FeatureSpec:
    return FeatureSpec(names=tuple(names), integer=frozenset())


def test_equal_contributions_are_ordered_by_code():
    plan = plan_for(GOOD_TABLE)
    # EXT_SOURCE_2 + EXT_SOURCE_3 (R03) = 0.5 = AMT_CREDIT (R01): a tie, broken by the code.
    contributions = np.array([[0.25, 0.25, 0.5, 0.0, -1.0]])
    (reasons,) = plan.explain(np.zeros((1, 4)), contributions, numeric_spec(), top_n=4)
    assert [r.code for r in reasons] == ["R01", "R03"]


def test_a_code_that_lowered_the_risk_is_never_a_reason():
    plan = plan_for(GOOD_TABLE)
    # R03 sums to -0.1 although EXT_SOURCE_2 alone raised the risk.
    contributions = np.array([[0.3, -0.4, 0.2, 0.0, -1.0]])
    (reasons,) = plan.explain(np.zeros((1, 4)), contributions, numeric_spec(), top_n=4)
    assert [r.code for r in reasons] == ["R01"]


def test_reason_count_is_capped_at_the_number_of_reportable_codes():
    plan = plan_for(GOOD_TABLE)
    assert plan.codes == ("R01", "R03")
    contributions = np.array([[0.3, 0.1, 0.2, 5.0, -1.0]])
    (reasons,) = plan.explain(np.zeros((1, 4)), contributions, numeric_spec(), top_n=10)
    assert [r.code for r in reasons] == ["R03", "R01"]
    assert plan.describe(10)["reasons_per_rejection"] == 2


def test_without_a_table_every_feature_is_reported_under_its_own_name_and_flagged_uncoded():
    plan = plan_for(None)
    contributions = np.array([[0.3, 0.1, 0.2, 0.4, -1.0]])
    (reasons,) = plan.explain(np.zeros((1, 4)), contributions, numeric_spec(), top_n=2)
    assert [(r.code, r.text, r.features, r.coded) for r in reasons] == [
        ("CODE_GENDER", "CODE_GENDER", ["CODE_GENDER"], False),
        ("EXT_SOURCE_2", "EXT_SOURCE_2", ["EXT_SOURCE_2"], False),
    ]


def test_features_the_table_does_not_list_are_reported_under_their_own_name():
    table = "reasons:\n  - {feature: AMT_CREDIT, code: R01, text: High}\n"
    plan = plan_for(table)
    contributions = np.array([[0.3, 0.1, 0.2, 0.0, -1.0]])
    (reasons,) = plan.explain(np.zeros((1, 4)), contributions, numeric_spec(), top_n=4)
    assert [(r.code, r.coded) for r in reasons] == [
        ("EXT_SOURCE_2", False),
        ("R01", True),
        ("EXT_SOURCE_3", False),
    ]


def test_values_are_the_applicants_category_boolean_integer_or_null():
    names = ("INCOME_TYPE", "OWNS_CAR", "CHILDREN", "SCORE")
    spec = FeatureSpec(
        names=names,
        integer=frozenset({"CHILDREN"}),
        boolean=frozenset({"OWNS_CAR"}),
        categories={"INCOME_TYPE": ("Working", "Pensioner")},
    )
    plan = ReasonPlan.build(None, names, "test")
    rows = np.array([[1.0, 1.0, 2.0, np.nan]])
    contributions = np.array([[0.4, 0.3, 0.2, 0.1, -1.0]])
    (reasons,) = plan.explain(rows, contributions, spec, top_n=4)
    assert [r.values for r in reasons] == [["Pensioner"], [True], [2], [None]]
    assert json.dumps([r.values for r in reasons]) == '[["Pensioner"], [true], [2], [null]]'


# ---- the computation, on tiny seeded LightGBM models --------------------------------------------


@pytest.fixture(scope="module")
def protected_model(tmp_path_factory) -> lgb.Booster:
    """A model whose largest contributions are a protected feature's: the target is mostly
    CODE_GENDER; two bureau features share a code; saved and read back, as the service does."""
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame(
        {
            "CODE_GENDER": rng.integers(0, 2, n).astype(float),
            "BUREAU_A": rng.normal(size=n),
            "BUREAU_B": rng.normal(size=n),
            "EXT_SOURCE_2": rng.uniform(size=n),
        }
    )
    logit = (
        3.0 * frame.CODE_GENDER
        + 0.6 * frame.BUREAU_A
        + 0.6 * frame.BUREAU_B
        - 1.5 * frame.EXT_SOURCE_2
        - 2.0
    )
    target = rng.binomial(1, 1 / (1 + np.exp(-logit)))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": 0, "deterministic": True, "num_threads": 1},
        lgb.Dataset(frame, target),
        num_boost_round=30,
    )
    path = tmp_path_factory.mktemp("protected") / BOOSTER_FILE
    booster.save_model(path)
    return lgb.Booster(model_file=str(path))


PROTECTED_TABLE = """
reasons:
  - {feature: BUREAU_A, code: R04, text: Credit bureau history}
  - {feature: BUREAU_B, code: R04, text: Credit bureau history}
  - {feature: EXT_SOURCE_2, code: R03, text: External credit score too low}
never_a_reason: [CODE_GENDER]
"""


def rows_of(booster: lgb.Booster, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.column_stack(
        [rng.integers(0, 2, n), rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n)]
    ).astype(float)


def test_a_protected_feature_is_never_a_reason_even_when_it_contributes_most(protected_model):
    names = protected_model.feature_name()
    rows = rows_of(protected_model)
    contributions = protected_model.predict(rows, pred_contrib=True)
    largest = np.argmax(contributions[:, :-1], axis=1) == names.index("CODE_GENDER")
    assert largest.sum() >= 50, "the model was meant to lean on CODE_GENDER most"
    spec = numeric_spec(names)
    excluded = ReasonPlan.build(ReasonTable.parse(PROTECTED_TABLE, names), names, "t")
    reasons = excluded.explain(rows[largest], contributions[largest], spec, top_n=4)
    assert all("CODE_GENDER" not in r.features for found in reasons for r in found)
    assert all(r.code in ("R03", "R04") for found in reasons for r in found)
    # The same rows with CODE_GENDER merely unlisted: it is their first reason.
    unlisted_table = PROTECTED_TABLE.replace("never_a_reason: [CODE_GENDER]", "")
    unlisted = ReasonPlan.build(ReasonTable.parse(unlisted_table, names), names, "t")
    first = [found[0].code for found in unlisted.explain(rows[largest], contributions[largest],
                                                         spec, top_n=4)]  # fmt: skip
    assert first == ["CODE_GENDER"] * int(largest.sum())


def test_features_sharing_a_code_are_reported_with_their_contributions_summed(protected_model):
    names = protected_model.feature_name()
    rows = rows_of(protected_model)
    contributions = protected_model.predict(rows, pred_contrib=True)
    plan = ReasonPlan.build(ReasonTable.parse(PROTECTED_TABLE, names), names, "t")
    a, b = names.index("BUREAU_A"), names.index("BUREAU_B")
    checked = 0
    for row, found in enumerate(plan.explain(rows, contributions, numeric_spec(names), 4)):
        for reason in found:
            if reason.code == "R04":
                assert reason.contribution == contributions[row, a] + contributions[row, b]
                both = {"BUREAU_A", "BUREAU_B"} - {
                    n for n, p in (("BUREAU_A", a), ("BUREAU_B", b)) if contributions[row, p] == 0
                }
                assert set(reason.features) == both
                checked += 1
    assert checked >= 20


# ---- the demo production model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(production_model):
    model = bentoml.models.get(production_model)
    spec = FeatureSpec.from_metadata(model.info.metadata["features"])
    plan = load_plan(Path(model.path), model.info.metadata, spec.names)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    return model, spec, plan, booster


def rejected_rows(production_model, demo_rows, booster) -> np.ndarray:
    matrix = code_matrix(production_model, demo_rows)
    threshold = float(bentoml.models.get(production_model).info.labels["threshold"])
    return matrix[booster.predict(matrix) >= threshold]


def test_reasons_are_ordered_and_add_no_more_than_the_risk_the_rejected_applicant_gained(
    production_model, demo_rows, served
):
    """Merged over codes, TreeSHAP still adds up: base value + every code's sum + the excluded
    features' = the raw score. The reasons, all of them positive and in descending order, add
    up to at most what the reportable codes pushed towards default (their positive sum). (They
    can exceed raw score - base value: that distance is net of what lowered the risk.)"""
    _, spec, plan, booster = served
    rows = rejected_rows(production_model, demo_rows, booster)
    assert len(rows) >= 20
    contributions = booster.predict(rows, pred_contrib=True)
    merged = plan.merged(contributions)
    excluded = [spec.names.index(n) for n in spec.names if not any(
        spec.names.index(n) in m for m in plan.members)]  # fmt: skip
    assert excluded, "the demo table excludes protected features"
    raw_minus_base = contributions[:, :-1].sum(axis=1)
    np.testing.assert_allclose(
        merged.sum(axis=1) + contributions[:, excluded].sum(axis=1), raw_minus_base, atol=1e-9
    )
    for found, per_code in zip(plan.explain(rows, contributions, spec, 4), merged, strict=True):
        amounts = [r.contribution for r in found]
        assert found
        assert all(a > 0 for a in amounts)
        assert amounts == sorted(amounts, reverse=True)
        assert sum(amounts) <= per_code[per_code > 0].sum() + 1e-12
        assert max(amounts) == per_code.max()


def test_the_demo_table_excludes_the_protected_features(served):
    _, spec, plan, _ = served
    reportable = {spec.names[p] for members in plan.members for p in members}
    assert {"CODE_GENDER", "DAYS_BIRTH", "NAME_FAMILY_STATUS"}.isdisjoint(reportable)
    assert all(plan.coded), "the demo table codes every other feature"
    assert plan.members[plan.codes.index("R03")] == tuple(
        spec.names.index(n) for n in ("EXT_SOURCE_1", "EXT_SOURCE_2", "EXT_SOURCE_3")
    )


# ---- the stored table --------------------------------------------------------------------------


def test_the_table_is_stored_in_the_bento_model_with_its_checksum_and_source(production_model):
    model = bentoml.models.get(production_model)
    stored = Path(model.path_of(REASON_CODES_FILE))
    sha = file_sha256(stored)
    assert model.info.metadata[CHECKSUMS_KEY][REASON_CODES_FILE] == sha
    assert model.info.metadata[REASON_CODES_KEY]["sha256"] == sha
    assert model.info.metadata[REASON_CODES_KEY]["source"] == (
        f"run {model.info.labels['run_id']} artifact {REASON_CODES_FILE}"
    )
    assert model.info.labels["reason_codes"] == sha[:12]


# ---- the answers, in-process ---------------------------------------------------------------------


def test_version_shows_the_tables_hash_and_source(client, production_model):
    model = bentoml.models.get(production_model)
    shown = client.get("/version").json()["reason_codes"]
    assert shown["sha256"] == model.info.metadata[REASON_CODES_KEY]["sha256"]
    assert shown["source"] == model.info.metadata[REASON_CODES_KEY]["source"]
    assert shown["reasons_per_rejection"] == 4


def with_reasons(client, rows: list[dict]) -> list[dict]:
    response = client.post("/predict_with_reasons", json={"applications": rows})
    assert response.status_code == 200, response.text
    return response.json()


def test_rejections_carry_reasons_and_approvals_none_with_predicts_own_scores(client, demo_rows):
    answers = with_reasons(client, demo_rows[:100])
    plain = client.post("/predict", json={"applications": demo_rows[:100]}).json()
    assert [{k: a[k] for k in plain[0]} for a in answers] == plain
    assert "reasons" not in plain[0]
    decisions = {a["decision"] for a in answers}
    assert decisions == {"approve", "reject"}
    for answer in answers:
        if answer["decision"] == "approve":
            assert answer["reasons"] is None
            assert answer["reason_source"] is None
        else:
            assert 1 <= len(answer["reasons"]) <= 4
            assert answer["reason_source"].startswith("run ")
            assert all(r["coded"] for r in answer["reasons"])


def test_reasons_equal_the_booster_treeshap_through_the_table(
    client, production_model, demo_rows, served
):
    _, spec, plan, booster = served
    answers = with_reasons(client, demo_rows[:60])
    matrix = code_matrix(production_model, demo_rows[:60])
    rejected = [i for i, a in enumerate(answers) if a["decision"] == "reject"]
    expected = plan.explain(
        matrix[rejected], booster.predict(matrix[rejected], pred_contrib=True), spec, 4
    )
    assert [answers[i]["reasons"] for i in rejected] == [
        [r.model_dump() for r in found] for found in expected
    ]


def test_categorical_features_report_the_category_string(client, demo_rows, served):
    _, spec, _, _ = served
    answers = with_reasons(client, demo_rows)
    seen = 0
    for row, answer in zip(demo_rows, answers, strict=True):
        for reason in answer["reasons"] or []:
            for feature, value in zip(reason["features"], reason["values"], strict=True):
                if feature in spec.categories:
                    assert value == row[feature]
                    seen += value is not None
                else:
                    assert value == row[feature]
    assert seen >= 5, "the demo rows give categorical features as reasons"


def test_compact_form_gives_the_same_reasons_as_records(client, demo_rows):
    rows = demo_rows[:80]
    columns = list(reversed(rows[0]))
    table = {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    response = client.post("/predict_compact_with_reasons", json={"table": table})
    assert response.status_code == 200, response.text
    assert response.json() == with_reasons(client, rows)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_scoring_adds_a_reasons_column_when_asked(client, demo_rows, tmp_path, suffix):
    rows = demo_rows[:40]
    frame = pd.DataFrame(rows)
    path = tmp_path / f"applications{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)

    def score(reasons: str | None) -> pd.DataFrame:
        data = {} if reasons is None else {"reasons": reasons}
        files = {"file": (path.name, path.read_bytes())}
        response = client.post("/predict_file", files=files, data=data)
        assert response.status_code == 200, response.text
        content = io.BytesIO(response.content)
        return pd.read_csv(content) if suffix == ".csv" else pd.read_parquet(content)

    assert "reasons" not in score(None).columns
    assert "reasons" not in score("false").columns
    scored = score("true")
    expected = with_reasons(client, rows)
    for cell, answer in zip(scored["reasons"], expected, strict=True):
        if answer["decision"] == "approve":
            assert cell is None or cell != cell  # empty: NaN in CSV, null in Parquet
        else:
            assert json.loads(cell) == answer["reasons"]


@pytest.mark.parametrize("reasons", ["yes", "1", "on", "True"])
def test_file_scoring_takes_reasons_as_true_or_false_only(client, demo_rows, tmp_path, reasons):
    """A form field arrives as text: `true`/`false` are JSON, anything else was read the lax
    way (`yes` and `1` as true)."""
    path = tmp_path / "applications.csv"
    pd.DataFrame(demo_rows[:3]).to_csv(path, index=False)
    files = {"file": (path.name, path.read_bytes())}
    response = client.post("/predict_file", files=files, data={"reasons": reasons})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "reasons"


def test_reasons_routes_refuse_bad_input_naming_the_field(client, demo_rows):
    response = client.post(
        "/predict_with_reasons", json={"applications": [{**demo_rows[0], "SHOE_SIZE": 42}]}
    )
    assert response.status_code == 400
    assert "SHOE_SIZE" in response.text
    assert "Traceback" not in response.text
