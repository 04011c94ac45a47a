"""The import's steps: resolve candidates, check each, save the chosen one with its lineage."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from scoring import bento_store, resolve
from scoring.errors import ImportRefused
from scoring.model_checks import CheckedModel, check_model, download_model
from scoring.provenance import Provenance
from scoring.threshold import Threshold, choose_threshold, threshold_sources


@dataclass(frozen=True)
class Servable:
    candidate: resolve.Candidate
    model: CheckedModel
    threshold: Threshold


def _candidates(args: argparse.Namespace) -> list[resolve.Candidate]:
    client = resolve.connect(args.tracking_uri, args.timeout)
    if args.version:
        return [resolve.by_version(client, args.model_name, args.version)]
    if args.run_id:
        return [resolve.by_run_id(client, args.run_id)]
    if args.tag:
        key, value = args.tag.split("=", 1)
        return [resolve.by_run_tag(client, key, value, args.experiment)]
    if args.best_by:
        return resolve.ranked_by_metric(client, args.best_by, args.experiment)
    return [resolve.by_alias(client, args.model_name, args.alias or "production")]


def _check(candidate: resolve.Candidate, args: argparse.Namespace, scratch: Path) -> Servable:
    if not candidate.model_uri:
        raise ImportRefused(f"run {candidate.run_id} has no model artifact")
    threshold = choose_threshold(
        args.threshold,
        threshold_sources(candidate.version_tags, candidate.params, candidate.metrics),
    )
    destination = scratch / candidate.run_id
    destination.mkdir(exist_ok=True)
    local = download_model(candidate.model_uri, destination, args.tracking_uri)
    return Servable(candidate, check_model(local), threshold)


def find_servable(args: argparse.Namespace, scratch: Path) -> tuple[Servable, list[str]]:
    """The first candidate that passes every check, and a line per candidate considered.

    With --best-by an incomplete run is skipped in favour of the next best; any other way of
    choosing names exactly one run, so its refusal ends the import.
    """
    considered: list[str] = []
    last_refusal: ImportRefused | None = None
    for candidate in _candidates(args):
        try:
            servable = _check(candidate, args, scratch)
        except ImportRefused as refusal:
            considered.append(
                f"refused  {candidate.describe()} [{candidate.resolved_by}]: {refusal}"
            )
            if not args.best_by:
                _print_considered(args, considered)
                raise
            last_refusal = refusal
            continue
        considered.append(
            f"chosen   {candidate.describe()} [{candidate.resolved_by}]: {candidate.model_uri}, "
            f"threshold {servable.threshold.value:g} ({servable.threshold.source})"
        )
        return servable, considered
    _print_considered(args, considered)
    raise type(last_refusal)(
        f"no complete run among {len(considered)} candidates; last: {last_refusal}"
    )


def _print_considered(args: argparse.Namespace, considered: list[str]) -> None:
    if args.dry_run:
        print("\n".join(considered))


def _metadata(servable: Servable, redacted_uri: str) -> dict:
    candidate, model = servable.candidate, servable.model
    return {
        "mlflow_model_uri": candidate.model_uri,
        "tracking_uri": redacted_uri,
        "resolved_by": candidate.resolved_by,
        "metrics": candidate.metrics,
        "params": candidate.params,
        "features": [{"name": f.name, "type": f.type} for f in model.features],
        # JSON text: Bento metadata cannot hold None, and missing values are None here.
        "input_example_json": json.dumps(model.input_example),
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": {lib: version(lib) for lib in ("lightgbm", "mlflow", "bentoml")},
    }


def save_to_store(
    servable: Servable, args: argparse.Namespace, redacted_uri: str
) -> tuple[str, bool]:
    """Return (tag, reused): an identical earlier import is reused, not written again."""
    candidate = servable.candidate
    tag = bento_store.bento_tag(
        args.bento_name,
        candidate.model_uri,
        servable.threshold.value,
        candidate.model_version,
        compiled=args.compile,
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
    )
    bento_store.save_booster(
        tag,
        servable.model.booster,
        provenance.to_labels(),
        _metadata(servable, redacted_uri),
        compile_forest=args.compile,
    )
    return tag, False
