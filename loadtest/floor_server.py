"""The HTTP floor: a bare Starlette app on uvicorn that scores the same JSON payload (POST
/predict) or the same Arrow IPC stream (POST /predict_arrow) with the same predictor on numpy
rows, and answers the probabilities. No validation, no batching, no monitoring, no framework:
the least a Python HTTP server does per request, so our service is measured against it.

Like for like with the service: `--workers N` runs N processes, each listening on its own
SO_REUSEPORT socket on the same port (as the service's workers do), and `--compiled-file`
scores with the same compiled forest the service uses. uvicorn is handed each socket itself
(`Server.run(sockets=[...])`): given a descriptor (`fd=`) it assumes a UNIX socket and leaves
Nagle's algorithm on, and every answer then waits ~40 ms.

    python -m loadtest.floor_server --model-file PATH [--compiled-file PATH] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import socket
from pathlib import Path

import lightgbm as lgb
import pyarrow as pa
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loadtest.model_rows import RowEncoder


def build_app(model_file: str, compiled_file: str | None = None) -> Starlette:
    booster = lgb.Booster(model_file=model_file)
    encoder = RowEncoder(booster)
    predictor = booster
    if compiled_file:
        from scoring.stored_model import compiled

        predictor = compiled.load_forest(Path(model_file), Path(compiled_file), booster)

    async def predict(request: Request) -> Response:
        records = json.loads(await request.body())["applications"]
        probabilities = predictor.predict(encoder.matrix(records), num_threads=1)
        return Response(json.dumps(probabilities.tolist()), media_type="application/json")

    async def predict_arrow(request: Request) -> Response:
        table = pa.ipc.open_stream(await request.body()).read_all()
        probabilities = predictor.predict(encoder.arrow_matrix(table), num_threads=1)
        return Response(json.dumps(probabilities.tolist()), media_type="application/json")

    async def health(_: Request) -> Response:
        return Response("ok")

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/predict_arrow", predict_arrow, methods=["POST"]),
            Route("/health", health),
        ]
    )


def _serve_one(model_file: str, compiled_file: str | None, port: int) -> None:
    """One process: its own listening socket on the shared port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    config = uvicorn.Config(build_app(model_file, compiled_file), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--compiled-file", help="score with this compiled forest (lleaves)")
    parser.add_argument("--workers", type=int, default=1, help="processes, one socket each")
    parser.add_argument("--port", type=int, default=3101)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_serve_one, args=(args.model_file, args.compiled_file, args.port))
        for _ in range(args.workers)
    ]
    for process in processes:
        process.start()

    def stop(*_: object) -> None:
        for process in processes:
            process.terminate()

    signal.signal(signal.SIGTERM, stop)
    for process in processes:
        process.join()


if __name__ == "__main__":
    main()
