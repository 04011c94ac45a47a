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
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
import orjson
from bentoml.validators import ContentType
from pydantic import AfterValidator, Field, StrictBool, StrictInt

from scoring.bentoml_patches.json_body import WrittenKeys
from scoring.core.contract import encoders, records_to_matrix
from scoring.core.model import ServedModel
from scoring.core.reasons import Reason, load_plan
from scoring.core.scorer import Scorer, reasons_text
from scoring.serving.batching.bulk_lane import in_bulk_lane
from scoring.serving.edge.arrow_route import ArrowForm, ArrowRoute
from scoring.serving.edge.challenger import shadow_lane
from scoring.serving.edge.front_door import install_front_door
from scoring.serving.edge.image import IMAGE
from scoring.serving.edge.openapi import CompleteOpenAPI
from scoring.serving.edge.request_guard import install_request_guard
from scoring.serving.edge.startup import prepare_service
from scoring.serving.edge.version import VERSION, version_app
from scoring.serving.edge.version_document import version_document
from scoring.serving.forms.answers import Explanation, Prediction, PredictionWithReasons
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
from scoring.serving.shadow.lane import EVEN_EDGES, ShadowLane

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
    # Declared, so `bentoml build` packs it with the champion (list it in bentofile's models).
    challenger_model = (
        bentoml.models.BentoModel(SETTINGS.challenger) if SETTINGS.challenger else None
    )

    def __init__(self) -> None:
        model = ServedModel.load(self.bento_model, SPEC, Application, EXAMPLE)
        if SETTINGS.threshold is not None:
            threshold, self.threshold_origin = SETTINGS.threshold, "override SCORING_THRESHOLD"
        else:
            threshold, self.threshold_origin = model.provenance.threshold, "model label"
        # Drift against the reference stored with the model: the request path only appends.
        self.monitor = monitor_for(
            self.bento_model,
            SPEC.names,
            threshold,
            SETTINGS.monitoring_window_s,
            enabled=SETTINGS.drift_monitoring,
        )
        install_monitor(self.monitor)
        self.shadow = self._shadow(model.tag, threshold)
        # Every route scores through this one scorer (scoring/core/scorer.py): its rows counted
        # for drift, its decisions in the metrics. Its reason plan's file was verified with the
        # model's.
        self.scoring = Scorer(
            model=model,
            spec=SPEC,
            threshold=threshold,
            threads=SETTINGS.booster_threads(),
            reason_plan=load_plan(Path(self.bento_model.path), model.metadata, SPEC.names),
            reason_count=SETTINGS.reason_count,
            on_scored=self._on_scored(),
            on_decided=record,
        )
        self.model_tag, self.provenance = model.tag, model.provenance
        ARROW.attach(self._answer_json)
        # Move start-up objects (model, schema, libraries) out of the collector's reach: full
        # collections then scan only request garbage, which cut p99 spikes under load.
        gc.collect()
        gc.freeze()
        VERSION.update(self._version())
        log.info(
            "serving %s run_id=%s threshold=%s (%s, source %s) lightgbm_threads=%d",
            self.model_tag,
            self.provenance.run_id,
            threshold,
            self.threshold_origin,
            self.provenance.threshold_source,
            self.scoring.threads,
        )

    def _shadow(self, champion_tag: str, threshold: float) -> ShadowLane | None:
        """The challenger's shadow lane, when one is configured (checked at start)."""
        if not SETTINGS.challenger:
            return None
        reference = getattr(self.monitor, "reference", None)
        # Both models' scores are binned at the champion's reference deciles when it has them.
        edges = reference.score.edges if reference is not None else EVEN_EDGES
        lane = shadow_lane(
            SETTINGS.challenger,
            champion_tag,
            SPEC,
            threshold,
            SETTINGS.reason_count,
            SETTINGS.shadow_max_pending_rows,
            SETTINGS.shadow_cpu_share,
            score_edges=edges,
        )
        lane.start()
        return lane

    def _on_scored(self) -> Callable[[np.ndarray, np.ndarray], None]:
        """What every scored batch feeds: the drift counts and, with a challenger, its lane."""
        observe, shadow = self.monitor.observe, self.shadow
        if shadow is None:
            return observe

        def observe_and_offer(rows: np.ndarray, probabilities: np.ndarray) -> None:
            observe(rows, probabilities)
            shadow.offer(rows, probabilities)

        return observe_and_offer

    def _version(self) -> dict:
        return version_document(
            self.bento_model.info.metadata,
            self.scoring,
            self.threshold_origin,
            drift_monitoring=monitoring_version(self.monitor),
            challenger=self.shadow.describe() if self.shadow else None,
            workers=SETUP.workers,
        )

    def __is_ready__(self) -> bool:
        return True  # __init__ has loaded the model and passed its self-test

    async def _probabilities(self, rows: np.ndarray) -> np.ndarray:
        # The batch APIs are async on purpose: a small batch is scored right on the event
        # loop, with no hand-off to a thread that would then wait for the GIL while the loop
        # parses requests. A large batch goes to a thread (LightGBM releases the GIL), so the
        # loop keeps reading the next requests meanwhile.
        if len(rows) < INLINE_ROWS:
            # One thread: for a few rows, waking OpenMP threads costs more than it saves.
            return self.scoring.probabilities(rows, threads=1)
        return await asyncio.to_thread(self.scoring.probabilities, rows)

    async def _score(self, rows: np.ndarray) -> list[Prediction]:
        if len(rows) >= SETTINGS.bulk_rows:
            # A bulk request (it skipped the batching queue): scored and decided in the bulk
            # lane, one at a time per worker, at low priority (serving/batching/bulk_lane.py).
            return await in_bulk_lane(self._score_now, rows)
        return self._decide(await self._probabilities(rows))

    def _score_now(self, rows: np.ndarray) -> list[Prediction]:
        return self._decide(self.scoring.probabilities(rows))

    def _decide(self, probabilities: np.ndarray) -> list[Prediction]:
        # Built from values that hold by construction (a probability, one of two decisions):
        # validating 500 answers again cost more than scoring them.
        return [Prediction.model_construct(**a) for a in self.scoring.answers(probabilities)]

    def _answer_json(self, rows: np.ndarray) -> bytes:
        """Score and decide `rows` into the JSON /predict answers, without building a model per
        row (the Arrow route's answer, made in the bulk lane)."""
        return orjson.dumps(self.scoring.answers(self.scoring.probabilities(rows)))

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

    async def _decide_with_reasons(self, rows: np.ndarray) -> list[PredictionWithReasons]:
        predictions = await self._score(rows)
        decisions = [p.decision for p in predictions]
        reasons: list[list[Reason] | None] = [None] * len(predictions)
        if "reject" in decisions:
            # TreeSHAP costs far more than scoring: in a thread (LightGBM releases the GIL), so
            # the event loop keeps serving, and only for the rejected rows; a bulk request's in
            # the bulk lane, behind the worker's other bulk work.
            off_the_loop = in_bulk_lane if len(rows) >= SETTINGS.bulk_rows else asyncio.to_thread
            reasons = await off_the_loop(self.scoring.reasons_of_rejected, rows, decisions)
        source = self.scoring.reason_plan.answer_source
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
        return [
            Explanation.model_validate(e) for e in self.scoring.explanations(applications, top_k)
        ]

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
        probabilities = self.scoring.probabilities(file.matrix)
        frame = file.frame.assign(
            probability_of_default=probabilities,
            decision=[d.decision for d in self._decide(probabilities)],
        )
        if reasons:
            found = self.scoring.reasons_of_rejected(file.matrix, frame["decision"].tolist())
            frame = frame.assign(reasons=[reasons_text(r) for r in found])
        # BentoML's per-request folder: emptied once the response has been sent.
        out = Path(ctx.temp_dir) / f"scored{file.suffix}"
        if file.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False)
        return out


install_front_door(CreditScoring, SETTINGS, SPEC)  # first: outside every other middleware
install_request_guard(CreditScoring, SETTINGS)
CreditScoring.add_asgi_middleware(ArrowRoute, form=ARROW)
CreditScoring.add_asgi_middleware(
    CompleteOpenAPI,
    max_rows=SETTINGS.max_rows_per_request,
    max_body_bytes=SETTINGS.max_body_bytes,
)
