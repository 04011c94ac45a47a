"""Reasons for rejected applications, from their TreeSHAP contributions and the model's
reason-code table.

For each row: contributions of features sharing a code are summed; never-a-reason features
and codes whose (summed) contribution does not raise the risk (<= 0) are left out; the rest
are ordered by contribution, largest first, ties by code; the first `top_n` are the reasons.
Pure numpy on arrays the caller computed, so the same rows give the same reasons, byte for byte,
in any worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from scoring.core.contract import FeatureSpec
from scoring.stored_model.reason_codes import (
    REASON_CODES_FILE,
    REASON_CODES_KEY,
    ReasonTable,
    ReasonTableError,
)

NO_TABLE_SOURCE = "feature names (no reason-code table)"

Value = float | int | str | bool | None


class Reason(BaseModel):
    code: str = Field(..., description="the table's code; the feature's name when uncoded")
    text: str = Field(..., description="plain-language reason; the feature's name when uncoded")
    features: list[str] = Field(..., description="the features behind it, largest share first")
    values: list[Value] = Field(
        ...,
        description="the applicant's value of each feature: a number, a category, a boolean, "
        "null = missing",
    )
    contribution: float = Field(..., gt=0, description="log-odds it added (TreeSHAP, summed)")
    coded: bool = Field(..., description="false: the table does not list it (or there is none)")


@dataclass(frozen=True)
class ReasonPlan:
    """The table laid over the model's features: the reportable codes in tie-break order, and
    for each the positions of its features."""

    codes: tuple[str, ...]
    texts: tuple[str, ...]
    coded: tuple[bool, ...]
    members: tuple[tuple[int, ...], ...]
    source: str
    sha256: str = ""

    @classmethod
    def build(
        cls, table: ReasonTable | None, names: Sequence[str], source: str, sha256: str = ""
    ) -> ReasonPlan:
        """Features the table does not list (every feature, without a table) are reported
        under their own name, flagged `coded: false`."""
        position = {name: i for i, name in enumerate(names)}
        groups: dict[str, tuple[str, bool, list[int]]] = {}
        excluded = table.never_a_reason if table else frozenset()
        listed = set()
        for row in table.rows if table else ():
            groups.setdefault(row.code, (row.text, True, []))[2].append(position[row.feature])
            listed.add(row.feature)
        for name in names:
            if name not in listed and name not in excluded:
                groups[name] = (name, False, [position[name]])
        codes = sorted(groups)
        return cls(
            codes=tuple(codes),
            texts=tuple(groups[c][0] for c in codes),
            coded=tuple(groups[c][1] for c in codes),
            members=tuple(tuple(sorted(groups[c][2])) for c in codes),
            source=source,
            sha256=sha256,
        )

    def explain(
        self, rows: np.ndarray, contributions: np.ndarray, spec: FeatureSpec, top_n: int
    ) -> list[list[Reason]]:
        """`rows`: the scored matrix (model order); `contributions`: LightGBM's
        `pred_contrib=True` output for them (one column per feature, then the base value)."""
        merged = self.merged(contributions)
        top_n = min(top_n, len(self.codes))
        answers = []
        for row, per_feature, per_code in zip(rows, contributions, merged, strict=True):
            raising = np.flatnonzero(per_code > 0)
            # lexsort's last key is the primary one: contribution descending, then code order.
            ranked = raising[np.lexsort((raising, -per_code[raising]))][:top_n]
            answers.append([self._reason(c, row, per_feature, per_code[c], spec) for c in ranked])
        return answers

    def merged(self, contributions: np.ndarray) -> np.ndarray:
        """(rows, codes): each code's features' contributions summed, in a fixed order (no
        BLAS, whose summation order may depend on the batch), excluded features left out."""
        merged = np.zeros((contributions.shape[0], len(self.codes)))
        for index, members in enumerate(self.members):
            total = merged[:, index]
            for position in members:
                total += contributions[:, position]
        return merged

    def _reason(
        self,
        code: int,
        row: np.ndarray,
        per_feature: np.ndarray,
        total: float,
        spec: FeatureSpec,
    ) -> Reason:
        members = [p for p in self.members[code] if per_feature[p] != 0]
        members.sort(key=lambda p: (-per_feature[p], p))
        return Reason(
            code=self.codes[code],
            text=self.texts[code],
            features=[spec.names[p] for p in members],
            values=[_value(spec, spec.names[p], row[p]) for p in members],
            contribution=float(total),
            coded=self.coded[code],
        )

    @property
    def answer_source(self) -> str:
        """What each answer names as its reasons' source: the table and its hash."""
        return f"{self.source}, sha256 {self.sha256[:12]}" if self.sha256 else self.source

    def describe(self, top_n: int) -> dict[str, Any]:
        """For GET /version."""
        return {
            "source": self.source,
            "sha256": self.sha256 or None,
            "reportable_codes": len(self.codes),
            "reasons_per_rejection": min(top_n, len(self.codes)),
        }


def _value(spec: FeatureSpec, name: str, scored: float) -> Value:
    value = spec.value_of(name, scored)
    if name in spec.integer and isinstance(value, float):
        return int(value)
    return value


class ReasonTableUnusable(RuntimeError):  # noqa: N818 - what the operator reads
    """The stored table cannot be read back; the message says what to do."""


def load_plan(model_dir: Path, metadata: Mapping[str, Any], names: Sequence[str]) -> ReasonPlan:
    """The stored model's plan. Its file's checksum is verified with the model's other files
    (scoring/core/model.py) before this reads it."""
    stored = metadata.get(REASON_CODES_KEY) or {}
    path = model_dir / REASON_CODES_FILE
    if not stored.get("sha256") or not path.exists():
        return ReasonPlan.build(None, names, NO_TABLE_SOURCE)
    try:
        table = ReasonTable.parse(path.read_bytes(), names)
    except ReasonTableError as error:
        raise ReasonTableUnusable(f"its reason-code table {error}; re-import the model") from None
    return ReasonPlan.build(table, names, stored["source"], stored["sha256"])
