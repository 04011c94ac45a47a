"""Our Prometheus metrics, next to BentoML's own on /metrics: an approval-rate shift or a
drifting score distribution shows up without reading logs."""

from __future__ import annotations

from collections import Counter as TallyCounter
from importlib.metadata import version

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
    observe_all(PROBABILITY, probabilities)


# Histogram.observe takes one value: a 500-row request paid 500 calls (~6% of its scoring
# time). observe_all adds each bucket's count once, through the histogram's own value objects
# (private: `_upper_bounds`, `_buckets`, `_sum`), on the versions it was checked against;
# tests/test_metrics.py fails if they stop matching observe() one by one.
BULK_OBSERVE_VERSIONS = ("0.2",)
BULK_OBSERVE = version("prometheus-client").startswith(BULK_OBSERVE_VERSIONS) and all(
    hasattr(PROBABILITY, name) for name in ("_upper_bounds", "_buckets", "_sum")
)


def observe_all(histogram: Histogram, values: np.ndarray) -> None:
    """`histogram.observe(v)` for each value, with one increment per bucket."""
    if not BULK_OBSERVE:
        for value in values.tolist():
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose upper bound is >= it (le semantics).
    bucket = np.searchsorted(np.asarray(histogram._upper_bounds), values, side="left")
    counts = np.bincount(bucket, minlength=len(histogram._upper_bounds))
    histogram._sum.inc(float(np.sum(values)))
    for index in np.flatnonzero(counts).tolist():
        histogram._buckets[index].inc(int(counts[index]))


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
