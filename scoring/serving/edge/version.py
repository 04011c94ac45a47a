"""GET /version (and GET /monitoring, from scoring/serving/monitoring/drift.py): a small ASGI app
mounted beside the service, since BentoML's @bentoml.api routes are POST only. The service
fills VERSION once its model is loaded; the state of BentoML's patches is read when asked,
since BentoML builds its dispatchers after the import."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scoring import bentoml_patches
from scoring.serving.batching.bulk_lane import lane_niceness
from scoring.serving.monitoring.drift import monitoring_route

VERSION: dict[str, Any] = {}


async def _version(_: Request) -> JSONResponse:
    if not VERSION:
        return JSONResponse({"error": "model not loaded yet"}, status_code=503)
    return JSONResponse(
        {
            **VERSION,
            "bentoml_patches": bentoml_patches.report(),
            "bulk_lane": {"niceness": lane_niceness()},
        }
    )


version_app = Starlette(routes=[Route("/version", _version, methods=["GET"]), monitoring_route])
