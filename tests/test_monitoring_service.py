"""GET /monitoring and /version's drift entry, in process (`to_asgi()`): every scoring route
feeds the drift counts, and an unseen category is reported. The service's own drain thread
does the counting, as in `bentoml serve`."""

from __future__ import annotations

import io
import time
from pathlib import Path

import bentoml
import pandas as pd

from scoring.stored_model.drift_reference import DRIFT_REFERENCE_FILE, DriftReference


def monitoring(client) -> dict:
    response = client.get("/monitoring")
    assert response.status_code == 200, response.text
    return response.json()


def settled_rows(client) -> int:
    """The rows counted once everything scored so far (by earlier tests too) is drained: the
    count stops moving for longer than a drain interval."""
    from scoring.serving.monitoring.drift import DRAIN_INTERVAL_S

    rows = monitoring(client)["rows"]
    for _ in range(20):
        time.sleep(DRAIN_INTERVAL_S + 0.3)
        now = monitoring(client)["rows"]
        if now == rows:
            return rows
        rows = now
    raise AssertionError("the drift counts never settled")


def wait_for_rows(client, rows: int, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = monitoring(client)
        if view["rows"] >= rows:
            return view
        time.sleep(0.2)
    raise AssertionError(f"/monitoring counted {view['rows']} rows, expected {rows}")


def test_version_says_monitoring_is_on_and_names_the_reference(client, production_model):
    model = bentoml.models.get(production_model)
    reference = DriftReference.from_json(Path(model.path_of(DRIFT_REFERENCE_FILE)).read_text())
    entry = client.get("/version").json()["drift_monitoring"]
    assert entry["enabled"] is True
    assert entry["source"] == reference.source
    assert entry["sample_sha256"] == reference.sample_sha256
    assert entry["rows"] == reference.rows


def test_every_scoring_route_feeds_the_drift_counts(client, demo_rows):
    before = settled_rows(client)
    rows = demo_rows[:40]
    assert client.post("/predict", json={"applications": rows[:10]}).status_code == 200
    table = {"columns": list(rows[0]), "data": [list(r.values()) for r in rows[10:25]]}
    assert client.post("/predict_compact", json={"table": table}).status_code == 200
    csv = pd.DataFrame(rows[25:40]).to_csv(index=False).encode()
    response = client.post("/predict_file", files={"file": ("a.csv", io.BytesIO(csv), "text/csv")})
    assert response.status_code == 200, response.text
    view = wait_for_rows(client, before + 40)
    assert view["rows"] == before + 40
    assert view["monitoring"] == "on"
    assert "one worker process's view" in view["note"]
    assert 0 <= view["approval_rate"]["live"] <= 1
    assert 0 < view["approval_rate"]["reference"] < 1
    assert view["score_psi"] >= 0
    assert len(view["features"]) == len(demo_rows[0])
    assert all(f["psi"] is not None and f["psi"] >= 0 for f in view["features"])
    psis = [f["psi"] for f in view["features"]]
    assert psis == sorted(psis, reverse=True)  # the most drifted first


def test_an_unseen_category_is_reported_even_when_refused(client, demo_rows):
    before = monitoring(client)["unseen_categories"].get("OCCUPATION_TYPE", 0)
    row = {**demo_rows[0], "OCCUPATION_TYPE": "Astronaut"}
    assert client.post("/predict", json={"applications": [row]}).status_code == 400
    deadline = time.monotonic() + 10
    while monitoring(client)["unseen_categories"].get("OCCUPATION_TYPE", 0) == before:
        assert time.monotonic() < deadline, "the unseen category never showed in /monitoring"
        time.sleep(0.2)
    assert monitoring(client)["unseen_categories"]["OCCUPATION_TYPE"] == before + 1


def test_bulk_requests_scored_in_the_bulk_lane_feed_the_drift_counts_too(client, demo_rows):
    from scoring.serving.edge.settings import Settings

    bulk = Settings.from_env({}).bulk_rows  # this many rows or more take the bulk lane
    rows = demo_rows[: 2 * bulk]
    before = settled_rows(client)
    assert client.post("/predict", json={"applications": rows[:bulk]}).status_code == 200
    table = {"columns": list(rows[0]), "data": [list(r.values()) for r in rows[bulk:]]}
    assert client.post("/predict_compact", json={"table": table}).status_code == 200
    assert wait_for_rows(client, before + 2 * bulk)["rows"] == before + 2 * bulk
