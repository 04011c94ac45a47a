"""What refusing repeated keys costs per request body: BentoML's JSONSerde.deserialize_model as
upstream ships it against the patched one (scoring/bentoml_patches/json_body.py), on the demo
data's applications, for the request shapes the service takes. CPU time of one call, best of 9.

    .venv/bin/python -m loadtest.json_body_cost [n_features]
"""

from __future__ import annotations

import asyncio
import functools
import sys
import timeit
from typing import Annotated, Any

import numpy as np
from _bentoml_impl.serde import JSONSerde, Payload
from _bentoml_sdk.io_models import IODescriptor
from pydantic import AfterValidator

from loadtest.payloads import application_records, compact_body, predict_body
from scoring.bentoml_patches import json_body
from scoring.core.contract import FeatureSpec, records_to_matrix
from scoring.serving.edge.request_guard import _one_shape
from scoring.serving.forms.records import (
    CompactTable,
    NumericCompactTable,
    application_model,
    compact_to_matrix,
    row_limit,
)


def _features(records: list[dict]) -> list[dict[str, Any]]:
    """Feature metadata as the importer stores it, read off the demo data."""
    features = []
    for name in records[0]:
        values = [record[name] for record in records]
        if any(isinstance(value, str) for value in values):
            categories = sorted({value for value in values if value is not None})
            features.append({"name": name, "type": "string", "categories": categories})
        elif all(isinstance(value, int) for value in values):
            features.append({"name": name, "type": "long"})
        else:
            features.append({"name": name, "type": "double"})
    return features


def _input_models(records: list[dict]) -> tuple[type, type]:
    """The /predict and /predict_compact input models, built as the service builds them."""
    spec = FeatureSpec.from_metadata(_features(records))
    application = application_model(spec, records[0])
    table_type = NumericCompactTable if spec.numeric_only else CompactTable

    def predict(self, applications): ...

    def predict_compact(self, table): ...

    predict.__annotations__["applications"] = Annotated[
        list[application],
        row_limit(5000),
        AfterValidator(records_to_matrix),
        json_body.WrittenKeys(np.size),
    ]
    predict_compact.__annotations__["table"] = Annotated[
        table_type,
        AfterValidator(lambda t: compact_to_matrix(t, spec, 5000)),
        json_body.WrittenKeys(lambda _: 2),
    ]
    return (
        IODescriptor.from_input(predict, skip_self=True),
        IODescriptor.from_input(predict_compact, skip_self=True),
    )


def _best(call: Any, number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=9)) / number


def _middleware_cost() -> float:
    """The extra cost of reshaping refusals for a response that is not one (a 200)."""
    start = {"type": "http.response.start", "status": 200, "headers": []}
    body = {"type": "http.response.body", "body": b"[]"}

    async def sink(_: Any) -> None:
        return None

    async def direct() -> None:
        for _ in range(10_000):
            await sink(start)
            await sink(body)

    async def wrapped() -> None:
        for _ in range(10_000):
            send = _one_shape(sink)
            await send(start)
            await send(body)

    loop = asyncio.new_event_loop()
    try:
        plain = min(timeit.repeat(lambda: loop.run_until_complete(direct()), number=1, repeat=9))
        shaped = min(timeit.repeat(lambda: loop.run_until_complete(wrapped()), number=1, repeat=9))
    finally:
        loop.close()
    return (shaped - plain) / 10_000


def main(n_features: int = 189) -> None:
    records = application_records(500, n_features)
    predict_input, compact_input = _input_models(application_records(3000, n_features))
    serde = JSONSerde()
    cases = [
        ("/predict, 1 row", predict_input, predict_body(records[:1]), 3000),
        ("/predict, 500 rows", predict_input, predict_body(records), 20),
        ("/predict_compact, 1 row", compact_input, compact_body(records[:1]), 3000),
        ("/predict_compact, 500 rows", compact_input, compact_body(records), 20),
    ]
    print(f"{'body':28} {'bytes':>9} {'upstream':>11} {'patched':>11} {'extra':>8}")
    for name, model, body, number in cases:
        payload = Payload((body,))
        upstream = _best(
            functools.partial(json_body.UPSTREAM_DESERIALIZE_MODEL, serde, payload, model), number
        )
        patched = _best(
            functools.partial(json_body._deserialize_model, serde, payload, model), number
        )
        print(
            f"{name:28} {len(body):9,} {upstream * 1e6:9.1f}us {patched * 1e6:9.1f}us "
            f"{(patched / upstream - 1) * 100:+7.0f}%"
        )
    print(f"refusal reshaping, on a 200: {_middleware_cost() * 1e9:.0f} ns per response")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
