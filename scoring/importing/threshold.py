"""Where the decision threshold comes from, and refusal when its sources disagree.

Teams log it under several names (the source documents have `optimal_threshold` as a metric
of 0.338 in one run and a parameter of 0.48 in another); every name found is compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scoring.importing.errors import ThresholdProblem

THRESHOLD_KEYS = ("decision_threshold", "optimal_threshold", "threshold")
AGREEMENT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str


def _parse(source: str, raw: object) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ThresholdProblem(f"threshold {source} is {raw!r}, not a number") from None
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ThresholdProblem(f"threshold {source}={value} is outside (0, 1)")
    return value


def threshold_sources(
    version_tags: Mapping[str, str], params: Mapping[str, str], metrics: Mapping[str, float]
) -> list[Threshold]:
    """Every threshold recorded for the model, in precedence order: version tag, run param,
    run metric."""
    found = []
    for kind, values in (
        ("model-version tag", version_tags),
        ("run param", params),
        ("run metric", metrics),
    ):
        for key in THRESHOLD_KEYS:
            if key in values:
                source = f"{kind} {key}"
                found.append(Threshold(_parse(source, values[key]), source))
    return found


def choose_threshold(override: float | None, sources: list[Threshold]) -> Threshold:
    if override is not None:
        return Threshold(_parse("--threshold", override), "--threshold flag")
    if not sources:
        raise ThresholdProblem(
            "no decision threshold recorded (looked for "
            f"{', '.join(THRESHOLD_KEYS)} in version tags, run params and metrics); "
            "pass --threshold"
        )
    first = sources[0]
    disagreeing = [s for s in sources if abs(s.value - first.value) > AGREEMENT_TOLERANCE]
    if disagreeing:
        listed = ", ".join(f"{s.source}={s.value:g}" for s in sources)
        raise ThresholdProblem(
            f"threshold sources disagree ({listed}); pass --threshold to settle it"
        )
    return first
