"""What the benchmark measures, named, and its printed tables: the servers' names (one source for
the runs, the ratios and the report), the in-process ceiling, and `render`, which turns the
measurements into the table of figures and the ratios against the bar. Used by the benchmark
as it runs and by loadtest/report.py on its JSON.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from loadtest.memory import ServerMemory
from loadtest.wrk import BATCH_CLIENTS, BATCH_ROWS, Measurement
from scoring.serving.edge.settings import Settings

BOOSTER_VARIANT = "this service, Booster (no --compile)"


MLSERVER = "MLServer 1.7.1, LightGBM runtime"


# The same service and model with drift counting switched off: what monitoring costs.
NO_MONITORING = "this service, SCORING_DRIFT_MONITORING=false"


# The same service with a challenger in shadow: the same compiled model again, so the shadow
# lane scores every row a second time on a forest as large as the champion's.
WITH_CHALLENGER = "this service, with a challenger in shadow"


# The service's worker count by default (one per CPU); the like-for-like floor runs as many
# processes, each on its own SO_REUSEPORT socket, scoring with the same compiled forest.
SERVICE_WORKERS = Settings.from_env({}).worker_count()


# The in-process ceiling scores on as many threads as the service's workers have in all.
CEILING_THREADS = SERVICE_WORKERS * Settings.from_env({}).booster_threads()


EQUAL_FLOOR = f"HTTP floor, {SERVICE_WORKERS} processes, compiled forest"


PACED_CLIENTS, PACE_MS = 20, 20  # at most ~1,000 single rows/s: well under capacity


PACED = f"paced 1 row x {PACED_CLIENTS} clients ({PACE_MS} ms pause)"


@dataclass(frozen=True)
class Ceiling:
    """The in-process ceiling, measured the two ways a predictor can use `threads` threads."""

    one_call: float  # one call on all the threads per batch, best of 20 (a peak)
    parallel: float  # one scorer per thread, each its own batches, sustained (as the workers)

    @property
    def rows_per_s(self) -> float:
        """The higher: the strictest ratio for the service."""
        return max(self.one_call, self.parallel)


def render(
    results: list[Measurement],
    memory: dict[str, ServerMemory],
    ceilings: list[Ceiling],
    tag: str,
    n_features: int,
    duration: float,
    header: bool = True,
) -> str:
    def find(server: str, load: str) -> Measurement | None:
        return next((r for r in results if r.server == server and r.load == load), None)

    lines = [
        f"Benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
        f"{os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}; model {tag} "
        f"({n_features} features); wrk -t1, {duration:g} s per run, server and wrk on loopback; "
        f"this service: SCORING_WORKERS={os.environ.get('SCORING_WORKERS', 'auto')} "
        f"(auto = one per CPU)",
        "",
        "| server | load | req/s | rows/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    if not header:  # the report (loadtest/report.py) says when and where, from the JSON
        lines = lines[2:]
    for r in results:
        lines.append(
            f"| {r.server} | {r.load} | {r.requests_per_s:,.0f} | {r.rows_per_s:,.0f} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |"
        )
    ceiling = max(c.rows_per_s for c in ceilings)
    one_call = ", ".join(f"{c.one_call:,.0f}" for c in ceilings)
    parallel = ", ".join(f"{c.parallel:,.0f}" for c in ceilings)
    lines.append(
        f"| in-process compiled forest (the service's predictor) | {BATCH_ROWS}-row batches, "
        f"{CEILING_THREADS} threads, the highest of {len(ceilings)} measurements of each way: "
        f"one call on {CEILING_THREADS} threads, best of 20 ({one_call}); {CEILING_THREADS} "
        f"one-thread scorers, sustained ({parallel}) | – | {ceiling:,.0f} | – | – | – |"
    )
    lines += ["", "| server | RSS, parent process | RSS, each other process (workers) |"]
    lines.append("|---|---:|---|")
    for name, used in memory.items():
        workers = ", ".join(f"{mb:.0f} MB" for mb in used.workers_mb) or "–"
        lines.append(f"| {name} | {used.parent_mb:.0f} MB | {workers} |")
    lines += ["", "| ratio | value | bar |", "|---|---:|---|"]
    ours, unmonitored = (find(n, "1 row x 32 clients") for n in ("this service", NO_MONITORING))
    if ours and unmonitored and unmonitored.requests_per_s:
        lines.append(
            f"| this service / {NO_MONITORING}, 1 row x 32 clients (drift monitoring's cost) | "
            f"{ours.requests_per_s / unmonitored.requests_per_s:.2f} | ≥ 0.9 |"
        )
    lines += challenger_cost(find)
    for ours_name in ("this service", BOOSTER_VARIANT):
        ours = find(ours_name, "1 row x 32 clients")
        for other, bar in (
            ("HTTP floor", "≥ 0.6"),
            (EQUAL_FLOOR, "≥ 0.8 (like for like)"),
            ("BentoML default", "≥ 5"),
            ("mlflow models serve", "–"),
            (MLSERVER, "> 1 (ahead)"),
        ):
            theirs = find(other, "1 row x 32 clients")
            if ours and theirs and theirs.requests_per_s:
                lines.append(
                    f"| {ours_name} / {other}, 1 row x 32 clients | "
                    f"{ours.requests_per_s / theirs.requests_per_s:.2f} | {bar} |"
                )
        for form in ("", ", compact form", ", Arrow form"):
            batch = find(ours_name, f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients{form}")
            if batch:
                lines.append(
                    f"| {ours_name}, {BATCH_ROWS}-row rows/s{form} / in-process | "
                    f"{batch.rows_per_s / ceiling:.2f} | ≥ 0.8 (best form) |"
                )
        # Like for like in bulk: the bare floor reading the same Arrow bodies, same workers,
        # same forest. What it loses to the ceiling is what HTTP costs any Python server.
        arrow_load = f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients, Arrow form"
        ours, theirs = find(ours_name, arrow_load), find(EQUAL_FLOOR, arrow_load)
        if ours and theirs and theirs.rows_per_s:
            lines.append(
                f"| {ours_name}, {BATCH_ROWS}-row rows/s, Arrow form / {EQUAL_FLOOR}, "
                f"Arrow form | {ours.rows_per_s / theirs.rows_per_s:.2f} | – (like for like) |"
            )
    floor_arrow = find(EQUAL_FLOOR, f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients, Arrow form")
    if floor_arrow:
        lines.append(
            f"| {EQUAL_FLOOR}, {BATCH_ROWS}-row rows/s, Arrow form / in-process "
            f"(what HTTP costs a bare server) | {floor_arrow.rows_per_s / ceiling:.2f} | – |"
        )
    alone = find("this service", f"{PACED}, alone")
    for form in ("records", "compact form", "Arrow form"):
        mixed = find("this service", f"{PACED}, while {form} bulk streams")
        suffix = "" if form == "records" else f", {form}"
        bulk_alone = find("this service", f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients{suffix}")
        bulk_mixed = find(
            "this service", f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients{suffix}, mixed"
        )
        if alone and mixed and alone.requests_per_s:
            what = f"paced single rows while {form} bulk streams"
            rate = mixed.requests_per_s / alone.requests_per_s
            lines.append(f"| {what}: rate / alone | {rate:.2f} | ≥ 0.9 |")
            lines.append(
                f"| {what}: p99 ms (alone {alone.p99_ms:.1f}) | {mixed.p99_ms:.1f} | ≤ 25 |"
            )
        if bulk_alone and bulk_mixed and bulk_alone.rows_per_s:
            lines.append(
                f"| {form} bulk rows/s meanwhile / alone | "
                f"{bulk_mixed.rows_per_s / bulk_alone.rows_per_s:.2f} | ≥ 0.6 |"
            )
    return "\n".join(lines) + "\n"


def challenger_cost(find: Callable[[str, str], Measurement | None]) -> list[str]:
    """What a challenger in shadow costs the champion's traffic, like for like: same service,
    same workers, same predictor, same load, measured one after the other."""
    lines = []
    for load in (
        "1 row x 32 clients",
        f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients",
        f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients, Arrow form",
    ):
        alone, shadowed = find("this service", load), find(WITH_CHALLENGER, load)
        if not (alone and shadowed and alone.rows_per_s):
            continue
        lines.append(
            f"| {WITH_CHALLENGER} / this service, {load}: rows/s | "
            f"{shadowed.rows_per_s / alone.rows_per_s:.2f} | ≥ 0.85 |"
        )
        lines.append(
            f"| {WITH_CHALLENGER} − this service, {load}: p99 ms | "
            f"{shadowed.p99_ms - alone.p99_ms:+.1f} | ≤ +5 |"
        )
    return lines
