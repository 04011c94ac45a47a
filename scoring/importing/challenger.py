"""A challenger is imported only if it can read the champion's requests: the service scores it
in shadow on exactly the rows the champion was sent (scoring/core/contract_map.py says what
fits), so a misfit is refused here, before anything is stored, naming the difference."""

from __future__ import annotations

from collections.abc import Sequence

import bentoml
from bentoml.exceptions import NotFound

from scoring.core.contract import FeatureSpec
from scoring.core.contract_map import ContractMismatch, row_map
from scoring.importing.errors import ChallengerMisfit
from scoring.stored_model.feature_schema import FeatureColumn


def check_fits_champion(columns: Sequence[FeatureColumn], champion_tag: str) -> str:
    """The champion's tag as found in the Bento store; ChallengerMisfit when it is missing or
    the challenger cannot read its requests."""
    try:
        champion = bentoml.models.get(champion_tag)
    except NotFound:
        raise ChallengerMisfit(
            f"no champion {champion_tag} in the Bento store to compare with: import the "
            "champion first, or name it with --champion TAG"
        ) from None
    ours = FeatureSpec.from_metadata(champion.info.metadata["features"])
    theirs = FeatureSpec.from_metadata([column.to_metadata() for column in columns])
    try:
        row_map(ours, theirs)
    except ContractMismatch as mismatch:
        raise ChallengerMisfit(
            f"the challenger cannot read {champion.tag}'s requests: {mismatch}"
        ) from None
    return str(champion.tag)
