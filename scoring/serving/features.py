"""The request schema, generated from the model's own signature, and the mapping of validated
requests to the float64 matrix LightGBM scores (columns in the booster's order).

Double features accept null as a missing value (LightGBM routes NaN down its learned default
branch); integer features must be present. NaN and infinity literals are refused everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from scoring.stored_model.signature_types import INTEGER_TYPES


@dataclass(frozen=True)
class FeatureSpec:
    """Feature names in model order, with the integer ones (no missing values) marked."""

    names: tuple[str, ...]
    integer: frozenset[str]

    @classmethod
    def from_metadata(cls, features: Sequence[dict[str, str]]) -> FeatureSpec:
        return cls(
            names=tuple(f["name"] for f in features),
            integer=frozenset(f["name"] for f in features if f["type"] in INTEGER_TYPES),
        )

    def python_type(self, name: str) -> Any:
        return int if name in self.integer else float | None


def application_model(spec: FeatureSpec, example: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model with one field per feature, in model order."""
    fields: dict[str, Any] = {}
    for name in spec.names:
        nullable = name not in spec.integer
        description = "missing allowed (null)" if nullable else "required integer"
        fields[name] = (
            spec.python_type(name),
            Field(..., description=description, examples=[example.get(name)]),
        )
    config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"example": example})
    return create_model("Application", __config__=config, **fields)


def records_to_matrix(records: Sequence[BaseModel]) -> np.ndarray:
    """Validated Application models to rows; field order is model order by construction."""
    # numpy turns None (a missing value) into NaN for a float64 array.
    return np.array([tuple(record.__dict__.values()) for record in records], dtype=np.float64)


class CompactTable(BaseModel):
    """Column names once, then rows of values: pandas' `split` orientation."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    columns: list[str] = Field(..., description="feature names, each exactly once, any order")
    data: list[list[float | None]] = Field(..., description="one row of values per application")


class RequestError(ValueError):
    """A request that validates structurally but not against the model's features."""


def model_order(columns: Sequence[str], spec: FeatureSpec) -> list[int]:
    """Positions of the model's features among `columns`; each must appear exactly once."""
    unknown = sorted(set(columns) - set(spec.names))
    if unknown:
        raise RequestError(f"unknown feature(s): {', '.join(unknown)}")
    missing = [name for name in spec.names if name not in columns]
    if missing:
        raise RequestError(f"missing feature(s): {', '.join(missing)}")
    if len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if list(columns).count(c) > 1})
        raise RequestError(f"repeated column(s): {', '.join(repeated)}")
    position = {name: i for i, name in enumerate(columns)}
    return [position[name] for name in spec.names]


def compact_to_matrix(table: CompactTable, spec: FeatureSpec, max_rows: int) -> np.ndarray:
    check_row_count(len(table.data), max_rows)
    order = model_order(table.columns, spec)
    width = len(table.columns)
    for index, row in enumerate(table.data):
        if len(row) != width:
            raise RequestError(f"data[{index}] has {len(row)} values for {width} columns")
    matrix = np.array(table.data, dtype=np.float64).reshape(len(table.data), width)[:, order]
    check_integer_columns(matrix, spec)
    return matrix


def check_integer_columns(matrix: np.ndarray, spec: FeatureSpec) -> None:
    """Integer features must be present and whole (compact rows arrive as floats)."""
    for column, name in enumerate(spec.names):
        if name not in spec.integer:
            continue
        values = matrix[:, column]
        bad = np.flatnonzero(np.isnan(values) | (values != np.round(values)))
        if bad.size:
            raise RequestError(f"{name} in row {bad[0]} must be an integer, got {values[bad[0]]}")


def check_row_count(n_rows: int, max_rows: int) -> None:
    if n_rows == 0:
        raise RequestError("at least one application is required")
    if n_rows > max_rows:
        raise RequestError(f"{n_rows} applications exceed the per-request maximum {max_rows}")


def row_limit(max_rows: int) -> AfterValidator:
    """Refuse empty requests and requests over the per-request maximum."""

    def check(rows: list) -> list:
        check_row_count(len(rows), max_rows)
        return rows

    return AfterValidator(check)
