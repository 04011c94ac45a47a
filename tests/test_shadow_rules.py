"""The shadow rules (env/k8s/prometheus-rule.yaml, credit-scoring-shadow.*) under promtool: on
series shaped like two workers' shadow counters they compute the flip rate, the PSI between
the champion's and the challenger's scores as our own psi() does, the dropped share (faults
only) and the coverage, and fire
the two shadow alerts."""

from __future__ import annotations

import yaml

from scoring.serving.shadow.metrics import DECISION_PAIRS
from scoring.stored_model.drift_reference import psi
from tests.prometheus_rules import binary, render, rule_groups, write_rule_file
from tests.test_prometheus_rules import run

MINUTES = 50
EVAL = "45m"
WORKERS = ("10.0.0.1:3000", "10.0.0.2:3000")
CHAMPION, CHALLENGER = "credit_scoring:a1", "credit_scoring_challenger:b2"
# rows per minute over both workers, by champion/challenger decision: 30 of 300 flip
PAIRS = dict(zip(DECISION_PAIRS, (200, 20, 10, 70), strict=True))
SCORES = {"champion": (120, 90, 60, 30), "challenger": (100, 80, 70, 50)}
DROPPED_PER_MINUTE = 50  # against 300 scored: a share of 50/350
# Past the lane's CPU share, rows are sampled, not lost to a fault: in the coverage only.
OVER_BUDGET_PER_MINUTE = 100


def counter(per_minute: int, worker: int) -> str:
    share = per_minute // 3 if worker == 0 else per_minute - per_minute // 3
    return f"0+{share}x{MINUTES}"


def input_series() -> list[dict[str, str]]:
    series = []
    for w, instance in enumerate(WORKERS):
        for pair, rows in PAIRS.items():
            labels = f'champion="{CHAMPION}",challenger="{CHALLENGER}",pair="{pair}"'
            series.append(
                {
                    "series": f'credit_shadow_decisions_total{{{labels},instance="{instance}"}}',
                    "values": counter(rows, w),
                }
            )
        for role, counts in SCORES.items():
            for label, rows in enumerate(counts):
                labels = f'role="{role}",bin="{label}",instance="{instance}"'
                series.append(
                    {
                        "series": f"credit_shadow_score_bin_total{{{labels}}}",
                        "values": counter(rows, w),
                    }
                )
        for reason, rows in (
            ("queue_full", DROPPED_PER_MINUTE),
            ("over_budget", OVER_BUDGET_PER_MINUTE),
        ):
            labels = f'challenger="{CHALLENGER}",reason="{reason}",instance="{instance}"'
            series.append(
                {
                    "series": f"credit_shadow_rows_dropped_total{{{labels}}}",
                    "values": counter(rows, w),
                }
            )
    return series


def alert(name: str, labels: dict[str, str], value: float) -> dict:
    rule = next(r for g in rule_groups() for r in g["rules"] if r.get("alert") == name)
    all_labels = {**labels, **rule["labels"]}
    return {
        "exp_labels": all_labels,
        "exp_annotations": {
            k: render(v, all_labels, value) for k, v in rule["annotations"].items()
        },
    }


def test_the_shadow_rules_compute_the_comparison_and_fire_its_alerts(tmp_path):
    promtool = binary("promtool")
    write_rule_file(tmp_path / "rules.yaml", rule_groups())
    scored = sum(PAIRS.values())
    flip = (PAIRS["approve/reject"] + PAIRS["reject/approve"]) / scored
    champion, challenger = ([c / sum(counts) for c in counts] for counts in SCORES.values())
    score_psi = psi(champion, challenger)
    offered = DROPPED_PER_MINUTE + OVER_BUDGET_PER_MINUTE + scored
    dropped, coverage = DROPPED_PER_MINUTE / offered, scored / offered
    models = {"champion": CHAMPION, "challenger": CHALLENGER}
    micro = 1_000_000
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series(),
                "promql_expr_test": [
                    {
                        "expr": f"round(credit:shadow_flip_rate:5m * {micro})",
                        "eval_time": EVAL,
                        "exp_samples": [
                            {
                                "labels": f'{{champion="{CHAMPION}",challenger="{CHALLENGER}"}}',
                                "value": round(flip * micro),
                            }
                        ],
                    },
                    {
                        "expr": f"round(credit:shadow_score_psi:5m * {micro})",
                        "eval_time": EVAL,
                        "exp_samples": [{"labels": "{}", "value": round(score_psi * micro)}],
                    },
                    {
                        "expr": f"round(credit:shadow_dropped_share:5m * {micro})",
                        "eval_time": EVAL,
                        "exp_samples": [{"labels": "{}", "value": round(dropped * micro)}],
                    },
                    {
                        "expr": f"round(credit:shadow_coverage:5m * {micro})",
                        "eval_time": EVAL,
                        "exp_samples": [{"labels": "{}", "value": round(coverage * micro)}],
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": EVAL,
                        "alertname": "CreditChallengerWouldFlipDecisions",
                        "exp_alerts": [alert("CreditChallengerWouldFlipDecisions", models, flip)],
                    },
                    {
                        "eval_time": EVAL,
                        "alertname": "CreditShadowRowsDropped",
                        "exp_alerts": [alert("CreditShadowRowsDropped", {}, dropped)],
                    },
                    # Before 30 minutes above the bar, the flip alert is only pending.
                    {
                        "eval_time": "20m",
                        "alertname": "CreditChallengerWouldFlipDecisions",
                        "exp_alerts": [],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert "SUCCESS" in run([promtool, "test", "rules", "tests.yaml"], tmp_path)
