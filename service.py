"""BentoML service for the production credit-scoring model imported by import_model.py.

POST /predict          applications as feature records, adaptive batching
POST /predict_compact  the same, as {"columns": [...], "data": [[...], ...]}
POST /predict_arrow    the same, for bulk clients: an Arrow IPC stream of applications
POST /predict_file     a CSV or Parquet file of applications, returned scored
POST /predict_with_reasons, /predict_compact_with_reasons
                       the same, and for each rejection its reasons (reason-code table)
POST /explain          per-feature TreeSHAP contributions, top-k by magnitude
GET  /version          which run, threshold and build is serving
GET  /monitoring       this worker's drift view: PSI per feature and score, approval rate
GET  /livez /readyz /metrics   BentoML's probes and Prometheus metrics
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Literal

import bentoml
import lightgbm as lgb
import numpy as np
import orjson
from bentoml.validators import ContentType
from pydantic import AfterValidator, BaseModel, Field, StrictBool, StrictInt

from scoring.bentoml_patches.json_body import WrittenKeys
from scoring.core.contract import encoders, records_to_matrix
from scoring.core.model import ServedModel
from scoring.core.reasons import Reason, load_plan
from scoring.serving.batching.bulk_lane import in_bulk_lane
from scoring.serving.edge.arrow_route import ArrowForm, ArrowRoute
from scoring.serving.edge.front_door import install_front_door
from scoring.serving.edge.image import IMAGE
from scoring.serving.edge.request_guard import install_request_guard
from scoring.serving.edge.startup import prepare_service
from scoring.serving.edge.version import VERSION, version_app
from scoring.serving.forms.files import UploadedApplications, read_applications_file
from scoring.serving.forms.records import (
    CompactTable,
    NumericCompactTable,
    compact_to_matrix,
    row_limit,
)
from scoring.serving.monitoring.drift import install as install_monitor
from scoring.serving.monitoring.drift import monitor_for
from scoring.serving.monitoring.drift import version_entry as monitoring_version
from scoring.serving.monitoring.metrics import count_unseen_category, record

log = logging.getLogger("bentoml.credit_scoring")

# BentoML's patches, the settings and the request schema, before the service class is built.
SETUP = prepare_service()
SETTINGS, SPEC, EXAMPLE, Application = SETUP.settings, SETUP.spec, SETUP.example, SETUP.application
# Declared, or BentoML derives each response's media type by generating the output model's JSON
# schema on every request (about a tenth of a single-row request's CPU).
JSON_RESPONSE = ContentType("application/json")
# Both scoring forms share BentoML's adaptive batching, with the same bounds.
batched_api = functools.partial(
    bentoml.api,
    batchable=True,
    max_batch_size=SETTINGS.max_batch_size,
    max_latency_ms=SETTINGS.max_latency_ms,
)
# The reasons routes batch too, under a latency bound that fits TreeSHAP's cost.
reasons_api = functools.partial(batched_api, max_latency_ms=SETTINGS.reasons_max_latency_ms)
# Batches below this are scored on the event loop, larger ones in a thread; a request this big
# skips the batching queue (scoring/bentoml_patches/bulk_bypass.py).
INLINE_ROWS = SETTINGS.bulk_rows

Applications = Annotated[
    list[Application],
    row_limit(SETTINGS.max_rows_per_request),
    AfterValidator(records_to_matrix),
    # Every feature is required and no other key allowed: a row held one key per feature.
    WrittenKeys(np.size),
    Field(description="loan applications, one record of feature name → value each"),
]


ENCODERS = encoders(SPEC, SETTINGS.unseen_category, on_unseen=count_unseen_category)
# The binary bulk form: served by its own ASGI middleware (BentoML would read its body as JSON),
# answered in the bulk lane through the service's own scoring once the model is loaded.
ARROW = ArrowForm(
    SPEC,
    SETTINGS.max_rows_per_request,
    SETTINGS.max_body_bytes,
    SETTINGS.unseen_category,
    count_unseen_category,
)


def _compact_matrix(table: CompactTable) -> np.ndarray:
    return compact_to_matrix(table, SPEC, SETTINGS.max_rows_per_request, ENCODERS)


CompactApplications = Annotated[
    # An all-numeric model's rows are parsed as numbers straight away (the fast path).
    NumericCompactTable if SPEC.numeric_only else CompactTable,
    AfterValidator(_compact_matrix),
    WrittenKeys(lambda _: 2),  # "columns" and "data", both required, nothing else allowed
    Field(examples=[{"columns": list(EXAMPLE), "data": [list(EXAMPLE.values())]}]),
]


def _read_applications_file(path: Path) -> UploadedApplications:
    return read_applications_file(
        path,
        SPEC,
        SETTINGS.max_file_rows,
        SETTINGS.max_file_bytes,
        SETTINGS.unseen_category,
        count_unseen_category,
    )


# Validated at the boundary like JSON bodies, so a bad file is a 400 naming `file`; the API
# function then receives the parsed upload, not the path.
ApplicationsFile = Annotated[
    Path,
    AfterValidator(_read_applications_file),
    Field(description="CSV or Parquet (.parquet) file, one application per row"),
]


class Prediction(BaseModel):
    probability_of_default: float = Field(..., ge=0, le=1)
    decision: Literal["approve", "reject"]
    threshold: float
    model: str = Field(..., description="Bento model tag that scored this application")


class PredictionWithReasons(Prediction):
    reasons: list[Reason] | None = Field(
        ..., description="why it was rejected, main reason first; null when approved"
    )
    reason_source: str | None = Field(
        ..., description="the reason-code table (source, hash) or the feature-name fallback"
    )


class Contribution(BaseModel):
    feature: str
    value: float | str | bool | None = Field(
        ...,
        description="the feature's input value: a number, a category or a boolean (null = missing)",
    )
    contribution: float = Field(..., description="log-odds contribution (TreeSHAP)")


class Explanation(BaseModel):
    probability_of_default: float
    raw_score: float = Field(..., description="log-odds: base_value + all contributions")
    base_value: float
    top_contributions: list[Contribution]


@bentoml.asgi_app(version_app, path="/")
@bentoml.service(
    name="credit_scoring",
    image=IMAGE,
    workers=SETUP.workers,
    traffic={"timeout": SETTINGS.request_timeout_s},
    # Per-request log lines cost more than scoring a row; /metrics counts every request.
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML creates an OpenTelemetry span per request even when none is sampled (the default
    # sample rate is 0); on the scoring routes that was a third of the framework's cost.
    tracing={} if SETTINGS.trace_scoring else {"excluded_urls": ["/predict", "/predict_compact"]},
)
class CreditScoring:
    bento_model = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        self.model = ServedModel.load(self.bento_model, SPEC, Application, EXAMPLE)
        self.model_tag, self.provenance = self.model.tag, self.model.provenance
        if SETTINGS.threshold is not None:
            self.threshold, self.threshold_origin = SETTINGS.threshold, "override SCORING_THRESHOLD"
        else:
            self.threshold, self.threshold_origin = self.provenance.threshold, "model label"
        # Passed per call: a Booster loaded from file ignores constructor params.
        self.threads = threads = SETTINGS.booster_threads()
        # Scoring goes through the compiled forest when the import stored one, else through the
        # booster; /explain always uses the booster.
        self.booster, self.scorer = self.model.booster, self.model.scorer
        # Its file's checksum was verified with the model's.
        self.reason_plan = load_plan(Path(self.bento_model.path), self.model.metadata, SPEC.names)
        # Drift against the reference stored with the model: the request path only appends.
        self.monitor = monitor_for(
            self.bento_model,
            SPEC.names,
            self.threshold,
            SETTINGS.monitoring_window_s,
            enabled=SETTINGS.drift_monitoring,
        )
        install_monitor(self.monitor)
        ARROW.attach(self._answer_json)
        # Move start-up objects (model, schema, libraries) out of the collector's reach: full
        # collections then scan only request garbage, which cut p99 spikes under load.
        gc.collect()
        gc.freeze()
        VERSION.update(self._version(threads))
        log.info(
            "serving %s run_id=%s threshold=%s (%s, source %s) lightgbm_threads=%d",
            self.model_tag,
            self.provenance.run_id,
            self.threshold,
            self.threshold_origin,
            self.provenance.threshold_source,
            threads,
        )

    def _version(self, threads: int) -> dict:
        from scoring.serving.edge.build_info import build_info

        metadata = self.bento_model.info.metadata
        return {
            "service": build_info(),
            "bento": _bento_tag(),
            "model_tag": self.model_tag,
            "run_id": self.provenance.run_id,
            "registered_model": self.provenance.registered_model,
            "model_version": self.provenance.model_version,
            "model_alias": self.provenance.model_alias,
            "experiment": self.provenance.experiment,
            "stage": self.provenance.stage,
            "threshold": self.threshold,
            "threshold_origin": self.threshold_origin,
            "threshold_source_in_mlflow": self.provenance.threshold_source,
            "mlflow_model_uri": metadata.get("mlflow_model_uri"),
            "tracking_uri": metadata.get("tracking_uri"),  # redacted at import
            "metrics": metadata.get("metrics", {}),
            "library_versions": {
                **metadata.get("library_versions", {}),
                "lightgbm_serving": lgb.__version__,
                "bentoml_serving": bentoml.__version__,
            },
            "lightgbm_threads": threads,
            "predictor": self.model.predictor,
            "features": len(SPEC.names),
            "reason_codes": self.reason_plan.describe(SETTINGS.reason_count),
            "drift_monitoring": monitoring_version(self.monitor),
            # Which process answered: with several workers, each serves its own connections.
            "worker": {
                "index": bentoml.server_context.worker_index,
                "pid": os.getpid(),
                "of": SETUP.workers,
            },
        }

    def __is_ready__(self) -> bool:
        return True  # __init__ has loaded the model and passed its self-test

    def _scored(self, rows: np.ndarray, threads: int) -> np.ndarray:
        """The one place rows are scored: every route's rows are also counted for drift."""
        probabilities = self.scorer.predict(rows, num_threads=threads)
        self.monitor.observe(rows, probabilities)
        return probabilities

    async def _probabilities(self, rows: np.ndarray) -> np.ndarray:
        # The batch APIs are async on purpose: a small batch is scored right on the event
        # loop, with no hand-off to a thread that would then wait for the GIL while the loop
        # parses requests. A large batch goes to a thread (LightGBM releases the GIL), so the
        # loop keeps reading the next requests meanwhile.
        if len(rows) < INLINE_ROWS:
            # One thread: for a few rows, waking OpenMP threads costs more than it saves.
            return self._scored(rows, 1)
        return await asyncio.to_thread(self._scored, rows, self.threads)

    async def _score(self, rows: np.ndarray) -> list[Prediction]:
        if len(rows) >= SETTINGS.bulk_rows:
            # A bulk request (it skipped the batching queue): scored and decided in the bulk
            # lane, one at a time per worker, at low priority (scoring/serving/batching/bulk_lane.py).
            return await in_bulk_lane(self._score_now, rows)
        return self._decide(await self._probabilities(rows))

    def _score_now(self, rows: np.ndarray) -> list[Prediction]:
        return self._decide(self._scored(rows, self.threads))

    def _decisions(self, probabilities: np.ndarray) -> np.ndarray:
        """Which rows are rejected at the served threshold; counted in the metrics."""
        rejected = probabilities >= self.threshold
        record(probabilities, rejected)
        return rejected

    def _answers(self, probabilities: np.ndarray) -> list[dict]:
        """Each row's answer, the fields of Prediction, decided and counted in the metrics."""
        rejected = self._decisions(probabilities)
        threshold, model = self.threshold, self.model_tag
        return [
            {
                "probability_of_default": p,
                "decision": "reject" if r else "approve",
                "threshold": threshold,
                "model": model,
            }
            for p, r in zip(probabilities.tolist(), rejected.tolist(), strict=True)
        ]

    def _decide(self, probabilities: np.ndarray) -> list[Prediction]:
        # Built from values that hold by construction (a probability, one of two decisions):
        # validating 500 answers again cost more than scoring them.
        return [Prediction.model_construct(**a) for a in self._answers(probabilities)]

    def _answer_json(self, rows: np.ndarray) -> bytes:
        """Score and decide `rows` into the JSON /predict answers, without building a model per
        row (the Arrow route's answer, made in the bulk lane)."""
        return orjson.dumps(self._answers(self._scored(rows, self.threads)))

    @batched_api(route="/predict")
    async def predict(
        self, applications: Applications
    ) -> Annotated[list[Prediction], JSON_RESPONSE]:
        """Score applications: probability of default and approve/reject at the threshold."""
        return await self._score(applications)

    @batched_api(route="/predict_compact")
    async def predict_compact(
        self, table: CompactApplications
    ) -> Annotated[list[Prediction], JSON_RESPONSE]:
        """The same scoring, for heavy clients: column names once, then rows of values."""
        return await self._score(table)

    def _reasons(self, rows: np.ndarray) -> list[list[Reason]]:
        """TreeSHAP from the booster the compiled forest was built from and checked against."""
        contributions = self.booster.predict(rows, pred_contrib=True, num_threads=self.threads)
        return self.reason_plan.explain(rows, contributions, SPEC, SETTINGS.reason_count)

    async def _decide_with_reasons(self, rows: np.ndarray) -> list[PredictionWithReasons]:
        predictions = await self._score(rows)
        rejected = [i for i, p in enumerate(predictions) if p.decision == "reject"]
        # TreeSHAP costs far more than scoring: in a thread (LightGBM releases the GIL), so the
        # event loop keeps serving, and only for the rejected rows; a bulk request's in the
        # bulk lane, behind the worker's other bulk work.
        off_the_loop = in_bulk_lane if len(rows) >= SETTINGS.bulk_rows else asyncio.to_thread
        explained = await off_the_loop(self._reasons, rows[rejected]) if rejected else []
        reasons: list[list[Reason] | None] = [None] * len(predictions)
        for index, found in zip(rejected, explained, strict=True):
            reasons[index] = found
        source = self.reason_plan.answer_source
        return [
            PredictionWithReasons(
                **p.__dict__, reasons=r, reason_source=None if r is None else source
            )
            for p, r in zip(predictions, reasons, strict=True)
        ]

    @reasons_api(route="/predict_with_reasons")
    async def predict_with_reasons(
        self, applications: Applications
    ) -> Annotated[list[PredictionWithReasons], JSON_RESPONSE]:
        """Score applications as /predict does; each rejection also says why: its main reasons
        from the model's reason-code table (TreeSHAP contributions, protected features never)."""
        return await self._decide_with_reasons(applications)

    @reasons_api(route="/predict_compact_with_reasons")
    async def predict_compact_with_reasons(
        self, table: CompactApplications
    ) -> Annotated[list[PredictionWithReasons], JSON_RESPONSE]:
        """The compact form of /predict_with_reasons."""
        return await self._decide_with_reasons(table)

    @bentoml.api(route="/explain")
    def explain(
        self, applications: Applications, top_k: Annotated[StrictInt, Field(ge=1, le=200)] = 5
    ) -> Annotated[list[Explanation], JSON_RESPONSE]:
        """Per-feature contributions from LightGBM's TreeSHAP (pred_contrib=True)."""
        contributions = self.booster.predict(
            applications, pred_contrib=True, num_threads=self.threads
        )
        explanations = []
        for row, contrib in zip(applications, contributions, strict=True):
            raw_score = float(contrib.sum())
            top = np.argsort(-np.abs(contrib[:-1]), kind="stable")[:top_k]
            explanations.append(
                Explanation(
                    probability_of_default=float(1 / (1 + np.exp(-raw_score))),
                    raw_score=raw_score,
                    base_value=float(contrib[-1]),
                    top_contributions=[
                        Contribution(
                            feature=SPEC.names[i],
                            value=SPEC.value_of(SPEC.names[i], row[i]),
                            contribution=float(contrib[i]),
                        )
                        for i in top
                    ],
                )
            )
        return explanations

    @bentoml.api(route="/predict_file")
    def predict_file(
        self,
        file: ApplicationsFile,
        ctx: bentoml.Context,
        reasons: Annotated[
            StrictBool, Field(description="true: a `reasons` column, JSON per rejected row")
        ] = False,
    ) -> Path:
        """Score a CSV or Parquet file of applications; the same format comes back with
        `probability_of_default` and `decision` columns added (and `reasons` if asked)."""
        probabilities = self._scored(file.matrix, self.threads)
        frame = file.frame.assign(
            probability_of_default=probabilities,
            decision=[d.decision for d in self._decide(probabilities)],
        )
        if reasons:
            decisions = frame["decision"].tolist()
            frame = frame.assign(reasons=self._reason_column(file.matrix, decisions))
        # BentoML's per-request folder: emptied once the response has been sent.
        out = Path(ctx.temp_dir) / f"scored{file.suffix}"
        if file.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False)
        return out

    def _reason_column(self, matrix: np.ndarray, decisions: list[str]) -> list[str | None]:
        """Each rejected row's reasons as JSON text, as /predict_with_reasons gives them;
        empty (null) for approved rows."""
        rejected = [i for i, d in enumerate(decisions) if d == "reject"]
        column: list[str | None] = [None] * len(decisions)
        explained = self._reasons(matrix[rejected]) if rejected else []
        for index, found in zip(rejected, explained, strict=True):
            column[index] = json.dumps([reason.model_dump() for reason in found])
        return column


def _bento_tag() -> str:
    """The Bento being served, or "" when serving from source (BentoML says "not available")."""
    context = bentoml.server_context
    if not context.bento_version or context.bento_version == "not available":
        return ""
    return f"{context.bento_name}:{context.bento_version}"


install_front_door(CreditScoring, SETTINGS, SPEC)  # first: outside every other middleware
install_request_guard(CreditScoring, SETTINGS)
CreditScoring.add_asgi_middleware(ArrowRoute, form=ARROW)
