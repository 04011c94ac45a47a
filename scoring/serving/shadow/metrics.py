"""What the shadow run publishes, beside the champion's own metrics: the decision pairs, both
models' scores binned alike (so the recording rules compute the PSI between them over the same
windows as drift), the challenger's latency, and the rows it did not score.

Labels carry model tags and decisions only, never a value from a request."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DECISION_PAIRS = ("approve/approve", "approve/reject", "reject/approve", "reject/reject")
"""champion's decision / challenger's decision."""

SHADOW_DECISIONS = Counter(
    "credit_shadow_decisions",
    "Shadow-scored rows by the champion's and the challenger's decisions (champion/challenger)",
    labelnames=["champion", "challenger", "pair"],
)
SHADOW_SCORE_BINS = Counter(
    "credit_shadow_score_bin",
    "Shadow-scored rows by score bin, for each model (role champion or challenger)",
    labelnames=["role", "bin"],
)
SHADOW_LATENCY = Histogram(
    "credit_shadow_latency_seconds",
    "Time the challenger took to score one shadow batch",
    labelnames=["challenger"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SHADOW_DROPPED = Counter(
    "credit_shadow_rows_dropped",
    "Rows the challenger did not score: its queue was full, or it failed",
    labelnames=["challenger", "reason"],
)
