"""The bulk lane: one low-priority thread per worker for the heavy work of batch requests.

A 500-row request costs ~18 ms of validation (records form) and ~20 ms of scoring; single
applications cost well under a millisecond each. Run on the event loop, or in a pool of
threads that take turns at the GIL with it, bulk work kept the loop from answering the single
applications queued behind it (measured: paced single rows at p99 137 ms while four clients
streamed 500-row bodies, against 8 ms alone). Here each worker validates, scores and decides
bulk requests in one thread, one request at a time, so the loop contends for the GIL with one
thread only (and gets it back within Python's switch interval); that thread runs at a lower
CPU priority, so when both cores are busy the kernel gives them to the loops first and the bulk
uses what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

# Nice value added to the lane's thread (Linux applies setpriority to one thread when given its
# id; an unprivileged process may always lower its own priority).
BULK_NICENESS = 10

P = ParamSpec("P")
R = TypeVar("R")


_lane_thread_id: int | None = None  # the lane thread's kernel id, once it has started


def lower_this_threads_priority() -> None:
    """Background work (the bulk lane, drift draining, the shadow lane): when both cores are
    busy, the kernel gives them to the event loops first. Not Linux, or not permitted: the
    thread just runs at normal priority."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BULK_NICENESS)


def _lower_priority() -> None:
    global _lane_thread_id
    _lane_thread_id = threading.get_native_id()
    lower_this_threads_priority()


_LANE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk", initializer=_lower_priority)


async def in_bulk_lane(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `function` in this process's bulk lane, after the bulk work queued before it."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_LANE, functools.partial(function, *args, **kwargs))


def lane_niceness() -> int | None:
    """The lane thread's nice value, or None before its first task (for GET /version)."""
    if _lane_thread_id is None:
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, _lane_thread_id)
    except OSError:
        return None
