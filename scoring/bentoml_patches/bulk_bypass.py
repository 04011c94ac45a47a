"""Requests that are already batches skip BentoML's batching queue.

BentoML 1.4's CorkDispatcher scores one batch at a time per batched API (a semaphore of one)
and queues every request, whatever its size, behind the batch in flight. A 500-row request is
a batch already: queueing it gains nothing, and every single-row application that arrives while
it is scored waits for it (measured: paced single rows fell from p99 8 ms alone to 137 ms while
four clients streamed 500-row bodies). Here a request of at least `bulk_rows` rows is scored
straight away, beside the queue, through the same batch function (so the same predictor and
checks); LightGBM and the compiled forest release the GIL, so it runs on the other core while
the queue keeps merging and scoring single rows. Requests below `bulk_rows` are batched exactly
as before.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from _bentoml_impl.server import app as server_app
from bentoml._internal.marshal import dispatcher

# BentoML's own dispatcher, kept for the canary test that checks it still queues every request.
UPSTREAM_DISPATCHER = dispatcher.CorkDispatcher


class BulkBypassDispatcher(UPSTREAM_DISPATCHER):  # type: ignore[misc, valid-type]
    bulk_rows = 64  # set by install()
    created = 0  # in this process: each batched API builds one
    bypassed = 0  # requests scored beside the queue, in this process

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        BulkBypassDispatcher.created += 1

    def __call__(
        self, callback: Callable[[Sequence[Any]], Coroutine[None, None, Sequence[Any]]]
    ) -> Callable[[Any], Coroutine[None, None, Any]]:
        queued = super().__call__(callback)

        # Not functools.wraps(callback): BentoML calls this once per request and only awaits
        # the result; copying the callback's attributes each time was ~1% of a single row.
        async def _func(data: Any) -> Any:
            if self.get_batch_size(data) < self.bulk_rows:
                return await queued(data)
            BulkBypassDispatcher.bypassed += 1
            # The batch function takes a sequence of requests and answers one output each.
            (output,) = await self.callback((data,))
            return output

        return _func


def install(bulk_rows: int) -> None:
    BulkBypassDispatcher.bulk_rows = bulk_rows
    dispatcher.CorkDispatcher = BulkBypassDispatcher
    # BentoML's server module imported the class by name before this ran.
    server_app.CorkDispatcher = BulkBypassDispatcher


def report() -> dict[str, object]:
    """Whether this process's batched APIs let bulk requests skip the queue, and how many did."""
    return {
        "active": server_app.CorkDispatcher is BulkBypassDispatcher,
        "bulk_rows": BulkBypassDispatcher.bulk_rows,
        "bypassing_dispatchers": BulkBypassDispatcher.created,
        "bulk_requests_scored_beside_the_queue": BulkBypassDispatcher.bypassed,
    }
