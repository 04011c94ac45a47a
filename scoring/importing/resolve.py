"""Find the production model's run in MLflow, pinned to what was resolved.

Every path ends in `Candidate`s that name the exact model version, logged model and run, so an
alias that moves during the import cannot change what is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import mlflow
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from scoring.importing.artifact_files import model_like_files
from scoring.importing.errors import (
    AmbiguousProduction,
    BrokenRun,
    ImportRefused,
    NoProductionModel,
    TrackingUnreachable,
)
from scoring.importing.model_forms import SEARCH_CLASSES
from scoring.importing.redact import redact_text, redact_uri, secrets_of


@dataclass(frozen=True)
class Candidate:
    run_id: str
    resolved_by: str
    model_uri: str = ""
    experiment: str = ""
    registered_model: str = ""
    model_version: str = ""
    model_alias: str = ""
    version_tags: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    model_problem: ImportRefused | None = None
    """Why the run's model cannot be used (no artifact, several): raised when it is checked."""

    def describe(self) -> str:
        registry = ""
        if self.registered_model:
            alias = f"@{self.model_alias}" if self.model_alias else ""
            registry = f" ({self.registered_model} v{self.model_version}{alias})"
        return f"run {self.run_id}{registry} in experiment {self.experiment!r}"


def connect(tracking_uri: str, timeout_s: float) -> MlflowClient:
    """A client whose HTTP calls give up after `timeout_s` with no retries, checked once."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(timeout_s, 1)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    # Set globally too: artifact downloads resolve `models:/` URIs through the default client.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as error:  # any transport or store error means we cannot read MLflow
        reason = redact_text(str(error).splitlines()[0][:200], secrets_of(tracking_uri))
        raise TrackingUnreachable(
            f"cannot reach the MLflow tracking server at {redact_uri(tracking_uri)}: {reason}; "
            "check --tracking-uri / MLFLOW_TRACKING_URI"
        ) from error
    return client


def _is_missing(error: MlflowException) -> bool:
    # The REST server reports a missing alias as INVALID_PARAMETER_VALUE "... not found".
    return error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
        "not found" in error.message.lower()
    )


def _active_run(client: MlflowClient, run_id: str, pointed_by: str):
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if _is_missing(error):
            raise BrokenRun(
                f"{pointed_by} points at run {run_id}, which no longer exists"
            ) from None
        raise
    if run.info.lifecycle_stage != "active":
        raise BrokenRun(
            f"{pointed_by} points at run {run_id}, which is deleted; "
            "restore the run or move the alias to a live version"
        )
    return run


def _candidate_from_run(client: MlflowClient, run, resolved_by: str, **registry) -> Candidate:
    experiment = client.get_experiment(run.info.experiment_id)
    return Candidate(
        run_id=run.info.run_id,
        resolved_by=resolved_by,
        experiment=experiment.name,
        run_tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        **registry,
    )


def _run_model_uri(client: MlflowClient, run) -> str:
    """The one model a run logged: an MLflow 3 logged model, or an MLflow 2 `model/` folder."""
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )
    if run.data.tags.get("estimator_class") in SEARCH_CLASSES:
        # sklearn autolog logs a search (GridSearchCV...) as `model` and its refitted winner as
        # `best_estimator`, tagging the run estimator_class: one model twice, since the search
        # delegates predict_proba to the winner. The winner is the simpler of the two to read.
        best = [m for m in logged if m.name == "best_estimator"]
        if len(best) == 1 and {m.name for m in logged} == {"model", "best_estimator"}:
            logged = best
    if len(logged) > 1:
        names = ", ".join(f"{m.name} ({m.model_id})" for m in logged)
        raise AmbiguousProduction(
            f"run {run.info.run_id} logged several models ({names}); register the one to serve"
        )
    if logged:
        return f"models:/{logged[0].model_id}"
    # MLflow 2 logged a model as an artifact folder holding an MLmodel file, under any name.
    folders = [item.path for item in client.list_artifacts(run.info.run_id) if item.is_dir]
    models = [
        folder
        for folder in folders
        if any(
            item.path.endswith("/MLmodel")
            for item in client.list_artifacts(run.info.run_id, folder)
        )
    ]
    if len(models) > 1:
        raise AmbiguousProduction(
            f"run {run.info.run_id} logged several models ({', '.join(models)}); "
            "register the one to serve"
        )
    if models:
        return f"runs:/{run.info.run_id}/{models[0]}"
    files = model_like_files(client, run.info.run_id)
    if files:
        # Never pick one: which file is the model of record only the team can say.
        raise BrokenRun(
            f"run {run.info.run_id} has no MLflow model, but logged model files: "
            f"{', '.join(files)}; import one with --artifact PATH"
        )
    raise BrokenRun(
        f"run {run.info.run_id} has no model artifact; log one with mlflow.lightgbm.log_model"
    )


def _from_version(client: MlflowClient, version, resolved_by: str, alias: str = "") -> Candidate:
    pointed_by = f"{version.name} v{version.version}" + (f"@{alias}" if alias else "")
    run = _active_run(client, version.run_id, pointed_by) if version.run_id else None
    if run is None:
        raise BrokenRun(f"{pointed_by} has no source run; cannot trace its lineage")
    candidate = _candidate_from_run(
        client,
        run,
        resolved_by,
        registered_model=version.name,
        model_version=str(version.version),
        model_alias=alias,
        version_tags=dict(version.tags),
    )
    # The version's source is immutable: pin it, not the alias that led here.
    model_uri = version.source if version.source.startswith(("models:/", "runs:/")) else ""
    return replace(candidate, model_uri=model_uri or f"models:/{version.name}/{version.version}")


def by_alias(client: MlflowClient, model_name: str, alias: str) -> Candidate:
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if _is_missing(error):
            raise NoProductionModel(
                f"registered model {model_name!r} has no alias {alias!r}; set it in MLflow "
                "or choose with --version, --run-id or --tag"
            ) from None
        raise
    return _from_version(client, version, f"alias {model_name}@{alias}", alias=alias)


def by_version(client: MlflowClient, model_name: str, version: str) -> Candidate:
    try:
        found = client.get_model_version(model_name, version)
    except MlflowException as error:
        if _is_missing(error):
            raise NoProductionModel(
                f"registered model {model_name!r} has no version {version}"
            ) from None
        raise
    return _from_version(client, found, f"version {model_name} v{version}")


def _with_run_model(client: MlflowClient, run, candidate: Candidate) -> Candidate:
    """The candidate with its run's one model URI, or with the reason it has none, raised when
    it is checked (unless --artifact names a file instead)."""
    try:
        return replace(candidate, model_uri=_run_model_uri(client, run))
    except (BrokenRun, AmbiguousProduction) as problem:
        return replace(candidate, model_problem=problem)


def by_run_id(client: MlflowClient, run_id: str) -> Candidate:
    run = _active_run(client, run_id, "--run-id")
    return _with_run_model(client, run, _candidate_from_run(client, run, f"run id {run_id}"))


def _experiment_ids(client: MlflowClient, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        raise NoProductionModel(f"experiment {experiment!r} does not exist")
    return [found.experiment_id]


def by_run_tag(client: MlflowClient, key: str, value: str, experiment: str | None) -> Candidate:
    """The single active run tagged key=value; several claims are refused, never guessed."""
    runs = client.search_runs(
        _experiment_ids(client, experiment),
        filter_string=f"tags.`{key}` = '{value}'",
        run_view_type=ViewType.ACTIVE_ONLY,
    )
    where = f"experiment {experiment!r}" if experiment else "any experiment"
    if not runs:
        raise NoProductionModel(f"no active run tagged {key}={value} in {where}")
    if len(runs) > 1:
        claims = "; ".join(
            f"{run.info.run_id} ({client.get_experiment(run.info.experiment_id).name})"
            for run in runs
        )
        raise AmbiguousProduction(
            f"{len(runs)} runs are tagged {key}={value}: {claims}; "
            "untag all but one, or choose with --run-id"
        )
    return replace(by_run_id(client, runs[0].info.run_id), resolved_by=f"run tag {key}={value}")


def ranked_by_metric(client: MlflowClient, metric: str, experiment: str | None) -> list[Candidate]:
    """Active runs that logged `metric`, best (highest) first, each with its model URI or an
    empty one when the run has no model (the caller refuses those)."""
    runs = client.search_runs(
        _experiment_ids(client, experiment),
        filter_string=f"metrics.`{metric}` > -1e300",
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=[f"metrics.`{metric}` DESC"],
    )
    if not runs:
        raise NoProductionModel(f"no active run logged metric {metric!r}")
    ranked = []
    for run in runs:
        candidate = _candidate_from_run(client, run, f"best {metric}={run.data.metrics[metric]:g}")
        ranked.append(_with_run_model(client, run, candidate))
    return ranked
