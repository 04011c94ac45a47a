"""Locust users for the credit-scoring service: a realistic mix of one-row, few-row and
hundreds-of-row requests, with /explain and /version at low weight. Every response is checked.

    locust -f loadtest/locustfile.py --config loadtest/locust.conf --host http://127.0.0.1:3000

The run fails (exit code 1) when any request failed or p99 exceeds SCORING_SLO_P99_MS.
"""

from __future__ import annotations

import json
import logging
import os
import random

from locust import FastHttpUser, between, constant_throughput, events, task
from locust.env import Environment

from loadtest.payloads import application_records, compact_body, predict_body

SLO_P99_MS = float(os.environ.get("SCORING_SLO_P99_MS", "50"))
# Requests per second per user: a gate measures the tail at a set load, not at saturation (a
# closed loop with no think time only measures its own queue). 0 = as fast as possible.
RATE_PER_USER = float(os.environ.get("SCORING_LOAD_RATE_PER_USER", "15"))
log = logging.getLogger(__name__)

# Request bodies are encoded once, before the run: JSON-encoding 189-feature rows per request
# (3 MB for 500 rows) made the load generator, not the server, the bottleneck and the tail.
BODIES: dict[str, list[tuple[bytes, int]]] = {}


@events.test_start.add_listener
def load_payloads(environment: Environment, **_: object) -> None:
    """Rows shaped for the model under test: its feature count comes from GET /version."""
    import urllib.request

    with urllib.request.urlopen(f"{environment.host}/version", timeout=10) as response:
        n_features = json.load(response)["features"]
    pool = application_records(2000, n_features)
    rng = random.Random(11)

    def bodies(count: int, low: int, high: int, encode=predict_body) -> list[tuple[bytes, int]]:
        sizes = [rng.randint(low, high) for _ in range(count)]
        return [(encode(rng.sample(pool, n)), n) for n in sizes]

    BODIES["one"] = [(predict_body([row]), 1) for row in pool]
    BODIES["few"] = bodies(300, 2, 10)
    # Bulk clients use the compact form: a third of the JSON, a quarter of the parsing, and
    # so a quarter of the time it holds the event loop that single-row requests also need.
    BODIES["hundreds"] = bodies(30, 100, 500, encode=compact_body)
    BODIES["explain"] = [
        (json.dumps({"applications": [row], "top_k": 5}).encode(), 1) for row in pool[:300]
    ]


@events.quitting.add_listener
def gate_on_failures_and_p99(environment: Environment, **_: object) -> None:
    total = environment.stats.total
    p99 = total.get_response_time_percentile(0.99) or 0
    if total.num_requests == 0:
        log.error("no request was made")
        environment.process_exit_code = 1
    elif total.fail_ratio > 0:
        log.error("%.2f%% of requests failed", 100 * total.fail_ratio)
        environment.process_exit_code = 1
    elif p99 > SLO_P99_MS:
        log.error("p99 %.0f ms is above the %.0f ms SLO", p99, SLO_P99_MS)
        environment.process_exit_code = 1


class ScoringUser(FastHttpUser):
    wait_time = constant_throughput(RATE_PER_USER) if RATE_PER_USER > 0 else between(0, 0.01)

    def _predict(self, kind: str, name: str, path: str = "/predict") -> None:
        body, n_rows = random.choice(BODIES[kind])
        with self.client.post(
            path,
            data=body,
            headers={"content-type": "application/json"},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                return
            predictions = response.json()
            if len(predictions) != n_rows:
                response.failure(f"{len(predictions)} predictions for {n_rows} rows")
            elif not all(0 <= p["probability_of_default"] <= 1 for p in predictions):
                response.failure("probability outside [0, 1]")
            elif not all(p["decision"] in ("approve", "reject") for p in predictions):
                response.failure("unknown decision")

    @task(20)
    def one_row(self) -> None:
        self._predict("one", "/predict 1 row")

    @task(5)
    def few_rows(self) -> None:
        self._predict("few", "/predict 2-10 rows")

    @task(1)
    def hundreds_of_rows(self) -> None:
        self._predict("hundreds", "/predict_compact 100-500 rows", "/predict_compact")

    @task(1)
    def explain(self) -> None:
        body, _ = random.choice(BODIES["explain"])
        with self.client.post(
            "/explain", data=body, headers={"content-type": "application/json"},
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif len(response.json()[0]["top_contributions"]) != 5:
                response.failure("expected 5 contributions")

    @task(1)
    def version(self) -> None:
        with self.client.get("/version", catch_response=True) as response:
            if response.status_code != 200 or not response.json().get("run_id"):
                response.failure(f"status {response.status_code} or no run_id")
