"""One loaded model's scoring, without HTTP: rows in model order (the contract's matrix) →
probabilities → decisions at the served threshold → each rejection's reasons. The service, the
portfolio job and the challenger all score through a `Scorer`, so the same rows get the same
answer, byte for byte, wherever they are scored.

What the caller watches (drift counts, metrics) it passes in as hooks: the core knows nothing
of Prometheus or of the request that carried the rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scoring.core.contract import FeatureSpec
from scoring.core.model import ServedModel
from scoring.core.reasons import Reason, ReasonPlan

# Scored rows and their probabilities (drift monitoring), and decided probabilities with their
# rejections (decision metrics): called on every batch, so they must be cheap.
ScoredHook = Callable[[np.ndarray, np.ndarray], None]


def _ignore(_: np.ndarray, __: np.ndarray) -> None:
    return None


@dataclass(frozen=True)
class Scorer:
    model: ServedModel
    spec: FeatureSpec
    threshold: float
    threads: int
    """LightGBM threads for a large batch; passed per call (a Booster loaded from file ignores
    constructor params)."""
    reason_plan: ReasonPlan
    reason_count: int
    on_scored: ScoredHook = field(default=_ignore)
    on_decided: ScoredHook = field(default=_ignore)

    @property
    def tag(self) -> str:
        return self.model.tag

    def probabilities(self, rows: np.ndarray, threads: int | None = None) -> np.ndarray:
        """The one place rows are scored: through the compiled forest when the import stored
        one, else the booster; every batch is also passed to `on_scored`."""
        probabilities = self.model.scorer.predict(rows, num_threads=threads or self.threads)
        self.on_scored(rows, probabilities)
        return probabilities

    def rejected(self, probabilities: np.ndarray) -> np.ndarray:
        """Which rows are rejected at the served threshold (a probability at it is rejected)."""
        rejected = probabilities >= self.threshold
        self.on_decided(probabilities, rejected)
        return rejected

    def answers(self, probabilities: np.ndarray) -> list[dict[str, Any]]:
        """Each row's answer: probability, decision, threshold and the model that decided."""
        rejected = self.rejected(probabilities)
        threshold, model = self.threshold, self.tag
        return [
            {
                "probability_of_default": p,
                "decision": "reject" if r else "approve",
                "threshold": threshold,
                "model": model,
            }
            for p, r in zip(probabilities.tolist(), rejected.tolist(), strict=True)
        ]

    def reasons(self, rows: np.ndarray) -> list[list[Reason]]:
        """Each row's main reasons, from TreeSHAP on the booster the compiled forest was built
        from and checked against (a pipeline's features summed onto their input column),
        through the model's reason-code table."""
        contributions = self.model.contributions(rows, self.threads)
        return self.reason_plan.explain(rows, contributions, self.spec, self.reason_count)

    def reasons_of_rejected(
        self, rows: np.ndarray, decisions: list[str]
    ) -> list[list[Reason] | None]:
        """Reasons for the rejected rows only (TreeSHAP costs far more than scoring); None for
        an approved row."""
        rejected = [i for i, d in enumerate(decisions) if d == "reject"]
        found: list[list[Reason] | None] = [None] * len(decisions)
        explained = self.reasons(rows[rejected]) if rejected else []
        for index, reasons in zip(rejected, explained, strict=True):
            found[index] = reasons
        return found

    def explanations(self, rows: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Per-feature TreeSHAP contributions (log-odds), the `top_k` largest by magnitude."""
        contributions = self.model.contributions(rows, self.threads)
        names = self.spec.names
        explanations = []
        for row, contrib in zip(rows, contributions, strict=True):
            raw_score = float(contrib.sum())
            top = np.argsort(-np.abs(contrib[:-1]), kind="stable")[:top_k]
            explanations.append(
                {
                    "probability_of_default": float(1 / (1 + np.exp(-raw_score))),
                    "raw_score": raw_score,
                    "base_value": float(contrib[-1]),
                    "top_contributions": [
                        {
                            "feature": names[i],
                            "value": self.spec.value_of(names[i], row[i]),
                            "contribution": float(contrib[i]),
                        }
                        for i in top
                    ],
                }
            )
        return explanations


def reasons_text(reasons: list[Reason] | None) -> str | None:
    """A rejected row's reasons as JSON text, as /predict_file's `reasons` column and the
    portfolio job give them (the /predict_with_reasons answer's list); null when approved."""
    return None if reasons is None else json.dumps([r.model_dump() for r in reasons])
