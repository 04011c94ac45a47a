"""The challenger named by SCORING_CHALLENGER, loaded and proven like the champion (checksums,
self-test, its own reason table and threshold label) and checked against the champion's
request contract, then put in a shadow lane. A challenger that cannot be loaded stops the
service at start with one line, as the champion does: the operator asked for a comparison,
and silently running without one would be a guess."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from scoring.core.contract import FeatureSpec
from scoring.core.contract_map import ContractMismatch, RowMap, row_map
from scoring.core.model import ModelCannotServe, ServedModel
from scoring.core.reasons import ReasonTableUnusable, load_plan
from scoring.core.scorer import Scorer
from scoring.serving.forms.records import application_model
from scoring.serving.shadow.budget import CpuBudget
from scoring.serving.shadow.lane import EVEN_EDGES, ShadowLane


def load_challenger(tag: str, reason_count: int) -> tuple[Scorer, FeatureSpec]:
    """The challenger's scorer, on one LightGBM thread (it must not take the champion's cores)
    and with no hooks: its rows count in no champion metric."""
    try:
        bento_model = bentoml.models.get(tag)
    except NotFound:
        raise ModelCannotServe(
            f"challenger {tag} is not in the Bento store; import it with --role challenger"
        ) from None
    try:
        metadata = bento_model.info.metadata
        spec = FeatureSpec.from_metadata(metadata["features"])
        example = json.loads(metadata.get("input_example_json", "{}"))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelCannotServe(
            f"challenger {tag}'s metadata is not this version's ({error!r}); re-import it"
        ) from None
    model = ServedModel.load(bento_model, spec, application_model(spec, example), example)
    try:
        plan = load_plan(Path(bento_model.path), model.metadata, spec.names)
    except ReasonTableUnusable as error:
        raise ModelCannotServe(f"challenger {tag}: {error}") from None
    scorer = Scorer(
        model=model,
        spec=spec,
        threshold=model.provenance.threshold,
        threads=1,
        reason_plan=plan,
        reason_count=reason_count,
    )
    return scorer, spec


def checked_challenger(
    tag: str, champion_spec: FeatureSpec, reason_count: int
) -> tuple[Scorer, RowMap]:
    """The challenger's scorer and its map from the champion's rows, or ModelCannotServe."""
    challenger, spec = load_challenger(tag, reason_count)
    try:
        return challenger, row_map(champion_spec, spec)
    except ContractMismatch as error:
        raise ModelCannotServe(
            f"challenger {challenger.tag} cannot read the champion's requests: {error}"
        ) from None


def shadow_lane(
    tag: str,
    champion_tag: str,
    champion_spec: FeatureSpec,
    champion_threshold: float,
    reason_count: int,
    max_pending_rows: int,
    cpu_share: float,
    score_edges: Sequence[float] = EVEN_EDGES,
) -> ShadowLane:
    challenger, mapping = checked_challenger(tag, champion_spec, reason_count)
    return ShadowLane(
        champion_tag,
        champion_threshold,
        challenger,
        mapping,
        score_edges=score_edges,
        max_pending_rows=max_pending_rows,
        budget=CpuBudget(cpu_share),
    )
