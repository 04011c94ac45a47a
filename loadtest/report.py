"""The benchmark's report, generated from its JSON (loadtest/reports/bench.json): a Markdown page
with every figure, the ratios against the bar and four plots, and the README's headline table.
Figures are never typed by hand: `python -m loadtest.bench` writes the JSON and calls this, and
tests/test_report.py fails when the README's table and the JSON disagree.

    python -m loadtest.report            # rewrite loadtest/reports/{bench.md,*.png} and README
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.processes import ROOT
from loadtest.tables import WITH_CHALLENGER
from loadtest.wrk import BATCH_CLIENTS, BATCH_ROWS, Measurement

REPORTS = ROOT / "loadtest" / "reports"
BENCH_JSON = REPORTS / "bench.json"
README = ROOT / "README.md"
START, END = "<!-- figures:start (loadtest/report.py) -->", "<!-- figures:end -->"
SERVICE = "this service"
EQUAL_FLOOR_PREFIX = "HTTP floor, "  # "HTTP floor, N processes, compiled forest"
SINGLE = "1 row x 32 clients"
PACED_PREFIX = "paced 1 row x"


def load(path: Path = BENCH_JSON) -> dict[str, Any]:
    return json.loads(path.read_text())


def measurements(data: dict[str, Any]) -> list[Measurement]:
    return [Measurement(**r) for r in data["results"]]


def finder(data: dict[str, Any]) -> Callable[[str, str], Measurement | None]:
    results = measurements(data)

    def find(server: str, load: str) -> Measurement | None:
        return next((r for r in results if r.server == server and r.load == load), None)

    return find


def _equal_floor(data: dict[str, Any]) -> str | None:
    names = {r["server"] for r in data["results"]}
    return next((n for n in sorted(names) if n.startswith(EQUAL_FLOOR_PREFIX)), None)


def headline(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, bar): the few numbers a reader needs, from the JSON."""
    find, rows = finder(data), []
    ceiling = data["in_process_rows_per_s"]
    ours = find(SERVICE, SINGLE)
    floor_name = _equal_floor(data)
    if ours:
        rows.append(
            ("single rows, 32 clients: req/s, p99", f"{ours.requests_per_s:,.0f}, "
             f"{ours.p99_ms:.1f} ms", "p99 ≤ 15 ms")
        )  # fmt: skip
        for other, bar in ((floor_name, "≥ 0.8 (like for like)"), ("MLServer", "> 1")):
            theirs = next(
                (
                    r
                    for r in measurements(data)
                    if other and r.server.startswith(other) and r.load == SINGLE
                ),
                None,
            )
            if theirs and theirs.requests_per_s:
                ratio = ours.requests_per_s / theirs.requests_per_s
                rows.append((f"single rows vs {theirs.server}", f"{ratio:.2f}×", bar))
    arrow = find(SERVICE, f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients, Arrow form")
    if arrow:
        rows.append(
            (f"{BATCH_ROWS}-row Arrow bodies: rows/s, vs the in-process ceiling",
             f"{arrow.rows_per_s:,.0f}, {arrow.rows_per_s / ceiling:.2f}×", "≥ 0.8")
        )  # fmt: skip
    alone = next((r for r in measurements(data) if r.load.endswith(", alone")), None)
    for form in ("records", "Arrow form"):
        mixed = next(
            (r for r in measurements(data) if r.load.endswith(f"while {form} bulk streams")),
            None,
        )
        if alone and mixed and alone.requests_per_s:
            rows.append(
                (f"paced single rows while {form} bulk streams: rate, p99",
                 f"{mixed.requests_per_s / alone.requests_per_s:.2f}×, {mixed.p99_ms:.1f} ms",
                 "≥ 0.9, ≤ 25 ms")
            )  # fmt: skip
    for load in (SINGLE, f"{BATCH_ROWS} rows x {BATCH_CLIENTS} clients, Arrow form"):
        alone, shadowed = find(SERVICE, load), find(WITH_CHALLENGER, load)
        if alone and shadowed and alone.rows_per_s:
            rows.append(
                (f"with a challenger in shadow, {load}: rows/s ratio, p99 difference",
                 f"{shadowed.rows_per_s / alone.rows_per_s:.2f}×, "
                 f"{shadowed.p99_ms - alone.p99_ms:+.1f} ms", "≥ 0.85, ≤ +5 ms")
            )  # fmt: skip
    return rows


def readme_table(data: dict[str, Any]) -> str:
    meta = data["meta"]
    lines = [
        f"{meta['model']}; {meta['machine']}; {meta['date']} (commit `{meta['commit']}`). "
        "Every figure, the method and the plots: [loadtest/reports/bench.md]"
        "(loadtest/reports/bench.md), [docs/performance.md](docs/performance.md).",
        "",
        "| figure | value | bar |",
        "|---|---:|---|",
        *(f"| {figure} | {value} | {bar} |" for figure, value, bar in headline(data)),
    ]
    return "\n".join(lines)


def with_readme_table(readme: str, table: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise ValueError(f"README.md has no {START} ... {END} block")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", readme)


def readme_block(readme: str) -> str:
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n")


def plots(data: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """The report's plots as PNGs in `out`: (file name, caption) each."""
    import matplotlib

    matplotlib.use("Agg")  # no screen: files only
    import matplotlib.pyplot as plt

    results, made = measurements(data), []

    def save(figure: Any, name: str, caption: str) -> None:
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        made.append((name, caption))

    singles = [r for r in results if re.fullmatch(r"1 row x \d+ clients", r.load)]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for server in dict.fromkeys(r.server for r in singles):
        points = sorted(
            (int(r.load.split()[3]), r.requests_per_s) for r in singles if r.server == server
        )
        axis.plot(*zip(*points, strict=True), marker="o", label=server)
    axis.set(xlabel="clients", ylabel="requests/s (1 row each)", yscale="log")
    axis.set_title("Single rows: throughput against clients")
    axis.legend(fontsize=7)
    save(figure, "throughput.png", "Single-row throughput against concurrent clients, per server")

    at32 = [r for r in singles if r.load == SINGLE]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    names = [r.server for r in at32]
    axis.barh(names, [r.p99_ms for r in at32], label="p99", color="tab:orange")
    axis.barh(names, [r.p50_ms for r in at32], label="p50", color="tab:blue")
    axis.set(xlabel="ms (log)", xscale="log")
    axis.set_title("Single rows at 32 clients: latency")
    axis.tick_params(axis="y", labelsize=7)
    axis.legend()
    save(figure, "latency.png", "p50 and p99 latency of single rows at 32 clients")

    paced = [r for r in results if r.server == SERVICE and r.load.startswith(PACED_PREFIX)]
    if data.get("timeline"):
        figure = timeline_figure(plt, data["timeline"])
        save(figure, "mixed.png", "Paced single-row latency over time, bulk traffic off, on, off")
    elif paced:  # a run from before the timeline was recorded: its medians, as bars
        figure, axis = plt.subplots(figsize=(8, 4))
        labels = [r.load.split("), ", 1)[1] for r in paced]
        axis.bar(labels, [r.p99_ms for r in paced], label="p99", color="tab:orange")
        axis.bar(labels, [r.p50_ms for r in paced], label="p50", color="tab:blue")
        axis.axhline(25, color="grey", linestyle="--", label="bar: p99 ≤ 25 ms")
        axis.set(ylabel="ms")
        axis.set_title("Paced single rows, alone and while bulk bodies stream")
        axis.tick_params(axis="x", labelsize=7)
        axis.legend()
        save(figure, "mixed.png", "Paced single-row latency with bulk traffic off and on")

    bulk = [
        r for r in results if r.load.startswith(f"{BATCH_ROWS} rows x") and "mixed" not in r.load
    ]
    bulk = [r for r in bulk if r.server.startswith((SERVICE, EQUAL_FLOOR_PREFIX))]
    if bulk:
        figure, axis = plt.subplots(figsize=(8, 4.5))
        labels = [
            f"{r.server}: {r.load.split('clients', 1)[1].strip(', ') or 'records'}" for r in bulk
        ]
        axis.barh(labels, [r.rows_per_s for r in bulk])
        ceiling = data["in_process_rows_per_s"]
        axis.axvline(ceiling, color="red", linestyle="--", label="in-process ceiling")
        axis.axvline(0.8 * ceiling, color="grey", linestyle=":", label="bar: 0.8 × ceiling")
        axis.set(xlabel="rows/s")
        axis.set_title(f"{BATCH_ROWS}-row bodies, {BATCH_CLIENTS} clients: rows/s by form")
        axis.tick_params(axis="y", labelsize=6)
        axis.legend(fontsize=7)
        save(figure, "bulk.png", "Bulk rows/s for each form against the in-process ceiling")
    return made


def timeline_figure(plt: Any, timelines: list[dict[str, Any]]) -> Any:
    """One panel per bulk form: each second's p50 and p99 of the paced singles, the bulk's
    window shaded, the bar's 25 ms dashed."""
    figure, axes = plt.subplots(
        len(timelines), 1, figsize=(8, 2.6 * len(timelines)), sharex=True, squeeze=False
    )
    for axis, run in zip(axes[:, 0], timelines, strict=True):
        seconds = [p["t_s"] for p in run["points"]]
        axis.plot(seconds, [p["p99_ms"] for p in run["points"]], color="tab:orange", label="p99")
        axis.plot(seconds, [p["p50_ms"] for p in run["points"]], color="tab:blue", label="p50")
        if len(run["bulk_s"]) == 2:
            axis.axvspan(*run["bulk_s"], color="grey", alpha=0.2, label=f"{run['form']} bulk on")
        axis.axhline(25, color="grey", linestyle="--", linewidth=0.8, label="bar: p99 ≤ 25 ms")
        axis.set(ylabel="ms", ylim=(0, None))
        axis.set_title(f"Paced single rows, each second; {run['form']} bulk in the middle")
        axis.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set(xlabel="seconds from the run's start")
    return figure


def report_markdown(data: dict[str, Any], made: list[tuple[str, str]]) -> str:
    from loadtest.memory import ServerMemory
    from loadtest.tables import Ceiling, render

    meta = data["meta"]
    ceilings = [Ceiling(**c) for c in data["in_process_rows_per_s_measured"]]
    memory = {
        name: ServerMemory(m["parent_mb"], tuple(m["workers_mb"]))
        for name, m in data["memory_mb"].items()
    }
    table = render(measurements(data), memory, ceilings, "", 0, meta["duration_s"], header=False)
    lines = [
        "# Benchmark report",
        "",
        f"Generated by `loadtest/report.py` from `bench.json`. Run: {meta['date']} to "
        f"{meta.get('finished', '?')}, commit `{meta['commit']}`, {meta['machine']}; "
        f"{meta['model']}; wrk -t1, {meta['duration_s']} s per measurement.",
        *([f"Source: {meta['source']}."] if meta.get("source") else []),
        "",
        *(f"![{caption}]({name})\n\n*{caption}.*\n" for name, caption in made),
        table,
        *([f"Overload: {data['overload']}", ""] if data.get("overload") else []),
    ]
    return "\n".join(lines)


def write_all(data: dict[str, Any], out: Path = REPORTS, readme: Path = README) -> None:
    out.mkdir(parents=True, exist_ok=True)
    made = plots(data, out)
    (out / "bench.md").write_text(report_markdown(data, made))
    readme.write_text(with_readme_table(readme.read_text(), readme_table(data)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=BENCH_JSON)
    args = parser.parse_args()
    write_all(load(args.json))
    print(f"report: {REPORTS / 'bench.md'}; README's figures table rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
