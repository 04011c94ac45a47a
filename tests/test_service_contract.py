"""In-process contract tests: the service's ASGI app (`to_asgi()`) behind a test client."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.service_helpers import names_the_field, reference_probabilities


def test_predict_returns_probability_decision_threshold_and_model(
    client, production_model, demo_rows
):
    response = client.post("/predict", json={"applications": demo_rows[:5]})
    assert response.status_code == 200, response.text
    predictions = response.json()
    assert len(predictions) == 5
    expected = reference_probabilities(production_model, demo_rows[:5])
    for prediction, probability in zip(predictions, expected, strict=True):
        assert prediction["probability_of_default"] == pytest.approx(probability, abs=1e-12)
        decision = "reject" if probability >= prediction["threshold"] else "approve"
        assert prediction["decision"] == decision
        assert prediction["model"] == production_model


def test_compact_form_scores_like_records_whatever_the_column_order(client, demo_rows):
    columns = list(reversed(list(demo_rows[0])))
    table = {"columns": columns, "data": [[row[c] for c in columns] for row in demo_rows[:20]]}
    compact = client.post("/predict_compact", json={"table": table})
    records = client.post("/predict", json={"applications": demo_rows[:20]})
    assert compact.status_code == 200, compact.text
    assert compact.json() == records.json()


def test_explain_contributions_plus_base_value_equal_the_raw_score(
    client, production_model, demo_rows
):
    response = client.post("/explain", json={"applications": demo_rows[:3], "top_k": 200})
    assert response.status_code == 200, response.text
    expected = reference_probabilities(production_model, demo_rows[:3])
    for explanation, probability in zip(response.json(), expected, strict=True):
        total = explanation["base_value"] + sum(
            c["contribution"] for c in explanation["top_contributions"]
        )
        assert total == pytest.approx(explanation["raw_score"], abs=1e-9)
        assert 1 / (1 + math.exp(-explanation["raw_score"])) == pytest.approx(probability, abs=1e-9)


def test_explain_returns_top_k_by_magnitude(client, demo_rows):
    response = client.post("/explain", json={"applications": demo_rows[:1], "top_k": 3})
    (explanation,) = response.json()
    magnitudes = [abs(c["contribution"]) for c in explanation["top_contributions"]]
    assert len(magnitudes) == 3
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_predict_file_scores_a_csv_into_a_csv(client, production_model, demo_rows, tmp_path):
    import pandas as pd

    frame = pd.DataFrame(demo_rows[:50])
    path = tmp_path / "applications.csv"
    frame.to_csv(path, index=False)
    with path.open("rb") as upload:
        response = client.post(
            "/predict_file", files={"file": ("applications.csv", upload, "text/csv")}
        )
    assert response.status_code == 200, response.text
    scored = pd.read_csv(__import__("io").BytesIO(response.content))
    assert list(scored.columns) == [*frame.columns, "probability_of_default", "decision"]
    expected = reference_probabilities(production_model, demo_rows[:50])
    np.testing.assert_allclose(scored.probability_of_default, expected, atol=1e-12)


def test_predict_file_scores_parquet_into_parquet(client, production_model, demo_rows, tmp_path):
    import io

    import pandas as pd

    path = tmp_path / "applications.parquet"
    pd.DataFrame(demo_rows[:30]).to_parquet(path)
    with path.open("rb") as upload:
        files = {"file": ("applications.parquet", upload, "application/octet-stream")}
        response = client.post("/predict_file", files=files)
    assert response.status_code == 200, response.text
    scored = pd.read_parquet(io.BytesIO(response.content))
    expected = reference_probabilities(production_model, demo_rows[:30])
    np.testing.assert_allclose(scored.probability_of_default, expected, atol=1e-12)


def test_version_reports_the_model_labels(client, production_model):
    import bentoml

    labels = bentoml.models.get(production_model).info.labels
    version = client.get("/version").json()
    assert version["model_tag"] == production_model
    assert version["run_id"] == labels["run_id"]
    assert version["threshold"] == float(labels["threshold"])
    assert version["threshold_origin"] == "model label"
    assert version["registered_model"] == labels["registered_model"]
    assert version["service"]["revision"]


def test_swagger_schema_lists_the_models_features_with_an_example(client, demo_rows):
    schema = client.get("/docs.json").json()
    application = schema["components"]["schemas"]["Application"]
    assert list(application["properties"]) == list(demo_rows[0])
    assert application["example"].keys() == demo_rows[0].keys()


def test_readyz_is_true_after_the_self_test(client):
    assert client.get("/readyz").status_code == 200


def test_malformed_json_is_a_400_with_json_error(client):
    response = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "Invalid JSON" in response.json()["detail"][0]["msg"]


def test_unknown_feature_is_refused_naming_it(client, demo_rows):
    row = {**demo_rows[0], "FAVOURITE_COLOUR": 3.0}
    response = client.post("/predict", json={"applications": [row]})
    assert response.status_code == 400
    assert names_the_field(response.json(), "FAVOURITE_COLOUR")


def test_json_routes_declare_their_media_type_so_bentoml_skips_a_schema_per_response(client):
    import service

    for name in ("predict", "predict_compact", "explain"):
        assert service.CreditScoring.apis[name].output_spec.media_type == "application/json"
    response = client.post("/predict", json={"applications": [service.EXAMPLE]})
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("column", "cell", "expected"),
    [
        ("AMT_CREDIT", "lots", "is not a number"),
        ("AMT_CREDIT", "inf", "is not a finite number"),
        ("CNT_CHILDREN", "2.5", "must be an integer"),
        ("OCCUPATION_TYPE", "Astronaut", "unseen category"),
        # Too large for a float: was an OverflowError, a 500.
        ("AMT_CREDIT", "9" * 400, "is not a finite number"),
        ("CNT_CHILDREN", "9" * 400, "is not a finite number"),
        # Python's int() and float() take these; a CSV number is plain ASCII decimal.
        ("AMT_CREDIT", "1_000", "is not a number"),
        ("AMT_CREDIT", "\u0661\u0662\u0663", "is not a number"),  # Arabic-Indic digits
        ("AMT_CREDIT", " 12", "is not a number"),
    ],
)
def test_a_csv_cell_that_does_not_parse_as_its_column_is_a_400_naming_column_and_row(
    client, demo_rows, column, cell, expected
):
    import pandas as pd

    frame = pd.DataFrame(demo_rows[:5])
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = cell
    files = {"file": ("applications.csv", frame.to_csv(index=False).encode(), "text/csv")}
    response = client.post("/predict_file", files=files)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert column in message
    assert expected in message
    assert "3" in message  # the row
    assert response.json()["field"] == "file"
    assert client.post("/predict", json={"applications": demo_rows[:1]}).status_code == 200


def _csv_lines(demo_rows: list[dict], n: int) -> list[str]:
    import pandas as pd

    return pd.DataFrame(demo_rows[:n]).to_csv(index=False).splitlines()


def _post_csv(client, lines: list[str]):
    upload = ("\n".join(lines) + "\n").encode()
    return client.post("/predict_file", files={"file": ("a.csv", upload, "text/csv")})


@pytest.mark.parametrize(
    ("change", "fields"),
    [(lambda line: line.rsplit(",", 1)[0], -1), (lambda line: line + ",1", 1)],
    ids=["short", "long"],
)
def test_a_csv_row_with_too_few_or_too_many_fields_is_refused_naming_it(
    client, demo_rows, change, fields
):
    """Pandas would fill a short row's last field as a missing value and score it."""
    lines = _csv_lines(demo_rows, 4)
    lines[2] = change(lines[2])
    response = _post_csv(client, lines)
    assert response.status_code == 400, response.text
    columns = len(demo_rows[0])
    assert response.json()["field"] == "file"
    assert f"row 1 has {columns + fields} fields for {columns} columns" in response.json()["error"]


def test_a_csv_whose_rows_all_have_one_field_too_many_is_refused_not_shifted(client, demo_rows):
    """Pandas would take the first field as an index column and shift every value by one."""
    lines = _csv_lines(demo_rows, 4)
    lines[1:] = [line + ",1" for line in lines[1:]]
    response = _post_csv(client, lines)
    assert response.status_code == 400, response.text
    assert "row 0 has" in response.json()["error"]


def test_a_repeated_csv_column_is_refused_naming_it(client, demo_rows):
    lines = _csv_lines(demo_rows, 3)
    lines = [f"{line},{line.split(',')[0]}" for line in lines]  # the first column again
    response = _post_csv(client, lines)
    assert response.status_code == 400, response.text
    first = next(iter(demo_rows[0]))
    assert response.json()["error"].endswith(f"repeated column(s): {first}")


def test_a_parquet_file_over_the_row_limit_is_refused_before_it_is_unpacked(
    client, demo_rows, monkeypatch
):
    """A few kilobytes of Parquet can hold millions of rows: the count comes from metadata."""
    import io

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    import service

    def unpacked(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(pd, "read_parquet", unpacked)
    rows = service.SETTINGS.max_file_rows + 1
    upload = io.BytesIO()
    pq.write_table(pa.table({"AMT_CREDIT": np.zeros(rows)}), upload, compression="zstd")
    files = {"file": ("a.parquet", upload.getvalue(), "application/octet-stream")}
    response = client.post("/predict_file", files=files)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "file"
    assert f"{rows} applications exceed" in response.json()["error"]


def test_a_parquet_file_that_unpacks_over_the_byte_limit_is_refused_before_it_is_read(
    client, demo_rows, tmp_path, monkeypatch
):
    import pandas as pd

    import service
    from scoring.core.contract import RequestError
    from scoring.serving.forms.files import read_applications_file

    path = tmp_path / "a.parquet"
    pd.DataFrame(demo_rows[:50]).to_parquet(path)
    assert read_applications_file(path, service.SPEC, 100, 10**9).matrix.shape[0] == 50

    def unpacked(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(pd, "read_parquet", unpacked)
    with pytest.raises(RequestError, match=r"unpacks to .* bytes, over the upload limit of 1000"):
        read_applications_file(path, service.SPEC, 100, 1000)


def test_a_parquet_text_column_that_expands_past_the_byte_limit_is_refused_before_it_is_read(
    demo_rows, tmp_path, monkeypatch
):
    """A dictionary-encoded text column stores a value once however many rows hold it: one
    100 KB category on 2,000 rows is a few hundred bytes of metadata and 200 MB read."""
    import pandas as pd

    import service
    from scoring.core.contract import RequestError
    from scoring.serving.forms.files import read_applications_file

    category = next(name for name, value in demo_rows[0].items() if isinstance(value, str))
    frame = pd.DataFrame([demo_rows[0]] * 2_000)
    frame[category] = "x" * 100_000
    path = tmp_path / "a.parquet"
    frame.to_parquet(path, compression="zstd")
    assert path.stat().st_size < 100_000

    def unpacked(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(pd, "read_parquet", unpacked)
    with pytest.raises(RequestError, match=r"unpacks to 2\d{8} bytes, over the upload limit"):
        read_applications_file(path, service.SPEC, 5_000, 10**8)


@pytest.mark.parametrize("kind", ["number", "category"])
def test_a_parquet_list_column_is_refused_naming_the_column(client, demo_rows, tmp_path, kind):
    """A list column gave numpy's "truth value of an array is ambiguous", naming nothing."""
    import pandas as pd

    wanted = float if kind == "number" else str
    name = next(n for n, v in demo_rows[0].items() if isinstance(v, wanted))
    frame = pd.DataFrame(demo_rows[:3])
    frame[name] = [[1.0, 2.0]] * 3 if kind == "number" else [["a", "b"]] * 3
    path = tmp_path / "a.parquet"
    frame.to_parquet(path)
    files = {"file": ("a.parquet", path.read_bytes(), "application/octet-stream")}
    response = client.post("/predict_file", files=files)
    assert response.status_code == 400, response.text
    assert f"column {name}, row 0" in response.json()["error"]


def test_a_parquet_time_column_for_a_number_feature_is_refused_even_when_empty(
    client, demo_rows, tmp_path
):
    """All NaT would otherwise be read as missing values."""
    import pandas as pd

    frame = pd.DataFrame(demo_rows[:3])
    frame["AMT_CREDIT"] = pd.Series([pd.NaT] * 3, dtype="datetime64[ns]")
    path = tmp_path / "a.parquet"
    frame.to_parquet(path)
    files = {"file": ("a.parquet", path.read_bytes(), "application/octet-stream")}
    response = client.post("/predict_file", files=files)
    assert response.status_code == 400, response.text
    assert "column AMT_CREDIT must hold numbers or categories" in response.json()["error"]


def test_openapi_document_lists_every_public_route(client):
    import service
    from scoring.serving.edge.startup import SERVICE_PATHS

    paths = client.get("/docs.json").json()["paths"]
    routes = {api.route for api in service.CreditScoring.apis.values()} | set(SERVICE_PATHS)
    assert routes - set(paths) == set()


def test_openapi_documents_the_arrow_route_with_its_media_type_limits_and_refusals(client):
    from scoring.serving.edge.settings import Settings

    settings = Settings.from_env()
    spec = client.get("/docs.json").json()
    arrow = spec["paths"]["/predict_arrow"]["post"]
    assert list(arrow["requestBody"]["content"]) == ["application/vnd.apache.arrow.stream"]
    assert str(settings.max_body_bytes) in arrow["responses"]["413"]["description"]
    assert str(settings.max_rows_per_request) in arrow["description"]
    assert {"400", "413", "415"} <= set(arrow["responses"])
    # The answer is /predict's, documented once.
    assert arrow["responses"]["200"] == spec["paths"]["/predict"]["post"]["responses"]["200"]
    refusal = arrow["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    assert refusal.rsplit("/", 1)[1] in spec["components"]["schemas"]
