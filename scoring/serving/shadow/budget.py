"""How much CPU the challenger may take from the champion: a share of one core per worker.

The shadow lane's thread is nice'd, but nice only orders threads; a challenger that scores every
row doubles the forest's work, and under load that is throughput the champion loses (measured
at 0.82x for 500-row Arrow bodies with a full shadow). So the lane spends at most `share`
seconds of CPU per second of wall time, averaged over a burst of BURST_S: a token bucket of CPU
seconds, charged with what each drain actually took on the lane's thread (time.thread_time, so
time spent waiting for a core costs nothing). When the queued rows cost more than the bucket
holds, the lane scores a uniform random sample of them and counts the rest as dropped
(`over_budget`): the pair rates and the score PSI are then estimates from a sample, unbiased,
their coverage in the metrics. At low traffic every row is scored."""

from __future__ import annotations

import time

BURST_S = 1.0
"""CPU seconds the bucket holds at most: what an idle lane may spend on one burst of rows."""


class CpuBudget:
    def __init__(self, share: float, burst_s: float = BURST_S) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"the shadow CPU share must be in (0, 1], not {share}")
        self.share, self.burst_s = share, burst_s
        self._tokens = burst_s
        self._refilled = time.monotonic()
        self._seconds_per_row: float | None = None

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst_s, self._tokens + self.share * (now - self._refilled))
        self._refilled = now

    def affordable(self, rows: int) -> int:
        """How many of `rows` the bucket pays for now, at the cost per row seen so far (all of
        them before the first charge: a first drain is at most the queue's bound)."""
        self._refill()
        if self._seconds_per_row is None:
            return rows
        if self._tokens <= 0:
            return 0
        return min(rows, int(self._tokens / self._seconds_per_row))

    def charge(self, cpu_seconds: float, rows: int) -> None:
        """What a drain of `rows` took; the bucket may go below zero (it then pays that back
        before the next rows), and the cost per row follows the recent drains."""
        self._tokens -= cpu_seconds
        if rows:
            per_row = max(cpu_seconds / rows, 1e-9)
            previous = self._seconds_per_row
            self._seconds_per_row = per_row if previous is None else 0.7 * previous + 0.3 * per_row
