"""The request contract, in-process (`to_asgi()` behind a test client): a request that could be
read two ways is refused, and every refusal on every route has the one shape of
scoring/serving/edge/refusals.py. "A credit decision must never rest on a value the service
guessed."
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.service_helpers import names_the_field

JSON = {"content-type": "application/json"}
NOT_A_CSV = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n\x00\x01garbage\r\n--b--\r\n"
)


@pytest.fixture(scope="module")
def row(demo_rows) -> dict:
    return demo_rows[0]


def pairs_to_json(pairs: list[tuple[str, object]], separators=(", ", ": ")) -> str:
    """A JSON object written pair by pair, so a key can appear twice."""
    item, key = separators
    return "{" + item.join(json.dumps(k) + key + json.dumps(v) for k, v in pairs) + "}"


def post(client: TestClient, path: str, body: str | bytes, headers=JSON):
    return client.post(path, content=body, headers=headers)


def assert_still_scoring(client: TestClient, row: dict) -> None:
    response = client.post("/predict", json={"applications": [row]})
    assert response.status_code == 200, response.text


def refused(response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return response.json()


def test_a_repeated_top_level_key_is_refused_naming_it(client, row):
    body = '{"applications": [], "applications": ' + json.dumps([row]) + "}"
    error = refused(post(client, "/predict", body))
    assert error["field"] == "applications"
    assert error["detail"][0]["type"] == "repeated_key"
    assert_still_scoring(client, row)


def test_a_repeated_feature_in_a_row_is_refused_naming_the_row_and_the_feature(client, row):
    repeated = [*row.items()]
    repeated.insert(3, ("AMT_CREDIT", 1.0))
    rows = [json.dumps(row)] * 3 + [pairs_to_json(repeated)]
    body = '{"applications": [' + ", ".join(rows) + "]}"
    error = refused(post(client, "/predict", body))
    assert error["field"] == "applications.3.AMT_CREDIT"
    assert "applications.3.AMT_CREDIT" in error["error"]
    assert_still_scoring(client, row)


def test_a_repeated_key_in_the_compact_table_is_refused_naming_it(client, row):
    columns, values = json.dumps(list(row)), json.dumps([list(row.values())])
    body = f'{{"table": {{"columns": {columns}, "data": {values}, "columns": {columns}}}}}'
    error = refused(post(client, "/predict_compact", body))
    assert error["field"] == "table.columns"
    assert_still_scoring(client, row)


def test_a_repeated_key_on_explain_is_refused_too(client, row):
    body = '{"applications": ' + json.dumps([row]) + ', "top_k": 3, "top_k": 200}'
    error = refused(post(client, "/explain", body))
    assert error["field"] == "top_k"


def test_a_body_without_repeats_is_cleared_by_its_key_count_alone(client, row, monkeypatch):
    """The fast road of the repeated-key check: rows of required features say how many keys
    they held, so a body whose colons match is not parsed a second time."""
    from scoring.bentoml_patches import json_body

    def second_parse(body: bytes) -> None:
        raise AssertionError(f"parsed again: {body[:60]!r}")

    monkeypatch.setattr(json_body, "repeated_keys", second_parse)
    compact = {"table": {"columns": list(row), "data": [list(row.values())] * 2}}
    for path, body in (("/predict", {"applications": [row, row]}), ("/predict_compact", compact)):
        assert client.post(path, json=body).status_code == 200, path


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", lambda row: {"applications": [row], "extra": 1}),
        ("/predict_compact", lambda row: {"table": {"columns": [], "data": []}, "extra": 1}),
        ("/explain", lambda row: {"applications": [row], "top_k": 3, "extra": 1}),
    ],
    ids=["predict", "predict_compact", "explain"],
)
def test_an_unknown_top_level_field_is_refused_naming_it(client, row, path, body):
    error = refused(client.post(path, json=body(row)))
    assert names_the_field(error, "extra"), error
    assert any(d["type"] == "extra_forbidden" and d["loc"] == ["extra"] for d in error["detail"])
    assert_still_scoring(client, row)


def test_an_unknown_upload_field_is_refused_naming_it(client, row):
    upload = NOT_A_CSV.replace(b'name="file"', b'name="spreadsheet"')
    headers = {"content-type": "multipart/form-data; boundary=b"}
    error = refused(post(client, "/predict_file", upload, headers))
    assert error["field"] == "spreadsheet"
    assert error["detail"][0]["type"] == "extra_forbidden"
    assert_still_scoring(client, row)


def test_an_unreadable_upload_is_refused_not_answered_with_a_server_error(client, row):
    headers = {"content-type": "multipart/form-data"}  # no boundary: the parts cannot be found
    error = refused(post(client, "/predict_file", NOT_A_CSV, headers))
    assert error["field"] == "body"
    assert "boundary" in error["error"]
    assert_still_scoring(client, row)


def test_a_file_sent_twice_is_refused_naming_it(client, demo_rows):
    import pandas as pd

    upload = pd.DataFrame(demo_rows[:3]).to_csv(index=False).encode()
    files = [("file", ("a.csv", upload, "text/csv")), ("file", ("b.csv", upload, "text/csv"))]
    error = refused(client.post("/predict_file", files=files))
    assert error["field"] == "file"
    assert error["detail"][0]["type"] == "repeated_key"


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "ftp://127.0.0.1/x",
        "https://example.invalid/x.csv",
        "http://127.0.0.1:3100/version",
    ],
)
def test_a_file_field_sent_as_text_is_refused_naming_it_and_nothing_is_fetched(
    client, row, monkeypatch, text
):
    import httpx

    def no_fetch(*args, **kwargs):
        raise AssertionError(f"the service fetched {text!r}")

    monkeypatch.setattr(httpx.AsyncClient, "get", no_fetch)
    error = refused(client.post("/predict_file", files={"file": (None, text)}))
    assert error["field"] == "file"
    assert error["detail"][0]["type"] == "file_expected"
    assert_still_scoring(client, row)


@pytest.mark.parametrize("reasons", ["[" * 100_000, "1" * 5000], ids=["deep nesting", "digits"])
def test_an_unreadable_form_value_is_refused_naming_its_field(client, demo_rows, reasons):
    import pandas as pd

    upload = pd.DataFrame(demo_rows[:3]).to_csv(index=False).encode()
    files = {"file": ("a.csv", upload, "text/csv")}
    error = refused(client.post("/predict_file", files=files, data={"reasons": reasons}))
    assert error["field"] == "reasons"
    assert_still_scoring(client, demo_rows[0])


def test_malformed_json_is_refused_naming_the_body(client, row):
    error = refused(post(client, "/predict", '{"applications": ['))
    assert error["field"] == "body"
    assert "Invalid JSON" in error["error"]
    assert_still_scoring(client, row)


def test_a_nan_literal_is_still_refused(client, row):
    body = json.dumps({"applications": [row]}).replace('"AMT_CREDIT": ', '"AMT_CREDIT": NaN, "x": ')
    assert post(client, "/predict", body).status_code == 400


def test_keys_with_colons_and_spaces_around_them_are_not_mistaken_for_repeats(client, row):
    """Pretty-printed JSON, with a space before each colon, scores like compact JSON."""
    compact = post(client, "/predict", json.dumps({"applications": [row]}, separators=(",", ":")))
    spaced = post(client, "/predict", json.dumps({"applications": [row]}, indent=1))
    spaced_before = post(
        client, "/predict", json.dumps({"applications": [row]}, separators=(" , ", " : "))
    )
    assert compact.status_code == spaced.status_code == spaced_before.status_code == 200
    assert compact.json() == spaced.json() == spaced_before.json()


def _refusals(row: dict) -> list[tuple[str, str, str, dict, bytes | str, int]]:
    """(name, method, path, headers, body, status): one refusal of each kind on each route."""
    columns = list(row)
    records = json.dumps({"applications": [row]})
    return [
        ("validation", "POST", "/predict", JSON, json.dumps({"applications": []}), 400),
        (
            "wrong type",
            "POST",
            "/predict",
            JSON,
            records.replace('"AMT_CREDIT": ', '"AMT_CREDIT": "x", "y": '),
            400,
        ),
        ("malformed json", "POST", "/predict", JSON, b"{not json", 400),
        (
            "repeated key",
            "POST",
            "/predict",
            JSON,
            records.replace('"AMT_CREDIT": ', '"AMT_CREDIT": 1.0, "AMT_CREDIT": '),
            400,
        ),
        (
            "compact validation",
            "POST",
            "/predict_compact",
            JSON,
            json.dumps({"table": {"columns": columns[1:], "data": [list(row.values())[1:]]}}),
            400,
        ),
        (
            "explain validation",
            "POST",
            "/explain",
            JSON,
            json.dumps({"applications": [row], "top_k": 0}),
            400,
        ),
        (
            "file that is not a CSV",
            "POST",
            "/predict_file",
            {"content-type": "multipart/form-data; boundary=b"},
            NOT_A_CSV,
            400,
        ),
        (
            "unreadable upload",
            "POST",
            "/predict_file",
            {"content-type": "multipart/form-data"},
            NOT_A_CSV,
            400,
        ),
        ("oversized body", "POST", "/predict", JSON, b" " * (8 * 1024 * 1024 + 1), 413),
        ("json route given text", "POST", "/explain", {"content-type": "text/plain"}, records, 415),
        ("file route given json", "POST", "/predict_file", JSON, records, 415),
        ("method not allowed", "GET", "/predict_compact", {}, b"", 405),
    ]


REFUSAL_NAMES = [case[0] for case in _refusals({"AMT_CREDIT": 1})]


@pytest.mark.parametrize("case", range(len(REFUSAL_NAMES)), ids=REFUSAL_NAMES)
def test_every_refusal_on_every_route_has_the_same_shape_and_the_service_keeps_scoring(
    client, row, case
):
    name, method, path, headers, body, status = _refusals(row)[case]
    response = client.request(method, path, content=body, headers=headers)
    error = refused(response, status)
    assert response.headers["content-type"] == "application/json"
    assert set(error) == {"error", "field", "detail"}, name
    assert isinstance(error["error"], str)
    assert error["error"]
    assert "\n" not in error["error"]
    assert isinstance(error["field"], str)
    assert error["field"]
    assert error["detail"], name
    for detail in error["detail"]:
        assert {"type", "loc", "msg"} <= set(detail), detail
    assert_still_scoring(client, row)


def test_a_refusal_names_the_first_problem_and_counts_the_others(client, row):
    bad = {**row, "AMT_CREDIT": "lots", "AMT_ANNUITY": "some"}
    error = refused(client.post("/predict", json={"applications": [bad]}))
    assert error["field"] == "applications.0.AMT_CREDIT"
    assert error["error"].startswith("applications.0.AMT_CREDIT: ")
    assert "and 1 more" in error["error"]
    assert len(error["detail"]) == 2


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_duplicating_any_key_of_a_valid_record_is_always_refused(client, demo_rows, data):
    row = data.draw(st.sampled_from(demo_rows[:50]), label="record")
    pairs = list(row.items())
    key = data.draw(st.sampled_from(list(row)), label="key")
    value = data.draw(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(10**6), 10**6),
            st.none(),
            st.text(max_size=12),
            st.booleans(),
        ).filter(lambda v: v != row[key] or type(v) is not type(row[key])),
        label="other value",
    )
    pairs.insert(data.draw(st.integers(0, len(pairs)), label="position"), (key, value))
    separators = data.draw(st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]))
    body = '{"applications": [' + pairs_to_json(pairs, separators) + "]}"
    response = post(client, "/predict", body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == f"applications.0.{key}"


def test_a_body_with_thousands_of_problems_is_refused_with_the_first_few(client, row):
    """pydantic reports every bad cell, three per cell of the compact form: a 30 KB body of
    empty lists was a 4.9 MB refusal. The first problems are named, then how many were left."""
    from scoring.bentoml_patches.json_body import MAX_PROBLEMS

    body = '{"table": {"columns": [], "data": [[' + ",".join(["[]"] * 10_000) + "]]}}"
    response = post(client, "/predict_compact", body)
    error = refused(response)
    assert len(response.content) < 20_000
    assert len(error["detail"]) == MAX_PROBLEMS + 1
    assert error["detail"][0]["loc"][:3] == ["table", "data", 0]
    assert error["detail"][-1]["type"] == "too_many_problems"
    assert error["detail"][-1]["msg"].startswith(f"{30_000 - MAX_PROBLEMS} more problems")
    assert_still_scoring(client, row)


def test_thousands_of_repeated_or_unknown_columns_are_refused_in_a_short_message(client, row):
    columns, values = list(row), list(row.values())
    repeated = {"columns": [*columns, *["AMT_CREDIT"] * 50_000], "data": [values + [1.0] * 50_000]}
    error = refused(client.post("/predict_compact", json={"table": repeated}))
    assert error["error"].endswith("repeated column(s): AMT_CREDIT")
    unknown = [f"X{i}" for i in range(5_000)]
    table = {"columns": [*columns, *unknown], "data": [values + [1.0] * 5_000]}
    response = client.post("/predict_compact", json={"table": table})
    error = refused(response)
    assert "unknown feature(s): X0, X1, X10, X100" in error["error"]
    assert "and 4990 more" in error["error"]
    assert len(response.content) < 5_000
    assert_still_scoring(client, row)


@pytest.mark.parametrize("top_k", [True, "3", 2.0])
def test_top_k_must_be_a_whole_number_not_a_boolean_or_a_string(client, row, top_k):
    error = refused(client.post("/explain", json={"applications": [row], "top_k": top_k}))
    assert error["field"] == "top_k"


def test_a_query_parameter_is_refused_not_ignored(client, row):
    """The routes read their parameters from the body: a query string was silently ignored
    (`/explain?top_k=1` answered with the default 5 contributions)."""
    error = refused(client.post("/explain?top_k=1", json={"applications": [row]}))
    assert error["field"] == "query"
    assert "query parameters" in error["error"]
    assert_still_scoring(client, row)


def test_a_huge_value_is_quoted_cut_short_in_its_refusal(client, row):
    category = next(name for name, value in row.items() if isinstance(value, str))
    response = client.post("/predict", json={"applications": [{**row, category: "x" * 1_000_000}]})
    error = refused(response)
    assert error["field"].endswith(category)
    assert "characters)" in error["error"]
    assert len(response.content) < 10_000


def test_a_refused_compact_cell_is_named_as_the_field(client, row):
    """The compact form's cells are checked after pydantic, which located every such refusal
    at `table`: the field is now the cell, as on /predict it is the row's feature."""
    columns, values = list(row), list(row.values())
    number = next(i for i, v in enumerate(values) if isinstance(v, float))
    category = next(i for i, v in enumerate(values) if isinstance(v, str))
    bad_number, bad_category = list(values), list(values)
    bad_number[number] = "12"
    bad_category[category] = "Astronaut"
    for data, field in (
        ([values, bad_number], f"table.data.1.{number}"),
        ([bad_category, values], f"table.data.0.{category}"),
        ([values, values[:-1]], "table.data.1"),
    ):
        error = refused(
            client.post("/predict_compact", json={"table": {"columns": columns, "data": data}})
        )
        assert error["field"] == field, error
    error = refused(
        client.post(
            "/predict_compact", json={"table": {"columns": columns[1:], "data": [values[1:]]}}
        )
    )
    assert error["field"] == "table.columns"
    assert columns[0] in error["error"]
