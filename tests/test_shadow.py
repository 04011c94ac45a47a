"""The challenger's shadow lane, in process: the champion's rows mapped to the challenger's
columns, its decisions compared with the champion's, and its faults kept to itself."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY

from scoring.core.contract import FeatureSpec
from scoring.core.contract_map import ContractMismatch, row_map
from scoring.serving.edge.challenger import load_challenger
from scoring.serving.shadow.budget import CpuBudget
from scoring.serving.shadow.lane import ShadowLane
from scoring.serving.shadow.metrics import DECISION_PAIRS
from tests.service_helpers import code_matrix

CHAMPION = FeatureSpec(
    names=("income", "age", "housing", "owns_car"),
    integer=frozenset({"age"}),
    boolean=frozenset({"owns_car"}),
    categories={"housing": ("rent", "own", "family")},
)


def test_a_subset_challenger_reads_its_columns_from_the_champions_rows_in_its_order():
    challenger = FeatureSpec(
        names=("housing", "income"),
        integer=frozenset(),
        categories={"housing": ("family", "own", "rent", "council")},
    )
    rows = np.array([[1000.0, 30, 0, 1], [np.nan, 40, 2, 0], [5.0, 50, np.nan, 1]])
    mapped = row_map(CHAMPION, challenger).rows(rows)
    # rent (champion code 0) is the challenger's code 2; family (2) its 0; missing stays missing
    np.testing.assert_array_equal(mapped, [[2, 1000.0], [0, np.nan], [np.nan, 5.0]])
    assert rows[1, 2] == 2  # the champion's rows are left as they were


@pytest.mark.parametrize(
    ("challenger", "named"),
    [
        (FeatureSpec(names=("income", "debt"), integer=frozenset()), "debt"),
        (FeatureSpec(names=("age",), integer=frozenset()), "age is float for the challenger"),
        (
            FeatureSpec(
                names=("housing",), integer=frozenset(), categories={"housing": ("rent", "own")}
            ),
            "categories: family",
        ),
    ],
    ids=["unknown-feature", "other-kind", "unknown-category"],
)
def test_a_challenger_that_cannot_read_the_champions_requests_is_refused_naming_why(
    challenger, named
):
    with pytest.raises(ContractMismatch, match=named):
        row_map(CHAMPION, challenger)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def lane_parts(production_model, challenger_model):
    import bentoml

    challenger, spec = load_challenger(challenger_model, reason_count=4)
    champion = FeatureSpec.from_metadata(
        bentoml.models.get(production_model).info.metadata["features"]
    )
    return challenger, row_map(champion, spec)


def test_the_lane_counts_each_decision_pair_as_the_two_models_decide(
    lane_parts, production_model, challenger_model, demo_rows
):
    challenger, mapping = lane_parts
    rows = code_matrix(production_model, demo_rows)
    champion_p = np.linspace(0.0, 1.0, len(rows))  # any champion scores: what is compared
    lane = ShadowLane("champion:test-pairs", 0.5, challenger, mapping)
    assert lane.drain() == 0
    lane.offer(rows[:100], champion_p[:100])
    lane.offer(rows[100:], champion_p[100:])
    assert lane.drain() == len(rows)
    theirs = challenger.model.scorer.predict(code_matrix(challenger_model, demo_rows)) >= (
        challenger.threshold
    )
    ours = champion_p >= 0.5
    for pair, expected in (
        ("approve/approve", ~ours & ~theirs),
        ("approve/reject", ~ours & theirs),
        ("reject/approve", ours & ~theirs),
        ("reject/reject", ours & theirs),
    ):
        labels = {"champion": "champion:test-pairs", "challenger": challenger.tag, "pair": pair}
        assert counter("credit_shadow_decisions_total", **labels) == expected.sum(), pair


class RaisingChallenger:
    """Stands in for a challenger whose scoring fails (a real model cannot be made to)."""

    def __init__(self, real) -> None:
        self.real, self.tag, self.threshold = real, "raising:1", 0.5

    def probabilities(self, rows: np.ndarray, threads: int | None = None) -> np.ndarray:
        raise RuntimeError("MARKER-7731 in the challenger")


def test_a_challenger_that_raises_loses_only_its_rows_counted_and_logs_no_values(
    lane_parts, production_model, demo_rows, caplog
):
    challenger, mapping = lane_parts
    lane = ShadowLane("champion:test-raise", 0.5, RaisingChallenger(challenger), mapping)
    rows = code_matrix(production_model, demo_rows[:10])
    lane.offer(rows, np.full(10, 0.2))  # the request path: it does not raise
    assert lane.drain() == 0
    labels = {"challenger": "raising:1", "reason": "challenger_error"}
    assert counter("credit_shadow_rows_dropped_total", **labels) == 10
    assert "RuntimeError" in caplog.text
    assert "MARKER-7731" not in caplog.text


class BlockedChallenger:
    """Stands in for a slow challenger: it scores only once the test lets it."""

    def __init__(self, real) -> None:
        self.real, self.tag, self.threshold = real, "slow:1", real.threshold
        self.started, self.go = threading.Event(), threading.Event()

    def probabilities(self, rows: np.ndarray, threads: int | None = None) -> np.ndarray:
        self.started.set()
        self.go.wait(timeout=30)
        return self.real.probabilities(rows, threads)

    def rejected(self, probabilities: np.ndarray) -> np.ndarray:
        return self.real.rejected(probabilities)


def test_a_slow_challenger_fills_its_queue_and_further_rows_are_dropped_not_waited_for(
    lane_parts, production_model, demo_rows
):
    challenger, mapping = lane_parts
    slow = BlockedChallenger(challenger)
    lane = ShadowLane("champion:test-slow", 0.5, slow, mapping, max_pending_rows=50)
    lane.start()
    rows = code_matrix(production_model, demo_rows[:40])
    lane.offer(rows, np.full(40, 0.2))
    assert slow.started.wait(timeout=30)  # the lane is now busy with those 40 rows
    lane.offer(rows, np.full(40, 0.2))  # queued: 40 of 50
    lane.offer(rows, np.full(40, 0.2))  # 80 > 50: dropped, and offer returned at once
    dropped = {"challenger": "slow:1", "reason": "queue_full"}
    assert counter("credit_shadow_rows_dropped_total", **dropped) == 40
    slow.go.set()


def test_the_budget_pays_for_rows_at_their_measured_cost_and_refills_at_its_share():
    budget = CpuBudget(share=0.5, burst_s=1.0)
    assert budget.affordable(10_000) == 10_000  # no cost seen yet: the first drain is bounded
    budget.charge(0.9, 100)  # 9 ms a row; 0.1 s left
    assert budget.affordable(10_000) == 11
    budget.charge(0.5, 50)  # into debt: nothing until it is paid back
    assert budget.affordable(10_000) == 0
    with pytest.raises(ValueError, match="share"):
        CpuBudget(share=0)


def test_past_its_budget_the_lane_scores_a_sample_and_counts_the_rest_as_over_budget(
    lane_parts, production_model, demo_rows
):
    challenger, mapping = lane_parts
    budget = CpuBudget(share=1e-9, burst_s=1.0)  # refills nothing during the test
    budget.charge(0.9, 100)  # the cost seen so far pays for 11 more rows
    lane = ShadowLane("champion:test-budget", 0.5, challenger, mapping, budget=budget)
    rows = code_matrix(production_model, demo_rows[:200])
    lane.offer(rows, np.linspace(0.0, 1.0, 200))
    assert lane.drain() == 11
    over = {"challenger": challenger.tag, "reason": "over_budget"}
    assert counter("credit_shadow_rows_dropped_total", **over) == 189
    pairs = sum(
        counter(
            "credit_shadow_decisions_total",
            champion="champion:test-budget",
            challenger=challenger.tag,
            pair=pair,
        )
        for pair in DECISION_PAIRS
    )
    assert pairs == 11
