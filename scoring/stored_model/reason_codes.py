"""The reason-code table: which code and plain-language text each feature is reported under when
an application is rejected, and which features may never be given as a reason (protected
attributes, or anything the business excludes). The importer checks it against the model and
stores it in the Bento model as the team wrote it; the service reads it back from there.

    reasons:
      - {feature: EXT_SOURCE_2, code: R03, text: External credit score too low}
      - {feature: EXT_SOURCE_3, code: R03, text: External credit score too low}
    never_a_reason: [CODE_GENDER]

One row per feature, so that a code given two different texts shows up as such. Features that
share a code are reported together, their contributions summed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The conventional run artifact the importer looks for, and the file's name in the Bento model.
REASON_CODES_FILE = "reason_codes.yaml"
# Metadata key: {"source": where the table came from, "sha256": the stored file's hash}.
REASON_CODES_KEY = "reason_codes"


class ReasonTableError(ValueError):
    """The table cannot be used with this model; the message says what to fix."""


class ReasonRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    feature: str = Field(..., min_length=1, description="a feature of the model")
    code: str = Field(..., min_length=1, description="stable code, e.g. R03")
    text: str = Field(..., min_length=1, description="what a credit officer can send")


class ReasonTableFile(BaseModel):
    """The YAML file as a team writes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reasons: list[ReasonRow] = Field(default_factory=list)
    never_a_reason: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class ReasonTable:
    """A table checked against a model's features."""

    rows: tuple[ReasonRow, ...]
    never_a_reason: frozenset[str]

    @classmethod
    def parse(cls, text: str | bytes, features: Sequence[str]) -> ReasonTable:
        """The table in `text`, checked against `features`; a ReasonTableError otherwise."""
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ReasonTableError(f"unreadable YAML{at}: {problem}") from None
        try:
            table = ReasonTableFile.model_validate(loaded)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the top level"
            raise ReasonTableError(
                f"{where}: {first['msg']} (expected `reasons:` rows of feature, code, text and "
                "an optional `never_a_reason:` list)"
            ) from None
        return cls._checked(table, features)

    @classmethod
    def _checked(cls, table: ReasonTableFile, features: Sequence[str]) -> ReasonTable:
        known = set(features)
        named = [row.feature for row in table.reasons] + table.never_a_reason
        unknown = sorted({name for name in named if name not in known})
        if unknown:
            raise ReasonTableError(
                f"names feature(s) the model does not have: {', '.join(unknown)}; "
                "remove them or fix their spelling"
            )
        twice = sorted(name for name, count in Counter(named).items() if count > 1)
        if twice:
            raise ReasonTableError(
                f"lists feature(s) more than once: {', '.join(twice)}; give each feature one "
                "row (or put it under never_a_reason only)"
            )
        texts: dict[str, set[str]] = {}
        for row in table.reasons:
            texts.setdefault(row.code, set()).add(row.text)
        clashing = {code: sorted(t) for code, t in sorted(texts.items()) if len(t) > 1}
        if clashing:
            code, both = next(iter(clashing.items()))
            raise ReasonTableError(
                f"code {code} has {len(both)} different texts ({' / '.join(map(repr, both))}); "
                "give every row of a code the same text"
            )
        unlisted = known - {row.feature for row in table.reasons} - set(table.never_a_reason)
        taken = sorted(set(texts) & unlisted)
        if taken:
            raise ReasonTableError(
                f"code {taken[0]} is also the name of a feature the table does not list (which "
                "is reported under its own name); list that feature or rename the code"
            )
        return cls(tuple(table.reasons), frozenset(table.never_a_reason))

    def uncoded(self, features: Sequence[str]) -> list[str]:
        """Features neither coded nor excluded: reported under their own name."""
        listed = {row.feature for row in self.rows} | self.never_a_reason
        return [name for name in features if name not in listed]
