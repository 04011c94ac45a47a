"""The import's steps: resolve candidates, check each, save the chosen one with its lineage.
`import_model(request)` runs them all; it prints nothing (the CLI does)."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from mlflow.tracking import MlflowClient

from scoring.importing import resolve
from scoring.importing import store as bento_store
from scoring.importing.artifact_files import download_artifact, model_like_files
from scoring.importing.booster_contract import SIGNATURE
from scoring.importing.challenger import check_fits_champion
from scoring.importing.errors import BrokenRun, ImportRefused
from scoring.importing.model_checks import (
    CheckedModel,
    check_artifact,
    check_model,
    download_model,
)
from scoring.importing.reason_table import FoundTable, find_reason_table, warnings_for
from scoring.importing.redact import redact_uri
from scoring.importing.reference import NO_REFERENCE, drift_reference, run_reference_sample
from scoring.importing.request import CHALLENGER, DEFAULT_ALIAS, ImportRequest
from scoring.importing.threshold import Threshold, choose_threshold, threshold_sources
from scoring.stored_model.drift_reference import DRIFT_REFERENCE_FILE, DriftReference
from scoring.stored_model.layout import PREPROCESSING_FILE
from scoring.stored_model.pipeline_steps import PIPELINE_KEY
from scoring.stored_model.provenance import Provenance
from scoring.stored_model.reason_codes import REASON_CODES_FILE, REASON_CODES_KEY


@dataclass(frozen=True)
class Servable:
    candidate: resolve.Candidate
    model: CheckedModel
    threshold: Threshold


@dataclass(frozen=True)
class Outcome:
    considered: list[str]
    """A line per candidate looked at: chosen or refused, and why."""
    tag: str = ""
    """The Bento model written or reused; empty for a dry run."""
    reused: bool = False
    summary: str = ""
    warnings: tuple[str, ...] = ()
    """One line each, for stderr: the import went ahead, but someone should know."""


def _candidates(request: ImportRequest) -> list[resolve.Candidate]:
    client = resolve.connect(request.tracking_uri, request.timeout_s)
    if request.version:
        return [resolve.by_version(client, request.model_name, request.version)]
    if request.run_id:
        return [resolve.by_run_id(client, request.run_id)]
    if request.tag:
        key, value = request.tag
        return [resolve.by_run_tag(client, key, value, request.experiment)]
    if request.best_by:
        return resolve.ranked_by_metric(client, request.best_by, request.experiment)
    return [resolve.by_alias(client, request.model_name, request.alias or DEFAULT_ALIAS)]


def _check_artifact(
    candidate: resolve.Candidate, request: ImportRequest, destination: Path
) -> tuple[resolve.Candidate, CheckedModel]:
    """The --artifact file of the candidate's run, in place of its MLflow model."""
    path = (request.artifact or "").strip("/")
    local = download_artifact(candidate.run_id, path, destination, request.tracking_uri)
    candidate = replace(candidate, model_uri=f"runs:/{candidate.run_id}/{path}")
    if local.is_dir():  # an MLflow model folder named by path: read as one
        if not (local / "MLmodel").is_file():
            raise BrokenRun(f"--artifact {path} is a folder, not a model file")
        model = check_model(local, request.allow_pickle, request.schema_from_model)
        return candidate, replace(model, model_source=f"artifact:{path}")
    return candidate, check_artifact(local, path, request.allow_pickle)


def _check(candidate: resolve.Candidate, request: ImportRequest, scratch: Path) -> Servable:
    if candidate.model_problem is not None and not request.artifact:
        raise candidate.model_problem
    threshold = choose_threshold(
        request.threshold,
        threshold_sources(candidate.version_tags, candidate.params, candidate.metrics),
    )
    destination = scratch / candidate.run_id
    destination.mkdir(exist_ok=True)
    if request.artifact:
        candidate, model = _check_artifact(candidate, request, destination)
        return Servable(candidate, model, threshold)
    local = download_model(candidate.model_uri, destination, request.tracking_uri)
    model = check_model(local, request.allow_pickle, request.schema_from_model)
    return Servable(candidate, model, threshold)


def find_servable(request: ImportRequest, scratch: Path) -> tuple[Servable, list[str]]:
    """The first candidate that passes every check, and a line per candidate considered.

    With --best-by an incomplete run is skipped in favour of the next best; any other way of
    choosing names exactly one run, so its refusal ends the import. A refusal carries the lines
    considered so far, for --dry-run.
    """
    considered: list[str] = []
    last_refusal: ImportRefused | None = None
    for candidate in _candidates(request):
        try:
            servable = _check(candidate, request, scratch)
        except ImportRefused as refusal:
            considered.append(
                f"refused  {candidate.describe()} [{candidate.resolved_by}]: {refusal}"
            )
            refusal.considered = tuple(considered)
            if not request.best_by:
                raise
            last_refusal = refusal
            continue
        considered.append(
            f"chosen   {candidate.describe()} [{candidate.resolved_by}]: {candidate.model_uri}, "
            f"threshold {servable.threshold.value:g} ({servable.threshold.source})"
        )
        return servable, considered
    final = type(last_refusal)(
        f"no complete run among {len(considered)} candidates; last: {last_refusal}"
    )
    final.considered = tuple(considered)
    raise final


def _metadata(servable: Servable, redacted_uri: str) -> dict:
    candidate, model = servable.candidate, servable.model
    return {
        "mlflow_model_uri": candidate.model_uri,
        "tracking_uri": redacted_uri,
        "resolved_by": candidate.resolved_by,
        "metrics": candidate.metrics,
        "params": candidate.params,
        "features": [column.to_metadata() for column in model.features],
        "model_source": model.model_source,
        "serialization": model.serialization,
        "contract_source": model.contract_source,
        **({PIPELINE_KEY: model.pipeline.metadata()} if model.pipeline else {}),
        # JSON text: Bento metadata cannot hold None, and missing values are None here.
        "input_example_json": json.dumps(model.input_example),
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": {lib: version(lib) for lib in ("lightgbm", "mlflow", "bentoml")},
    }


def save_to_store(
    servable: Servable,
    request: ImportRequest,
    reasons: FoundTable | None = None,
    reference: DriftReference | None = None,
) -> tuple[str, bool]:
    """Return (tag, reused): an identical earlier import is reused, not written again."""
    candidate, model = servable.candidate, servable.model
    tag = bento_store.bento_tag(
        request.bento_name,
        candidate.model_uri,
        servable.threshold.value,
        candidate.model_version,
        compiled=request.compile,
        reason_codes_sha256=reasons.sha256 if reasons else "",
        reference_sha256=reference.sample_sha256 if reference else "",
        contract_source=servable.model.contract_source,
    )
    if bento_store.existing(tag) is not None:
        return tag, True
    provenance = Provenance(
        run_id=candidate.run_id,
        threshold=servable.threshold.value,
        threshold_source=servable.threshold.source,
        experiment=candidate.experiment,
        stage=candidate.run_tags.get("stage", ""),
        registered_model=candidate.registered_model,
        model_version=candidate.model_version,
        model_alias=candidate.model_alias,
        model_source=servable.model.model_source,
        serialization=servable.model.serialization,
        contract_source=servable.model.contract_source,
        role=request.role,
        pipeline=servable.model.pipeline.steps if servable.model.pipeline else "",
    )
    reason_codes = {"source": reasons.source, "sha256": reasons.sha256} if reasons else {}
    bento_store.save_booster(
        tag,
        servable.model.booster,
        {**provenance.to_labels(), "reason_codes": reasons.sha256[:12] if reasons else "none"},
        {
            **_metadata(servable, redact_uri(request.tracking_uri)),
            REASON_CODES_KEY: reason_codes or {"source": "none"},
        },
        compile_forest=request.compile,
        files={
            **({REASON_CODES_FILE: reasons.content} if reasons else {}),
            **({DRIFT_REFERENCE_FILE: reference.to_json().encode()} if reference else {}),
            **({PREPROCESSING_FILE: model.pipeline.content} if model.pipeline else {}),
        },
    )
    return tag, False


def find_reference(
    servable: Servable, request: ImportRequest, scratch: Path
) -> DriftReference | None:
    """The drift reference: --reference, else the run's logged sample, else None."""
    if request.reference is not None:
        sample, source = request.reference, f"--reference {request.reference.name}"
    else:
        destination = scratch / "reference"
        destination.mkdir(exist_ok=True)
        run_id = servable.candidate.run_id
        sample = run_reference_sample(run_id, request.tracking_uri, destination)
        if sample is None:
            return None
        source = f"runs:/{run_id}/{sample.name}"
    model = servable.model
    return drift_reference(
        sample, source, model.predictor, model.features, servable.threshold.value
    )


def other_model_files(servable: Servable, request: ImportRequest) -> tuple[str, ...]:
    """A warning when the run also logged model files beside the MLflow model that was used
    (a pickle backup, a booster text file): the operator learns which one was imported."""
    if request.artifact:
        return ()
    try:
        client = MlflowClient(request.tracking_uri)
        files = model_like_files(client, servable.candidate.run_id)
    except Exception:  # the warning is a courtesy; the import itself already read this store
        return ()
    if not files:
        return ()
    return (
        f"run {servable.candidate.run_id} also logged {', '.join(files)}; the MLflow model "
        f"{servable.candidate.model_uri} was imported (name a file with --artifact to import "
        "it instead)",
    )


def _how_read(model: CheckedModel) -> str:
    contract = (
        "" if model.contract_source == SIGNATURE else f", contract from the {model.contract_source}"
    )
    pipeline = f", a Pipeline ({model.pipeline.steps})" if model.pipeline else ""
    return f"read from {model.model_source} ({model.serialization}){pipeline}{contract}"


def import_model(request: ImportRequest) -> Outcome:
    """Resolve, check and (unless a dry run) save. Raises an ImportRefused subclass, with the
    store untouched, when anything is missing, broken or ambiguous."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="import-model-") as scratch:
        chosen, considered = find_servable(request, Path(scratch))
        if request.role == CHALLENGER:
            champion = check_fits_champion(chosen.model.features, request.champion)
            considered = [*considered, f"challenger to {champion}: reads its requests"]
        features = [column.name for column in chosen.model.features]
        reasons = find_reason_table(
            request.reason_codes,
            chosen.candidate.run_id,
            request.tracking_uri,
            features,
            Path(scratch),
        )
        warnings = tuple(warnings_for(reasons, features)) + other_model_files(chosen, request)
        if request.dry_run:
            return Outcome(considered, warnings=warnings)
        reference = find_reference(chosen, request, Path(scratch))
        if reference is None:
            warnings += (NO_REFERENCE,)
        tag, reused = save_to_store(chosen, request, reasons, reference)
    verb = "already in the Bento store, reused" if reused else "imported"
    c = chosen.candidate
    return Outcome(
        considered,
        tag,
        reused,
        f"{verb} {tag}: {c.describe()}, {_how_read(chosen.model)}, "
        f"threshold {chosen.threshold.value:g} "
        f"({chosen.threshold.source}){', with the compiled forest' if request.compile else ''}"
        f"{f', as challenger to {request.champion}' if request.role == CHALLENGER else ''} "
        f"in {time.perf_counter() - started:.1f} s",
        warnings,
    )
