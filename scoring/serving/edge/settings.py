"""Service settings: environment variables with the SCORING_ prefix, read once into one typed
object and validated at start-up, so a bad value stops the service instead of mis-scoring."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from scoring.serving.forms.limits import DEFAULT_MAX_BODY_BYTES

PREFIX = "SCORING_"
# A file upload may carry this many times a JSON request's rows and bytes: files are for bulk.
FILE_SIZE_FACTOR = 20


class SettingsError(ValueError):
    """A SCORING_* variable the service cannot start with; the message names it."""


def available_cpus() -> int:
    """CPUs this process may use: the cgroup quota (a Kubernetes CPU limit) or the affinity."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.floor(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, frozen=True, allow_inf_nan=False
    )

    model_tag: str = Field("credit_scoring:latest", min_length=1)
    """Bento model to serve (the bentofile's model by default); rollback = an older tag."""
    challenger: str | None = Field(None, min_length=1)
    """A second Bento model (its tag), scored in shadow on the same rows after the champion has
    answered, and compared in the metrics; it never decides. Unset = no challenger."""
    shadow_max_pending_rows: int = Field(20_000, ge=1)
    """Rows waiting for the challenger, per worker; past it, offered rows are counted as
    dropped instead of queued (the champion's answer never waits)."""
    shadow_cpu_share: float = Field(0.1, gt=0, le=1)
    """CPU the challenger may take, per worker, as a share of one core (0.1 = 10%); past it,
    the lane scores a uniform sample of the rows and counts the rest as dropped `over_budget`
    (docs/challenger.md). At low traffic every row is scored."""
    threshold: float | None = Field(None, gt=0, lt=1)
    """Decision threshold override, in (0, 1); unset = the model's `threshold` label."""
    lgbm_threads: int = Field(0, ge=0)
    """LightGBM threads per worker; 0 = available CPUs / workers."""
    workers: int = Field(0, ge=0)
    """HTTP worker processes; 0 = one per available CPU."""
    max_rows_per_request: int = Field(5000, ge=1)
    """Largest batch of applications one JSON request may carry (400 above it)."""
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1)
    """Largest JSON request body (413 above it)."""
    max_batch_size: int = Field(2048, ge=1)
    """Adaptive batching: most rows merged into one model call."""
    max_latency_ms: int = Field(200, ge=1)
    """Adaptive batching: latency bound; requests that cannot meet it are shed with 503."""
    bulk_rows: int = Field(64, ge=2)
    """A request with at least this many rows is a batch already: it skips the batching queue
    and is scored in the bulk lane (one low-priority thread per worker), so single applications
    never wait behind it."""
    bulk_body_bytes: int = Field(64 * 1024, ge=1)
    """A JSON body at least this large is validated in the bulk lane, off the event loop."""
    gil_switch_ms: float = Field(0.2, gt=0, le=100)
    """How long one Python thread may hold the GIL while another waits (Python's default is
    5 ms). Bulk bodies are validated in a thread; a shorter interval lets the event loop in
    sooner to answer single applications meanwhile (measured: paced singles under compact bulk
    at p50 3.6 ms with 0.2, 5.1 ms with 1; 0.1 gained nothing more)."""
    request_timeout_s: int = Field(30, ge=1)
    """Longest a request may run before a 504; the Kubernetes grace period must cover it."""
    unseen_category: Literal["reject", "missing"] = "reject"
    """A category the model never saw: `reject` = 400 naming the field and the value; `missing`
    = scored as a missing value, exactly as LightGBM does. Counted in the metrics either way."""
    trace_scoring: bool = False
    """true = OpenTelemetry spans for the scoring routes too (costly; see README)."""
    access_log: bool = False
    """true = one log line per request (BentoML's access log); off by default for speed."""
    reasons_max_latency_ms: int = Field(2000, ge=1)
    """Adaptive batching latency bound of the *_with_reasons routes: their TreeSHAP costs
    tens of times the scoring, so /predict's bound would shed them with 503 under load."""
    reason_count: int = Field(4, ge=1)
    """Reasons given per rejected application (the *_with_reasons routes, file scoring with
    `reasons`); at most the model's number of distinct reportable codes."""
    drift_monitoring: bool = True
    """false = count nothing for drift even when the model carries a reference sample."""
    monitoring_window_s: int = Field(300, ge=10)
    """GET /monitoring: the window, in seconds, of this process's drift figures (PSI, rates)."""
    log_format: Literal["text", "json"] = "text"
    """`json` = every log line one JSON object (time, level, logger, message, and a refusal's
    route, status, error type, field, request id and duration as fields), for log shippers."""
    api_tokens_file: Path | None = None
    """File of the bearer tokens callers must present (one a line; blank lines and `#`
    comments ignored), e.g. a mounted Kubernetes Secret. Re-read when it changes, so during a
    rotation the old and the new token are both valid. Unset = no authentication (one warning
    at start). Set, it must exist and hold a token at start; if it later empties or vanishes,
    every protected request is refused (401), never let through."""
    protect_metrics: bool = False
    """true = GET /metrics needs a token too. Off by default: Prometheus scrapes without one
    in most setups, the NetworkPolicy admits only the monitoring namespace to the port, and
    the metrics hold counts and histograms, never an applicant's values."""
    discard_body_factor: int = Field(4, ge=0, le=64)
    """A body refused as too large (413) is still read and thrown away up to this many times
    the route's limit before the answer, so clients that send the whole body before reading
    (Python's urllib, httpx) receive the 413 instead of a connection reset. Beyond that the
    connection is closed after the answer; 0 = never read a refused body."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from `environ` (default: the process environment). A bad value is a
        SettingsError naming the variable."""
        try:
            if environ is None:
                return cls()
            values = {
                key.removeprefix(PREFIX).lower(): value
                for key, value in environ.items()
                if key.startswith(PREFIX) and value != ""
            }
            # As from the process environment: variables the service does not read are ignored.
            values = {key: value for key, value in values.items() if key in cls.model_fields}
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}"
                for e in error.errors()
            )
            raise SettingsError(problems) from None

    @property
    def max_file_rows(self) -> int:
        return self.max_rows_per_request * FILE_SIZE_FACTOR

    @property
    def max_file_bytes(self) -> int:
        return self.max_body_bytes * FILE_SIZE_FACTOR

    def worker_count(self) -> int:
        return self.workers or available_cpus()

    def booster_threads(self) -> int:
        return self.lgbm_threads or max(1, available_cpus() // self.worker_count())
