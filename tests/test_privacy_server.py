"""A real `bentoml serve` that carries applicants' data: bad requests leave no value in its log
(one JSON line each), callers need a bearer token from a file that can rotate, and the HTTP
edges (trailing slash, malformed HTTP, an over-limit body) answer in the one JSON shape."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import httpx
import pytest
import requests

from loadtest.processes import ROOT, free_port, running
from scoring.serving.edge.arrow_route import PATH as ARROW_PATH
from scoring.serving.edge.tokens import RECHECK_S
from scoring.serving.forms.arrow_stream import ARROW_STREAM
from scoring.serving.forms.limits import DEFAULT_MAX_BODY_BYTES

pytestmark = pytest.mark.server

# In every bad request's bad fields; found anywhere in the log, a value leaked.
MARKER = f"Mk{uuid.uuid4().hex[:12]}zq"
NUMBER = 7391.8264  # unlike any timestamp, duration or id the log writes
TOKEN, NEXT_TOKEN = "tok-" + uuid.uuid4().hex, "tok-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory) -> Path:
    """The tokens as a Kubernetes Secret volume holds them: `tokens` a symlink into a folder
    that an update replaces by swapping a symlink."""
    root = tmp_path_factory.mktemp("secret")
    first = root / "..2026_01"
    first.mkdir()
    (first / "tokens").write_text(f"# the service's callers\n\n{TOKEN}\n")
    (root / "..data").symlink_to(first.name)
    (root / "tokens").symlink_to("..data/tokens")
    return root / "tokens"


@pytest.fixture(scope="module")
def served(production_model, bentoml_home, tmp_path_factory, tokens_file):
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "SCORING_WORKERS": "1",
        "SCORING_API_TOKENS_FILE": str(tokens_file),
        "SCORING_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    url = f"http://127.0.0.1:{port}"
    os.chdir(ROOT)
    with running(command, f"{url}/readyz", log, env=env, timeout_s=120):
        yield url, log


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def row(demo_rows) -> dict:
    return next(r for r in demo_rows if r["EXT_SOURCE_1"] is not None)


def assert_still_serving(url: str, row: dict) -> None:
    response = requests.post(
        f"{url}/predict", json={"applications": [row]}, headers=auth(), timeout=30
    )
    assert response.status_code == 200, response.text


def _arrow(table) -> bytes:
    from loadtest.payloads import arrow_stream

    return arrow_stream(table)


def _csv(row: dict, **changes) -> bytes:
    import pandas as pd

    return pd.DataFrame([{**row, **changes}]).to_csv(index=False).encode()


def bad_requests(row: dict) -> list[tuple[str, str, str, dict, bytes | dict, int]]:
    """(name, method, path, headers, body, status): each carries MARKER and NUMBER in what is
    wrong with it. `body` a dict is JSON; bytes are sent as they are."""
    import pyarrow as pa

    category = "NAME_CONTRACT_TYPE"
    js = {"content-type": "application/json"}
    long_text = MARKER * 20_000  # 280 KB in one value
    arrow_bad_category = pa.Table.from_pylist([{**row, category: MARKER}])
    arrow_bad_number = pa.Table.from_pylist([{**row, "AMT_CREDIT": MARKER}])
    arrow_unknown_column = pa.Table.from_pylist([{**row, MARKER: NUMBER}])
    multipart = "multipart/form-data; boundary=b"

    def upload(content: bytes, name: str = "x.csv", extra: bytes = b"") -> bytes:
        return (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
            + name.encode()
            + b'"\r\nContent-Type: text/csv\r\n\r\n'
            + content
            + b"\r\n"
            + extra
            + b"--b--\r\n"
        )

    reasons_field = (
        b'--b\r\nContent-Disposition: form-data; name="reasons"\r\n\r\n' + MARKER.encode() + b"\r\n"
    )
    return [
        ("string for a number", "POST", "/predict", js,
         {"applications": [{**row, "AMT_CREDIT": MARKER, "CNT_CHILDREN": NUMBER}]}, 400),
        ("nested object", "POST", "/predict", js,
         {"applications": [{**row, "AMT_CREDIT": {"v": MARKER, "n": NUMBER}}]}, 400),
        ("list for a number", "POST", "/predict", js,
         {"applications": [{**row, "AMT_CREDIT": [MARKER, NUMBER]}]}, 400),
        ("boolean and marker", "POST", "/predict", js,
         {"applications": [{**row, "CNT_CHILDREN": True, category: MARKER,
                            "AMT_CREDIT": str(NUMBER)}]}, 400),
        ("unseen category", "POST", "/predict", js,
         {"applications": [{**row, category: MARKER, "CNT_CHILDREN": NUMBER}]}, 400),
        ("huge string", "POST", "/predict", js,
         {"applications": [{**row, "AMT_CREDIT": long_text}]}, 400),
        ("unknown feature named by the caller", "POST", "/predict", js,
         {"applications": [{**row, MARKER: NUMBER}]}, 400),
        ("unknown top-level field", "POST", "/predict", js,
         {"applications": [row], MARKER: NUMBER}, 400),
        ("repeated key", "POST", "/predict", js,
         json.dumps({"applications": [row]}).replace(
             '"AMT_CREDIT": ', f'"AMT_CREDIT": "{MARKER}", "AMT_CREDIT": ', 1).encode(), 400),
        ("malformed json", "POST", "/predict", js,
         f'{{"applications": [{{"AMT_CREDIT": "{MARKER}", "x": {NUMBER}'.encode(), 400),
        ("NaN literal", "POST", "/predict", js,
         json.dumps({"applications": [{**row, "CNT_CHILDREN": NUMBER}]}).replace(
             '"AMT_CREDIT": ', f'"{MARKER}": NaN, "AMT_CREDIT": ', 1).encode(), 400),
        ("with reasons", "POST", "/predict_with_reasons", js,
         {"applications": [{**row, "AMT_CREDIT": MARKER, "CNT_CHILDREN": NUMBER}]}, 400),
        ("compact value", "POST", "/predict_compact", js,
         {"table": {"columns": list(row),
                    "data": [[MARKER, NUMBER, *list(row.values())[2:]]]}}, 400),
        ("compact unknown column", "POST", "/predict_compact", js,
         {"table": {"columns": [*row, MARKER], "data": [[*row.values(), NUMBER]]}}, 400),
        ("compact with reasons", "POST", "/predict_compact_with_reasons", js,
         {"table": {"columns": list(row),
                    "data": [[{"v": MARKER}, *list(row.values())[1:]]]}}, 400),
        ("explain top_k text", "POST", "/explain", js,
         {"applications": [row], "top_k": MARKER}, 400),
        ("explain top_k number", "POST", "/explain", js,
         {"applications": [{**row, "AMT_CREDIT": MARKER}], "top_k": NUMBER}, 400),
        ("query string", "POST", f"/predict?{MARKER}={NUMBER}", js, {"applications": [row]}, 400),
        ("content type", "POST", "/predict", {"content-type": f"text/{MARKER}"}, b"{}", 415),
        ("arrow unseen category", "POST", ARROW_PATH, {"content-type": ARROW_STREAM},
         _arrow(arrow_bad_category), 400),
        ("arrow text for a number", "POST", ARROW_PATH, {"content-type": ARROW_STREAM},
         _arrow(arrow_bad_number), 400),
        ("arrow unknown column", "POST", ARROW_PATH, {"content-type": ARROW_STREAM},
         _arrow(arrow_unknown_column), 400),
        ("arrow garbage", "POST", ARROW_PATH, {"content-type": ARROW_STREAM},
         f"{MARKER}{NUMBER}".encode() * 10, 400),
        ("arrow content type", "POST", ARROW_PATH, {"content-type": f"x/{MARKER}"}, b"x", 415),
        ("file bad number", "POST", "/predict_file", {"content-type": multipart},
         upload(_csv(row, AMT_CREDIT=MARKER, CNT_CHILDREN=NUMBER)), 400),
        ("file unseen category", "POST", "/predict_file", {"content-type": multipart},
         upload(_csv(row, **{category: MARKER})), 400),
        ("file unknown column", "POST", "/predict_file", {"content-type": multipart},
         upload(_csv(row, **{MARKER: NUMBER})), 400),
        ("file not a csv", "POST", "/predict_file", {"content-type": multipart},
         upload(f"\x00{MARKER}\x01{NUMBER}".encode(), name=f"{MARKER}.parquet"), 400),
        ("file reasons field", "POST", "/predict_file", {"content-type": multipart},
         upload(_csv(row), extra=reasons_field), 400),
        ("unknown path", "GET", f"/{MARKER}/{NUMBER}", {}, b"", 404),
        ("wrong method", "GET", f"/predict?{MARKER}={NUMBER}", {}, b"", 405),
        ("oversized body", "POST", "/predict", js,
         (MARKER.encode() + b" ") * (DEFAULT_MAX_BODY_BYTES // 14), 413),
    ]  # fmt: skip


def _ids() -> list[str]:
    return [case[0] for case in bad_requests({"EXT_SOURCE_2": 0})]


def _log_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if line.strip()]


def _lines_with(log: Path, text: str, at_least: int = 1, wait_s: float = 5) -> list[str]:
    """The log lines holding `text`, waiting a moment for them (a line follows the answer)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = [line for line in _log_lines(log) if text in line]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("case", range(len(_ids())), ids=_ids())
def test_a_bad_request_is_one_json_log_line_without_the_value_and_a_json_refusal(served, row, case):
    url, log = served
    name, method, path, headers, body, status = bad_requests(row)[case]
    request_id = uuid.uuid4().hex
    headers = {**headers, **auth(), "x-request-id": request_id}
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    response = requests.request(method, f"{url}{path}", data=body, headers=headers, timeout=30)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    payload = response.json()
    assert set(payload) == {"error", "field", "detail"}, payload
    assert response.headers["x-request-id"] == request_id
    lines = _lines_with(log, request_id)
    time.sleep(0.2)  # a second line, if any, would follow at once
    lines = _lines_with(log, request_id)
    assert len(lines) == 1, f"{name}: {len(lines)} lines: {lines}"
    entry = json.loads(lines[0])
    assert (entry["status"], entry["request_id"]) == (status, request_id), entry
    assert set(entry) >= {"route", "status", "error_type", "field", "request_id", "duration_ms"}
    text = log.read_text(errors="replace")
    assert MARKER not in text, f"{name}: the submitted value is in the log"
    assert str(NUMBER) not in text, f"{name}: the submitted number is in the log"
    assert "Traceback" not in text, f"{name}: a traceback for a refusal"
    assert_still_serving(url, row)


def test_every_line_of_the_log_is_one_json_object_and_values_never_appear(served, row):
    url, log = served
    requests.post(f"{url}/predict", json={"applications": [{**row, "AMT_CREDIT": MARKER}]},
                  headers=auth(), timeout=30)  # fmt: skip
    _lines_with(log, '"status": 400')
    lines = _lines_with(log, "Service credit_scoring initialized")
    assert lines, _log_lines(log)[-20:]
    # From the service's own start-up on, every line a process of it writes is JSON.
    started = next(i for i, line in enumerate(_log_lines(log)) if "patches installed" in line)
    for line in _log_lines(log)[started:]:
        assert isinstance(json.loads(line), dict), line
    assert MARKER not in log.read_text()


def _raw(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "request_bytes",
    [
        f"GARBAGE {MARKER}\r\n\r\n".encode(),
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {MARKER}\r\n\r\n".encode(),
        f"GET /livez HTTP/1.1\r\nHost: x\r\nBad Header{MARKER}: 1\r\n\r\n".encode(),
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"
        + MARKER.encode(),
    ],
    ids=["request line", "content length", "header name", "chunk size"],
)
def test_malformed_http_gets_the_json_400_and_one_log_line_without_what_was_sent(
    served, row, request_bytes
):
    url, log = served
    before = len(_lines_with(log, "Invalid HTTP request received", at_least=0, wait_s=0))
    answer = _raw(url, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/json" in head.lower(), answer
    payload = json.loads(body)
    assert (payload["field"], payload["detail"][0]["type"]) == ("body", "malformed_http")
    assert len(_lines_with(log, "Invalid HTTP request received", at_least=before + 1)) == (
        before + 1
    )
    assert MARKER not in log.read_text()
    assert_still_serving(url, row)


# --- bearer tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
     {"authorization": "Bearer "}, {"authorization": TOKEN}],
    ids=["none", "wrong token", "basic scheme", "empty", "no scheme"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/predict", "/predict_arrow", "/version", "/monitoring", "/"])
def test_a_caller_without_a_valid_token_gets_a_401_in_the_json_shape(served, row, headers, path):
    url, _ = served
    if path == "/predict":
        response = requests.post(
            f"{url}{path}", json={"applications": [row]}, headers=headers, timeout=30
        )
    elif path == "/predict_arrow":
        response = requests.post(
            f"{url}{path}", data=b"x", headers={**headers, "content-type": ARROW_STREAM},
            timeout=30,
        )  # fmt: skip
    else:
        response = requests.get(f"{url}{path}", headers=headers, timeout=30)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["field"] == "authorization"


def test_probes_and_metrics_stay_open_without_a_token(served):
    url, _ = served
    for path in ("/livez", "/readyz", "/metrics"):
        assert requests.get(f"{url}{path}", timeout=10).status_code == 200, path


def test_a_valid_token_scores(served, row):
    url, _ = served
    assert_still_serving(url, row)
    version = requests.get(f"{url}/version", headers=auth(), timeout=10).json()
    patches = version["bentoml_patches"]
    assert patches["refusal_logging"]["active"], patches
    assert patches["refusal_logging"]["refusals_not_logged"] >= 1, patches
    assert patches["malformed_http"]["active"], patches


def test_a_rotation_swapping_the_secret_folder_keeps_both_tokens_valid_then_the_new_one(
    served, row, tokens_file
):
    """As a Kubernetes Secret volume updates: a new folder, then one symlink swapped."""
    url, _ = served
    root = tokens_file.parent

    def swap_to(folder: str, *tokens: str) -> None:
        (root / folder).mkdir()
        (root / folder / "tokens").write_text("\n".join(tokens) + "\n")
        (root / "..data_tmp").symlink_to(folder)
        os.replace(root / "..data_tmp", root / "..data")
        time.sleep(RECHECK_S + 0.2)  # the file is looked at again at most once per RECHECK_S

    def status(token: str) -> int:
        response = requests.post(
            f"{url}/predict", json={"applications": [row]}, headers=auth(token), timeout=30
        )
        return response.status_code

    assert (status(TOKEN), status(NEXT_TOKEN)) == (200, 401)
    swap_to("..2026_02", TOKEN, NEXT_TOKEN)
    assert (status(TOKEN), status(NEXT_TOKEN)) == (200, 200)
    swap_to("..2026_03", NEXT_TOKEN)
    assert (status(TOKEN), status(NEXT_TOKEN)) == (401, 200)
    swap_to("..2026_04", TOKEN)  # back, for the other tests
    assert status(TOKEN) == 200


# --- HTTP edges ------------------------------------------------------------------------------


def test_a_trailing_slash_is_served_as_the_route_never_redirected(served, row):
    url, _ = served
    body = {"applications": [row]}
    plain = requests.post(f"{url}/predict", json=body, headers=auth(), timeout=30)
    for path in ("/predict/", "/predict//"):
        slashed = requests.post(
            f"{url}{path}", json=body, headers=auth(), timeout=30, allow_redirects=False
        )
        assert slashed.status_code == 200, (path, slashed.status_code, slashed.headers)
        assert slashed.json() == plain.json()
    version = requests.get(f"{url}/version/", headers=auth(), timeout=10, allow_redirects=False)
    assert version.status_code == 200
    unknown = requests.post(f"{url}/nothing/", json=body, headers=auth(), timeout=10,
                            allow_redirects=False)  # fmt: skip
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "path"


OVER_LIMIT = int(DEFAULT_MAX_BODY_BYTES * 1.5)  # 12 MB, as in the issue


def _over_limit_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * OVER_LIMIT)
    return path


def _urllib(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={**auth(), "content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _requests(url: str, body: bytes) -> tuple[int, bytes]:
    answer = requests.post(f"{url}/predict", data=body, headers={**auth(), "content-type":
                           "application/json"}, timeout=30)  # fmt: skip
    return answer.status_code, answer.content


def _httpx(url: str, body: bytes) -> tuple[int, bytes]:
    answer = httpx.post(f"{url}/predict", content=body, timeout=30,
                        headers={**auth(), "content-type": "application/json"})  # fmt: skip
    return answer.status_code, answer.content


def _chunked(url: str, body: bytes) -> tuple[int, bytes]:
    """httpx streaming the body in chunks: no Content-Length announces the size."""
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    answer = httpx.post(f"{url}/predict", content=chunks, timeout=30,
                        headers={**auth(), "content-type": "application/json"})  # fmt: skip
    return answer.status_code, answer.content


@pytest.mark.parametrize(
    "client",
    [_urllib, _requests, _httpx, _chunked],
    ids=["urllib", "requests", "httpx", "httpx chunked"],
)
def test_every_common_client_receives_the_413_for_an_over_limit_body(served, row, client):
    url, _ = served
    status, content = client(url, b" " * OVER_LIMIT)
    assert status == 413, content[:300]
    assert json.loads(content)["field"] == "body"
    assert_still_serving(url, row)


def test_curl_receives_the_413_for_an_over_limit_body(served, row, tmp_path):
    url, _ = served
    big = _over_limit_file(tmp_path)
    done = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", f"authorization: Bearer {TOKEN}",
         "-H", "content-type: application/json", "--data-binary", f"@{big}", f"{url}/predict"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    body, _, status = done.stdout.rpartition(b"\n")
    assert status == b"413", done
    assert json.loads(body)["field"] == "body"
    assert_still_serving(url, row)


def test_the_arrow_route_over_its_limit_is_a_413_for_urllib_too(served, row):
    url, _ = served
    request = urllib.request.Request(
        f"{url}{ARROW_PATH}", data=io.BytesIO(b"x" * OVER_LIMIT).getvalue(),
        headers={**auth(), "content-type": ARROW_STREAM},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["field"] == "body"
    assert_still_serving(url, row)
