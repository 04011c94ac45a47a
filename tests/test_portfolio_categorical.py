"""The portfolio job on a team's categorical model (categories, an integer and a boolean
feature; lgb.train with categorical_feature=, compiled), against the same model served by a
real `bentoml serve` with unseen categories scored as missing: the job reads that policy from
the same SCORING_ setting and gives the service's answers, reasons and refusals."""

from __future__ import annotations

import os
import sys

import lightgbm as lgb
import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

import import_model
from loadtest.payloads import arrow_stream
from loadtest.processes import ROOT, free_port, running
from scoring.portfolio import cli
from scoring.serving.forms.arrow_stream import ARROW_STREAM
from scoring.stored_model import compiled
from tests.portfolio_spark import needs_java, shared_session, write_portfolio
from tests.test_categorical import applications, as_records, logged_as_usual, use_store

pytestmark = [needs_java, pytest.mark.server, pytest.mark.timeout(600)]

ID = "application_id"
UNSEEN = {"SCORING_UNSEEN_CATEGORY": "missing"}


@pytest.fixture(scope="module")
def model_tag(tmp_path_factory, bentoml_home) -> str:
    root = tmp_path_factory.mktemp("portfolio-categorical")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    use_store(uri)
    mlflow.create_experiment("train", artifact_location=(root / "artifacts").as_uri())
    frame, target = applications(3000, seed=7)
    dataset = lgb.Dataset(
        frame, target, categorical_feature=["OCCUPATION_TYPE", "NAME_INCOME_TYPE"]
    )
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 10}, dataset, 40)
    logged_as_usual(uri, "train", booster, frame)
    flags = ["--compile"] if compiled.runs_here() else []
    args = ["--tracking-uri", uri, "--model-name", "train", "--bento-name", "portfolio_categorical"]
    assert import_model.main([*args, *flags]) == 0
    import bentoml

    return str(bentoml.models.get("portfolio_categorical:latest").tag)


@pytest.fixture(scope="module")
def server(model_tag, bentoml_home, tmp_path_factory) -> str:
    port = free_port()
    env = {**os.environ, **UNSEEN, "SCORING_MODEL_TAG": model_tag, "SCORING_WORKERS": "1"}
    serve = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring",
             "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with running(serve, f"{url}/readyz", log, env={**env, "PWD": str(ROOT)}, timeout_s=180):
        yield url


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> dict:
    """150 applications, one with an occupation the model never saw (scored as missing under
    this policy), and one with its boolean missing (refused by the contract)."""
    frame, _ = applications(152, seed=3)
    rows = as_records(frame)
    rows[150]["OCCUPATION_TYPE"] = "Astronaut"
    rows[151]["FLAG_OWN_CAR"] = None
    path = tmp_path_factory.mktemp("book") / "book.parquet"
    write_portfolio(path, rows, list(range(len(rows))))
    return {"path": path, "rows": rows}


@pytest.fixture(scope="module")
def scored(model_tag, book, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("scored") / "out"
    args = ["--input", str(book["path"]), "--output", str(out), "--model", model_tag]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in UNSEEN.items():
            patch.setenv(name, value)
        code = cli.main([*args, "--id-column", ID, "--reasons", "4"], spark=shared_session())
    assert code == 0
    return {
        "output": pq.read_table(out).sort_by(ID).to_pylist(),
        "quarantine": pq.read_table(out / "_quarantine").to_pylist(),
    }


def test_categorical_answers_equal_the_services_including_an_unseen_category(server, book, scored):
    rows = book["rows"][:151]  # the boolean-less row is the service's 400 too (below)
    answers = requests.post(f"{server}/predict", json={"applications": rows}, timeout=60).json()
    output = scored["output"]
    assert [row[ID] for row in output] == list(range(151))
    for row, answer in zip(output, answers, strict=True):
        assert row["probability_of_default"] == pytest.approx(
            answer["probability_of_default"], abs=1e-9
        )
        assert (row["decision"], row["threshold"], row["model"]) == (
            answer["decision"],
            answer["threshold"],
            answer["model"],
        )


def test_categorical_reasons_are_byte_identical_to_the_services_file_reasons(
    server, book, scored, tmp_path
):
    upload = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(book["rows"][:151]), upload)
    answer = requests.post(
        f"{server}/predict_file",
        files={"file": (upload.name, upload.read_bytes())},
        data={"reasons": "true"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    expected = pq.read_table(pa.BufferReader(answer.content))["reasons"].to_pylist()
    assert [row["reasons"] for row in scored["output"]] == expected
    assert any(expected)


def test_a_missing_boolean_is_quarantined_with_the_services_message(server, book, scored):
    alone = pq.read_table(book["path"]).slice(151, 1).drop_columns([ID])
    answer = requests.post(
        f"{server}/predict_arrow",
        data=arrow_stream(alone),
        headers={"content-type": ARROW_STREAM},
        timeout=60,
    )
    assert answer.status_code == 400
    refusal = answer.json()
    assert scored["quarantine"] == [{ID: 151, "field": refusal["field"], "error": refusal["error"]}]
