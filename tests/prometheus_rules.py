"""The drift rules as the tests use them: read from the shipped manifest's `spec` (one source),
written as a Prometheus rule file, and the promtool and prometheus binaries Debian ships."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.processes import ROOT

MANIFEST = ROOT / "env" / "k8s" / "prometheus-rule.yaml"
WINDOW = "5m"  # the window every range selector in the shipped rules uses


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(
            f"{name} is not installed: Debian's `prometheus` package ships it (env/test.sh "
            "installs it when run as root)"
        )
    return found


def rule_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(MANIFEST.read_text())["spec"]["groups"]


def write_rule_file(path: Path, groups: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def shortened(window: str, interval: str, for_: str) -> list[dict[str, Any]]:
    """The shipped rules with a shorter window, evaluation interval and `for:`, so a test can
    see an alert fire in seconds. Only these three change; every expression is the shipped one
    (the recorded series keep their `5m` names)."""
    groups = rule_groups()
    for group in groups:
        group["interval"] = interval
        for rule in group["rules"]:
            expr = rule["expr"]
            assert f"[{WINDOW}]" in expr or "[" not in expr, rule
            rule["expr"] = expr.replace(f"[{WINDOW}]", f"[{window}]")
            if "for" in rule:
                rule["for"] = for_
    return groups


def render(template: str, labels: dict[str, str], value: float) -> str:
    """The two template forms the shipped annotations use, rendered as Prometheus does."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    return re.sub(r'\{\{ \$value \| printf "%\.2f" \}\}', f"{value:.2f}", text)
