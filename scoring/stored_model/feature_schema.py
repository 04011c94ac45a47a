"""The model's input columns as the importer stores them (Bento model metadata `features`) and
the service reads them: one definition, so the two sides cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# MLflow signature types LightGBM can take, by how a request carries them.
FLOAT_TYPES = frozenset({"double", "float"})
# Whole-number columns: required (no missing value) and integral in every request.
INTEGER_TYPES = frozenset({"long", "integer"})
BOOLEAN_TYPES = frozenset({"boolean"})
STRING_TYPES = frozenset({"string"})
SERVABLE_TYPES = FLOAT_TYPES | INTEGER_TYPES | BOOLEAN_TYPES | STRING_TYPES

Category = str | int


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    type: str
    """MLflow signature type: double, float, long, integer, boolean or string."""
    categorical: bool = False
    """LightGBM splits on it as a categorical feature."""
    categories: tuple[Category, ...] | None = None
    """pandas categories in training order (LightGBM's `pandas_categorical`): a value's code is
    its position here. None for numeric features and for categoricals given as integer codes."""
    required: bool = False
    """A category that may not be missing: a Pipeline whose encoder fails on a missing value
    (scoring/importing/pipelines.py). Numbers that must be present are the integer types."""

    def to_metadata(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.categorical:
            entry["categorical"] = True
        if self.categories is not None:
            entry["categories"] = list(self.categories)
        if self.required:
            entry["required"] = True
        return entry

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any]) -> FeatureColumn:
        categories = entry.get("categories")
        return cls(
            name=entry["name"],
            type=entry["type"],
            categorical=bool(entry.get("categorical", False)),
            categories=None if categories is None else tuple(categories),
            required=bool(entry.get("required", False)),
        )


def columns_from_metadata(entries: Sequence[Mapping[str, Any]]) -> list[FeatureColumn]:
    return [FeatureColumn.from_metadata(entry) for entry in entries]
