"""POST /predict_arrow, in process (`to_asgi()`): an Arrow IPC stream scores exactly as the
records form does, and is held to the same contract, column by column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from loadtest.payloads import arrow_stream as stream
from scoring.core.arrow_rows import ArrowBodyError
from scoring.core.contract import FeatureSpec
from scoring.serving.edge.arrow_route import PATH
from scoring.serving.forms.arrow_stream import ARROW_STREAM, arrow_matrix
from tests.service_helpers import categories_of, names_the_field, reference_probabilities

HEADERS = {"content-type": ARROW_STREAM}


def table_of(records: list[dict], **columns: pa.Array) -> pa.Table:
    """Records as Arrow columns, types inferred (strings, floats, ints, nulls), some replaced."""
    table = pa.Table.from_pylist(records)
    for name, array in columns.items():
        table = table.set_column(table.column_names.index(name), name, array)
    return table


def post(client, body: bytes, headers: dict | None = None):
    return client.post(PATH, content=body, headers=headers or HEADERS)


def test_an_arrow_stream_scores_exactly_as_the_records_form(client, production_model, demo_rows):
    rows = demo_rows[:100]
    answer = post(client, stream(table_of(rows)))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == client.post("/predict", json={"applications": rows}).json()
    served = [p["probability_of_default"] for p in answer.json()]
    assert served == pytest.approx(list(reference_probabilities(production_model, rows)), abs=1e-12)


def test_columns_in_any_order_and_dictionary_encoded_categories_score_the_same(
    client, production_model, demo_rows
):
    rows = demo_rows[:20]
    table = table_of(rows)
    categorical = sorted(categories_of(production_model))
    for name in categorical:
        index = table.column_names.index(name)
        table = table.set_column(index, name, table.column(name).dictionary_encode())
    reordered = table.select(list(reversed(table.column_names)))
    answer = post(client, stream(reordered))
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/predict", json={"applications": rows}).json()


def _first_of_kind(production_model, demo_rows, kind: str) -> str:
    import bentoml

    features = bentoml.models.get(production_model).info.metadata["features"]
    if kind == "categorical":
        return next(f["name"] for f in features if f.get("categories"))
    if kind == "integer":
        return next(f["name"] for f in features if f["type"] in ("long", "integer"))
    return next(
        f["name"]
        for f in features
        if f["type"] == "double"
        and not f.get("categories")
        and all(isinstance(r[f["name"]], float | None) for r in demo_rows)
    )


def test_a_stream_in_several_batches_scores_as_one(client, demo_rows):
    """A client may write its rows in several record batches (Spark and DuckDB do), with
    dictionaries that differ from batch to batch."""
    rows = demo_rows[:30]
    table = table_of(rows)
    strings = [i for i, kind in enumerate(table.schema.types) if pa.types.is_string(kind)]
    batches = []
    for batch in table.to_batches(max_chunksize=7):
        for i in strings:  # each batch's own dictionary
            batch = batch.set_column(i, batch.schema.names[i], batch.column(i).dictionary_encode())
        batches.append(batch)
    assert any(not batches[0][i].dictionary.equals(batches[1][i].dictionary) for i in strings)
    body = stream(pa.Table.from_batches(batches))  # one record batch per chunk
    assert len(list(pa.ipc.open_stream(body))) == 5
    answer = post(client, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/predict", json={"applications": rows}).json()


def test_a_schema_seen_before_is_not_trusted_for_a_body_with_other_types(
    client, production_model, demo_rows
):
    """The layout worked out for a schema is reused only for the same schema: the same column
    names with a string in a number column are still refused, after the good body was cached."""
    name = _first_of_kind(production_model, demo_rows, "float")
    good = post(client, stream(table_of(demo_rows[:5])))
    assert good.status_code == 200, good.text
    bad = post(client, stream(table_of(demo_rows[:5], **{name: pa.array(["lots"] * 5)})))
    assert bad.status_code == 400, bad.text
    assert names_the_field(bad.json(), name)
    assert post(client, stream(table_of(demo_rows[:5]))).json() == good.json()


@pytest.mark.parametrize(
    ("kind", "bad", "expected"),
    [
        ("float", pa.array(["lots"] * 5), "must be a number column"),
        ("float", pa.array([1.0, float("nan"), 2.0, 3.0, 4.0]), "not a finite number"),
        ("float", pa.array([1.0, 2.0, float("inf"), 3.0, 4.0]), "not a finite number"),
        ("integer", pa.array([1, 2, None, 3, 4]), "is null"),
        ("integer", pa.array([1.0, 2.5, 3.0, 4.0, 5.0]), "must be an integer"),
        ("integer", pa.array([True, False, True, False, True]), "must be a number column"),
        ("categorical", pa.array(["Astronaut"] * 5), "unseen category 'Astronaut'"),
        ("categorical", pa.array([1, 2, 3, 4, 5]), "must hold its categories as strings"),
    ],
)
def test_a_cell_or_column_of_the_wrong_kind_is_a_400_naming_the_column(
    client, production_model, demo_rows, kind, bad, expected
):
    name = _first_of_kind(production_model, demo_rows, kind)
    answer = post(client, stream(table_of(demo_rows[:5], **{name: bad})))
    assert answer.status_code == 400, answer.text
    assert names_the_field(answer.json(), name)
    assert expected in answer.json()["error"]
    assert post(client, stream(table_of(demo_rows[:5]))).status_code == 200  # still serving


def test_an_unknown_missing_or_repeated_column_is_a_400_naming_it(client, demo_rows):
    extra = table_of(demo_rows[:3]).append_column("FAVOURITE_COLOUR", pa.array([1.0, 2.0, 3.0]))
    answer = post(client, stream(extra))
    assert answer.status_code == 400
    assert "FAVOURITE_COLOUR" in answer.json()["error"]
    assert answer.json()["field"] == "FAVOURITE_COLOUR"
    first = next(iter(demo_rows[0]))
    answer = post(client, stream(table_of(demo_rows[:3]).drop_columns([first])))
    assert answer.status_code == 400
    assert first in answer.json()["error"]
    assert answer.json()["field"] == first
    table = table_of(demo_rows[:3])
    answer = post(client, stream(table.append_column(first, table[first])))
    assert answer.status_code == 400
    assert f"repeated column(s): {first}" in answer.json()["error"]
    assert answer.json()["field"] == first


def test_what_is_not_an_arrow_stream_is_refused_in_the_one_shape(client, demo_rows):
    body = stream(table_of(demo_rows[:3]))
    not_arrow = post(client, b"{'applications': []}")
    assert not_arrow.status_code == 400
    assert not_arrow.json()["field"] == "body"
    wrong_type = post(client, body, {"content-type": "application/json"})
    assert wrong_type.status_code == 415
    assert wrong_type.json()["field"] == "content-type"
    empty = post(client, stream(pa.Table.from_pylist(demo_rows[:1]).slice(0, 0)))
    assert empty.status_code == 400
    assert "at least one application" in empty.json()["error"]


def test_a_body_over_the_limit_is_a_413_announced_or_chunked(client):
    from scoring.serving.edge.settings import Settings

    too_big = b"\0" * (Settings.from_env({}).max_body_bytes + 1)
    answer = post(client, too_big)
    assert answer.status_code == 413
    assert answer.json()["field"] == "body"

    def chunks():  # no content-length: counted as it streams in
        for start in range(0, len(too_big), 1 << 20):
            yield too_big[start : start + (1 << 20)]

    chunked = post(client, chunks())
    assert chunked.status_code == 413
    assert chunked.json()["field"] == "body"


def test_another_method_is_a_405_in_the_one_shape(client):
    answer = client.get(PATH)
    assert answer.status_code == 405
    assert answer.json()["field"] == "method"
    assert set(answer.json()) == {"error", "field", "detail"}


def test_a_string_column_pointing_past_its_data_is_a_400_not_a_crash(client, demo_rows):
    """A hostile body: a categorical column whose offsets run past its character data. Arrow's
    reader checks a batch's structure only; reading these cells would touch memory the body
    does not hold."""
    table = table_of(demo_rows[:5])
    name = next(field.name for field in table.schema if field.type == pa.string())
    # The last offset fits the data, so the reader's structural check passes; the second does not.
    offsets = pa.py_buffer(np.array([0, 1_000_000, 4, 4, 4, 4], dtype=np.int32).tobytes())
    hostile = pa.Array.from_buffers(pa.string(), 5, [None, offsets, pa.py_buffer(b"Cash")])
    answer = post(client, stream(table.set_column(table.column_names.index(name), name, hostile)))
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "body"
    assert post(client, stream(table)).status_code == 200  # still serving


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_or_corrupted_stream_is_a_400(client, demo_rows, cut):
    body = stream(table_of(demo_rows[:20]))
    truncated = post(client, body[: int(len(body) * cut)])
    assert truncated.status_code == 400, truncated.text
    assert truncated.json()["field"] == "body"
    at = int(len(body) * cut)
    corrupted = post(
        client, body[:at] + bytes(b ^ 0xFF for b in body[at : at + 64]) + body[at + 64 :]
    )
    assert corrupted.status_code in (200, 400), corrupted.text


@pytest.mark.parametrize(
    "values",
    [
        pa.array([{"a": "x"}]),
        pa.array([["x"]]),
        pa.array([[("x", "y")]], pa.map_(pa.string(), pa.string())),
        pa.array([["x"]], pa.list_(pa.string(), 1)),
    ],
    ids=["struct", "list", "map", "fixed_size_list"],
)
def test_categories_dictionary_encoded_as_nested_values_are_a_400_naming_the_column(
    client, production_model, demo_rows, values
):
    """Decoding such a dictionary (a cast to its value type) raised ArrowNotImplementedError:
    the request hung for the timeout and ended in a plain-text 500."""
    name = _first_of_kind(production_model, demo_rows, "categorical")
    encoded = pa.DictionaryArray.from_arrays(pa.array([0] * 5, pa.int32()), values)
    answer = post(client, stream(table_of(demo_rows[:5], **{name: encoded})))
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == name
    assert "must hold its categories as strings" in answer.json()["error"]


def test_a_column_name_that_is_not_utf8_is_a_400_naming_the_body(client, demo_rows):
    table = table_of(demo_rows[:5])
    first = table.column_names[0]
    body = stream(table.rename_columns(["\x01" * len(first), *table.column_names[1:]]))
    at = body.index(b"\x01" * len(first))
    answer = post(client, body[:at] + b"\xff" + body[at + 1 :])
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "body"
    assert "UTF-8" in answer.json()["error"]


def test_batches_whose_dictionaries_do_not_combine_are_a_400(client, production_model, demo_rows):
    """Several batches are joined into one first; Arrow cannot unify nested dictionaries."""
    name = _first_of_kind(production_model, demo_rows, "categorical")
    table = table_of(demo_rows[:2])
    batches = [
        batch.set_column(
            batch.schema.get_field_index(name),
            name,
            pa.DictionaryArray.from_arrays(pa.array([0], pa.int32()), pa.array([{"a": value}])),
        )
        for batch, value in zip(table.to_batches(max_chunksize=1), "xy", strict=True)
    ]
    answer = post(client, stream(pa.Table.from_batches(batches)))
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "body"


def test_a_single_application_built_as_the_readme_does_scores_as_the_records_form(
    client, demo_rows
):
    """pa.Table.from_pylist types a column with no value as Arrow's null type: a missing value
    in a one-row body (or in every row of a small batch)."""
    row = next(row for row in demo_rows if None in row.values())
    table = pa.Table.from_pylist([row])
    assert pa.null() in table.schema.types
    answer = post(client, stream(table))
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/predict", json={"applications": [row]}).json()


@pytest.mark.parametrize("kind", ["float", "categorical"])
def test_a_null_typed_column_is_all_missing_for_a_float_or_categorical_feature(
    client, production_model, demo_rows, kind
):
    name = _first_of_kind(production_model, demo_rows, kind)
    rows = [{**row, name: None} for row in demo_rows[:5]]
    columns = [pa.nulls(5)]
    if kind == "categorical":  # only categories may come dictionary-encoded
        columns.append(pa.nulls(5).dictionary_encode())
    for column in columns:
        answer = post(client, stream(table_of(demo_rows[:5], **{name: column})))
        assert answer.status_code == 200, answer.text
        assert answer.json() == client.post("/predict", json={"applications": rows}).json()


def test_a_null_typed_column_is_a_400_naming_an_integer_feature(
    client, production_model, demo_rows
):
    name = _first_of_kind(production_model, demo_rows, "integer")
    answer = post(client, stream(table_of(demo_rows[:5], **{name: pa.nulls(5)})))
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == name
    assert "is null; an integer feature must be present" in answer.json()["error"]


def test_a_null_typed_column_is_refused_for_a_boolean_feature():
    """The demo model has no boolean feature: the reading on its own, with a spec that has."""
    spec = FeatureSpec(
        names=("HAS_CAR", "AMT_CREDIT"), integer=frozenset(), boolean=frozenset({"HAS_CAR"})
    )
    body = stream(pa.table({"HAS_CAR": pa.nulls(2), "AMT_CREDIT": pa.array([1.0, None])}))
    with pytest.raises(ArrowBodyError, match="HAS_CAR in row 0 is null") as refused:
        arrow_matrix(body, spec, max_rows=10, unseen="reject", on_unseen=lambda _: None)
    assert refused.value.field == "HAS_CAR"


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_stream_scores_as_the_same_stream_uncompressed(
    client, production_model, demo_rows, codec
):
    name = _first_of_kind(production_model, demo_rows, "categorical")
    table = table_of(demo_rows[:5])
    table = table.set_column(table.column_names.index(name), name, table[name].dictionary_encode())
    answer = post(client, _compressed(table, codec))
    assert answer.status_code == 200, answer.text
    assert answer.json() == post(client, stream(table)).json()


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_stream_that_unpacks_past_the_body_limit_is_refused_unread(monkeypatch, codec):
    """A few KB of compressed buffers unpack to what their headers claim: 5,000 rows of one
    repeated 10 KB category are 50 MB unpacked from 10-230 KB. Refused from the buffers' headers,
    before anything is decoded."""
    spec = FeatureSpec(
        names=("OCCUPATION",), integer=frozenset(), categories={"OCCUPATION": ("a",)}
    )
    body = _compressed(pa.table({"OCCUPATION": pa.array(["x" * 10_000] * 5_000)}), codec)
    assert len(body) < 300_000  # lz4 packs it less tightly than zstd

    def no_decoding(*_: object) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(pa.ipc, "open_stream", no_decoding)
    with pytest.raises(ArrowBodyError, match="unpack to over 8388608 bytes") as refused:
        arrow_matrix(body, spec, max_rows=5_000, unseen="reject", on_unseen=lambda _: None)
    assert refused.value.field == "body"


def _compressed(table: pa.Table, codec: str) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_the_row_count_is_checked_before_any_batch_is_decoded(monkeypatch):
    spec = FeatureSpec(names=("AMT_CREDIT",), integer=frozenset())
    body = stream(pa.table({"AMT_CREDIT": pa.array([1.0, 2.0, 3.0])}))

    def decoded(_):
        raise AssertionError("a batch was decoded")

    monkeypatch.setattr(pa.ipc, "open_stream", decoded)
    with pytest.raises(ArrowBodyError, match="3 applications exceed the per-request maximum 2"):
        arrow_matrix(body, spec, max_rows=2, unseen="reject", on_unseen=lambda _: None)


def test_a_column_name_that_is_not_utf8_is_a_400_in_several_batches_too(client, demo_rows):
    """Several batches are combined first, which decodes the names."""
    table = table_of(demo_rows[:4])
    first = table.column_names[0]
    renamed = table.rename_columns(["\x01" * len(first), *table.column_names[1:]])
    body = stream(pa.Table.from_batches(renamed.to_batches(max_chunksize=2)))
    at = body.index(b"\x01" * len(first))
    answer = post(client, body[:at] + b"\xff" + body[at + 1 :])
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "body"
    assert "UTF-8" in answer.json()["error"]


@pytest.mark.parametrize("kind", [pa.uint8(), pa.int16(), pa.uint64()])
def test_integer_categories_are_read_from_any_integer_column(kind):
    """A model whose categories are integers (lgb.train on int codes): a narrow column could not
    hold a category past its range (300 in uint8) and building the lookup failed (a 500)."""
    spec = FeatureSpec(names=("BAND",), integer=frozenset(), categories={"BAND": (3, 7, 300)})
    body = stream(pa.table({"BAND": pa.array([7, 3, None], type=kind)}))
    matrix = arrow_matrix(body, spec, max_rows=10, unseen="reject", on_unseen=lambda _: None)
    np.testing.assert_array_equal(matrix[:, 0], [1.0, 0.0, np.nan])
    huge = stream(pa.table({"BAND": pa.array([2**64 - 1], type=pa.uint64())}))
    with pytest.raises(ArrowBodyError) as refused:
        arrow_matrix(huge, spec, max_rows=10, unseen="reject", on_unseen=lambda _: None)
    assert refused.value.field == "BAND"


def test_an_arrow_file_or_a_parquet_file_is_refused_saying_what_it_is(client, demo_rows):
    import pyarrow.parquet as pq

    table = table_of(demo_rows[:3])
    as_file, as_parquet = pa.BufferOutputStream(), pa.BufferOutputStream()
    with pa.ipc.new_file(as_file, table.schema) as writer:
        writer.write_table(table)
    pq.write_table(table, as_parquet)
    for body, said in ((as_file, "an Arrow IPC file"), (as_parquet, "a Parquet file")):
        answer = post(client, body.getvalue().to_pybytes())
        assert answer.status_code == 400, answer.text
        assert answer.json()["field"] == "body"
        assert said in answer.json()["error"]


def _text_columns(table: pa.Table, kind: pa.DataType, dictionary: bool) -> pa.Table:
    """Every string column of `table` as `kind` (plain or dictionary-encoded)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            column = table.column(index).cast(kind)
            if dictionary:
                indices = pa.compute.dictionary_encode(table.column(index)).combine_chunks()
                column = pa.DictionaryArray.from_arrays(
                    indices.indices, indices.dictionary.cast(kind)
                )
            table = table.set_column(index, field.name, column)
    return table


@pytest.mark.parametrize("dictionary", [False, True], ids=["plain", "dictionary"])
@pytest.mark.parametrize("kind", [pa.string_view(), pa.large_string()], ids=str)
def test_string_view_and_large_string_categories_from_pyarrow_score_as_plain_strings(
    client, demo_rows, kind, dictionary
):
    rows = demo_rows[:40]
    table = _text_columns(table_of(rows), kind, dictionary)
    assert kind in [t.value_type if pa.types.is_dictionary(t) else t for t in table.schema.types], (
        table.schema
    )
    answer = post(client, stream(table))
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/predict", json={"applications": rows}).json()


def _polars_stream(frame, **options) -> bytes:
    import io

    sink = io.BytesIO()
    frame.write_ipc_stream(sink, **options)
    return sink.getvalue()


@pytest.mark.parametrize("categorical", [False, True], ids=["string", "pl.Categorical"])
def test_a_stream_written_by_polars_scores_as_the_records_form(
    client, production_model, demo_rows, categorical
):
    """Polars writes string columns as string_view (and its categoricals as dictionaries of
    string_view) by default: the form pyarrow alone would not make."""
    import polars as pl

    rows = demo_rows[:40]
    frame = pl.from_arrow(table_of(rows))
    if categorical:
        names = sorted(categories_of(production_model))
        frame = frame.with_columns(pl.col(name).cast(pl.Categorical) for name in names)
    body = _polars_stream(frame)
    schema = pa.ipc.open_stream(body).schema
    texts = [t.value_type if pa.types.is_dictionary(t) else t for t in schema.types]
    assert pa.string_view() in texts, schema
    answer = post(client, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/predict", json={"applications": rows}).json()


def test_an_unseen_category_in_a_polars_string_view_column_is_a_400_naming_it(
    client, production_model, demo_rows
):
    import polars as pl

    name = sorted(categories_of(production_model))[0]
    rows = [{**demo_rows[0], name: "no such category"}]
    answer = post(client, _polars_stream(pl.from_arrow(table_of(rows))))
    assert answer.status_code == 400, answer.text
    assert names_the_field(answer.json(), name)
