"""The drift recording rules and alerts (env/k8s/prometheus-rule.yaml) under promtool: they
parse (`promtool check rules`), and on series shaped like two workers' counters they compute
the PSI our own psi() computes and fire the alerts they should, and no others
(`promtool test rules`, the unit tests generated here from one scenario)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from scoring.stored_model.drift_reference import PSI_EPSILON, psi
from tests.prometheus_rules import binary, render, rule_groups, write_rule_file

MINUTES = 30
EVAL = f"{MINUTES}m"
WORKERS = ("10.0.0.1:3000", "10.0.0.2:3000")

# feature -> (bins, reference shares, live rows per minute over both workers)
FEATURES: dict[str, tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...]]] = {
    # moved, and missing 20% of the time against never: critical PSI and a missing-rate jump
    "AMT_INCOME_TOTAL": (("0", "1", "missing"), (0.5, 0.5, 0.0), (150, 90, 60)),
    # as in training: PSI 0, no alert
    "CODE_GENDER": (("F", "M", "missing"), (0.7, 0.3, 0.0), (210, 90, 0)),
    # a moderate shift: PSI ~0.15, a warning
    "EXT_SOURCE_2": (("0", "1", "missing"), (0.5, 0.5, 0.0), (207, 93, 0)),
}
SCORE = (("0", "1"), (0.5, 0.5), (270, 30))
ROWS_PER_MINUTE = 300
APPROVED_PER_MINUTE, REFERENCE_APPROVAL = 150, 0.8
UNSEEN_FROM_MINUTE = 10


def counter(per_minute_total: int, worker: int, start: int = 0) -> str:
    """A counter's values, one a minute: worker 0 counts a third, worker 1 the rest."""
    share = per_minute_total // 3 if worker == 0 else per_minute_total - per_minute_total // 3
    flat = f"0x{start} " if start else ""
    return f"{flat}0+{share}x{MINUTES - start}"


def input_series() -> list[dict[str, str]]:
    series = []
    for w, instance in enumerate(WORKERS):
        for feature, (bins, shares, live) in FEATURES.items():
            for label, share, rows in zip(bins, shares, live, strict=True):
                labels = f'feature="{feature}",bin="{label}",instance="{instance}"'
                series.append(
                    {"series": f"credit_feature_bin_total{{{labels}}}", "values": counter(rows, w)}
                )
                series.append(
                    {
                        "series": f"credit_reference_share{{{labels}}}",
                        "values": f"{share}x{MINUTES}",
                    }
                )
        for label, share, rows in zip(*SCORE, strict=True):
            labels = f'bin="{label}",instance="{instance}"'
            series.append(
                {"series": f"credit_score_bin_total{{{labels}}}", "values": counter(rows, w)}
            )
            series.append(
                {
                    "series": f"credit_reference_score_share{{{labels}}}",
                    "values": f"{share}x{MINUTES}",
                }
            )
        for decision, rows in (
            ("approve", APPROVED_PER_MINUTE),
            ("reject", ROWS_PER_MINUTE - APPROVED_PER_MINUTE),
        ):
            series.append(
                {
                    "series": "credit_predictions_total"
                    f'{{decision="{decision}",instance="{instance}"}}',
                    "values": counter(rows, w),
                }
            )
        series.append(
            {
                "series": f'credit_reference_approval_rate{{instance="{instance}"}}',
                "values": f"{REFERENCE_APPROVAL}x{MINUTES}",
            }
        )
        series.append(
            {
                "series": "credit_unseen_categories_total"
                f'{{feature="CODE_GENDER",instance="{instance}"}}',
                "values": counter(6, w, start=UNSEEN_FROM_MINUTE),
            }
        )
    return series


def expected_psi() -> dict[str, float]:
    return {name: psi(shares, live) for name, (_, shares, live) in FEATURES.items()}


def alert_rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def expected_alert(name: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    rule = alert_rules()[name]
    all_labels = {**labels, **rule.get("labels", {})}
    return {
        "exp_labels": all_labels,
        "exp_annotations": {
            key: render(text, all_labels, value)
            for key, text in rule.get("annotations", {}).items()
        },
    }


def unit_tests() -> dict[str, Any]:
    feature_psi = expected_psi()
    score_psi = psi(SCORE[1], SCORE[2])
    approval = APPROVED_PER_MINUTE / ROWS_PER_MINUTE
    missing_jump = 60 / ROWS_PER_MINUTE
    firing = {
        "CreditFeatureDriftCritical": [
            expected_alert(
                "CreditFeatureDriftCritical",
                {"feature": "AMT_INCOME_TOTAL"},
                feature_psi["AMT_INCOME_TOTAL"],
            )
        ],
        "CreditFeatureDriftWarning": [
            expected_alert(
                "CreditFeatureDriftWarning",
                {"feature": "EXT_SOURCE_2"},
                feature_psi["EXT_SOURCE_2"],
            )
        ],
        "CreditScoreDriftCritical": [expected_alert("CreditScoreDriftCritical", {}, score_psi)],
        "CreditScoreDriftWarning": [],
        "CreditApprovalRateOffReference": [
            expected_alert("CreditApprovalRateOffReference", {}, abs(approval - REFERENCE_APPROVAL))
        ],
        "CreditUnseenCategories": [
            # increase() over 5 minutes of a counter rising 6 a minute
            expected_alert("CreditUnseenCategories", {"feature": "CODE_GENDER"}, 30.0)
        ],
        "CreditMissingRateJump": [
            expected_alert(
                "CreditMissingRateJump",
                {"feature": "AMT_INCOME_TOTAL", "bin": "missing"},
                missing_jump,
            )
        ],
    }
    # No challenger in this scenario: its alerts stay silent (tests/test_shadow_rules.py).
    firing |= {"CreditChallengerWouldFlipDecisions": [], "CreditShadowRowsDropped": []}
    assert set(firing) == set(alert_rules()), "every shipped alert has an expectation here"
    micro = 1_000_000
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series(),
                "promql_expr_test": [
                    {
                        "expr": f"round(credit:feature_psi:5m * {micro})",
                        "eval_time": EVAL,
                        "exp_samples": [
                            {"labels": f'{{feature="{name}"}}', "value": round(value * micro)}
                            for name, value in feature_psi.items()
                        ],
                    },
                    {
                        "expr": f"round(credit:score_psi:5m * {micro})",
                        "eval_time": EVAL,
                        "exp_samples": [{"labels": "{}", "value": round(score_psi * micro)}],
                    },
                    {
                        "expr": "credit:approval_rate:5m",
                        "eval_time": EVAL,
                        "exp_samples": [{"labels": "credit:approval_rate:5m", "value": approval}],
                    },
                    {
                        "expr": "credit:scored_rows:increase5m",
                        "eval_time": EVAL,
                        "exp_samples": [
                            {
                                "labels": "credit:scored_rows:increase5m",
                                "value": 5 * ROWS_PER_MINUTE,
                            }
                        ],
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": EVAL, "alertname": name, "exp_alerts": alerts}
                    for name, alerts in firing.items()
                ]
                # Before 1,000 rows are in the window (minute 3), nothing fires however far
                # the shares are from the reference.
                + [{"eval_time": "3m", "alertname": name, "exp_alerts": []} for name in firing],
            }
        ],
    }


def run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_the_shipped_rules_pass_promtool_check(tmp_path):
    promtool = binary("promtool")
    rules = write_rule_file(tmp_path / "rules.yaml", rule_groups())
    assert "SUCCESS" in run([promtool, "check", "rules", str(rules)], tmp_path)


def test_the_rules_compute_our_psi_and_fire_exactly_the_expected_alerts(tmp_path):
    promtool = binary("promtool")
    write_rule_file(tmp_path / "rules.yaml", rule_groups())
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(unit_tests(), sort_keys=False))
    assert "SUCCESS" in run([promtool, "test", "rules", str(tests)], tmp_path)


def test_the_rules_use_the_same_psi_epsilon_as_the_service():
    exprs = " ".join(r["expr"] for g in rule_groups() for r in g["rules"])
    epsilons = {float(e) for e in re.findall(r"clamp_min\([^,]+,\s*([0-9.e-]+)\)", exprs)}
    assert epsilons == {PSI_EPSILON}
