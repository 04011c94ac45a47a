"""A team's real model: LightGBM trained on a pandas frame with `category` columns, logged the
two usual ways (LGBMClassifier, and lgb.train with categorical_feature=), imported from MLflow and
served by a real `bentoml serve`: probabilities equal LightGBM's own predict on the training-style
frame, for the booster and the compiled forest; unseen categories refused or scored as missing."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import bentoml
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.models import infer_signature

import import_model
from loadtest.processes import ROOT, free_port, running
from scoring.importing import errors
from scoring.stored_model import compiled
from scoring.stored_model.layout import BOOSTER_FILE, COMPILED_FILE
from tests.service_helpers import reference_probabilities

pytestmark = pytest.mark.server

OCCUPATIONS = [
    "Laborers",
    "Core staff",
    "Sales staff",
    "Managers",
    "Drivers",
    "Commercial associate",
]
INCOME_TYPES = ["Working", "Commercial associate", "Pensioner", "State servant"]


def applications(n_rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Applications with categorical columns (some missing), numbers (some missing), an integer
    and a boolean column; the target depends on the categories, so the trees split on them."""
    rng = np.random.default_rng(seed)
    occupation = rng.choice(
        [*OCCUPATIONS, None], size=n_rows, p=[0.2, 0.15, 0.1, 0.1, 0.1, 0.05, 0.3]
    )
    frame = pd.DataFrame(
        {
            "AMT_CREDIT": rng.lognormal(12, 0.5, n_rows).round(2),
            "EXT_SOURCE_2": np.where(rng.random(n_rows) < 0.1, np.nan, rng.beta(6, 4, n_rows)),
            "OCCUPATION_TYPE": pd.Categorical(occupation, categories=OCCUPATIONS),
            "NAME_INCOME_TYPE": pd.Categorical(rng.choice(INCOME_TYPES, size=n_rows)),
            "CNT_CHILDREN": rng.poisson(0.4, n_rows),
            "FLAG_OWN_CAR": rng.random(n_rows) < 0.35,
        }
    )
    risk = (
        -3 * (frame.EXT_SOURCE_2.fillna(0.5) - 0.5)
        + frame.OCCUPATION_TYPE.map({"Laborers": 0.8, "Drivers": 1.0, "Managers": -1.0})
        .astype(float)
        .fillna(0.3)
        + (frame.NAME_INCOME_TYPE == "Pensioner") * -0.7
        + 0.3 * frame.FLAG_OWN_CAR
    )
    target = (risk + rng.normal(0, 0.7, n_rows) > 0.6).astype(int)
    return frame, pd.Series(target, name="TARGET")


def as_records(frame: pd.DataFrame) -> list[dict]:
    """JSON records as a client sends them: categories as strings, missing values as null."""
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


def use_store(uri: str) -> None:
    # The registry too: the importer points MLflow's global registry URI at the store it read.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def log_and_register(uri: str, name: str, model, signature, input_example=None) -> None:
    """Log `model` in experiment `name` with a threshold, register it as `name` v1@production."""
    use_store(uri)
    mlflow.set_experiment(name)
    with mlflow.start_run():
        mlflow.log_param("decision_threshold", 0.4)
        mlflow.lightgbm.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            registered_model_name=name,
        )
    mlflow.MlflowClient().set_registered_model_alias(name, "production", "1")


def logged_as_usual(uri: str, name: str, model, frame: pd.DataFrame) -> None:
    """As teams log it: the signature inferred from the training frame, an input example."""
    proba = (
        model.predict_proba(frame)[:, 1]
        if hasattr(model, "predict_proba")
        else model.predict(frame)
    )
    log_and_register(uri, name, model, infer_signature(frame, proba), frame.head(3))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """An MLflow store with the same data trained and logged both usual ways."""
    root = tmp_path_factory.mktemp("categorical-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    use_store(uri)
    mlflow.create_experiment("classifier", artifact_location=(root / "a").as_uri())
    mlflow.create_experiment("train", artifact_location=(root / "b").as_uri())
    frame, target = applications(3000, seed=7)
    classifier = lgb.LGBMClassifier(n_estimators=40, min_child_samples=10, verbose=-1)
    classifier.fit(frame, target)
    logged_as_usual(uri, "classifier", classifier, frame)
    dataset = lgb.Dataset(
        frame, target, categorical_feature=["OCCUPATION_TYPE", "NAME_INCOME_TYPE"]
    )
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 10}, dataset, 40)
    logged_as_usual(uri, "train", booster, frame)
    return {"uri": uri, "frame": frame, "target": target}


def import_route(store: dict, route: str, *flags: str) -> str:
    bento_name = f"categorical_{route}" + ("_compiled" if "--compile" in flags else "")
    args = ["--tracking-uri", store["uri"], "--model-name", route, "--bento-name", bento_name]
    assert import_model.main([*args, *flags]) == 0
    return str(bentoml.models.get(f"{bento_name}:latest").tag)


@pytest.mark.parametrize("route", ["classifier", "train"])
def test_import_stores_each_categorical_features_categories_in_training_order(store, route):
    tag = import_route(store, route)
    features = {f["name"]: f for f in bentoml.models.get(tag).info.metadata["features"]}
    assert features["OCCUPATION_TYPE"]["type"] == "string"
    assert features["OCCUPATION_TYPE"]["categories"] == OCCUPATIONS
    assert features["NAME_INCOME_TYPE"]["categories"] == sorted(INCOME_TYPES)
    assert features["FLAG_OWN_CAR"]["type"] == "boolean"
    assert "categories" not in features["AMT_CREDIT"]


@pytest.mark.skipif(not compiled.runs_here(), reason=f"forests compile for {compiled.ARCHITECTURE}")
@pytest.mark.parametrize("route", ["classifier", "train"])
def test_booster_and_compiled_forest_on_codes_equal_lightgbm_on_the_training_style_frame(
    store, route
):
    tag = import_route(store, route, "--compile")
    model = bentoml.models.get(tag)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    forest = compiled.load_forest(
        Path(model.path_of(BOOSTER_FILE)), Path(model.path_of(COMPILED_FILE)), booster
    )
    test, _ = applications(500, seed=11)
    expected = booster.predict(test)  # LightGBM's own pandas path: categories mapped by it
    codes = test.copy()
    for name in ("OCCUPATION_TYPE", "NAME_INCOME_TYPE"):
        codes[name] = pd.Categorical(
            test[name], categories=booster.pandas_categorical[0 if name == "OCCUPATION_TYPE" else 1]
        ).codes.astype(float)
        codes.loc[codes[name] < 0, name] = np.nan
    matrix = codes.astype(np.float64).to_numpy()
    # The two predictors the service may score with, on the codes it builds from a request:
    np.testing.assert_allclose(booster.predict(matrix), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(forest.predict(matrix), expected, rtol=0, atol=1e-9)
    # The probe rows the import checks with include categorical edges: unseen and negative codes.
    probes = compiled.probe_rows(booster)
    assert np.nanmax(probes[:, 2]) > len(OCCUPATIONS) - 1
    assert np.nanmin(probes[:, 2]) < 0
    compiled.check_matches_booster(forest, booster, probes)


@pytest.fixture(scope="module", params=["classifier", "train"])
def server(request, store, bentoml_home, tmp_path_factory):
    """A real `bentoml serve` of one route's model, compiled; the `train` one scores unseen
    categories as missing, the `classifier` one refuses them (the default)."""
    route = request.param
    flags = ("--compile",) if compiled.runs_here() else ()
    tag = import_route(store, route, *flags)
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "SCORING_MODEL_TAG": tag,
        "SCORING_WORKERS": "1",
        "SCORING_UNSEEN_CATEGORY": "missing" if route == "train" else "reject",
    }
    serve = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring",
             "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with running(serve, f"{url}/readyz", log, env={**env, "PWD": str(ROOT)}, timeout_s=120):
        yield {"url": url, "tag": tag, "route": route}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    frame, _ = applications(200, seed=3)
    return as_records(frame)


def test_served_probabilities_equal_lightgbms_own_predict_on_the_pandas_frame(server, rows):
    response = requests.post(f"{server['url']}/predict", json={"applications": rows}, timeout=30)
    assert response.status_code == 200, response.text
    served = np.array([p["probability_of_default"] for p in response.json()])
    np.testing.assert_allclose(
        served, reference_probabilities(server["tag"], rows), rtol=0, atol=1e-9
    )
    version = requests.get(f"{server['url']}/version", timeout=10).json()
    if compiled.runs_here():
        assert version["predictor"].startswith("compiled forest")


def test_compact_form_carries_categories_as_strings(server, rows):
    columns = list(rows[0])[::-1]
    body = {"table": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}}
    response = requests.post(f"{server['url']}/predict_compact", json=body, timeout=30)
    assert response.status_code == 200, response.text
    served = np.array([p["probability_of_default"] for p in response.json()])
    np.testing.assert_allclose(
        served, reference_probabilities(server["tag"], rows), rtol=0, atol=1e-9
    )


def test_an_arrow_stream_of_the_pandas_frame_scores_as_lightgbm_does(server):
    """As a bulk client sends it: the training-style frame straight to Arrow, pandas categories
    as dictionary columns, the integer and boolean columns as pandas typed them."""
    import pyarrow as pa

    from loadtest.payloads import arrow_stream
    from scoring.serving.forms.arrow_stream import ARROW_STREAM

    frame, _ = applications(200, seed=3)
    response = requests.post(
        f"{server['url']}/predict_arrow",
        data=arrow_stream(pa.Table.from_pandas(frame, preserve_index=False)),
        headers={"Content-Type": ARROW_STREAM},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    served = np.array([p["probability_of_default"] for p in response.json()])
    np.testing.assert_allclose(
        served, reference_probabilities(server["tag"], as_records(frame)), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("kind", ["csv", "parquet-strings", "parquet-categorical"])
def test_files_carry_categories_as_text_or_pandas_categories(server, rows, kind):
    frame = pd.DataFrame.from_records(rows)
    if kind == "csv":
        upload, name = frame.to_csv(index=False).encode(), "applications.csv"
    else:
        if kind == "parquet-categorical":
            frame = frame.astype({"OCCUPATION_TYPE": "category", "NAME_INCOME_TYPE": "category"})
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        upload, name = buffer.getvalue(), "applications.parquet"
    response = requests.post(
        f"{server['url']}/predict_file", files={"file": (name, upload)}, timeout=60
    )
    assert response.status_code == 200, response.text
    scored = (
        pd.read_csv(io.BytesIO(response.content))
        if kind == "csv"
        else pd.read_parquet(io.BytesIO(response.content))
    )
    np.testing.assert_allclose(
        scored["probability_of_default"].to_numpy(),
        reference_probabilities(server["tag"], rows),
        rtol=0,
        atol=1e-9,
    )


def test_explain_reports_the_category_string_as_the_value(server, rows):
    row = next(r for r in rows if r["OCCUPATION_TYPE"] is not None)
    body = {"applications": [row], "top_k": 6}
    response = requests.post(f"{server['url']}/explain", json=body, timeout=30)
    assert response.status_code == 200, response.text
    values = {c["feature"]: c["value"] for c in response.json()[0]["top_contributions"]}
    assert values["OCCUPATION_TYPE"] == row["OCCUPATION_TYPE"]
    assert values["NAME_INCOME_TYPE"] == row["NAME_INCOME_TYPE"]
    assert values["FLAG_OWN_CAR"] is row["FLAG_OWN_CAR"]


def unseen_count(url: str) -> float:
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("credit_unseen_categories_total") and "OCCUPATION_TYPE" in line
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_an_unseen_category_is_refused_or_scored_as_missing_and_counted(server, rows):
    row = {**rows[0], "OCCUPATION_TYPE": "Astronaut"}
    before = unseen_count(server["url"])
    response = requests.post(f"{server['url']}/predict", json={"applications": [row]}, timeout=30)
    if server["route"] == "classifier":  # the default: refused, naming the field and the value
        assert response.status_code == 400
        assert "OCCUPATION_TYPE" in response.text
        assert "Astronaut" in response.text
    else:  # SCORING_UNSEEN_CATEGORY=missing: exactly what LightGBM makes of an unseen value
        assert response.status_code == 200, response.text
        expected = reference_probabilities(server["tag"], [row])[0]
        assert response.json()[0]["probability_of_default"] == pytest.approx(expected, abs=1e-9)
        assert expected == pytest.approx(
            reference_probabilities(server["tag"], [{**row, "OCCUPATION_TYPE": None}])[0], abs=1e-12
        )
    assert unseen_count(server["url"]) == before + 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("OCCUPATION_TYPE", 3),
        ("OCCUPATION_TYPE", True),
        ("AMT_CREDIT", "1000.5"),
        ("AMT_CREDIT", True),
        ("FLAG_OWN_CAR", 1),
        ("FLAG_OWN_CAR", "true"),
        ("CNT_CHILDREN", "2"),
        ("CNT_CHILDREN", False),
    ],
)
def test_no_value_is_coerced_into_another_type(server, rows, field, value):
    row = {**rows[0], field: value}
    response = requests.post(f"{server['url']}/predict", json={"applications": [row]}, timeout=30)
    assert response.status_code == 400, response.text
    assert field in response.text
    ok = requests.post(f"{server['url']}/predict", json={"applications": rows[:1]}, timeout=30)
    assert ok.status_code == 200


def test_swagger_lists_each_categorical_features_categories(server):
    schema = requests.get(f"{server['url']}/docs.json", timeout=10).json()
    text = str(schema)
    assert all(occupation in text for occupation in OCCUPATIONS)


def test_a_string_column_the_booster_does_not_treat_as_categorical_is_refused(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_store(uri)
    mlflow.create_experiment("codes", artifact_location=(tmp_path / "a").as_uri())
    frame, target = applications(1000, seed=1)
    codes = frame.assign(
        OCCUPATION_TYPE=frame.OCCUPATION_TYPE.cat.codes,
        NAME_INCOME_TYPE=frame.NAME_INCOME_TYPE.cat.codes,
    )
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(codes, target)
    # The signature says strings (inferred from the raw frame), the booster took numbers.
    log_and_register(uri, "codes", model, infer_signature(frame))
    capsys.readouterr()  # MLflow's own lines while logging
    code = import_model.main(
        ["--tracking-uri", uri, "--model-name", "codes", "--bento-name", "codes"]
    )
    assert code == errors.UnservableModel.exit_code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "OCCUPATION_TYPE" in err
    assert "categorical" in err


def test_integer_coded_categoricals_take_the_integers_as_they_are(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_store(uri)
    mlflow.create_experiment("intcodes", artifact_location=(tmp_path / "a").as_uri())
    frame, target = applications(1000, seed=2)
    codes = frame.assign(OCCUPATION_TYPE=frame.OCCUPATION_TYPE.cat.codes.astype(int),
                         NAME_INCOME_TYPE=frame.NAME_INCOME_TYPE.cat.codes.astype(int))  # fmt: skip
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(
        codes, target, categorical_feature=["OCCUPATION_TYPE", "NAME_INCOME_TYPE"]
    )
    log_and_register(uri, "intcodes", model, infer_signature(codes))
    args = ["--tracking-uri", uri, "--model-name", "intcodes", "--bento-name", "intcodes"]
    assert import_model.main(args) == 0
    features = {
        f["name"]: f for f in bentoml.models.get("intcodes:latest").info.metadata["features"]
    }
    assert features["OCCUPATION_TYPE"] == {
        "name": "OCCUPATION_TYPE",
        "type": "long",
        "categorical": True,
    }
