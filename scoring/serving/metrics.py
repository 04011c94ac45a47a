"""Our Prometheus metrics, next to BentoML's own on /metrics: an approval-rate shift or a
drifting score distribution shows up without reading logs."""

from __future__ import annotations

from collections import Counter as TallyCounter

import numpy as np
from prometheus_client import Counter, Histogram

# prometheus_client directly (bentoml.metrics is deprecated); BentoML points every worker at a
# shared PROMETHEUS_MULTIPROC_DIR, so /metrics adds these up across workers.
PREDICTIONS = Counter(
    "credit_predictions", "Scored applications by decision", labelnames=["decision"]
)
PROBABILITY = Histogram(
    "credit_default_probability",
    "Predicted probability of default",
    buckets=tuple(round(x, 2) for x in np.arange(0.05, 1.0001, 0.05)),
)


def record(probabilities: np.ndarray, rejected: np.ndarray) -> None:
    n_rejected = int(rejected.sum())
    if n_rejected:
        PREDICTIONS.labels(decision="reject").inc(n_rejected)
    if len(rejected) - n_rejected:
        PREDICTIONS.labels(decision="approve").inc(len(rejected) - n_rejected)
    for probability in probabilities:
        PROBABILITY.observe(float(probability))


UNSEEN_CATEGORIES = Counter(
    "credit_unseen_categories",
    "Category values the model never saw in training, by feature: a new category is drift",
    labelnames=["feature"],
)


# This process's own tally, for GET /monitoring's window (a Prometheus counter in multiprocess
# mode is not meant to be read back).
UNSEEN_SEEN: TallyCounter[str] = TallyCounter()


def count_unseen_category(feature: str) -> None:
    UNSEEN_CATEGORIES.labels(feature=feature).inc()
    UNSEEN_SEEN[feature] += 1
