"""loadtest/ab_commits.py's order and summary (the servers it starts are the benchmark's own;
the script itself is run by hand, its figures in docs/performance.md)."""

from loadtest.ab_commits import order, pins, summary


def test_each_side_goes_first_as_often_as_the_other():
    sides = order(4)
    assert sides == ["old", "new", "new", "old", "old", "new", "new", "old"]
    firsts = [sides[i] for i in range(0, len(sides), 2)]
    assert firsts.count("old") == firsts.count("new")


def test_the_summary_is_the_median_of_each_side_and_their_ratio():
    run = lambda rate, p99: {"requests_per_s": rate, "p99_ms": p99}  # noqa: E731
    figures = summary(
        {
            "old": [run(1000, 30), run(3000, 50), run(2000, 40)],
            "new": [run(1500, 20), run(500, 90), run(900, 35)],
        }
    )
    assert figures["old_requests_per_s"] == 2000
    assert figures["new_requests_per_s"] == 900
    assert figures["old_p99_ms"] == 40
    assert figures["new_p99_ms"] == 35
    assert figures["new_vs_old"] == 0.45


def test_pins_read_the_lock_s_package_lines_only():
    lock = "\n".join(
        ["# header", "BentoML==1.4.2", "    # via -r env/requirements.in", "pyspark==4.3.0 \\"]
    )
    assert pins(lock) == {"bentoml": "1.4.2", "pyspark": "4.3.0"}
