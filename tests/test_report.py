"""The benchmark report is generated: the README's figures table is what loadtest/report.py
makes of the committed JSON, and the report carries every measurement and its plots."""

from __future__ import annotations

import copy

import matplotlib
import pytest

matplotlib.use("Agg")  # no screen: files only
import matplotlib.pyplot as plt

from loadtest import report


def test_the_readmes_figures_table_is_the_one_the_committed_json_gives():
    expected = report.readme_table(report.load())
    assert report.readme_block(report.README.read_text()) == expected, (
        "README.md's figures differ from loadtest/reports/bench.json: run python -m loadtest.report"
    )


def test_a_changed_figure_changes_the_table():
    data = report.load()
    changed = copy.deepcopy(data)
    ours = next(r for r in changed["results"] if (r["server"], r["load"]) == (
        report.SERVICE, report.SINGLE))  # fmt: skip
    ours["requests_per_s"] += 1000
    assert report.readme_table(changed) != report.readme_table(data)


def test_the_report_lists_every_measurement_and_embeds_its_plots(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{report.START}\nold\n{report.END}\nafter\n")
    data = report.load()
    report.write_all(data, out=tmp_path, readme=readme)
    page = (tmp_path / "bench.md").read_text()
    for name in ("throughput.png", "latency.png", "mixed.png", "bulk.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
        assert f"]({name})" in page
    for result in data["results"]:
        assert f"| {result['server']} | {result['load']} |" in page
    assert data["meta"]["commit"] in page
    text = readme.read_text()
    assert text.startswith("before\n")
    assert text.endswith("after\n")
    assert "old" not in text


def test_a_readme_without_the_figures_block_is_refused():
    with pytest.raises(ValueError, match="figures:start"):
        report.with_readme_table("no block here", "table")


def test_a_run_with_a_timeline_plots_latency_over_time_with_the_bulk_window(tmp_path):
    data = report.load()
    points = [
        {"t_s": t + 0.05, "p50_ms": 2.0, "p99_ms": 30.0 if 10 <= t < 20 else 5.0,
         "requests_per_s": 150.0, "errors": 0}
        for t in range(30)
    ]  # fmt: skip
    data["timeline"] = [{"form": "records", "bulk_s": [10.0, 20.1], "points": points}]
    figure = report.timeline_figure(plt, data["timeline"])
    axis = figure.axes[0]
    p99 = next(line for line in axis.get_lines() if line.get_label() == "p99")
    assert list(p99.get_ydata()) == [p["p99_ms"] for p in points]
    window = next(patch for patch in axis.patches if patch.get_label() == "records bulk on")
    assert window.get_x() == 10.0
    assert round(window.get_width(), 2) == 10.1
    made = report.plots(data, tmp_path)
    assert ("mixed.png", "Paced single-row latency over time, bulk traffic off, on, off") in made


def test_a_run_with_a_challenger_states_its_cost_against_the_service_alone():
    data = copy.deepcopy(report.load())
    data["results"] = [r for r in data["results"] if r["server"] != report.WITH_CHALLENGER]
    alone = next(
        r for r in data["results"]
        if r["server"] == report.SERVICE and r["load"] == report.SINGLE
    )  # fmt: skip
    data["results"].append(
        {**alone, "server": report.WITH_CHALLENGER, "requests_per_s": alone["requests_per_s"] * 0.9,
         "rows_per_s": alone["rows_per_s"] * 0.9, "p99_ms": alone["p99_ms"] + 2.0}
    )  # fmt: skip
    cost = [row for row in report.headline(data) if "challenger" in row[0]]
    assert cost == [
        (
            "with a challenger in shadow, 1 row x 32 clients: rows/s ratio, p99 difference",
            "0.90×, +2.0 ms",
            "≥ 0.85, ≤ +5 ms",
        )
    ]
