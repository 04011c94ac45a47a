"""A real `bentoml serve` process on a free loopback port, called over HTTP."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import pandas as pd
import pytest
import requests

from loadtest.processes import ROOT, free_port, running
from scoring.serving.batching import bulk_lane
from scoring.serving.edge.settings import FILE_SIZE_FACTOR
from tests.service_helpers import names_the_field, reference_probabilities

pytestmark = pytest.mark.server

MAX_ROWS = 50
NOT_A_CSV = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n\x00\x01garbage\r\n--b--\r\n"
)
MAX_BODY = 200_000
WORKERS = 2
BULK_ROWS = 20  # below MAX_ROWS, so requests here take the bulk path too
BULK_BODY_BYTES = 10_000


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory) -> Path:
    """The server's own TMPDIR, so what its requests leave behind can be counted."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(production_model, bentoml_home, tmp_path_factory, server_tmp):
    port = free_port()
    env = {
        **os.environ,
        "TMPDIR": str(server_tmp),
        "BENTOML_HOME": str(bentoml_home),
        "SCORING_MAX_ROWS_PER_REQUEST": str(MAX_ROWS),
        "SCORING_MAX_BODY_BYTES": str(MAX_BODY),
        "SCORING_WORKERS": str(WORKERS),
        "SCORING_BULK_ROWS": str(BULK_ROWS),
        "SCORING_BULK_BODY_BYTES": str(BULK_BODY_BYTES),
    }
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "service:CreditScoring",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    url = f"http://127.0.0.1:{port}"
    os.chdir(ROOT)
    with running(command, f"{url}/readyz", log, env=env, timeout_s=120):
        yield url


def post(url: str, path: str, body: object) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, timeout=30)


def assert_still_serving(url: str, row: dict) -> None:
    response = post(url, "/predict", {"applications": [row]})
    assert response.status_code == 200, response.text
    assert 0 <= response.json()[0]["probability_of_default"] <= 1


def test_served_probabilities_equal_the_in_process_booster(server, production_model, demo_rows):
    response = post(server, "/predict", {"applications": demo_rows[:MAX_ROWS]})
    assert response.status_code == 200
    served = [p["probability_of_default"] for p in response.json()]
    expected = reference_probabilities(production_model, demo_rows[:MAX_ROWS])
    assert served == pytest.approx(list(expected), abs=1e-12)


def test_sync_http_client_calls_predict(server, demo_rows):
    with bentoml.SyncHTTPClient(server) as client:
        predictions = client.predict(applications=demo_rows[:3])
    assert [p["decision"] in ("approve", "reject") for p in predictions] == [True] * 3


def test_version_matches_the_bento_model_labels(server, production_model):
    labels = bentoml.models.get(production_model).info.labels
    version = requests.get(f"{server}/version", timeout=10).json()
    assert (version["model_tag"], version["run_id"]) == (production_model, labels["run_id"])
    assert version["threshold"] == float(labels["threshold"])
    assert version["experiment"] == labels["experiment"]
    assert version["model_alias"] == labels["model_alias"]


def test_concurrent_single_row_requests_are_merged_into_batches(server, demo_rows):
    def one(row: dict) -> int:
        return post(server, "/predict", {"applications": [row]}).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(one, demo_rows[:300]))
    assert statuses == [200] * 300
    metrics = requests.get(f"{server}/metrics", timeout=10).text
    pattern = r'adaptive_batch_size_{kind}\{{[^}}]*method_name="predict"[^}}]*\}} ([0-9.e+]+)'
    # One series per worker: add them up.
    batches = sum(map(float, re.findall(pattern.format(kind="count"), metrics)))
    rows = sum(map(float, re.findall(pattern.format(kind="sum"), metrics)))
    assert rows >= 300
    assert batches < rows, f"{batches} batches for {rows} rows: no batch held more than one row"


def test_metrics_count_predictions_by_decision(server, demo_rows):
    post(server, "/predict", {"applications": demo_rows[:10]})
    metrics = requests.get(f"{server}/metrics", timeout=10).text
    counted = re.findall(
        r'credit_predictions_total\{[^}]*decision="(approve|reject)"[^}]*\} (\S+)', metrics
    )
    assert sum(float(value) for _, value in counted) >= 10
    assert "credit_default_probability_bucket" in metrics


def _row_with(row: dict, **changes) -> dict:
    return {**row, **changes}


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


def bad_requests(row: dict) -> list[tuple[str, str, dict, bytes, int, str]]:
    """(name, path, headers, body, expected status, field the error must name)."""
    js = {"content-type": "application/json"}
    columns = list(row)

    def body(value: object) -> bytes:
        return json.dumps(value).encode()

    def records(*rows: dict) -> bytes:
        return body({"applications": list(rows)})

    return [
        ("malformed json", "/predict", js, b'{"applications": [', 400, ""),
        (
            "missing feature",
            "/predict",
            js,
            records(_without(row, "EXT_SOURCE_2")),
            400,
            "EXT_SOURCE_2",
        ),
        (
            "unknown feature",
            "/predict",
            js,
            records(_row_with(row, SHOE_SIZE=42)),
            400,
            "SHOE_SIZE",
        ),
        (
            "string for a number",
            "/predict",
            js,
            records(_row_with(row, AMT_CREDIT="lots")),
            400,
            "AMT_CREDIT",
        ),
        (
            "null integer feature",
            "/predict",
            js,
            records(_row_with(row, CNT_CHILDREN=None)),
            400,
            "CNT_CHILDREN",
        ),
        (
            "fraction for integer",
            "/predict",
            js,
            records(_row_with(row, CNT_CHILDREN=1.5)),
            400,
            "CNT_CHILDREN",
        ),
        (
            "NaN literal",
            "/predict",
            js,
            records(row).replace(b'"AMT_CREDIT": ', b'"AMT_CREDIT": NaN, "x": '),
            400,
            "",
        ),
        (
            "infinity",
            "/predict",
            js,
            json.dumps({"applications": [_row_with(row, AMT_CREDIT=float("inf"))]}).encode(),
            400,
            "AMT_CREDIT",
        ),
        ("empty batch", "/predict", js, records(), 400, "applications"),
        ("too many rows", "/predict", js, records(*[row] * (MAX_ROWS + 1)), 400, "applications"),
        ("no applications key", "/predict", js, body({"rows": [row]}), 400, "applications"),
        (
            "applications not a list",
            "/predict",
            js,
            body({"applications": row}),
            400,
            "applications",
        ),
        ("oversized body", "/predict", js, b" " * (MAX_BODY + 1), 413, "body"),
        (
            "wrong content type",
            "/predict",
            {"content-type": "text/plain"},
            records(row),
            415,
            "content-type",
        ),
        (
            "compact unknown column",
            "/predict_compact",
            js,
            body({"table": {"columns": [*columns, "X"], "data": [[*row.values(), 1]]}}),
            400,
            "X",
        ),
        (
            "compact missing column",
            "/predict_compact",
            js,
            body({"table": {"columns": columns[1:], "data": [list(row.values())[1:]]}}),
            400,
            columns[0],
        ),
        (
            "compact short row",
            "/predict_compact",
            js,
            body({"table": {"columns": columns, "data": [list(row.values())[1:]]}}),
            400,
            "data[0]",
        ),
        (
            "explain top_k zero",
            "/explain",
            js,
            body({"applications": [row], "top_k": 0}),
            400,
            "top_k",
        ),
        (
            "file that is not a CSV",
            "/predict_file",
            {"content-type": "multipart/form-data; boundary=b"},
            NOT_A_CSV,
            400,
            "file",
        ),
        ("file endpoint given json", "/predict_file", js, records(row), 415, "content-type"),
    ]


def _bad_request_ids() -> list[str]:
    return [
        case[0] for case in bad_requests({"EXT_SOURCE_2": 0, "CNT_CHILDREN": 0, "AMT_CREDIT": 0})
    ]


@pytest.mark.parametrize("case", range(len(_bad_request_ids())), ids=_bad_request_ids())
def test_bad_request_gets_a_json_4xx_naming_the_field_and_service_keeps_serving(
    server, demo_rows, case
):
    row = next(r for r in demo_rows if r["EXT_SOURCE_1"] is not None)
    name, path, headers, body, status, field = bad_requests(row)[case]
    response = requests.post(f"{server}{path}", data=body, headers=headers, timeout=30)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    payload = response.json()
    assert "Traceback" not in response.text
    if field:
        assert names_the_field(payload, field), f"{name}: {payload}"
    assert_still_serving(server, row)


def post_chunked(url: str, path: str, chunks: Iterator[bytes], content_type: str):
    """POST with Transfer-Encoding: chunked, so no Content-Length announces the size."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"content-type": content_type}
    connection.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
    return connection.getresponse()


def test_chunked_oversized_body_is_refused_with_413(server, demo_rows):
    chunks = (b" " * 50_000 for _ in range(MAX_BODY // 50_000 + 2))
    response = post_chunked(server, "/predict", chunks, "application/json")
    assert response.status == 413
    assert json.loads(response.read())["field"] == "body"
    assert_still_serving(server, demo_rows[0])


def test_a_burst_of_connections_spreads_over_all_workers(server):
    """Connections opened all at once (a proxy's pool, wrk) reach every worker; with one shared
    listening socket the first worker to wake could accept them all."""
    port = int(server.rsplit(":", 1)[1])
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(32)]
    for connection in connections:
        connection.connect()
    pids = set()
    for connection in connections:
        connection.request("GET", "/version")
        body = json.loads(connection.getresponse().read())
        assert body["worker"]["of"] == WORKERS
        pids.add(body["worker"]["pid"])
        connection.close()
    assert len(pids) == WORKERS, f"32 connections reached only worker pids {pids}"


def test_chunked_oversized_file_upload_is_refused_with_413_and_service_keeps_serving(
    server, demo_rows
):
    limit = MAX_BODY * FILE_SIZE_FACTOR
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\n'
    chunks = itertools.chain([head], (b"1," * 250_000 for _ in range(limit // 500_000 + 2)))
    response = post_chunked(server, "/predict_file", chunks, "multipart/form-data; boundary=b")
    assert response.status == 413
    assert json.loads(response.read())["field"] == "body"
    assert_still_serving(server, demo_rows[0])


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def scored_files(folder: Path) -> list[Path]:
    return [path for path in files_under(folder) if path.name.startswith("scored")]


def test_predict_file_leaves_no_file_behind(server, server_tmp, demo_rows):
    upload = pd.DataFrame(demo_rows[:5]).to_csv(index=False).encode()
    before = len(files_under(server_tmp))
    for _ in range(6):
        files = {"file": ("applications.csv", upload, "text/csv")}
        response = requests.post(f"{server}/predict_file", files=files, timeout=30)
        assert response.status_code == 200, response.text
        assert response.content.startswith(upload.split(b"\n")[0])
    # A leak left one scored file (and its folder) per call: six here. The last request's folder
    # is emptied just after its response is sent, so give it a moment.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and scored_files(server_tmp):
        time.sleep(0.1)
    assert not scored_files(server_tmp)
    assert len(files_under(server_tmp)) - before < 6


def test_each_worker_listens_on_its_own_socket_as_version_reports(server):
    """Ask /version over fresh connections until every worker answered: each reports a listening
    SO_REUSEPORT socket of its own (with BentoML's shared socket they would share one inode)."""
    reports = {}
    for _ in range(200):
        body = requests.get(f"{server}/version", timeout=10).json()
        reports[body["worker"]["pid"]] = body["bentoml_patches"]
        if len(reports) == WORKERS:
            break
    assert len(reports) == WORKERS, f"only workers {list(reports)} answered 200 connections"
    sockets = [report["worker_sockets"] for report in reports.values()]
    assert all(socket["own_socket"] for socket in sockets), sockets
    assert len({socket["socket_inode"] for socket in sockets}) == WORKERS, sockets


def test_every_batching_dispatcher_in_the_server_uses_the_bounded_wait(server):
    report = requests.get(f"{server}/version", timeout=10).json()["bentoml_patches"]
    # /predict and /predict_compact are batched: each has a dispatcher, each with the bound.
    assert report["batching_wait"]["bounded_dispatchers"] >= 2, report
    assert report["request_timeout"]["active"], report


def test_the_scoring_api_methods_are_bound_once_in_the_server(server, demo_rows):
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)  # one worker answers
    body = json.dumps({"applications": demo_rows[:1]}).encode()
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    scored = connection.getresponse()
    assert scored.read()
    connection.request("GET", "/version")
    patches = json.loads(connection.getresponse().read())["bentoml_patches"]
    connection.close()
    report = patches["bound_api_methods"]
    assert report["active"], report
    assert "predict" in report["bound_once"], report
    # BentoML's headers, added by response_headers.py (no dependency lookup per request).
    assert patches["response_headers"]["active"], patches
    assert patches["response_headers"]["responses"] > 0, patches
    # The answer written by orjson (json_response.py), the same document.
    assert patches["json_response"]["active"], patches
    assert patches["json_response"]["answers"] > 0, patches
    assert scored.headers["server"] == "BentoML Service/credit_scoring"


def test_bentoml_request_metrics_count_every_request_exactly(server, demo_rows):
    """BentoML's request metrics, their label sets remembered (request_metrics.py), still count
    each request once, under its status, summed over the workers."""

    def counted(code: int) -> float:
        metrics = requests.get(f"{server}/metrics", timeout=10).text
        found = re.search(
            rf'bentoml_service_request_total\{{endpoint="/predict",http_response_code="{code}"'
            r"[^}]*\} (\S+)",
            metrics,
        )
        return 0.0 if found is None else float(found.group(1))

    before = counted(200), counted(400)
    for _ in range(5):
        assert post(server, "/predict", {"applications": [demo_rows[0]]}).status_code == 200
    for _ in range(2):
        assert post(server, "/predict", {"applications": []}).status_code == 400
    assert (counted(200), counted(400)) == (before[0] + 5, before[1] + 2)
    report = requests.get(f"{server}/version", timeout=10).json()["bentoml_patches"]
    assert report["request_metrics"]["active"], report
    assert report["request_metrics"]["middlewares_set_up"] >= 1, report


def test_a_scan_of_random_paths_adds_no_metric_series(server):
    """BentoML labels its request metrics with the raw path: 2,000 random paths grew /metrics
    from 272 KB to 8.1 MB. Paths that are no route are counted under one label instead."""
    for number in range(40):
        assert requests.get(f"{server}/scan-{number}", timeout=10).status_code == 404
    assert requests.get(f"{server}/version", timeout=10).status_code == 200
    metrics = requests.get(f"{server}/metrics", timeout=10).text
    assert "scan-" not in metrics
    other = re.search(
        r'bentoml_service_request_total\{endpoint="\(other\)",http_response_code="404"'
        r"[^}]*\} (\S+)",
        metrics,
    )
    assert other is not None, metrics[:2000]
    assert float(other.group(1)) >= 40
    # The service's own routes keep their names.
    assert 'endpoint="/version"' in metrics


def test_a_bulk_request_is_parsed_and_scored_in_the_low_priority_lane_beside_the_queue(
    server, production_model, demo_rows
):
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)  # one worker answers
    rows = demo_rows[:MAX_ROWS]
    body = json.dumps({"applications": rows}).encode()
    assert len(body) >= BULK_BODY_BYTES  # parsed off the event loop
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    answer = json.loads(connection.getresponse().read())
    connection.request("GET", "/version")
    version = json.loads(connection.getresponse().read())
    connection.close()
    served = [p["probability_of_default"] for p in answer]
    assert served == pytest.approx(list(reference_probabilities(production_model, rows)), abs=1e-12)
    bypass = version["bentoml_patches"]["bulk_bypass"]
    assert bypass["active"], bypass
    assert bypass["bulk_rows"] == BULK_ROWS, bypass
    assert bypass["bulk_requests_scored_beside_the_queue"] >= 1, bypass
    parsing = version["bentoml_patches"]["json_body"]
    assert parsing["bodies_parsed_off_the_event_loop"] >= 1, parsing
    assert version["bulk_lane"]["niceness"] == bulk_lane.BULK_NICENESS


def test_the_arrow_form_scores_as_the_records_form_in_the_real_server(server, demo_rows):
    import pyarrow as pa

    from loadtest.payloads import arrow_stream
    from scoring.serving.edge.arrow_route import PATH
    from scoring.serving.forms.arrow_stream import ARROW_STREAM

    rows = demo_rows[:MAX_ROWS]
    answer = requests.post(
        f"{server}{PATH}",
        data=arrow_stream(pa.Table.from_pylist(rows)),
        headers={"Content-Type": ARROW_STREAM},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == post(server, "/predict", {"applications": rows}).json()
    # Served ahead of BentoML's router, yet inside its request metrics, like every route.
    metrics = requests.get(f"{server}/metrics", timeout=10).text
    counted = re.search(
        r'bentoml_service_request_total\{endpoint="/predict_arrow",http_response_code="200"'
        r"[^}]*\} (\S+)",
        metrics,
    )
    assert counted is not None, metrics[:2000]
    assert float(counted.group(1)) >= 1, metrics[:2000]
    # A content type whose bytes are not UTF-8 (HTTP headers are Latin-1; the in-process test
    # client re-encodes them, so only a real server sees the raw bytes): a 415, not a 500.
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    for path in (PATH, "/predict"):
        connection.request("POST", path, b"x", {"Content-Type": b"application/\xff"})
        refused = connection.getresponse()
        assert refused.status == 415, (path, refused.read())
        assert json.loads(refused.read())["field"] == "content-type"
    connection.close()
    assert_still_serving(server, rows[0])


def test_the_real_server_refuses_what_could_be_read_two_ways_in_the_one_error_shape(
    server, demo_rows
):
    """The json_body and form_body patches are active in `bentoml serve`, and the request
    guard gives their refusals the shape of every other."""
    report = requests.get(f"{server}/version", timeout=10).json()["bentoml_patches"]
    assert report["json_body"]["active"], report
    assert report["json_body"]["inputs_refusing_unknown_fields"] >= 4, report
    assert report["form_body"]["active"], report
    row = demo_rows[0]
    records = json.dumps({"applications": [row]})
    js = {"content-type": "application/json"}
    repeated = records.replace('"AMT_CREDIT": ', '"AMT_CREDIT": 1.0, "AMT_CREDIT": ', 1)
    unknown = json.dumps({"applications": [row], "top_k ": 3})
    no_boundary = {"content-type": "multipart/form-data"}
    for path, headers, body, field in [
        ("/predict", js, repeated, "applications.0.AMT_CREDIT"),
        ("/explain", js, unknown, "top_k "),
        ("/predict_file", no_boundary, NOT_A_CSV, "body"),
    ]:
        response = requests.post(f"{server}{path}", data=body, headers=headers, timeout=30)
        assert response.status_code == 400, response.text
        payload = response.json()
        assert set(payload) == {"error", "field", "detail"}, payload
        assert payload["field"] == field, payload
        assert_still_serving(server, row)
