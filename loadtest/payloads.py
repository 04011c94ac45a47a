"""Realistic request bodies: applications drawn from the demo data's distribution (with its
missing values), shaped for the model a server reports in GET /version."""

from __future__ import annotations

import json

import pyarrow as pa

from demo_store.data import make_applications

# The demo data's named columns (numeric and categorical); larger models add BUREAU_AGG_*.
NAMED_FEATURES = make_applications(1)[0].shape[1]


def application_records(n_rows: int, n_features: int, seed: int = 7) -> list[dict]:
    """Rows as JSON objects: numbers, categories as strings, a missing value as null."""
    frame, _ = make_applications(n_rows, None if n_features <= NAMED_FEATURES else n_features, seed)
    return json.loads(frame.to_json(orient="records"))


def predict_body(records: list[dict]) -> bytes:
    return json.dumps({"applications": records}).encode()


def compact_table(records: list[dict]) -> dict:
    """The /predict_compact form: column names once, then rows of values."""
    columns = list(records[0])
    return {"columns": columns, "data": [[record[c] for c in columns] for record in records]}


def compact_body(records: list[dict]) -> bytes:
    return json.dumps({"table": compact_table(records)}).encode()


def arrow_stream(table: pa.Table) -> bytes:
    """A table as one Arrow IPC stream: the body of POST /predict_arrow."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
