"""The HTTP floor: a bare Starlette app on uvicorn that scores the same JSON payload with the
same Booster on numpy rows. No validation, no batching, no framework: the least a Python HTTP
server does per request, so our service is measured against it.

    python -m loadtest.floor_server --model-file PATH --port 3101
"""

from __future__ import annotations

import argparse
import json

import lightgbm as lgb
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loadtest.model_rows import RowEncoder


def build_app(model_file: str) -> Starlette:
    booster = lgb.Booster(model_file=model_file)
    encoder = RowEncoder(booster)

    async def predict(request: Request) -> Response:
        records = json.loads(await request.body())["applications"]
        probabilities = booster.predict(encoder.matrix(records), num_threads=1)
        return Response(json.dumps(probabilities.tolist()), media_type="application/json")

    async def health(_: Request) -> Response:
        return Response("ok")

    return Starlette(
        routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--port", type=int, default=3101)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model_file), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
