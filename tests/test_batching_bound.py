"""The bound on BentoML's adaptive-batching wait (scoring/bentoml_patches/batching_wait.py).
That real dispatchers use it is checked in a real server: tests/test_service_server.py."""

from __future__ import annotations

import pytest

from scoring.bentoml_patches.batching_wait import (
    WAIT_SHARE_OF_MAX_LATENCY,
    BoundedWaitOptimizer,
)


def test_wait_after_a_burst_of_long_waits_is_capped_by_the_latency_share():
    optimizer = BoundedWaitOptimizer(max_latency=0.2)
    for n in range(1, 51):
        optimizer.o_stat.append((n % 8 + 1, 0.001 * (n % 8 + 1), 0.300))  # 300 ms waits
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.2 * WAIT_SHARE_OF_MAX_LATENCY)


def test_short_waits_are_left_as_bentoml_computes_them():
    optimizer = BoundedWaitOptimizer(max_latency=0.2)
    for n in range(1, 51):
        optimizer.o_stat.append((n % 8 + 1, 0.001 * (n % 8 + 1), 0.0005))
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.0005)
