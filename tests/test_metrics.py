"""metrics.observe_all: a batch's probabilities observed with one increment per bucket, through
prometheus_client's private histogram parts; checked against observe() one value at a time."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from scoring.serving.monitoring import metrics


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("p", "p", buckets=metrics.PROBABILITY._upper_bounds[:-1], registry=registry)


def test_observe_all_is_active_on_the_pinned_prometheus_client():
    assert metrics.BULK_OBSERVE, "prometheus-client changed: check observe_all against it"


def test_observe_all_exposes_what_observe_one_by_one_exposes():
    """The canary: fails when prometheus_client's histogram internals change meaning."""
    rng = np.random.default_rng(7)
    # Values on bucket bounds (le: a bound belongs to its own bucket), both ends, and random.
    bounds = np.asarray(metrics.PROBABILITY._upper_bounds[:-1])
    values = np.concatenate([bounds, [0.0, 1.0, 0.049999, 0.050001], rng.random(1000)])
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    expected, observed = _histogram(one_by_one), _histogram(bulk)
    for value in values.tolist():
        expected.observe(value)
    metrics.observe_all(observed, values)
    exposed, reference = _exposed(bulk), _exposed(one_by_one)
    # Every bucket and the count exactly; the sum up to the order of the additions.
    assert {k: v for k, v in exposed.items() if k != "p_sum"} == {
        k: v for k, v in reference.items() if k != "p_sum"
    }
    assert exposed["p_sum"] == pytest.approx(reference["p_sum"], rel=1e-12)
    assert exposed['p_bucket{le="0.05"}'] > 0
    assert exposed['p_bucket{le="+Inf"}'] == len(values)


def _exposed(registry: CollectorRegistry) -> dict[str, float]:
    """Each sample line of the exposition, by name and labels (not the creation time)."""
    lines = generate_latest(registry).decode().splitlines()
    samples = (line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
    return {name: float(value) for name, value in samples if "_created" not in name}


def test_the_fallback_observes_one_by_one(monkeypatch):
    monkeypatch.setattr(metrics, "BULK_OBSERVE", False)
    registry = CollectorRegistry()
    histogram = _histogram(registry)
    metrics.observe_all(histogram, np.array([0.01, 0.5, 0.99]))
    assert registry.get_sample_value("p_count") == 3
    assert registry.get_sample_value("p_bucket", {"le": "0.05"}) == 1
