"""A challenger in shadow, in a real `bentoml serve`: the answers are the champion's alone, byte
for byte, while /metrics counts the decision pairs and /version names both models."""

from __future__ import annotations

import os
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from loadtest.processes import ROOT, free_port, running
from scoring.serving.shadow.lane import DRAIN_INTERVAL_S
from tests.test_startup_failure import assert_stopped_once_with_one_line, serve

pytestmark = pytest.mark.server


def started(tmp_path_factory, bentoml_home, name: str, **settings: str):
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "SCORING_WORKERS": "1", **settings}
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    log = tmp_path_factory.mktemp(name) / "serve.log"
    url = f"http://127.0.0.1:{port}"
    return running(command, f"{url}/readyz", log, env=env, timeout_s=120), url


@pytest.fixture(scope="module")
def champion_alone(production_model, bentoml_home, tmp_path_factory):
    process, url = started(tmp_path_factory, bentoml_home, "alone")
    with process:
        yield url


@pytest.fixture(scope="module")
def with_challenger(production_model, challenger_model, bentoml_home, tmp_path_factory):
    process, url = started(
        tmp_path_factory, bentoml_home, "shadow", SCORING_CHALLENGER=challenger_model
    )
    with process:
        yield url


def shadow_decisions(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    pairs: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "credit_shadow_decisions":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    pair = sample.labels["pair"]
                    pairs[pair] = pairs.get(pair, 0.0) + sample.value
    return pairs


def test_answers_with_a_challenger_are_the_champions_byte_for_byte(
    champion_alone, with_challenger, demo_rows
):
    os.chdir(ROOT)
    for path, body in (
        ("/predict", {"applications": demo_rows[:60]}),
        ("/predict", {"applications": demo_rows[60:61]}),
        ("/predict_with_reasons", {"applications": demo_rows[:20]}),
    ):
        alone = requests.post(f"{champion_alone}{path}", json=body, timeout=30)
        shadowed = requests.post(f"{with_challenger}{path}", json=body, timeout=30)
        assert alone.status_code == shadowed.status_code == 200, shadowed.text
        assert shadowed.content == alone.content, path


def settled_count(url: str) -> float:
    """The pairs counted once the lane has drained what earlier tests sent (it drains every
    DRAIN_INTERVAL_S): the same total twice, a few intervals apart."""
    deadline = time.monotonic() + 30
    count = sum(shadow_decisions(url).values())
    while True:
        time.sleep(3 * DRAIN_INTERVAL_S)
        again = sum(shadow_decisions(url).values())
        if again == count:
            return count
        assert time.monotonic() < deadline, "the shadow counts never settled"
        count = again


def test_the_challengers_decisions_are_counted_in_pairs_for_every_row_scored(
    with_challenger, demo_rows
):
    before = settled_count(with_challenger)
    rows = demo_rows[100:180]
    assert requests.post(f"{with_challenger}/predict", json={"applications": rows}, timeout=30).ok
    deadline = time.monotonic() + 30
    while sum(shadow_decisions(with_challenger).values()) < before + len(rows):
        assert time.monotonic() < deadline, shadow_decisions(with_challenger)
        time.sleep(0.2)
    pairs = shadow_decisions(with_challenger)
    assert sum(pairs.values()) == before + len(rows)
    assert set(pairs) == {"approve/approve", "approve/reject", "reject/approve", "reject/reject"}


def test_version_lists_the_champion_and_the_challenger(
    with_challenger, production_model, challenger_model
):
    import bentoml

    models = requests.get(f"{with_challenger}/version", timeout=10).json()["models"]
    assert [(m["model_tag"], m["role"]) for m in models] == [
        (production_model, "champion"),
        (challenger_model, "challenger"),
    ]
    labels = bentoml.models.get(challenger_model).info.labels
    assert models[1]["run_id"] == labels["run_id"]
    assert models[1]["threshold"] == float(labels["threshold"])


def test_a_challenger_missing_from_the_store_stops_the_service_at_start(
    production_model, bentoml_home
):
    result = serve(production_model, bentoml_home, SCORING_CHALLENGER="nowhere:v1")
    assert_stopped_once_with_one_line(result, "nowhere:v1", "import it with --role challenger")
