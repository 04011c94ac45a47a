"""Pipelines ending in a LightGBM classifier (issue 23 item 2): each served step built into a
real MLflow store as a team would log it (skops, or pickle with --allow-pickle), imported
through the CLI's main(), scored by the stored model as the service scores it (booster and
compiled forest) and compared row by row with the logged pipeline's own predict_proba; one
real `bentoml serve` answering on input columns; and the steps that are refused."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

import import_model
from loadtest.payloads import arrow_stream
from scoring.core.contract import FeatureSpec
from scoring.importing import errors
from scoring.serving.edge.arrow_route import PATH as ARROW_PATH
from scoring.serving.forms.arrow_stream import ARROW_STREAM
from scoring.serving.forms.records import application_model
from scoring.stored_model import compiled
from scoring.stored_model.layout import PREPROCESSING_FILE
from tests.portfolio_spark import needs_java, read_output, shared_session, write_portfolio
from tests.service_helpers import bento_models, served_probabilities, serving_one_worker

pytestmark = pytest.mark.server

NUMERIC = ["AMT_CREDIT", "EXT_SOURCE_2", "DAYS_EMPLOYED"]
INCOME, EDUCATION = "NAME_INCOME_TYPE", "NAME_EDUCATION_TYPE"
INCOME_TYPES = ["Working", "Pensioner", "State servant", "Commercial associate"]
EDUCATION_TYPES = ["Secondary", "Higher education", "Incomplete higher"]
LGBM_SKOPS_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "numpy.dtype",
]
PORTFOLIO_ID = "application_id"
SMALL = {"n_estimators": 8, "num_leaves": 6, "min_child_samples": 5, "verbose": -1}


def applications(n_rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Applications as a team's training frame holds them: text as text, some numbers missing
    (every category occurs, and missing text occurs in the education column)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "AMT_CREDIT": rng.lognormal(12, 0.5, n_rows).round(2),
            "EXT_SOURCE_2": np.where(rng.random(n_rows) < 0.1, np.nan, rng.beta(6, 4, n_rows)),
            "DAYS_EMPLOYED": -rng.integers(0, 10_000, n_rows).astype(float),
            INCOME: rng.choice(INCOME_TYPES, n_rows).astype(object),
            EDUCATION: rng.choice(EDUCATION_TYPES, n_rows).astype(object),
        }
    )
    frame.loc[rng.random(n_rows) < 0.1, EDUCATION] = np.nan
    score = frame.EXT_SOURCE_2.fillna(0.5)
    risk = -4 * (score - 0.6) + (frame[INCOME] == "Working") * 0.8
    target = pd.Series((rng.random(n_rows) < 1 / (1 + np.exp(-risk))).astype(int))
    return frame, target


class CreditToIncome(BaseEstimator, TransformerMixin):
    """A team's own step: its transform is code the service would have to run."""

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.asarray(x, dtype=float) / 1000


def _one_hot_pipeline() -> Pipeline:
    """ColumnTransformer with an imputing, scaling sub-pipeline, a ufunc, one-hot text columns
    (sparse, the default) and the remaining column passed through."""
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    encode = OneHotEncoder(handle_unknown="ignore")
    columns = ColumnTransformer(
        [
            ("numbers", numbers, ["EXT_SOURCE_2"]),
            ("log", FunctionTransformer(np.log1p), ["AMT_CREDIT"]),
            ("text", encode, [INCOME, EDUCATION]),
        ],
        remainder="passthrough",
    )
    return Pipeline([("prepare", columns), ("model", lgb.LGBMClassifier(**SMALL, random_state=0))])


def _scalers_pipeline() -> Pipeline:
    """The other scalers, an ordinal encoder with an unseen value, and the steps nested one
    Pipeline deeper."""
    columns = ColumnTransformer(
        [
            ("minmax", MinMaxScaler(), ["AMT_CREDIT"]),
            ("maxabs", make_pipeline(SimpleImputer(), MaxAbsScaler()), ["EXT_SOURCE_2"]),
            ("robust", RobustScaler(), ["DAYS_EMPLOYED"]),
            (
                "ordinal",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                [INCOME, EDUCATION],
            ),
        ],
        remainder="drop",
    )
    inner = Pipeline([("columns", columns), ("sqrt", FunctionTransformer(np.abs))])
    return Pipeline([("prepare", inner), ("model", lgb.LGBMClassifier(**SMALL, random_state=1))])


def _dense_one_hot_pipeline() -> Pipeline:
    """Dense one-hot output, imputing text before it, numbers passed through untouched."""
    text = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="unknown"),
        OneHotEncoder(sparse_output=False, handle_unknown="ignore"),
    )
    columns = ColumnTransformer(
        [("text", text, [INCOME, EDUCATION]), ("rest", "passthrough", NUMERIC)],
        sparse_threshold=0,
    )
    return Pipeline([("prepare", columns), ("model", lgb.LGBMClassifier(**SMALL, random_state=2))])


def _default_encoders_pipeline() -> Pipeline:
    """Encoders as scikit-learn makes them (handle_unknown="error"): the income type, never
    missing in training, cannot be scored missing."""
    columns = ColumnTransformer(
        [
            ("income", OneHotEncoder(), [INCOME]),
            ("education", OrdinalEncoder(), [EDUCATION]),
            ("rest", "passthrough", NUMERIC),
        ]
    )
    return Pipeline([("prepare", columns), ("model", lgb.LGBMClassifier(**SMALL, random_state=3))])


@dataclass
class PipelineStore:
    tracking_uri: str
    rows: pd.DataFrame
    runs: dict[str, str] = field(default_factory=dict)
    logged: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def store(mlflow_server) -> PipelineStore:
    url, _ = mlflow_server
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    mlflow.set_experiment("import_pipelines")
    x, y = applications(600, seed=11)
    rows = x.tail(200).reset_index(drop=True)
    found = PipelineStore(url, rows)
    signature = infer_signature(x.head(40))
    common = {"name": "model", "pip_requirements": [], "signature": signature}

    def run(form: str, pipeline: Any, **log: Any) -> None:
        with mlflow.start_run(run_name=form) as active:
            mlflow.log_param("decision_threshold", 0.4)
            mlflow.sklearn.log_model(pipeline, **common, **log)
            with tempfile.TemporaryDirectory() as scratch:
                sample = Path(scratch) / "reference_sample.parquet"
                x.head(300).to_parquet(sample, index=False)
                mlflow.log_artifact(str(sample))
        found.runs[form], found.logged[form] = active.info.run_id, pipeline

    run("one_hot_skops", _one_hot_pipeline().fit(x, y), skops_trusted_types=LGBM_SKOPS_TYPES)
    run("scalers_pickle", _scalers_pipeline().fit(x, y), serialization_format="pickle")
    run(
        "default_encoders_skops",
        _default_encoders_pipeline().fit(x, y),
        skops_trusted_types=LGBM_SKOPS_TYPES,
    )
    run(
        "dense_one_hot_cloudpickle",
        _dense_one_hot_pipeline().fit(x, y),
        serialization_format="cloudpickle",
    )

    # What is refused.
    def with_step(step: Any, on: list[str] = NUMERIC) -> Pipeline:
        columns = ColumnTransformer([("own", step, on)], remainder="drop")
        return Pipeline([("prepare", columns), ("model", lgb.LGBMClassifier(**SMALL))]).fit(x, y)

    own = with_step(CreditToIncome())
    own_type = f"{CreditToIncome.__module__}.{CreditToIncome.__qualname__}"
    run("own_class_skops", own, skops_trusted_types=[*LGBM_SKOPS_TYPES, own_type])
    run("own_class_pickle", own, serialization_format="pickle")
    run(
        "lambda_cloudpickle",
        with_step(FunctionTransformer(lambda v: v * 2)),
        serialization_format="cloudpickle",
    )
    pca = with_step(PCA(n_components=1), ["AMT_CREDIT", "DAYS_EMPLOYED"])  # PCA takes no NaN
    run("pca_skops", pca, skops_trusted_types=LGBM_SKOPS_TYPES)
    regressor = make_pipeline(
        ColumnTransformer([("n", StandardScaler(), NUMERIC)]), lgb.LGBMRegressor(**SMALL)
    ).fit(x, y)
    run(
        "ending_in_regressor",
        regressor,
        skops_trusted_types=[*LGBM_SKOPS_TYPES, "lightgbm.sklearn.LGBMRegressor"],
    )
    return found


SERVED = [
    ("one_hot_skops", (), "skops"),
    ("scalers_pickle", ("--allow-pickle",), "pickle"),
    ("dense_one_hot_cloudpickle", ("--allow-pickle",), "cloudpickle"),
    ("default_encoders_skops", (), "skops"),
]


def run_import(store: PipelineStore, form: str, bento_name: str, *flags: str) -> int:
    args = ["--tracking-uri", store.tracking_uri, "--run-id", store.runs[form]]
    return import_model.main([*args, "--bento-name", bento_name, *flags])


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a JSON body carries them: text as text, missing as null."""
    return rows.astype(object).where(rows.notna(), None).to_dict("records")


def expected(store: PipelineStore, form: str) -> np.ndarray:
    return store.logged[form].predict_proba(store.rows)[:, 1]


@pytest.fixture(scope="module")
def imported(store) -> dict[tuple[str, bool], str]:
    """Every served form imported once, with and without --compile: (form, compiled) → tag."""
    tags = {}
    for form, flags, _ in SERVED:
        for compile_it in (False, True):
            if compile_it and not compiled.runs_here():
                continue
            name = f"pipeline_{form}" + ("_compiled" if compile_it else "")
            extra = ("--compile",) if compile_it else ()
            assert run_import(store, form, name, *flags, *extra) == 0
            (tags[(form, compile_it)],) = bento_models(name)
    return tags


@pytest.mark.parametrize(("form", "flags", "serialization"), SERVED)
@pytest.mark.parametrize("compile_it", [False, True], ids=["booster", "compiled"])
def test_a_pipeline_scores_as_its_predict_proba(
    store, imported, form, flags, serialization, compile_it
):
    if (form, compile_it) not in imported:
        pytest.skip(f"forests compile for {compiled.ARCHITECTURE}")
    tag = imported[(form, compile_it)]
    np.testing.assert_allclose(
        served_probabilities(tag, records(store.rows)), expected(store, form), rtol=0, atol=1e-9
    )
    model = bentoml.models.get(tag)
    labels = model.info.labels
    assert (labels["model_source"], labels["serialization"]) == ("mlflow-sklearn", serialization)
    assert labels["pipeline"].endswith("-> LGBMClassifier")
    assert model.info.metadata["file_sha256"][PREPROCESSING_FILE]


@pytest.mark.parametrize(("form", "flags", "serialization"), SERVED)
def test_the_contract_is_the_pipelines_input_with_text_categories(
    store, imported, form, flags, serialization
):
    features = bentoml.models.get(imported[(form, False)]).info.metadata["features"]
    assert [f["name"] for f in features] == list(store.rows.columns)
    by_name = {f["name"]: f for f in features}
    assert by_name[INCOME]["type"] == "string"
    assert sorted(by_name[INCOME]["categories"]) == sorted(INCOME_TYPES)
    assert by_name["AMT_CREDIT"] == {"name": "AMT_CREDIT", "type": "double"}


def test_each_feature_is_mapped_to_the_input_column_it_came_from(imported):
    metadata = bentoml.models.get(imported[("one_hot_skops", False)]).info.metadata
    inputs = metadata["pipeline"]["inputs_of_features"]
    # EXT_SOURCE_2 scaled, AMT_CREDIT logged, 4 + 4 one-hot columns (3 educations and
    # missing), DAYS_EMPLOYED passed through.
    assert inputs == [
        "EXT_SOURCE_2",
        "AMT_CREDIT",
        *[INCOME] * 4,
        *[EDUCATION] * 4,
        "DAYS_EMPLOYED",
    ]


def test_a_category_the_steps_cannot_take_missing_is_required(imported):
    tag = imported[("default_encoders_skops", False)]
    metadata = bentoml.models.get(tag).info.metadata
    by_name = {f["name"]: f for f in metadata["features"]}
    assert by_name[INCOME]["required"] is True
    assert "required" not in by_name[EDUCATION]
    spec = FeatureSpec.from_metadata(metadata["features"])
    application = application_model(spec, {})
    row = {**dict.fromkeys(NUMERIC, 1.0), INCOME: None, EDUCATION: None}
    with pytest.raises(ValueError, match=f"{INCOME} is required"):
        application.model_validate(row)
    application.model_validate({**row, INCOME: "Working"})


def assert_refused(capsys, store: PipelineStore, form: str, code: int, *texts: str, flags=()):
    bento_name = f"refused_pipeline_{form}"
    assert run_import(store, form, bento_name, *flags) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for text in texts:
        assert text in err, err
    assert "Traceback" not in err
    assert bento_models(bento_name) == []


OWN = f"step 'prepare/own' is a CreditToIncome ({CreditToIncome.__module__}.CreditToIncome)"


@pytest.mark.parametrize(
    ("form", "flags", "texts"),
    [
        ("own_class_skops", (), (OWN, "mlflow.lightgbm.log_model(pipeline[-1])")),
        ("own_class_pickle", ("--allow-pickle",), (OWN,)),
        ("lambda_cloudpickle", ("--allow-pickle",), ("FunctionTransformer whose func is",)),
        ("pca_skops", (), ("step 'prepare/own' is a PCA",)),
        ("ending_in_regressor", (), ("Pipeline ending in LGBMRegressor",)),
    ],
)
def test_a_step_the_service_does_not_run_is_refused_naming_it(capsys, store, form, flags, texts):
    assert_refused(capsys, store, form, errors.UnservableModel.exit_code, *texts, flags=flags)


def test_a_pickled_pipeline_still_needs_allow_pickle(capsys, store):
    code = errors.UnsafeModelFile.exit_code
    assert_refused(capsys, store, "scalers_pickle", code, "model.pkl is a pickle file")


@pytest.fixture(scope="module")
def pipeline_server(imported, bentoml_home, tmp_path_factory):
    """A real `bentoml serve` of the one-hot pipeline with its compiled forest."""
    key = ("one_hot_skops", compiled.runs_here())
    log = tmp_path_factory.mktemp("serve-pipeline") / "serve.log"
    with serving_one_worker(imported[key], bentoml_home, log) as url:
        yield url


def test_a_served_pipeline_answers_its_input_columns_as_predict_proba(store, pipeline_server):
    body = {"applications": records(store.rows.head(60))}
    response = requests.post(f"{pipeline_server}/predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    served = [row["probability_of_default"] for row in response.json()]
    np.testing.assert_allclose(served, expected(store, "one_hot_skops")[:60], rtol=0, atol=1e-9)


def test_a_served_pipelines_reasons_name_input_columns_and_text_values(store, pipeline_server):
    body = {"applications": records(store.rows)}
    response = requests.post(f"{pipeline_server}/predict_with_reasons", json=body, timeout=30)
    assert response.status_code == 200, response.text
    rejected = [row for row in response.json() if row["decision"] == "reject"]
    assert rejected
    inputs = set(store.rows.columns)
    for row in rejected:
        for reason in row["reasons"]:
            assert set(reason["features"]) <= inputs
            for name, value in zip(reason["features"], reason["values"], strict=True):
                if name in (INCOME, EDUCATION):
                    assert value is None or isinstance(value, str)


def test_a_served_pipelines_explanation_adds_up_over_input_columns(store, pipeline_server):
    body = {"applications": records(store.rows.head(20)), "top_k": len(store.rows.columns)}
    response = requests.post(f"{pipeline_server}/explain", json=body, timeout=30)
    assert response.status_code == 200, response.text
    for answer, probability in zip(response.json(), expected(store, "one_hot_skops"), strict=False):
        total = answer["base_value"] + sum(c["contribution"] for c in answer["top_contributions"])
        assert abs(total - answer["raw_score"]) < 1e-9
        assert abs(answer["probability_of_default"] - probability) < 1e-9
        named = {c["feature"] for c in answer["top_contributions"]}
        assert named <= set(store.rows.columns)


def test_a_served_pipeline_refuses_an_unseen_category_and_says_what_it_is(store, pipeline_server):
    body = {"applications": records(store.rows.head(1))}
    body["applications"][0][INCOME] = "Astronaut"
    response = requests.post(f"{pipeline_server}/predict", json=body, timeout=30)
    assert response.status_code == 400
    assert "Astronaut" in response.text
    version = requests.get(f"{pipeline_server}/version", timeout=30).json()
    assert version["pipeline"] == "ColumnTransformer -> LGBMClassifier"
    assert version["predictor"].startswith("pipeline, then ")


@needs_java
@pytest.mark.timeout(600)
def test_the_portfolio_job_scores_a_pipeline_as_the_service_does(
    store, imported, pipeline_server, tmp_path
):
    """The served pipeline through the Spark job (local[2]) on its input columns, text as text:
    the pipeline's own probabilities, the service's reasons byte for byte, and a row with a
    category the encoder never saw quarantined with the service's message."""
    from scoring.portfolio import cli

    rows = records(store.rows)
    rows[5] = {**rows[5], INCOME: "Astronaut"}
    good = [i for i in range(len(rows)) if i != 5]
    book = write_portfolio(tmp_path / "book.parquet", rows, list(range(len(rows))))
    out = tmp_path / "out"
    model = imported[("one_hot_skops", compiled.runs_here())]
    args = ["--input", str(book), "--output", str(out), "--model", model, "--reasons", "4"]
    assert cli.main([*args, "--id-column", PORTFOLIO_ID], spark=shared_session()) == 0
    output = read_output(out)
    assert output[PORTFOLIO_ID].tolist() == good
    np.testing.assert_allclose(
        output.probability_of_default, expected(store, "one_hot_skops")[good], rtol=0, atol=1e-9
    )
    upload = tmp_path / "good.parquet"
    store.rows.drop(index=5).to_parquet(upload, index=False)
    answer = requests.post(
        f"{pipeline_server}/predict_file",
        files={"file": (upload.name, upload.read_bytes())},
        data={"reasons": "true"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    served = pd.read_parquet(io.BytesIO(answer.content))
    assert output.decision.tolist() == served.decision.tolist()
    assert output.reasons.tolist() == served.reasons.tolist()
    assert any(output.reasons.notna())
    alone = pq.read_table(book).slice(5, 1).drop_columns([PORTFOLIO_ID])
    refused = requests.post(
        f"{pipeline_server}{ARROW_PATH}",
        data=arrow_stream(alone),
        headers={"content-type": ARROW_STREAM},
        timeout=60,
    )
    assert refused.status_code == 400, refused.text
    refusal = refused.json()
    quarantine = pq.read_table(out / "_quarantine").to_pylist()
    assert quarantine == [{PORTFOLIO_ID: 5, "field": refusal["field"], "error": refusal["error"]}]
