"""What reasons cost: rows/s and p99 of /predict_with_reasons against /predict on the same rows,
at the served model's own reject rate and with every row rejected, with wrk as in the bench.

    python -m loadtest.reasons_cost --url http://127.0.0.1:3000 [--duration 10]

`loadtest.bench` can call `reasons_cost(base_url, work_dir, duration)` while the service runs
and add the measurements to its table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from loadtest.payloads import application_records

if TYPE_CHECKING:
    from loadtest.wrk import Measurement

SINGLE_CLIENTS = 32
CANDIDATE_ROWS = 8000  # enough to find 3 bodies of 500 rejected rows at a ~20% reject rate
CLASSIFY_CHUNK = 1000


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _decisions(base_url: str, records: list[dict]) -> list[str]:
    decisions: list[str] = []
    for start in range(0, len(records), CLASSIFY_CHUNK):
        body = json.dumps({"applications": records[start : start + CLASSIFY_CHUNK]}).encode()
        request = urllib.request.Request(
            f"{base_url}/predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            decisions += [answer["decision"] for answer in json.loads(response.read())]
    return decisions


def reasons_cost(
    base_url: str, work: Path, duration: float, name: str = "this service"
) -> list[Measurement]:
    """Six wrk runs against a running service (base URL, no route): single rows (32 clients)
    and 500-row records bodies (4 clients), each to /predict, to /predict_with_reasons with the
    model's own mix of approvals and rejections, and to /predict_with_reasons with rejected rows
    only."""
    # Imported here: loadtest.bench imports this module, and this one uses bench's wrk runner.
    from loadtest.wrk import BATCH_CLIENTS, BATCH_ROWS, Measurement, write_bodies, wrk

    base_url = base_url.rstrip("/")
    n_features = _get(f"{base_url}/version")["features"]
    records = application_records(CANDIDATE_ROWS, n_features)
    decisions = _decisions(base_url, records)
    rejected = [r for r, d in zip(records, decisions, strict=True) if d == "reject"]
    mixed = records[: 3 * BATCH_ROWS]
    rate = sum(d == "reject" for d in decisions[: len(mixed)]) / len(mixed)
    if len(rejected) < 3 * BATCH_ROWS:
        raise RuntimeError(f"only {len(rejected)} of {len(records)} rows are rejected")
    rejected = rejected[: 3 * BATCH_ROWS]
    work.mkdir(parents=True, exist_ok=True)

    def bodies(label: str, rows: list[dict]) -> tuple[Path, Path]:
        one = write_bodies(work / f"{label}-one.jsonl", [{"applications": [r]} for r in rows])
        batch = write_bodies(
            work / f"{label}-batch.jsonl",
            [{"applications": rows[i : i + BATCH_ROWS]} for i in range(0, len(rows), BATCH_ROWS)],
        )
        return one, batch

    natural = bodies("mixed", mixed)
    loads = [
        ("/predict", f"{rate:.0%} rejected", natural),
        ("/predict_with_reasons", f"{rate:.0%} rejected", natural),
        ("/predict_with_reasons", "100% rejected", bodies("rejected", rejected)),
    ]
    results = []
    wrk(f"{base_url}/predict_with_reasons", natural[0], 8, 2, 1)  # warm-up
    for route, mix, (one, batch) in loads:
        for rows, clients, path in ((1, SINGLE_CLIENTS, one), (BATCH_ROWS, BATCH_CLIENTS, batch)):
            # TreeSHAP on a big model takes seconds for 500 rejected rows: wait for the answer.
            stats = wrk(f"{base_url}{route}", path, clients, duration, rows, timeout_s=60)
            load = f"{route}, {rows} row{'s' if rows > 1 else ''} x {clients} clients, {mix}"
            results.append(Measurement(name, load, **stats))
            print(f"   {results[-1]}", flush=True)
    return results


def render(results: list[Measurement]) -> str:
    lines = [
        "| load | req/s | rows/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m.load} | {m.requests_per_s:,.0f} | {m.rows_per_s:,.0f} | {m.p50_ms:.1f} "
        f"| {m.p99_ms:.1f} | {m.errors} |"
        for m in results
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of a running service")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    args = parser.parse_args()
    from loadtest.wrk import BUILD

    if shutil.which("wrk") is None:
        sys.exit("reasons_cost: wrk is missing; install it: apt-get install -y wrk")
    BUILD.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="reasons-cost-"))
    print(render(reasons_cost(args.url, work, args.duration)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
