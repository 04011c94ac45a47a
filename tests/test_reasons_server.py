"""Reason codes with the real parts: import_model.py against a real MLflow server (the messy
team store, whose runs log no reason-code table) and a local demo store, and `bentoml serve`
processes over HTTP: two workers giving the same reasons byte for byte, and a model imported
without a table serving the feature-name fallback."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from pathlib import Path

import bentoml
import pytest
import yaml
from mlflow.tracking import MlflowClient

import import_model
from demo_store.mlflow_runs import TINY, build_demo_store
from loadtest.processes import ROOT, free_port, running
from scoring.core.reasons import NO_TABLE_SOURCE
from scoring.importing.errors import ReasonTableProblem
from scoring.stored_model.reason_codes import REASON_CODES_FILE, REASON_CODES_KEY
from tests.service_helpers import bento_models

pytestmark = pytest.mark.server


def assert_refused_with_exit_9(capsys, args: list[str], bento_name: str, text: str) -> None:
    assert import_model.main([*args, "--bento-name", bento_name]) == ReasonTableProblem.exit_code
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1, stderr
    assert text in stderr
    assert bento_models(bento_name) == []


def test_import_refuses_a_table_naming_a_feature_the_model_lacks(messy_store, tmp_path, capsys):
    table = tmp_path / "codes.yaml"
    table.write_text("reasons:\n  - {feature: SHOE_SIZE, code: R01, text: Feet too big}\n")
    args = ["--tracking-uri", messy_store.tracking_uri, "--reason-codes", str(table)]
    assert_refused_with_exit_9(capsys, args, "unknown_feature", "SHOE_SIZE")


def test_import_refuses_a_code_with_two_texts(messy_store, tmp_path, capsys):
    table = tmp_path / "codes.yaml"
    table.write_text(
        "reasons:\n"
        "  - {feature: EXT_SOURCE_2, code: R03, text: External credit score too low}\n"
        "  - {feature: EXT_SOURCE_3, code: R03, text: Score from another bureau too low}\n"
    )
    args = ["--tracking-uri", messy_store.tracking_uri, "--reason-codes", str(table)]
    assert_refused_with_exit_9(capsys, args, "two_texts", "code R03 has 2 different texts")


@pytest.fixture(scope="module")
def own_demo_store(tmp_path_factory) -> tuple[str, str]:
    """A demo store of this module's own, whose production run's table can be replaced."""
    root = tmp_path_factory.mktemp("reasons-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    candidate = build_demo_store(uri, TINY, artifact_root=root / "artifacts")
    return uri, candidate.run_id


def test_the_reason_codes_flag_wins_over_the_run_artifact(own_demo_store, tmp_path, capsys):
    uri, run_id = own_demo_store
    table = tmp_path / "codes.yaml"
    table.write_text("reasons:\n  - {feature: EXT_SOURCE_2, code: X1, text: Score}\n")
    assert import_model.main(["--tracking-uri", uri, "--bento-name", "flag_wins"]) == 0
    args = ["--tracking-uri", uri, "--bento-name", "flag_wins", "--reason-codes", str(table)]
    assert import_model.main(args) == 0
    models = {
        bentoml.models.get(tag).info.metadata[REASON_CODES_KEY]["source"]: bentoml.models.get(tag)
        for tag in bento_models("flag_wins")
    }
    assert set(models) == {f"run {run_id} artifact {REASON_CODES_FILE}", f"file {table}"}
    flagged = models[f"file {table}"]
    assert Path(flagged.path_of(REASON_CODES_FILE)).read_text() == table.read_text()
    # The flag's table lists one feature: the others are reported under their own name.
    assert "will be reported under their own name" in capsys.readouterr().err


def test_import_refuses_a_run_artifact_table_that_does_not_fit(own_demo_store, capsys):
    uri, run_id = own_demo_store
    client = MlflowClient(uri)
    good = client.download_artifacts(run_id, REASON_CODES_FILE)
    original = Path(good).read_text()
    bad = yaml.safe_load(original)
    bad["reasons"][0]["feature"] = "EXT_SOURCE_9"
    client.log_text(run_id, yaml.safe_dump(bad), REASON_CODES_FILE)
    try:
        args = ["--tracking-uri", uri]
        assert_refused_with_exit_9(capsys, args, "bad_artifact", "EXT_SOURCE_9")
    finally:
        client.log_text(run_id, original, REASON_CODES_FILE)


# ---- served -----------------------------------------------------------------------------------


def serve(env: dict[str, str], log_dir: Path):
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    os.chdir(ROOT)
    return url, running(command, f"{url}/readyz", log_dir / "serve.log", env=env, timeout_s=120)


@pytest.fixture(scope="module")
def two_workers(production_model, bentoml_home, tmp_path_factory):
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "SCORING_WORKERS": "2"}
    url, server = serve(env, tmp_path_factory.mktemp("two-workers"))
    with server:
        yield url


def answers_by_worker(url: str, path: str, body: bytes) -> dict[int, list[bytes]]:
    """The same body POSTed over fresh connections until each worker answered it twice; each
    connection first asks /version which worker it reached. Bounded by time, not by a count:
    /readyz answers once one worker is up, and on a loaded machine (CI) the second took longer
    than 200 connections to the first (only one worker answered, 2026-12-07)."""
    host, port = url.removeprefix("http://").split(":")
    answers: dict[int, list[bytes]] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/version")
        pid = json.loads(connection.getresponse().read())["worker"]["pid"]
        connection.request("POST", path, body=body, headers={"content-type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        answers.setdefault(pid, []).append(response.read())
        connection.close()
        if len(answers) == 2 and all(len(a) >= 2 for a in answers.values()):
            break
    return answers


@pytest.mark.parametrize("form", ["records", "compact"])
def test_two_workers_give_the_same_reasons_byte_for_byte(two_workers, demo_rows, form):
    rows = demo_rows[:100]
    if form == "records":
        path, body = "/predict_with_reasons", {"applications": rows}
    else:
        columns = list(rows[0])
        table = {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
        path, body = "/predict_compact_with_reasons", {"table": table}
    answers = answers_by_worker(two_workers, path, json.dumps(body).encode())
    assert len(answers) == 2, f"only workers {list(answers)} answered"
    distinct = {answer for worker in answers.values() for answer in worker}
    assert len(distinct) == 1, "the workers' answers differ"
    parsed = json.loads(distinct.pop())
    assert sum(a["reasons"] is not None for a in parsed) >= 5


BARE = "bare"  # the messy store's production model, whose run logs no table


@pytest.fixture(scope="module")
def no_table_model(messy_store) -> str:
    args = ["--tracking-uri", messy_store.tracking_uri, "--bento-name", BARE]
    assert import_model.main(args) == 0
    (tag,) = bento_models(BARE)
    return tag


def test_import_without_a_table_warns_and_records_none(messy_store, no_table_model, capsys):
    capsys.readouterr()
    args = ["--tracking-uri", messy_store.tracking_uri, "--bento-name", BARE]
    assert import_model.main(args) == 0  # reused, and warned again
    assert capsys.readouterr().err.startswith("import_model: warning: no reason-code table")
    model = bentoml.models.get(no_table_model)
    assert model.info.labels["reason_codes"] == "none"
    assert model.info.metadata[REASON_CODES_KEY] == {"source": "none"}
    assert not Path(model.path_of(REASON_CODES_FILE)).exists()


@pytest.fixture(scope="module")
def no_table_server(no_table_model, bentoml_home, tmp_path_factory):
    tag = no_table_model
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "SCORING_WORKERS": "1",
        "SCORING_MODEL_TAG": tag,
    }
    url, server = serve(env, tmp_path_factory.mktemp("no-table"))
    with server:
        yield url


def test_a_model_without_a_table_gives_feature_names_as_reasons_and_says_so(
    no_table_server, demo_rows
):
    host, port = no_table_server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/version")
    version = json.loads(connection.getresponse().read())["reason_codes"]
    assert version["source"] == NO_TABLE_SOURCE
    assert version["sha256"] is None
    body = json.dumps({"applications": demo_rows[:100]}).encode()
    headers = {"content-type": "application/json"}
    connection.request("POST", "/predict_with_reasons", body=body, headers=headers)
    answers = json.loads(connection.getresponse().read())
    rejected = [a for a in answers if a["decision"] == "reject"]
    assert rejected
    for answer in rejected:
        assert answer["reason_source"] == NO_TABLE_SOURCE
        for reason in answer["reasons"]:
            assert reason["coded"] is False
            assert reason["code"] == reason["text"] == reason["features"][0]
