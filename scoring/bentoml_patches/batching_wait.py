"""A bound on BentoML's adaptive-batching wait, installed before the server builds its
dispatchers.

BentoML 1.4's CorkDispatcher holds a lone request back until the mean wait of recent batches
has passed, and that mean is refreshed (at most every 5 s, by 5%) from waits the rule itself
caused. After a burst it therefore kept every request waiting ~55 ms for minutes (measured:
3 ms before an overload, 58 ms for as long as we watched after it). Capping the target wait at
a small share of `max_latency_ms` keeps the batching (requests queued while a batch is scored
still merge) but lets the service return to normal within a second of the load stopping.
"""

from __future__ import annotations

from bentoml._internal.marshal import dispatcher

WAIT_SHARE_OF_MAX_LATENCY = 0.01


# BentoML's own optimizer, kept for the canary test that checks it still lacks the bound.
UPSTREAM_OPTIMIZER = dispatcher.Optimizer


class BoundedWaitOptimizer(UPSTREAM_OPTIMIZER):  # type: ignore[misc, valid-type]
    created = 0  # in this process: each batched API's dispatcher builds one

    def __init__(self, max_latency: float) -> None:
        super().__init__(max_latency)
        self.max_wait = max_latency * WAIT_SHARE_OF_MAX_LATENCY
        BoundedWaitOptimizer.created += 1

    def trigger_refresh(self) -> None:
        super().trigger_refresh()
        self.wait = min(self.wait, self.max_wait)


def install() -> None:
    dispatcher.Optimizer = BoundedWaitOptimizer


def report() -> dict[str, object]:
    """How many of this process's batching dispatchers use the bound."""
    return {
        "active": dispatcher.Optimizer is BoundedWaitOptimizer,
        "bounded_dispatchers": BoundedWaitOptimizer.created,
        "max_wait_share_of_max_latency": WAIT_SHARE_OF_MAX_LATENCY,
    }
