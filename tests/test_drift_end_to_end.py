"""Drift monitoring end to end: a real Prometheus (Debian's package) scrapes a real `bentoml
serve` with two workers every second and evaluates the shipped rules
(env/k8s/prometheus-rule.yaml). Traffic drawn from the training distribution gives PSI near 0
and no alert; shifted traffic (AMT_INCOME_TOTAL tripled, a NAME_INCOME_TYPE the model never
saw) gives PSI above 0.25 and the critical drift alert *firing*.

To see that within a minute, the rules run as shipped except three numbers, rewritten from the
shipped file by tests/prometheus_rules.shortened(): the 5-minute window is 20 s, the
evaluation interval 1 s, and every alert's `for:` 2 s. Every panel of the Grafana dashboard
(env/k8s/grafana-dashboard.json) is then queried on this Prometheus and must return data."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import yaml

from loadtest.processes import ROOT, free_port, running
from tests.prometheus_rules import binary, shortened, write_rule_file

pytestmark = pytest.mark.server

WINDOW_S = 20
WORKERS = 2
DASHBOARD = ROOT / "env" / "k8s" / "grafana-dashboard.json"
SHIFTED_FEATURE, NEW_CATEGORY_FEATURE = "AMT_INCOME_TOTAL", "NAME_INCOME_TYPE"
ROWS_PER_REQUEST = 10


@pytest.fixture(scope="module")
def service(production_model, bentoml_home, tmp_path_factory) -> Iterator[str]:
    """Served with the champion itself as its challenger, so the shadow rules and panels have
    data too, and a challenger that decides alike must raise no alert."""
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "SCORING_WORKERS": str(WORKERS),
        # The shifted traffic carries a category the model never saw: scored as missing (and
        # counted) instead of refused, so its rows reach the drift counts.
        "SCORING_UNSEEN_CATEGORY": "missing",
        "SCORING_CHALLENGER": production_model,
    }
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("drift-serve") / "serve.log"
    os.chdir(ROOT)
    with running(command, f"http://127.0.0.1:{port}/readyz", log, env=env, timeout_s=120):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def prometheus(service, tmp_path_factory) -> Iterator[str]:
    server = binary("prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    rules = write_rule_file(root / "rules.yaml", shortened(f"{WINDOW_S}s", "1s", "2s"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "credit-scoring",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [service.removeprefix("http://")]}],
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        server,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/-/ready", root / "prometheus.log", timeout_s=60):
        yield url


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, f"{expr}: {response.text}"
    return response.json()["data"]["result"]


def values(prometheus: str, expr: str, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in query(prometheus, expr)}


class Traffic:
    """Four clients scoring rows in a loop, each request on a new connection (so both workers
    get some), with the rows switched between phases; counts every row answered."""

    def __init__(self, url: str, rows: list[dict]) -> None:
        self.url, self.rows, self.answered, self.errors = url, rows, 0, []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(i,)) for i in range(4)]

    def _send(self, offset: int) -> None:
        i = offset * ROWS_PER_REQUEST
        while not self._stop.is_set():
            rows = self.rows
            batch = [rows[(i + k) % len(rows)] for k in range(ROWS_PER_REQUEST)]
            i += 4 * ROWS_PER_REQUEST
            # A new connection per request: the kernel hashes each connection to one worker,
            # and four kept-alive ones all landed on the same worker in 1 draw of 8.
            response = requests.post(
                f"{self.url}/predict", json={"applications": batch}, timeout=30
            )
            with self._lock:
                if response.status_code == 200:
                    self.answered += len(batch)
                else:
                    self.errors.append(response.text[:300])
            time.sleep(0.02)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def firing(prometheus: str) -> dict[str, set[str]]:
    alerts: dict[str, set[str]] = {}
    for r in query(prometheus, 'ALERTS{alertstate="firing"}'):
        alerts.setdefault(r["metric"]["alertname"], set()).add(r["metric"].get("feature", ""))
    return alerts


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    from demo_store.data import make_applications

    frame, _ = make_applications(3000, seed=11)  # the training data's generator, new rows
    return json.loads(frame.to_json(orient="records"))


def shifted(rows: list[dict]) -> list[dict]:
    return [
        {
            **row,
            SHIFTED_FEATURE: None if row[SHIFTED_FEATURE] is None else 3 * row[SHIFTED_FEATURE],
            NEW_CATEGORY_FEATURE: "Astronaut",
        }
        for row in rows
    ]


def test_drift_is_quiet_on_training_traffic_then_alerts_on_a_shift(
    service, prometheus, rows, production_model
):
    with Traffic(service, rows) as traffic:
        # A full window of training-distribution rows, plus time for the 2 s `for:`.
        time.sleep(WINDOW_S + 6)
        scored = values(prometheus, "credit:scored_rows:increase5m", "")
        assert scored.get("", 0) >= 1000, f"too few rows in the window: {scored}"
        feature_psi = values(prometheus, "credit:feature_psi:5m", "feature")
        assert feature_psi, "no feature PSI recorded"
        assert max(feature_psi.values()) < 0.1, sorted(feature_psi.items(), key=lambda i: -i[1])[:5]
        assert values(prometheus, "credit:score_psi:5m", "")[""] < 0.1
        assert query(prometheus, "ALERTS") == [], "an alert on training-distribution traffic"
        # The same model in shadow: no decision would change, the two scores are one.
        assert values(prometheus, "credit:shadow_flip_rate:5m", "challenger") == {
            production_model: 0.0
        }
        assert values(prometheus, "credit:shadow_score_psi:5m", "")[""] == 0.0

        traffic.rows = shifted(rows)
        alerts = wait_for(
            lambda: (
                (a := firing(prometheus)).get("CreditFeatureDriftCritical", set())
                >= {SHIFTED_FEATURE, NEW_CATEGORY_FEATURE}
                and a
            ),
            WINDOW_S + 30,
            f"CreditFeatureDriftCritical firing for {SHIFTED_FEATURE} and {NEW_CATEGORY_FEATURE}",
        )
        feature_psi = values(prometheus, "credit:feature_psi:5m", "feature")
        assert feature_psi[SHIFTED_FEATURE] > 0.25
        assert feature_psi[NEW_CATEGORY_FEATURE] > 0.25
        assert NEW_CATEGORY_FEATURE in alerts.get("CreditUnseenCategories", set()), alerts
        # The new category is scored as missing: the missing share jumped too.
        assert NEW_CATEGORY_FEATURE in alerts.get("CreditMissingRateJump", set()), alerts

        for panel in json.loads(DASHBOARD.read_text())["panels"]:
            for target in panel["targets"]:
                assert query(prometheus, target["expr"]), (
                    f"dashboard panel {panel['title']!r}: {target['expr']} returned no data"
                )
    assert not traffic.errors, traffic.errors[:3]

    # Both workers' counts, added up by BentoML's multiprocess /metrics: every answered row
    # is in the score counters once (after a drain and a scrape).
    def counted() -> float:
        result = query(prometheus, "sum(credit_score_bin_total)")
        return result and float(result[0]["value"][1]) == traffic.answered

    wait_for(counted, 10, f"{traffic.answered} rows in sum(credit_score_bin_total)")
    # Each worker's own view, asked on new connections until both have answered (the kernel
    # spreads connections over the workers' sockets by a hash).
    pids: dict[str, int] = {}
    for _ in range(64):
        view = requests.get(f"{service}/monitoring", timeout=10).json()
        pids[view["note"].split("pid ")[1].split(")")[0]] = view["rows"]
        if len(pids) == WORKERS:
            break
    assert len(pids) == WORKERS, f"only {len(pids)} worker(s) answered /monitoring: {pids}"
    assert all(rows > 0 for rows in pids.values()), f"a worker scored no row: {pids}"
