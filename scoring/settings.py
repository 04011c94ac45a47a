"""Service settings: environment variables with the SCORING_ prefix, read once, validated at
start-up so a bad value stops the service instead of mis-scoring."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "SCORING_"


def available_cpus() -> int:
    """CPUs this process may use: the cgroup quota (a Kubernetes CPU limit) or the affinity."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.floor(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0))


def _parse(name: str, kind: str, raw: str) -> object:
    try:
        if kind == "bool":
            if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes")
        if "float" in kind:
            return float(raw)
        if "int" in kind:
            return int(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


@dataclass(frozen=True)
class Settings:
    model_tag: str = "credit_scoring:latest"
    """Bento model to serve (the bentofile's model by default); rollback = an older tag."""
    threshold: float | None = None
    """Decision threshold override, in (0, 1); unset = the model's `threshold` label."""
    lgbm_threads: int = 0
    """LightGBM threads per worker; 0 = available CPUs / workers."""
    workers: int = 0
    """HTTP worker processes; 0 = one per available CPU."""
    max_rows_per_request: int = 5000
    """Largest batch of applications one request may carry (422 above it)."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body (413 above it)."""
    max_batch_size: int = 2048
    """Adaptive batching: most rows merged into one model call."""
    max_latency_ms: int = 200
    """Adaptive batching: latency bound; requests that cannot meet it are shed with 503."""
    trace_scoring: bool = False
    """true = OpenTelemetry spans for /predict and /predict_compact too (costly; see README)."""
    access_log: bool = False
    """true = one log line per request (BentoML's access log); off by default for speed."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(field.name, field.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.threshold is not None and not (
            math.isfinite(self.threshold) and 0 < self.threshold < 1
        ):
            raise ValueError(f"{PREFIX}THRESHOLD={self.threshold} is outside (0, 1)")
        for name in (
            "max_rows_per_request",
            "max_body_bytes",
            "max_batch_size",
            "max_latency_ms",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{PREFIX}{name.upper()} must be at least 1")
        for name in ("workers", "lgbm_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{PREFIX}{name.upper()} must be 0 (auto) or more")

    def worker_count(self) -> int:
        return self.workers or available_cpus()

    def booster_threads(self) -> int:
        return self.lgbm_threads or max(1, available_cpus() // self.worker_count())
