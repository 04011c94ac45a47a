"""Paced single rows over time, with bulk traffic switched on and off in the middle: the
report's mixed-load plot. The figures beside it (bench.py's mixed_load) are medians over whole
runs; this shows whether the bulk's arrival or departure hurts the applicants for a while.

One run per bulk form: SECONDS consecutive one-second wrk runs of the paced clients (the same
load generator, clients and pace as every paced figure, each slice on new connections), while
a second wrk streams 500-row bodies from BULK_FROM_S to BULK_TO_S. Each slice gives that
second's p50, p99 and rate; the bulk's own start and end are recorded as they happened."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from loadtest import wrk as load
from loadtest.tables import PACE_MS, PACED_CLIENTS

SECONDS = 30
SLICE_S = 1  # wrk's shortest run
BULK_FROM_S, BULK_TO_S = 10, 20


def paced_timeline(
    url: str, one: Path, bulk_url: str, bodies: Path, content_type: str, form: str
) -> dict[str, Any]:
    """`form`'s run: {"form", "bulk_s": [on, off], "points": [{t_s, p50_ms, p99_ms,
    requests_per_s, errors}, ...]}, times in seconds from the run's start."""
    started = time.monotonic()
    window: list[float] = []

    def stream_bulk() -> None:
        time.sleep(max(0.0, started + BULK_FROM_S - time.monotonic()))
        window.append(time.monotonic() - started)
        load.wrk(
            bulk_url,
            bodies,
            load.BATCH_CLIENTS,
            BULK_TO_S - BULK_FROM_S,
            load.BATCH_ROWS,
            content_type=content_type,
        )
        window.append(time.monotonic() - started)

    bulk = threading.Thread(target=stream_bulk, name="bulk", daemon=True)
    bulk.start()
    points = []
    for _ in range(round(SECONDS / SLICE_S)):
        at = time.monotonic() - started
        stats = load.wrk(url, one, PACED_CLIENTS, SLICE_S, 1, delay_ms=PACE_MS)
        points.append(
            {
                "t_s": round(at, 2),
                "p50_ms": stats["p50_ms"],
                "p99_ms": stats["p99_ms"],
                "requests_per_s": stats["requests_per_s"],
                "errors": stats["errors"],
            }
        )
    bulk.join()
    return {"form": form, "bulk_s": [round(t, 2) for t in window], "points": points}
