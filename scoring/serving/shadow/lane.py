"""The shadow lane: the challenger scores the champion's rows after the champion has answered,
in one low-priority thread per worker, and the two are compared in metrics.

The request path's whole cost is `offer`: a lock, a length check and an append. The rows wait in
a queue bounded by rows, drained every DRAIN_INTERVAL_S; when it is full (a slow challenger, a
burst) the offered rows are counted as dropped and the request goes on, never waiting. The
thread takes everything queued
at once, maps it to the challenger's columns, scores it on one LightGBM thread (the compiled
forest when the challenger has one) and counts the decision pairs and both score
distributions. A challenger that raises loses only its own rows, counted, with one log line
naming the error's type, never a value. The lane spends at most a share of one core
(budget.py): past it, it scores a uniform sample of the queued rows and counts the rest."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from scoring.core.contract_map import RowMap
from scoring.core.scorer import Scorer
from scoring.serving.batching.bulk_lane import lower_this_threads_priority
from scoring.serving.shadow import metrics
from scoring.serving.shadow.budget import CpuBudget

log = logging.getLogger(__name__)

# Ten equal bins of the probability, when the champion has no drift reference to take its
# score deciles from.
EVEN_EDGES = tuple(round(0.1 * i, 1) for i in range(1, 10))
ERROR_LOG_INTERVAL_S = 60.0
# The thread drains the queue this often, not on every offer: woken per request, it took the GIL
# from the event loop once per single row (measured: 0.59x the single-row rate without a
# challenger); every 0.2 s it scores a few hundred rows in one call instead.
DRAIN_INTERVAL_S = 0.2


class ShadowLane:
    def __init__(
        self,
        champion_tag: str,
        champion_threshold: float,
        challenger: Scorer,
        row_map: RowMap,
        score_edges: Sequence[float] = EVEN_EDGES,
        max_pending_rows: int = 20_000,
        budget: CpuBudget | None = None,
    ) -> None:
        self.champion_tag, self.champion_threshold = champion_tag, champion_threshold
        self.challenger, self.row_map = challenger, row_map
        self.edges = np.asarray(score_edges, dtype=np.float64)
        self.max_pending_rows = max_pending_rows
        # No budget given: a whole core, which the nice'd thread never gets under load.
        self.budget = budget or CpuBudget(1.0)
        self._sample = np.random.default_rng()
        self._pending: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._last_error_log = -ERROR_LOG_INTERVAL_S
        tag = challenger.tag
        # Every series created now, at 0: increase() needs a series before its first increment.
        self._pairs = [
            metrics.SHADOW_DECISIONS.labels(champion=champion_tag, challenger=tag, pair=pair)
            for pair in metrics.DECISION_PAIRS
        ]
        bins = [str(i) for i in range(len(self.edges) + 1)]
        self._bins = {
            role: [metrics.SHADOW_SCORE_BINS.labels(role=role, bin=b) for b in bins]
            for role in ("champion", "challenger")
        }
        self._dropped = {
            reason: metrics.SHADOW_DROPPED.labels(challenger=tag, reason=reason)
            for reason in ("queue_full", "challenger_error", "over_budget")
        }
        self._latency = metrics.SHADOW_LATENCY.labels(challenger=tag)

    def offer(self, rows: np.ndarray, probabilities: np.ndarray) -> None:
        """The champion's scored rows, for the challenger: never blocks, never raises."""
        with self._lock:
            if self._pending_rows + len(rows) > self.max_pending_rows:
                full = True
            else:
                full = False
                self._pending.append((rows, probabilities))
                self._pending_rows += len(rows)
        if full:
            self._dropped["queue_full"].inc(len(rows))

    def start(self) -> None:
        threading.Thread(target=self._run, name="shadow", daemon=True).start()

    def _run(self) -> None:
        lower_this_threads_priority()
        while True:
            time.sleep(DRAIN_INTERVAL_S)
            self.drain()

    def drain(self) -> int:
        """Score and compare what is queued, within the CPU budget; the rows scored."""
        with self._lock:
            blocks = list(self._pending)
            self._pending.clear()
            self._pending_rows = 0
        if not blocks:
            return 0
        cpu_started = time.thread_time()
        rows = np.concatenate([b[0] for b in blocks]) if len(blocks) > 1 else blocks[0][0]
        champion = np.concatenate([b[1] for b in blocks]) if len(blocks) > 1 else blocks[0][1]
        affordable = self.budget.affordable(len(rows))
        if affordable < len(rows):
            self._dropped["over_budget"].inc(len(rows) - affordable)
            if affordable == 0:
                return 0
            # A uniform sample keeps the pair rates and the score PSI unbiased estimates.
            keep = np.sort(self._sample.choice(len(rows), affordable, replace=False))
            rows, champion = rows[keep], champion[keep]
        started = time.perf_counter()
        try:
            challenger = self.challenger.probabilities(self.row_map.rows(rows), threads=1)
            challenger_rejected = self.challenger.rejected(challenger)
        except Exception as error:  # the challenger's fault costs its own rows, nothing else
            self.budget.charge(time.thread_time() - cpu_started, 0)
            self._dropped["challenger_error"].inc(len(rows))
            self._log_failure(error, len(rows))
            return 0
        self._latency.observe(time.perf_counter() - started)
        champion_rejected = champion >= self.champion_threshold
        pairs = np.bincount(
            2 * champion_rejected.astype(np.intp) + challenger_rejected.astype(np.intp),
            minlength=4,
        )
        for counter, count in zip(self._pairs, pairs.tolist(), strict=True):
            if count:
                counter.inc(count)
        for role, scores in (("champion", champion), ("challenger", challenger)):
            counts = np.bincount(
                np.searchsorted(self.edges, scores, side="right"), minlength=len(self.edges) + 1
            )
            for counter, count in zip(self._bins[role], counts.tolist(), strict=True):
                if count:
                    counter.inc(count)
        self.budget.charge(time.thread_time() - cpu_started, len(rows))
        return len(rows)

    def _log_failure(self, error: Exception, rows: int) -> None:
        now = time.monotonic()
        if now - self._last_error_log < ERROR_LOG_INTERVAL_S:
            return
        self._last_error_log = now
        # The error's type only: its text may quote the rows it failed on.
        log.warning(
            "shadow: challenger %s failed on %d rows (%s); they are counted as dropped, and "
            "the champion's answers were not affected",
            self.challenger.tag,
            rows,
            type(error).__name__,
        )

    def describe(self) -> dict[str, Any]:
        """What GET /version says of the challenger."""
        provenance = self.challenger.model.provenance
        return {
            "model_tag": self.challenger.tag,
            "run_id": provenance.run_id,
            "threshold": self.challenger.threshold,
            "role": "challenger",
            "imported_as": provenance.role or "(before roles)",
            "predictor": self.challenger.model.predictor,
            "features": len(self.challenger.spec.names),
            "max_pending_rows": self.max_pending_rows,
            "cpu_share": self.budget.share,
        }
